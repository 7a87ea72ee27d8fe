//! SDK behaviour with injected faults (aws-smithy-mocks stands in for the
//! services): throttling, persistent 5xx, and conditional-check failures.

use aws_sdk_batch::operation::list_jobs::ListJobsOutput;
use aws_sdk_batch::operation::submit_job::SubmitJobOutput;
use aws_sdk_batch::types::{JobStatus, JobSummary};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use dispatcher::config::Config;
use dispatcher::dispatch::{self, Clients, SubmitError, Submitted};
use dispatcher::retry_policy;
use labeler_core::job::{plan_job, LabelOptions, ManifestLocation};
use labeler_core::store::{self, Clock, WriteOutcome};
use labeler_core::{ImageRef, Revision, Status};
use std::collections::HashMap;

const ATTEMPTS: u32 = 4;

fn config() -> Config {
    Config::from_lookup(|k| match k {
        "JOB_QUEUE" => Some("image-labeler".into()),
        "JOB_DEFINITION" => Some("image-labeler-worker".into()),
        "TABLE_NAME" => Some("image-labels".into()),
        "MAX_ATTEMPTS" => Some(ATTEMPTS.to_string()),
        _ => None,
    })
    .unwrap()
}

fn image(seq: &str) -> ImageRef {
    ImageRef {
        bucket: "photos-bucket".into(),
        key: "cats/tabby cat.jpg".into(),
        revision: Revision::from_sequencer(seq).unwrap(),
        version_id: None,
        etag: None,
        size: Some(10),
    }
}

fn throttled() -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(429).unwrap(),
        SdkBody::from(r#"{"__type":"TooManyRequestsException","message":"Too Many Requests"}"#),
    )
}

fn unavailable() -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(503).unwrap(),
        SdkBody::from(r#"{"message":"Service Unavailable"}"#),
    )
}

/// A Batch client answering `rules`, and ListJobs with no job unless a rule
/// of the test answers it first.
fn batch_client(rules: &[&aws_smithy_mocks::Rule]) -> aws_sdk_batch::Client {
    let none_listed =
        mock!(aws_sdk_batch::Client::list_jobs).then_output(|| ListJobsOutput::builder().build());
    let mut rules = rules.to_vec();
    rules.push(&none_listed);
    mock_client!(aws_sdk_batch, RuleMode::MatchAny, &rules, |c| c
        .retry_config(retry_policy(ATTEMPTS)))
}

fn dynamodb_client(rules: &[&aws_smithy_mocks::Rule]) -> aws_sdk_dynamodb::Client {
    mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(retry_policy(ATTEMPTS)))
}

fn s3_client() -> aws_sdk_s3::Client {
    mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[])
}

fn planned() -> labeler_core::job::PlannedJob {
    plan_job(
        "image-labels",
        LabelOptions::default(),
        vec![vec![image("01")]],
        &ManifestLocation {
            bucket: None,
            prefix: "labeler-manifests/".into(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn submit_job_is_retried_through_throttling_then_succeeds() {
    let submit = mock!(aws_sdk_batch::Client::submit_job)
        .sequence()
        .http_response(throttled)
        .times(2)
        .output(|| {
            SubmitJobOutput::builder()
                .job_id("job-1")
                .job_name("n")
                .build()
        })
        .build();
    let clients = Clients {
        batch: batch_client(&[&submit]),
        dynamodb: dynamodb_client(&[]),
        s3: s3_client(),
    };

    let job_id = dispatch::submit(&clients, &config(), &planned()).await;

    assert_eq!(
        job_id,
        Ok(Submitted {
            job_id: "job-1".into(),
            adopted: false
        })
    );
    assert_eq!(submit.num_calls(), 3);
}

/// SubmitJob has no idempotency token: a job created by an attempt whose
/// response was lost must be adopted, not submitted a second time.
#[tokio::test]
async fn a_job_created_by_an_attempt_whose_response_was_lost_is_adopted() {
    let job = planned();
    let submit = mock!(aws_sdk_batch::Client::submit_job)
        .sequence()
        .http_response(unavailable)
        .build();
    let name = job.name.clone();
    let listed = mock!(aws_sdk_batch::Client::list_jobs)
        .sequence()
        .output(|| ListJobsOutput::builder().build())
        .output(move || {
            ListJobsOutput::builder()
                .job_summary_list(
                    JobSummary::builder()
                        .job_id("job-created-anyway")
                        .job_name(&name)
                        .status(JobStatus::Runnable)
                        .build(),
                )
                .build()
        })
        .build();
    let clients = Clients {
        batch: batch_client(&[&submit, &listed]),
        dynamodb: dynamodb_client(&[]),
        s3: s3_client(),
    };

    let submitted = dispatch::submit(&clients, &config(), &job).await;

    assert_eq!(
        submitted,
        Ok(Submitted {
            job_id: "job-created-anyway".into(),
            adopted: true
        })
    );
    assert_eq!(submit.num_calls(), 1);
    assert_eq!(listed.num_calls(), 2);
}

#[tokio::test]
async fn a_job_batch_refuses_for_good_is_not_retried() {
    let submit = mock!(aws_sdk_batch::Client::submit_job)
        .sequence()
        .http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(
                    r#"{"__type":"ClientException","message":"Job definition image-labeler-worker is INACTIVE"}"#,
                ),
            )
        })
        .times(ATTEMPTS as usize)
        .build();
    let clients = Clients {
        batch: batch_client(&[&submit]),
        dynamodb: dynamodb_client(&[]),
        s3: s3_client(),
    };

    let err = dispatch::submit(&clients, &config(), &planned())
        .await
        .unwrap_err();

    assert_eq!(submit.num_calls(), 1);
    assert!(
        matches!(&err, SubmitError::Permanent(m) if m.contains("INACTIVE")),
        "{err}"
    );
}

#[tokio::test]
async fn batch_s_http_429_client_exception_is_throttling_not_a_refusal() {
    let submit = mock!(aws_sdk_batch::Client::submit_job)
        .sequence()
        .http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(429).unwrap(),
                SdkBody::from(r#"{"__type":"ClientException","message":"Too Many Requests."}"#),
            )
        })
        .output(|| {
            SubmitJobOutput::builder()
                .job_id("job-2")
                .job_name("n")
                .build()
        })
        .build();
    let clients = Clients {
        batch: batch_client(&[&submit]),
        dynamodb: dynamodb_client(&[]),
        s3: s3_client(),
    };

    let submitted = dispatch::submit(&clients, &config(), &planned()).await;

    assert_eq!(submitted.map(|s| s.job_id), Ok("job-2".to_owned()));
    assert_eq!(submit.num_calls(), 2);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_configured_attempts() {
    let submit = mock!(aws_sdk_batch::Client::submit_job)
        .sequence()
        .http_response(unavailable)
        .times(ATTEMPTS as usize + 5)
        .build();
    let clients = Clients {
        batch: batch_client(&[&submit]),
        dynamodb: dynamodb_client(&[]),
        s3: s3_client(),
    };

    let err = dispatch::submit(&clients, &config(), &planned())
        .await
        .unwrap_err();

    assert_eq!(submit.num_calls(), ATTEMPTS as usize);
    assert!(
        matches!(&err, SubmitError::Transient(m) if m.contains("SubmitJob")),
        "{err}"
    );
}

fn stored(seq: &str, status: Status) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "revision".to_owned(),
            AttributeValue::S(Revision::from_sequencer(seq).unwrap().to_string()),
        ),
        (
            "status".to_owned(),
            AttributeValue::S(status.as_str().into()),
        ),
    ])
}

fn conditional_failure(item: HashMap<String, AttributeValue>) -> PutItemError {
    PutItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .set_item(Some(item))
            .build(),
    )
}

#[tokio::test]
async fn a_conditional_check_failure_on_the_same_upload_means_duplicate() {
    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .then_error(|| conditional_failure(stored("01", Status::Queued)));
    let db = dynamodb_client(&[&put]);

    let outcome = store::claim(
        &db,
        "image-labels",
        &image("01"),
        "req-2",
        Clock::now(),
        900,
    )
    .await
    .unwrap();

    assert_eq!(
        outcome,
        WriteOutcome::Duplicate {
            existing: Some(Status::Queued)
        }
    );
}

#[tokio::test]
async fn a_conditional_check_failure_against_a_newer_upload_means_superseded() {
    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .then_error(|| conditional_failure(stored("09", Status::Labeled)));
    let db = dynamodb_client(&[&put]);

    let outcome = store::claim(
        &db,
        "image-labels",
        &image("01"),
        "req-2",
        Clock::now(),
        900,
    )
    .await
    .unwrap();

    assert!(
        matches!(outcome, WriteOutcome::Superseded { newer: Some(r) } if r == Revision::from_sequencer("09").unwrap())
    );
}

#[tokio::test]
async fn dynamodb_throttling_is_retried_for_claims() {
    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .sequence()
        .http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#),
            )
        })
        .output(|| PutItemOutput::builder().build())
        .build();
    let db = dynamodb_client(&[&put]);

    let outcome = store::claim(
        &db,
        "image-labels",
        &image("01"),
        "req-1",
        Clock::now(),
        900,
    )
    .await
    .unwrap();

    assert_eq!(outcome, WriteOutcome::Written);
    assert_eq!(put.num_calls(), 2);
}

#[tokio::test]
async fn a_failed_submission_fails_only_its_sqs_messages_and_releases_claims() {
    let put =
        mock!(aws_sdk_dynamodb::Client::put_item).then_output(|| PutItemOutput::builder().build());
    let release = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.update_expression()
                .is_some_and(|e| e.contains("claimed_at = :zero"))
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let submit = mock!(aws_sdk_batch::Client::submit_job)
        .sequence()
        .http_response(unavailable)
        .times(ATTEMPTS as usize)
        .build();
    let clients = Clients {
        batch: batch_client(&[&submit]),
        dynamodb: dynamodb_client(&[&put, &release]),
        s3: s3_client(),
    };
    let body = |key: &str, seq: &str| {
        serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "eventTime": "2026-11-23T00:00:00.000Z",
            "s3": {"bucket": {"name": "photos-bucket"}, "object": {"key": key, "size": 10, "sequencer": seq}}}]})
        .to_string()
    };
    let payload = serde_json::json!({"Records": [
        {"messageId": "m-test", "eventSource": "aws:sqs", "body": r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"photos-bucket"}"#},
        {"messageId": "m-a", "eventSource": "aws:sqs", "body": body("a.jpg", "01")},
        {"messageId": "m-b", "eventSource": "aws:sqs", "body": body("b.png", "02")},
    ]});

    let response = dispatch::handle(&payload, "req-1", &clients, &config(), Clock::now())
        .await
        .unwrap();

    let mut failed: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    assert_eq!(failed, ["m-a", "m-b"]);
    assert_eq!(put.num_calls(), 2);
    assert_eq!(release.num_calls(), 2);
    assert_eq!(submit.num_calls(), ATTEMPTS as usize);
}
