//! The worker against injected service behaviour (aws-smithy-mocks stands in
//! for Rekognition, DynamoDB and S3): throttling, exhausted retries,
//! permanent image errors, lost races, stale entries, shutdown, manifests.
//!
//! Time is paused, so the SDK's backoff sleeps and the drain timeout take no
//! wall-clock time.

use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsOutput;
use aws_sdk_rekognition::types as rek;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use labeler_core::job::{ImageSource, LabelOptions, Manifest, ManifestRef, CONTRACT_VERSION};
use labeler_core::reuse;
use labeler_core::rule::{OWNED_BY_JOB, TAKE_CONDITION};
use labeler_core::schema::{self, attr};
use labeler_core::{ImageRef, JobSpec, Revision, Status};
use std::collections::HashMap;
use std::time::Duration;
use worker::shutdown::Shutdown;
use worker::{retry_policy, Clients, ExitCode, JobRequest, Outcome, Settings};

const ATTEMPTS: u32 = 3;
const TABLE: &str = "image-labels";
const BUCKET: &str = "photos-bucket";

fn image(key: &str, seq: &str) -> ImageRef {
    ImageRef {
        bucket: BUCKET.into(),
        key: key.into(),
        revision: Revision::from_sequencer(seq).unwrap(),
        version_id: Some("v-1".into()),
        etag: None,
        size: Some(2048),
    }
}

fn spec(chunks: Vec<Vec<ImageRef>>) -> JobSpec {
    JobSpec {
        v: CONTRACT_VERSION,
        table: TABLE.into(),
        options: LabelOptions {
            max_labels: 10,
            min_confidence: 80.0,
        },
        images: ImageSource::Inline(chunks),
    }
}

/// Settings without content reuse: these tests are about the record's
/// protocol, and reuse adds its own reads and writes (tested below).
fn settings() -> Settings {
    Settings {
        concurrency: 4,
        reuse: None,
        ..Settings::default()
    }
}

fn record(seq: &str, status: Status) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            attr::REVISION.to_owned(),
            AttributeValue::S(Revision::from_sequencer(seq).unwrap().to_string()),
        ),
        (
            attr::STATUS.to_owned(),
            AttributeValue::S(status.as_str().into()),
        ),
    ])
}

fn json_error(status: u16, error_type: &str) -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(
            r#"{{"__type":"{error_type}","message":"injected {error_type}"}}"#
        )),
    )
}

fn rekognition(rules: &[&Rule]) -> aws_sdk_rekognition::Client {
    mock_client!(aws_sdk_rekognition, RuleMode::MatchAny, rules, |c| c
        .retry_config(retry_policy(ATTEMPTS)))
}

fn dynamodb(rules: &[&Rule]) -> aws_sdk_dynamodb::Client {
    mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(retry_policy(ATTEMPTS)))
}

/// S3 answering the test's rules first, then every read of an image with a
/// real 320×200 JPEG (ranged: its first bytes, which the worker sniffs
/// before handing the object to Rekognition as it is; whole: the bytes
/// content reuse hashes).
fn s3(rules: &[&Rule]) -> aws_sdk_s3::Client {
    let (head, whole) = (image_head(), whole_image());
    let mut rules = rules.to_vec();
    rules.push(&head);
    rules.push(&whole);
    mock_client!(aws_sdk_s3, RuleMode::MatchAny, &rules, |c| c
        .retry_config(retry_policy(ATTEMPTS)))
}

const JPEG: &[u8] = include_bytes!("../../samples/sunset.jpg");

fn whole_image() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.range().is_none())
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from(JPEG.to_vec()))
                .content_length(JPEG.len() as i64)
                .build()
        })
}

fn image_head() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.range().is_some())
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from(JPEG.to_vec()))
                .content_range(format!("bytes 0-{}/{}", JPEG.len() - 1, JPEG.len()))
                .build()
        })
}

/// Clients whose DynamoDB grants every take ([`TAKE_CONDITION`]) unless a
/// rule of the test answers it first.
fn clients(rek_rules: &[&Rule], db_rules: &[&Rule]) -> Clients {
    let take = take_ok();
    let mut rules = db_rules.to_vec();
    rules.push(&take);
    Clients {
        rekognition: rekognition(rek_rules),
        dynamodb: dynamodb(&rules),
        s3: s3(&[]),
    }
}

fn take_ok() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.condition_expression() == Some(TAKE_CONDITION))
        .then_output(|| UpdateItemOutput::builder().build())
}

fn get_item_returning(item: Option<HashMap<String, AttributeValue>>) -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item)
        .then_output(move || GetItemOutput::builder().set_item(item.clone()).build())
}

fn queued(seq: &str) -> Rule {
    get_item_returning(Some(record(seq, Status::Queued)))
}

fn no_entries() -> Rule {
    mock!(aws_sdk_dynamodb::Client::query).then_output(|| QueryOutput::builder().build())
}

fn transact_ok() -> Rule {
    mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .then_output(|| TransactWriteItemsOutput::builder().build())
}

fn rek_label(name: &str, confidence: f32) -> rek::Label {
    rek::Label::builder()
        .name(name)
        .confidence(confidence)
        .parents(rek::Parent::builder().name("Animal").build())
        .build()
}

fn dog_and_cat() -> DetectLabelsOutput {
    DetectLabelsOutput::builder()
        .labels(rek_label("Dog", 98.0))
        .labels(rek_label("Cat", 91.0))
        .label_model_version("3.0")
        .build()
}

fn detect_ok() -> Rule {
    mock!(aws_sdk_rekognition::Client::detect_labels).then_output(dog_and_cat)
}

async fn run(job: &JobSpec, clients: &Clients, settings: &Settings, shutdown: Shutdown) -> Outcome {
    let ImageSource::Inline(chunks) = &job.images else {
        panic!("inline jobs only")
    };
    worker::run(job, &chunks[0], clients, settings, shutdown).await
}

#[tokio::test(start_paused = true)]
async fn a_queued_image_is_labeled_with_its_entries_in_one_conditional_transaction() {
    let get = queued("01");
    let query = no_entries();
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels)
        .match_requests(|r| {
            let object = r.image().and_then(|i| i.s3_object());
            object.is_some_and(|o| {
                o.bucket() == Some(BUCKET)
                    && o.name() == Some("cats/tabby cat+1.jpg")
                    && o.version() == Some("v-1")
            }) && r.max_labels() == Some(10)
                && r.min_confidence() == Some(80.0)
        })
        .then_output(dog_and_cat);
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .match_requests(|r| {
            let items = r.transact_items();
            let update = items.first().and_then(|i| i.update());
            let sks: Vec<&str> = items[1..]
                .iter()
                .filter_map(|i| i.put()?.item().get("sk")?.as_s().ok().map(String::as_str))
                .collect();
            items.len() == 3
                && update.is_some_and(|u| {
                    u.condition_expression() == Some(OWNED_BY_JOB)
                        && u.key()["pk"].as_s().ok().map(String::as_str)
                            == Some("s3://photos-bucket/cats/tabby cat+1.jpg")
                })
                && sks == ["LABEL#Dog", "LABEL#Cat"]
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("cats/tabby cat+1.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(outcome.labeled, 1, "{outcome:?}");
    assert_eq!(outcome.exit_code(), ExitCode::Success);
    assert_eq!(detect.num_calls(), 1);
    assert_eq!(transact.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn rekognition_throttling_is_retried_then_the_image_is_labeled() {
    let (get, query, transact) = (queued("01"), no_entries(), transact_ok());
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels)
        .sequence()
        .http_response(|| json_error(400, "ThrottlingException"))
        .times(2)
        .output(dog_and_cat)
        .build();
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(detect.num_calls(), 3);
    assert_eq!(outcome.labeled, 1);
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_leave_the_image_queued_and_ask_batch_to_retry() {
    let get = queued("01");
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.condition_expression() == Some(OWNED_BY_JOB))
        .then_output(|| UpdateItemOutput::builder().build());
    let transact = transact_ok();
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels)
        .sequence()
        .http_response(|| json_error(400, "ProvisionedThroughputExceededException"))
        .times(ATTEMPTS as usize - 1)
        .http_response(|| json_error(500, "InternalServerError"))
        .build();
    let clients = clients(&[&detect], &[&get, &update, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(detect.num_calls(), ATTEMPTS as usize);
    assert_eq!(outcome.retryable, 1);
    assert_eq!(update.num_calls() + transact.num_calls(), 0);
    assert_eq!(outcome.exit_code(), ExitCode::Retryable);
}

#[tokio::test(start_paused = true)]
async fn each_permanent_rekognition_error_records_failed_with_a_reason_and_no_retry() {
    for code in [
        "InvalidImageFormatException",
        "ImageTooLargeException",
        "InvalidS3ObjectException",
        "InvalidParameterException",
        "AccessDeniedException",
    ] {
        let (get, query) = (queued("01"), no_entries());
        let failed = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(move |r| {
                let values = r.expression_attribute_values().cloned().unwrap_or_default();
                let text = |k: &str| values.get(k).and_then(|v| v.as_s().ok()).cloned();
                r.condition_expression() == Some(OWNED_BY_JOB)
                    && text(":failed").as_deref() == Some("FAILED")
                    && text(":reason").is_some_and(|reason| {
                        reason.contains(code) && reason.contains(&format!("injected {code}"))
                    })
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let detect = mock!(aws_sdk_rekognition::Client::detect_labels)
            .then_http_response(move || json_error(400, code));
        let clients = clients(&[&detect], &[&get, &query, &failed]);
        let job = spec(vec![vec![image("broken.jpg", "01")]]);

        let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

        assert_eq!(outcome.failed, 1, "{code}: {outcome:?}");
        assert_eq!(detect.num_calls(), 1, "{code} was retried");
        assert_eq!(failed.num_calls(), 1, "{code}");
        assert_eq!(outcome.exit_code(), ExitCode::Success, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_image_already_terminal_for_this_upload_costs_no_rekognition_call() {
    for status in [Status::Labeled, Status::Failed, Status::Skipped] {
        let get = get_item_returning(Some(record("01", status)));
        let detect = detect_ok();
        let clients = clients(&[&detect], &[&get]);
        let job = spec(vec![vec![image("a.jpg", "01")]]);

        let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

        assert_eq!(detect.num_calls(), 0, "{status:?}");
        assert_eq!(outcome.already_done, 1, "{status:?}");
        assert_eq!(outcome.exit_code(), ExitCode::Success);
    }
}

#[tokio::test(start_paused = true)]
async fn a_newer_upload_on_the_record_means_no_call_and_no_write() {
    let get = get_item_returning(Some(record("09", Status::Queued)));
    let detect = detect_ok();
    let (query, transact) = (no_entries(), transact_ok());
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    let clients = clients(&[&detect], &[&get, &query, &transact, &update]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(detect.num_calls(), 0);
    assert_eq!(
        query.num_calls() + transact.num_calls() + update.num_calls(),
        0
    );
    assert_eq!(outcome.superseded, 1);
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_record_means_no_call_and_no_write() {
    let get = get_item_returning(None);
    let detect = detect_ok();
    let transact = transact_ok();
    let clients = clients(&[&detect], &[&get, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(detect.num_calls() + transact.num_calls(), 0);
    assert_eq!(outcome.superseded, 1);
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}

fn canceled(reasons: Vec<CancellationReason>) -> TransactWriteItemsError {
    TransactWriteItemsError::TransactionCanceledException(
        TransactionCanceledException::builder()
            .message("Transaction cancelled")
            .set_cancellation_reasons(Some(reasons))
            .build(),
    )
}

fn reason(code: &str, item: Option<HashMap<String, AttributeValue>>) -> CancellationReason {
    CancellationReason::builder()
        .code(code)
        .set_item(item)
        .build()
}

#[tokio::test(start_paused = true)]
async fn losing_the_race_to_a_newer_upload_is_not_an_error() {
    let (get, query, detect) = (queued("01"), no_entries(), detect_ok());
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_error(|| {
        canceled(vec![
            reason("ConditionalCheckFailed", Some(record("05", Status::Queued))),
            reason("None", None),
            reason("None", None),
        ])
    });
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(transact.num_calls(), 1);
    assert_eq!(outcome.superseded, 1, "{outcome:?}");
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}

/// Two jobs for one upload (a SubmitJob retried after its response was
/// lost, a claim retaken after a crash): the one that takes the image
/// first labels it; the other makes no Rekognition call at all.
#[tokio::test(start_paused = true)]
async fn a_duplicate_job_finds_the_image_taken_and_calls_no_rekognition() {
    let (get, detect, transact) = (queued("01"), detect_ok(), transact_ok());
    let taken = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.condition_expression() == Some(TAKE_CONDITION))
        .then_error(|| {
            let mut owned = record("01", Status::Queued);
            owned.insert("owner".into(), AttributeValue::S("other-job:3".into()));
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                    .set_item(Some(owned))
                    .build(),
            )
        });
    let clients = clients(&[&detect], &[&get, &taken, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(detect.num_calls(), 0);
    assert_eq!(transact.num_calls(), 0);
    assert_eq!(taken.num_calls(), 1);
    assert_eq!(outcome.superseded, 1, "{outcome:?}");
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_job_that_labeled_first_makes_this_one_a_no_op() {
    let (get, query, detect) = (queued("01"), no_entries(), detect_ok());
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_error(|| {
        canceled(vec![reason(
            "ConditionalCheckFailed",
            Some(record("01", Status::Labeled)),
        )])
    });
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(outcome.already_done, 1, "{outcome:?}");
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}

#[tokio::test(start_paused = true)]
async fn a_transaction_conflict_leaves_the_image_queued_for_a_retry() {
    let (get, query, detect) = (queued("01"), no_entries(), detect_ok());
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .then_error(|| canceled(vec![reason("TransactionConflict", None)]));
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(outcome.retryable, 1, "{outcome:?}");
    assert_eq!(outcome.exit_code(), ExitCode::Retryable);
}

#[tokio::test(start_paused = true)]
async fn dynamodb_throttling_of_the_record_write_is_retried() {
    let (get, query, detect) = (queued("01"), no_entries(), detect_ok());
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .sequence()
        .http_response(|| {
            json_error(
                400,
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            )
        })
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(transact.num_calls(), 2);
    assert_eq!(outcome.labeled, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_record_leaves_the_image_queued_without_calling_rekognition() {
    let get = mock!(aws_sdk_dynamodb::Client::get_item)
        .sequence()
        .http_response(|| json_error(503, "ServiceUnavailable"))
        .times(ATTEMPTS as usize)
        .build();
    let detect = detect_ok();
    let clients = clients(&[&detect], &[&get]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(get.num_calls(), ATTEMPTS as usize);
    assert_eq!(detect.num_calls(), 0);
    assert_eq!(outcome.exit_code(), ExitCode::Retryable);
}

#[tokio::test(start_paused = true)]
async fn stale_entries_of_an_older_upload_are_deleted_unless_relabeled() {
    let entry = |sk: &str, seq: &str| {
        HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S("s3://photos-bucket/a.jpg".into()),
            ),
            ("sk".to_owned(), AttributeValue::S(sk.into())),
            (
                attr::REVISION.to_owned(),
                AttributeValue::S(Revision::from_sequencer(seq).unwrap().to_string()),
            ),
        ])
    };
    let query = mock!(aws_sdk_dynamodb::Client::query).then_output(move || {
        QueryOutput::builder()
            .items(entry("LABEL#Bird", "00"))
            .items(entry("LABEL#Dog", "00"))
            .items(entry("LABEL#Fish", "09"))
            .build()
    });
    let delete_bird = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|r| {
            r.key()
                .and_then(|k| k.get("sk"))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("LABEL#Bird")
                && r.condition_expression() == Some("revision < :rev")
        })
        .then_output(|| DeleteItemOutput::builder().build());
    let delete_other = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let (get, transact, detect) = (queued("01"), transact_ok(), detect_ok());
    let clients = clients(
        &[&detect],
        &[&get, &query, &delete_bird, &delete_other, &transact],
    );
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(outcome.labeled, 1);
    assert_eq!(delete_bird.num_calls(), 1);
    assert_eq!(delete_other.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn sigterm_stops_new_images_and_asks_for_a_retry() {
    let (trigger, shutdown) = Shutdown::channel();
    let (get, query, transact) = (queued("01"), no_entries(), transact_ok());
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels).then_output(move || {
        trigger.trigger();
        dog_and_cat()
    });
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![
        image("a.jpg", "01"),
        image("b.jpg", "01"),
        image("c.jpg", "01"),
    ]]);
    let settings = Settings {
        concurrency: 1,
        ..settings()
    };

    let outcome = run(&job, &clients, &settings, shutdown).await;

    assert_eq!(detect.num_calls(), 1);
    assert_eq!(transact.num_calls(), 1, "the image in flight finishes");
    assert_eq!((outcome.labeled, outcome.unfinished), (1, 2));
    assert_eq!(outcome.exit_code(), ExitCode::Retryable);
}

#[tokio::test(start_paused = true)]
async fn images_still_in_flight_after_the_drain_timeout_are_abandoned() {
    let (trigger, shutdown) = Shutdown::channel();
    let (get, query, transact) = (queued("01"), no_entries(), transact_ok());
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels).then_output(move || {
        trigger.trigger();
        dog_and_cat()
    });
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![vec![image("a.jpg", "01"), image("b.jpg", "01")]]);
    let settings = Settings {
        concurrency: 2,
        rate_limit: Some(0.01),
        drain: Duration::from_secs(5),
        ..settings()
    };
    let start = tokio::time::Instant::now();

    let outcome = run(&job, &clients, &settings, shutdown).await;

    assert_eq!(
        detect.num_calls(),
        1,
        "the second image waits 100 s for its turn"
    );
    assert_eq!((outcome.labeled, outcome.unfinished), (1, 1));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(outcome.exit_code(), ExitCode::Retryable);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_before_the_run_starts_no_image() {
    let (trigger, shutdown) = Shutdown::channel();
    trigger.trigger();
    let (get, detect) = (queued("01"), detect_ok());
    let clients = clients(&[&detect], &[&get]);
    let job = spec(vec![vec![image("a.jpg", "01"), image("b.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), shutdown).await;

    assert_eq!(get.num_calls(), 0);
    assert_eq!(outcome.unfinished, 2);
    assert_eq!(outcome.exit_code(), ExitCode::Retryable);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_paces_rekognition_calls() {
    let (get, query, transact, detect) = (queued("01"), no_entries(), transact_ok(), detect_ok());
    let clients = clients(&[&detect], &[&get, &query, &transact]);
    let job = spec(vec![(0..5)
        .map(|i| image(&format!("{i}.jpg"), "01"))
        .collect()]);
    let settings = Settings {
        concurrency: 5,
        rate_limit: Some(2.0),
        ..settings()
    };
    let start = tokio::time::Instant::now();

    let outcome = run(&job, &clients, &settings, Shutdown::never()).await;

    assert_eq!(outcome.labeled, 5);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

fn manifest_job(chunks: Vec<Vec<ImageRef>>) -> (JobSpec, Vec<u8>) {
    let (body, sha256) = Manifest {
        v: CONTRACT_VERSION,
        chunks: chunks.clone(),
    }
    .to_body();
    let job = JobSpec {
        images: ImageSource::Manifest(ManifestRef {
            bucket: BUCKET.into(),
            key: "labeler-manifests/job.json".into(),
            sha256,
            chunks: chunks.len() as u32,
            images: chunks.iter().map(Vec::len).sum::<usize>() as u32,
        }),
        ..spec(vec![])
    };
    (job, body)
}

fn request(job: &JobSpec, array_index: Option<usize>) -> JobRequest {
    JobRequest {
        job: job.to_parameter(),
        array_index,
        expect_table: Some(TABLE.into()),
    }
}

fn manifest_object(body: Vec<u8>) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| {
            r.bucket() == Some(BUCKET) && r.key() == Some("labeler-manifests/job.json")
        })
        .then_output(move || {
            GetObjectOutput::builder()
                .body(ByteStream::from(body.clone()))
                .build()
        })
}

#[tokio::test(start_paused = true)]
async fn an_array_child_labels_its_own_chunk_of_the_manifest() {
    let (job, body) = manifest_job(vec![vec![image("a.jpg", "01")], vec![image("b.jpg", "02")]]);
    let object = manifest_object(body);
    let get_b = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| {
            r.key()
                .and_then(|k| k.get("pk"))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("s3://photos-bucket/b.jpg")
        })
        .then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(record("02", Status::Labeled)))
                .build()
        });
    let clients = Clients {
        s3: s3(&[&object]),
        ..clients(&[], &[&get_b])
    };

    let code = worker::execute(
        &request(&job, Some(1)),
        &clients,
        &settings(),
        Shutdown::never(),
    )
    .await;

    assert_eq!(code, ExitCode::Success);
    assert_eq!(object.num_calls(), 1);
    assert_eq!(get_b.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_changed_manifest_makes_the_job_unusable() {
    let (job, mut body) = manifest_job(vec![vec![image("a.jpg", "01")]]);
    body.extend_from_slice(b" ");
    let object = manifest_object(body);
    let get = queued("01");
    let clients = Clients {
        s3: s3(&[&object]),
        ..clients(&[], &[&get])
    };

    let code = worker::execute(
        &request(&job, None),
        &clients,
        &settings(),
        Shutdown::never(),
    )
    .await;

    assert_eq!(code, ExitCode::JobUnusable);
    assert_eq!(get.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_missing_manifest_makes_the_job_unusable() {
    let (job, _) = manifest_job(vec![vec![image("a.jpg", "01")]]);
    let object = mock!(aws_sdk_s3::Client::get_object).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(404).unwrap(),
            SdkBody::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                 <Message>The specified key does not exist.</Message></Error>",
            ),
        )
    });
    let clients = Clients {
        s3: s3(&[&object]),
        ..clients(&[], &[])
    };

    let code = worker::execute(
        &request(&job, None),
        &clients,
        &settings(),
        Shutdown::never(),
    )
    .await;

    assert_eq!(code, ExitCode::JobUnusable);
    assert_eq!(object.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_manifest_that_cannot_be_read_now_is_retried_by_batch() {
    let (job, _) = manifest_job(vec![vec![image("a.jpg", "01")]]);
    let object = mock!(aws_sdk_s3::Client::get_object)
        .sequence()
        .http_status(503, None)
        .times(ATTEMPTS as usize)
        .build();
    let clients = Clients {
        s3: s3(&[&object]),
        ..clients(&[], &[])
    };

    let code = worker::execute(
        &request(&job, None),
        &clients,
        &settings(),
        Shutdown::never(),
    )
    .await;

    assert_eq!(code, ExitCode::Retryable);
    assert_eq!(object.num_calls(), ATTEMPTS as usize);
}

#[tokio::test(start_paused = true)]
async fn unusable_jobs_exit_without_touching_any_image() {
    let get = queued("01");
    let clients = clients(&[], &[&get]);
    let one_chunk = spec(vec![vec![image("a.jpg", "01")]]);
    let other_table = JobSpec {
        table: "someone-elses-table".into(),
        ..one_chunk.clone()
    };
    let cases = [
        (
            "malformed spec",
            JobRequest {
                job: "{not json".into(),
                ..request(&one_chunk, None)
            },
        ),
        ("chunk index out of range", request(&one_chunk, Some(5))),
        ("wrong table", request(&other_table, None)),
        (
            "contract version",
            JobRequest {
                job: one_chunk.to_parameter().replace(r#""v":1"#, r#""v":99"#),
                ..request(&one_chunk, None)
            },
        ),
    ];

    for (case, request) in cases {
        let code = worker::execute(&request, &clients, &settings(), Shutdown::never()).await;
        assert_eq!(code, ExitCode::JobUnusable, "{case}");
    }
    assert_eq!(get.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_long_service_message_is_capped_in_the_failed_reason() {
    let (get, query) = (queued("01"), no_entries());
    let failed = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.expression_attribute_values()
                .and_then(|v| v.get(":reason"))
                .and_then(|v| v.as_s().ok())
                .is_some_and(|reason| {
                    reason.len() <= schema::LIMITS.reason_bytes && reason.starts_with("Rekognition")
                })
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(format!(
                r#"{{"__type":"InvalidParameterException","message":"{}"}}"#,
                "é".repeat(3000)
            )),
        )
    });
    let clients = clients(&[&detect], &[&get, &query, &failed]);
    let job = spec(vec![vec![image("a.jpg", "01")]]);

    let outcome = run(&job, &clients, &settings(), Shutdown::never()).await;

    assert_eq!(failed.num_calls(), 1);
    assert_eq!(outcome.failed, 1);
}

/// Rekognition as the worker builds it for its own limiter: throttled calls
/// are not retried by the SDK ([`worker::error::ThrottlingIsBackPressure`]).
fn rekognition_for_aimd(rules: &[&Rule]) -> aws_sdk_rekognition::Client {
    mock_client!(aws_sdk_rekognition, RuleMode::MatchAny, rules, |c| c
        .retry_config(retry_policy(ATTEMPTS))
        .retry_classifier(worker::error::ThrottlingIsBackPressure))
}

fn always_throttled() -> Rule {
    mock!(aws_sdk_rekognition::Client::detect_labels)
        .then_http_response(|| json_error(400, "ProvisionedThroughputExceededException"))
}

fn fleet_settings(time_budget: Duration) -> Settings {
    Settings {
        concurrency: 4,
        fleet: Some(worker::Fleet {
            rate: 10.0,
            size: 2,
        }),
        time_budget,
        ..settings()
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_fleet_limiter_the_sdk_hands_each_throttle_to_the_worker_at_once() {
    let (plain_rule, aimd_rule) = (always_throttled(), always_throttled());
    let plain = rekognition(&[&plain_rule]);
    let aimd = rekognition_for_aimd(&[&aimd_rule]);

    assert!(plain.detect_labels().send().await.is_err());
    assert!(aimd.detect_labels().send().await.is_err());

    assert_eq!(plain_rule.num_calls(), ATTEMPTS as usize);
    assert_eq!(aimd_rule.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn throttling_beyond_every_sdk_retry_slows_the_pace_and_the_image_is_still_labeled() {
    let (get, query, transact) = (queued("01"), no_entries(), transact_ok());
    let detect = mock!(aws_sdk_rekognition::Client::detect_labels)
        .sequence()
        .http_response(|| json_error(400, "ThrottlingException"))
        .times(12)
        .output(dog_and_cat)
        .build();
    let take = take_ok();
    let clients = Clients {
        rekognition: rekognition_for_aimd(&[&detect]),
        dynamodb: dynamodb(&[&get, &query, &transact, &take]),
        s3: s3(&[]),
    };
    let job = spec(vec![vec![image("a.jpg", "01")]]);
    let start = tokio::time::Instant::now();

    let outcome = run(
        &job,
        &clients,
        &fleet_settings(Duration::from_secs(3300)),
        Shutdown::never(),
    )
    .await;

    assert_eq!(detect.num_calls(), 13, "12 throttles, then labeled");
    assert_eq!(outcome.labeled, 1);
    assert_eq!(outcome.failed, 0);
    assert_eq!(outcome.exit_code(), ExitCode::Success);
    // The share is 5 calls a second and only slows down: no throttled call
    // is made again sooner than the share allows (12 × 0.2 s).
    assert!(
        start.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn an_image_still_throttled_when_the_time_budget_ends_stays_queued_for_batch() {
    for settings in [
        fleet_settings(Duration::from_secs(60)),
        Settings {
            concurrency: 4,
            time_budget: Duration::from_secs(60),
            ..settings()
        },
    ] {
        let (get, query, transact) = (queued("01"), no_entries(), transact_ok());
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.condition_expression() == Some(OWNED_BY_JOB))
            .then_output(|| UpdateItemOutput::builder().build());
        let detect = always_throttled();
        let take = take_ok();
        let clients = Clients {
            rekognition: rekognition_for_aimd(&[&detect]),
            dynamodb: dynamodb(&[&get, &query, &transact, &update, &take]),
            s3: s3(&[]),
        };
        let job = spec(vec![vec![image("a.jpg", "01")]]);
        let start = tokio::time::Instant::now();

        let outcome = run(&job, &clients, &settings, Shutdown::never()).await;

        assert_eq!(outcome.retryable, 1, "{settings:?}");
        assert_eq!(outcome.failed, 0);
        assert_eq!(
            update.num_calls() + transact.num_calls(),
            0,
            "no FAILED write"
        );
        assert_eq!(outcome.exit_code(), ExitCode::Retryable);
        assert!(start.elapsed() <= Duration::from_secs(61));
        assert!(detect.num_calls() > 3, "called again within the budget");
    }
}

/// The content entry is written after the LABELED record: a process that
/// dies between the two (here, a PutItem that keeps failing) leaves the image
/// LABELED and no entry, so the next copy of the content costs one
/// DetectLabels call and nothing else.
#[tokio::test(start_paused = true)]
async fn a_content_entry_that_cannot_be_stored_leaves_the_image_labeled() {
    let (get, query, transact, detect) = (queued("01"), no_entries(), transact_ok(), detect_ok());
    let entry_put = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            r.item()
                .and_then(|i| i.get("pk")?.as_s().ok())
                .is_some_and(|pk| pk.starts_with(reuse::CONTENT_PK_PREFIX))
        })
        .then_http_response(|| json_error(500, "InternalServerError"));
    let marker_put = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            r.item()
                .and_then(|i| i.get("pk")?.as_s().ok())
                .is_some_and(|pk| pk == reuse::MODEL_PK)
        })
        .then_output(|| PutItemOutput::builder().build());
    let clients = clients(
        &[&detect],
        &[&get, &query, &transact, &entry_put, &marker_put],
    );
    let job = spec(vec![vec![image("a.jpg", "01")]]);
    let settings = Settings {
        reuse: Some(worker::run::Reuse::default()),
        ..settings()
    };

    let outcome = run(&job, &clients, &settings, Shutdown::never()).await;

    assert_eq!(
        entry_put.num_calls(),
        ATTEMPTS as usize,
        "the entry was tried"
    );
    assert_eq!(marker_put.num_calls(), 1, "the answer's model is recorded");
    assert_eq!(transact.num_calls(), 1);
    assert_eq!(outcome.labeled, 1);
    assert_eq!(outcome.retryable, 0);
    assert_eq!(outcome.exit_code(), ExitCode::Success);
}
