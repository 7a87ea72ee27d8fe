//! The stand-in against the real AWS SDK for Rust clients: every operation
//! the dispatcher and the worker call parses, throttling answers are
//! classified as throttling (retried by the standard retry strategy), and
//! the dispatcher and the worker run end to end against it. Loopback only,
//! no timing assertions.

use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsError;
use aws_sdk_rekognition::types::{Image, S3Object};
use bench::clients;
use bench::events;
use bench::scenario_dispatcher::{self, job_images, TABLE};
use bench::scenario_worker;
use bench::standin::{op, DetectThrottle, Settings, StandIn};
use labeler_core::store::Clock;
use std::collections::HashSet;
use std::time::Duration;

fn no_retries() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(1)
}

fn patient() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(500))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

#[tokio::test]
async fn submit_job_answers_like_batch_and_throttles_with_429() {
    let standin = StandIn::start(Settings {
        submit_job_tps: Some(1.0),
        submit_job_burst: 1.0,
        ..Settings::default()
    })
    .await
    .unwrap();
    let shared = clients::sdk_config(&standin.endpoint(), no_retries()).await;
    let batch = aws_sdk_batch::Client::new(&shared);
    let submit = || {
        batch
            .submit_job()
            .job_name("labels-abc")
            .job_queue("q")
            .job_definition("d")
            .parameters("job", "{\"v\":1}")
            .array_properties(
                aws_sdk_batch::types::ArrayProperties::builder()
                    .size(3)
                    .build(),
            )
    };

    let accepted = submit().send().await.expect("the first call is accepted");
    let refused = submit()
        .send()
        .await
        .expect_err("the second is over the cap");

    assert_eq!(accepted.job_name(), Some("labels-abc"));
    assert!(accepted.job_id().is_some_and(|id| !id.is_empty()));
    assert!(accepted
        .job_arn()
        .is_some_and(|a| a.starts_with("arn:aws:batch:")));
    let raw = refused.raw_response().expect("an HTTP answer");
    assert_eq!(raw.status().as_u16(), 429);
    use aws_sdk_batch::error::ProvideErrorMetadata;
    assert_eq!(refused.code(), Some("TooManyRequestsException"));
    let jobs = standin.accepted_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].parameter.as_deref(), Some("{\"v\":1}"));
    assert_eq!(jobs[0].array_size, Some(3));
    assert_eq!(standin.op(op::SUBMIT_JOB).throttled, 1);
}

#[tokio::test]
async fn the_sdk_retries_a_throttled_submit_job_until_it_is_accepted() {
    let standin = StandIn::start(Settings {
        submit_job_tps: Some(5.0),
        submit_job_burst: 1.0,
        ..Settings::default()
    })
    .await
    .unwrap();
    let shared = clients::sdk_config(&standin.endpoint(), patient()).await;
    let batch = aws_sdk_batch::Client::new(&shared);

    for i in 0..3 {
        batch
            .submit_job()
            .job_name(format!("job-{i}"))
            .job_queue("q")
            .job_definition("d")
            .send()
            .await
            .expect("retried until accepted");
    }

    let stats = standin.op(op::SUBMIT_JOB);
    assert_eq!(stats.calls - stats.throttled, 3);
    assert!(stats.throttled >= 1, "{stats:?}");
}

#[tokio::test]
async fn detect_labels_answers_labels_and_throttles_like_rekognition() {
    for throttle in [
        DetectThrottle::ProvisionedThroughputExceeded,
        DetectThrottle::Throttling,
    ] {
        let standin = StandIn::start(Settings {
            detect_labels_tps: Some(1.0),
            detect_labels_throttle: throttle,
            labels_per_image: 3,
            ..Settings::default()
        })
        .await
        .unwrap();
        let shared = clients::sdk_config(&standin.endpoint(), no_retries()).await;
        let rekognition = aws_sdk_rekognition::Client::new(&shared);
        let call = || {
            rekognition
                .detect_labels()
                .image(
                    Image::builder()
                        .s3_object(S3Object::builder().bucket("b").name("k.jpg").build())
                        .build(),
                )
                .max_labels(50)
                .min_confidence(70.0)
                .send()
        };

        let out = call().await.expect("labels");
        let err = call().await.expect_err("over the cap");

        assert_eq!(out.labels().len(), 3);
        assert_eq!(out.labels()[0].name(), Some("Cat"));
        assert_eq!(out.labels()[0].instances().len(), 1);
        assert_eq!(out.labels()[0].parents()[0].name(), Some("Animal"));
        assert_eq!(out.label_model_version(), Some("3.0"));
        let service = err.as_service_error().expect("a modeled error");
        match throttle {
            DetectThrottle::ProvisionedThroughputExceeded => assert!(
                matches!(
                    service,
                    DetectLabelsError::ProvisionedThroughputExceededException(_)
                ),
                "{service:?}"
            ),
            DetectThrottle::Throttling => {
                assert!(
                    matches!(service, DetectLabelsError::ThrottlingException(_)),
                    "{service:?}"
                )
            }
        }
    }
}

#[tokio::test]
async fn dynamodb_operations_parse_and_keep_state() {
    let standin = StandIn::start(Settings::default()).await.unwrap();
    let shared = clients::sdk_config(&standin.endpoint(), no_retries()).await;
    let db = aws_sdk_dynamodb::Client::new(&shared);
    let key = |sk: &str| {
        std::collections::HashMap::from([("pk".to_owned(), s("p1")), ("sk".to_owned(), s(sk))])
    };

    db.put_item()
        .table_name("t")
        .item("pk", s("p1"))
        .item("sk", s("IMAGE"))
        .item("status", s("QUEUED"))
        .item("reason", s("waiting"))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap();
    db.update_item()
        .table_name("t")
        .set_key(Some(key("IMAGE")))
        .update_expression("SET #s = :s, job_id = :j REMOVE reason")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", s("LABELED"))
        .expression_attribute_values(":j", s("job-1"))
        .send()
        .await
        .unwrap();
    db.transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name("t")
                        .item("pk", s("p1"))
                        .item("sk", s("LABEL#Cat"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = db
        .get_item()
        .table_name("t")
        .set_key(Some(key("IMAGE")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let entries = db
        .query()
        .table_name("t")
        .consistent_read(true)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", s("p1"))
        .expression_attribute_values(":prefix", s("LABEL#"))
        .send()
        .await
        .unwrap();
    db.delete_item()
        .table_name("t")
        .set_key(Some(key("LABEL#Cat")))
        .send()
        .await
        .unwrap();

    let item = got.item().expect("the record");
    assert_eq!(item["status"], s("LABELED"));
    assert_eq!(item["job_id"], s("job-1"));
    assert!(!item.contains_key("reason"));
    assert_eq!(entries.count(), 1);
    assert_eq!(entries.items()[0]["sk"], s("LABEL#Cat"));
    assert_eq!(standin.item_count("t"), 1);
    let stats = standin.stats();
    assert!(stats[op::PUT_ITEM].write_units >= 1.0);
    assert_eq!(stats[op::TRANSACT_WRITE_ITEMS].write_units, 2.0);
    assert_eq!(stats[op::GET_ITEM].read_units, 1.0);
}

#[tokio::test]
async fn s3_objects_round_trip_and_a_missing_key_is_no_such_key() {
    let standin = StandIn::start(Settings::default()).await.unwrap();
    let shared = clients::sdk_config(&standin.endpoint(), no_retries()).await;
    let s3 = clients::s3(&shared);
    let body = b"{\"v\":1,\"chunks\":[]} with a key that needs escaping".to_vec();

    s3.put_object()
        .bucket("bucket")
        .key("labeler-manifests/a b+c.json")
        .content_type("application/json")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("bucket")
        .key("labeler-manifests/a b+c.json")
        .send()
        .await
        .unwrap();
    let missing = s3
        .get_object()
        .bucket("bucket")
        .key("nothing-here")
        .send()
        .await
        .expect_err("missing");

    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body
    );
    assert_eq!(
        standin.object("bucket", "labeler-manifests/a b+c.json"),
        Some(body)
    );
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_no_such_key()),
        "{missing:?}"
    );
}

#[tokio::test]
async fn the_dispatcher_packs_an_invocation_into_one_array_job_with_a_manifest() {
    let standin = StandIn::start(Settings::default()).await.unwrap();
    let cfg = scenario_dispatcher::config();
    let dispatcher_clients = clients::dispatcher(&standin.endpoint(), &cfg).await;
    let payload = events::sqs_batch("test", 0..250);

    let answer = dispatcher::dispatch::handle(
        &payload,
        "request-1",
        &dispatcher_clients,
        &cfg,
        Clock::now(),
    )
    .await
    .unwrap();

    assert!(events::failed_message_ids(&answer).is_empty(), "{answer}");
    let jobs = standin.accepted_jobs();
    assert_eq!(jobs.len(), 1, "one SubmitJob for the whole invocation");
    assert_eq!(jobs[0].array_size, Some(3));
    assert_eq!(
        standin.op(op::PUT_OBJECT).calls,
        1,
        "the spec moved to a manifest"
    );
    let images: HashSet<String> = job_images(&standin, &jobs[0])
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(images.len(), 250);
    assert!(images.contains(&events::key("test", 249)));
    assert_eq!(standin.op(op::PUT_ITEM).calls, 250);
    assert_eq!(standin.op(op::UPDATE_ITEM).calls, 250);
}

#[tokio::test]
async fn the_worker_labels_a_chunk_read_from_a_manifest() {
    let standin = StandIn::start(Settings::default()).await.unwrap();
    let images = scenario_worker::chunk("worker-test", 20);
    let job = scenario_worker::prepare(&standin, "worker-test", std::slice::from_ref(&images));
    let shared = clients::sdk_config(&standin.endpoint(), worker::retry_policy(3)).await;
    let worker_clients = worker::Clients {
        rekognition: aws_sdk_rekognition::Client::new(&shared),
        dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        s3: clients::s3(&shared),
    };
    let request = worker::JobRequest {
        job,
        array_index: None,
        expect_table: Some(TABLE.to_owned()),
    };

    let code = worker::execute(
        &request,
        &worker_clients,
        &worker::Settings::default(),
        worker::Shutdown::never(),
    )
    .await;

    assert_eq!(code, worker::ExitCode::Success);
    assert_eq!(standin.op(op::DETECT_LABELS).calls, 20);
    assert_eq!(standin.op(op::TRANSACT_WRITE_ITEMS).calls, 20);
    let pk = labeler_core::schema::image_pk(&images[0].bucket, &images[0].key);
    let record = standin.item(TABLE, &pk, "IMAGE").unwrap();
    assert_eq!(record["status"]["S"], "LABELED");
    assert!(standin.item(TABLE, &pk, "LABEL#Cat").is_some());
}

#[tokio::test]
async fn many_invocations_at_the_cap_lose_no_image() {
    let result = scenario_dispatcher::cap(12, 3, Duration::ZERO)
        .await
        .unwrap();

    assert_eq!(result.images_sent, 36);
    assert_eq!(result.images_in_accepted_jobs, 36);
    assert_eq!(result.lost_images, 0);
    assert_eq!(result.jobs_accepted, 12);
}
