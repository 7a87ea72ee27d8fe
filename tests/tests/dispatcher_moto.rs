//! The dispatcher against moto on loopback: real S3 notifications (moto
//! delivers them to SQS), real SubmitJob calls landing in moto's Batch, real
//! conditional writes in moto's DynamoDB.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use dispatcher::config::Config;
use dispatcher::dispatch::{handle, Clients};
use integration_tests::{drain_as_lambda_event, provision, s3_client, Moto, Stack};
use labeler_core::job::{ImageSource, Manifest, JOB_PARAMETER};
use labeler_core::store::{self, Clock};
use labeler_core::{JobSpec, Status};
use labeler_local::executor::job_ids;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

struct World {
    _moto: Moto,
    sdk: SdkConfig,
    stack: Stack,
    clients: Clients,
    cfg: Config,
}

async fn world(extra: &[(&str, &str)]) -> World {
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let mut env: HashMap<String, String> = stack
        .dispatcher_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let cfg = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let clients = Clients {
        batch: aws_sdk_batch::Client::new(&sdk),
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        s3: s3_client(&sdk),
    };
    World {
        _moto: moto,
        sdk,
        stack,
        clients,
        cfg,
    }
}

impl World {
    async fn deliver(&self, payload: &Value, request_id: &str) -> Value {
        handle(payload, request_id, &self.clients, &self.cfg, Clock::now())
            .await
            .expect("invocation succeeds")
    }

    async fn upload(&self, key: &str, body: &[u8]) {
        s3_client(&self.sdk)
            .put_object()
            .bucket(&self.stack.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("upload");
    }

    /// Top-level jobs in the queue (array children are not listed).
    async fn jobs(&self) -> Vec<aws_sdk_batch::types::JobDetail> {
        let batch = aws_sdk_batch::Client::new(&self.sdk);
        let ids = job_ids(&batch, &self.stack.job_queue).await.unwrap();
        if ids.is_empty() {
            return Vec::new();
        }
        batch
            .describe_jobs()
            .set_jobs(Some(ids))
            .send()
            .await
            .expect("describe jobs")
            .jobs
            .unwrap_or_default()
    }

    async fn record(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        store::get_image(
            &self.clients.dynamodb,
            &self.stack.table,
            &self.stack.bucket,
            key,
        )
        .await
        .unwrap()
    }

    async fn items_under(&self, key: &str) -> usize {
        self.clients
            .dynamodb
            .query()
            .table_name(&self.stack.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(format!("s3://{}/{key}", self.stack.bucket)),
            )
            .send()
            .await
            .unwrap()
            .count as usize
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn spec_of(job: &aws_sdk_batch::types::JobDetail) -> JobSpec {
    let raw = job
        .parameters()
        .and_then(|p| p.get(JOB_PARAMETER))
        .expect("job carries the job parameter");
    JobSpec::from_parameter(raw).unwrap()
}

fn direct_put(bucket: &str, key: &str, seq: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": labeler_core::key::encode_event_key(key, false), "size": 2048, "eTag": "0123456789abcdef", "sequencer": seq}}
    }]})
}

#[tokio::test]
async fn uploads_become_one_job_with_exact_keys_and_queued_records_and_redelivery_adds_nothing() {
    let w = world(&[]).await;
    let long_key = format!("long/{}x.jpg", "é".repeat(507));
    assert_eq!(long_key.len(), 1024);
    let images = [
        "a b.jpg",
        "1+1=2.png",
        "100% real.jpeg",
        "фото/日本 café.JPG",
        long_key.as_str(),
    ];
    for key in images {
        w.upload(key, b"not really a jpeg, the dispatcher never reads it")
            .await;
    }
    w.upload("notes/readme.txt", b"hello").await;
    w.upload("empty.jpg", b"").await;
    let event = drain_as_lambda_event(&w.sdk, &w.stack).await;
    // Seven uploads plus the s3:TestEvent sent when the notification was set up.
    assert_eq!(event["Records"].as_array().unwrap().len(), 8);

    let response = w.deliver(&event, "req-1").await;

    assert_eq!(response["batchItemFailures"], json!([]));
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1, "one job for one invocation");
    let spec = spec_of(&jobs[0]);
    let ImageSource::Inline(chunks) = &spec.images else {
        panic!("small jobs are inline")
    };
    let submitted: BTreeSet<&str> = chunks[0].iter().map(|i| i.key.as_str()).collect();
    assert_eq!(submitted, images.iter().copied().collect());
    let job_id = jobs[0].job_id().unwrap().to_owned();
    for key in images {
        let record = w.record(key).await.expect("record exists");
        assert_eq!(text(&record, "status"), "QUEUED", "{key}");
        assert_eq!(text(&record, "job_id"), job_id, "{key}");
        assert_eq!(text(&record, "key"), key);
    }
    for (key, reason) in [("notes/readme.txt", "not an image"), ("empty.jpg", "empty")] {
        let record = w.record(key).await.expect("skipped record exists");
        assert_eq!(text(&record, "status"), "SKIPPED");
        assert!(text(&record, "reason").contains(reason), "{key}");
    }

    let again = w.deliver(&event, "req-2").await;

    assert_eq!(again["batchItemFailures"], json!([]));
    assert_eq!(w.jobs().await.len(), 1, "a redelivery submits nothing");
    for key in images {
        assert_eq!(text(&w.record(key).await.unwrap(), "job_id"), job_id);
    }
}

#[tokio::test]
async fn an_older_upload_arriving_after_a_newer_one_submits_nothing() {
    let w = world(&[]).await;
    let newer = direct_put(&w.stack.bucket, "cats/tabby cat.jpg", "0062E99D11AA22BB50");
    let older = direct_put(&w.stack.bucket, "cats/tabby cat.jpg", "0062E99D11AA22BB4F");

    let first = w.deliver(&newer, "req-1").await;
    let second = w.deliver(&older, "req-2").await;

    assert_eq!(first["jobs_submitted"], 1);
    assert_eq!(second["jobs_submitted"], 0);
    assert_eq!(second["superseded"], 1);
    assert_eq!(w.jobs().await.len(), 1);
    let record = w.record("cats/tabby cat.jpg").await.unwrap();
    assert!(text(&record, "revision").starts_with("2.0062E99D11AA22BB50"));
}

#[tokio::test]
async fn a_delete_leaves_a_tombstone_without_label_entries() {
    let w = world(&[]).await;
    w.upload("dogs/corgi.png", b"png bytes").await;
    let put = drain_as_lambda_event(&w.sdk, &w.stack).await;
    w.deliver(&put, "req-1").await;
    let revision = text(&w.record("dogs/corgi.png").await.unwrap(), "revision");
    w.label_entry("dogs/corgi.png", "Dog", &revision).await;
    assert_eq!(w.items_under("dogs/corgi.png").await, 2);
    s3_client(&w.sdk)
        .delete_object()
        .bucket(&w.stack.bucket)
        .key("dogs/corgi.png")
        .send()
        .await
        .unwrap();
    let delete = drain_as_lambda_event(&w.sdk, &w.stack).await;

    let response = w.deliver(&delete, "req-2").await;

    assert_eq!(response["batchItemFailures"], json!([]));
    assert_eq!(w.items_under("dogs/corgi.png").await, 1);
    let tombstone = w.record("dogs/corgi.png").await.unwrap();
    assert_eq!(text(&tombstone, "status"), "DELETED");
    assert!(tombstone.contains_key("expires_at"));
    assert!(!tombstone.contains_key("status_key"));
}

/// An S3 notification record as S3 sends it, with an explicit sequencer.
fn s3_record(name: &str, bucket: &str, key: &str, seq: &str, version: Option<&str>) -> Value {
    let mut object =
        json!({"key": key, "size": 1234, "eTag": "0123456789abcdef", "sequencer": seq});
    if let Some(v) = version {
        object["versionId"] = json!(v);
    }
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-29T12:00:00.000Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": object}
    })
}

fn s3_event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

impl World {
    async fn label_entry(&self, key: &str, label: &str, revision: &str) {
        self.clients
            .dynamodb
            .put_item()
            .table_name(&self.stack.table)
            .item(
                "pk",
                AttributeValue::S(format!("s3://{}/{key}", self.stack.bucket)),
            )
            .item("sk", AttributeValue::S(format!("LABEL#{label}")))
            .item("label", AttributeValue::S(label.to_lowercase()))
            .item("confidence", AttributeValue::N("98.5".into()))
            .item("revision", AttributeValue::S(revision.to_owned()))
            .send()
            .await
            .unwrap();
    }

    async fn event(&self, name: &str, key: &str, seq: &str, version: Option<&str>) -> Value {
        let event = s3_event(vec![s3_record(name, &self.stack.bucket, key, seq, version)]);
        self.deliver(&event, &format!("req-{name}-{seq}")).await
    }

    async fn status_of(&self, key: &str) -> String {
        text(&self.record(key).await.unwrap(), "status")
    }
}

#[tokio::test]
async fn a_late_older_create_cannot_bring_a_deleted_key_back() {
    let w = world(&[]).await;
    w.event("ObjectCreated:Put", "a.jpg", "0A", None).await;
    w.event("ObjectRemoved:Delete", "a.jpg", "0B", None).await;

    let late = w.event("ObjectCreated:Put", "a.jpg", "0A", None).await;

    assert_eq!(late["superseded"], 1);
    assert_eq!(w.status_of("a.jpg").await, "DELETED");
    w.event("ObjectCreated:Put", "a.jpg", "0C", None).await;
    assert_eq!(w.status_of("a.jpg").await, "QUEUED");
}

#[tokio::test]
async fn a_put_and_its_delete_in_one_batch_submit_nothing() {
    let w = world(&[]).await;
    let event = s3_event(vec![
        s3_record("ObjectCreated:Put", &w.stack.bucket, "b.jpg", "0A", None),
        s3_record("ObjectRemoved:Delete", &w.stack.bucket, "b.jpg", "0B", None),
    ]);

    let response = w.deliver(&event, "req-1").await;

    assert_eq!(response["jobs_submitted"], 0, "{response}");
    assert_eq!(w.status_of("b.jpg").await, "DELETED");
    assert!(w.jobs().await.is_empty());
}

/// Turns versioning on for the world's bucket; returns an S3 client.
async fn versioned(w: &World) -> aws_sdk_s3::Client {
    let s3 = s3_client(&w.sdk);
    s3.put_bucket_versioning()
        .bucket(&w.stack.bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3
}

/// Uploads a new version of `key`; returns its version id.
async fn put_version(w: &World, s3: &aws_sdk_s3::Client, key: &str) -> String {
    let out = s3
        .put_object()
        .bucket(&w.stack.bucket)
        .key(key)
        .body(b"jpeg bytes".to_vec().into())
        .send()
        .await
        .unwrap();
    out.version_id().unwrap().to_owned()
}

/// Deletes `version` of `key` for good, or (`None`) makes a delete marker;
/// returns the version id S3 names (the marker's).
async fn delete_version(
    w: &World,
    s3: &aws_sdk_s3::Client,
    key: &str,
    version: Option<&str>,
) -> Option<String> {
    let out = s3
        .delete_object()
        .bucket(&w.stack.bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap();
    out.version_id().map(str::to_owned)
}

#[tokio::test]
async fn in_versioned_buckets_only_the_recorded_version_s_fate_changes_the_record() {
    let w = world(&[]).await;
    let s3 = versioned(&w).await;
    let v1 = put_version(&w, &s3, "v.jpg").await;
    let v2 = put_version(&w, &s3, "v.jpg").await;
    w.event("ObjectCreated:Put", "v.jpg", "0A", Some(&v1)).await;
    w.event("ObjectCreated:Put", "v.jpg", "0B", Some(&v2)).await;

    let revision = text(&w.record("v.jpg").await.unwrap(), "revision");
    w.label_entry("v.jpg", "Dog", &revision).await;

    delete_version(&w, &s3, "v.jpg", Some(&v1)).await;
    let old_version_deleted = w
        .event("ObjectRemoved:Delete", "v.jpg", "0C", Some(&v1))
        .await;

    assert_eq!(old_version_deleted["removed"], 0, "{old_version_deleted}");
    assert_eq!(
        w.items_under("v.jpg").await,
        2,
        "the current version's entries stay"
    );
    let record = w.record("v.jpg").await.unwrap();
    assert_eq!(text(&record, "status"), "QUEUED");
    assert_eq!(text(&record, "version_id"), v2);

    let marker = delete_version(&w, &s3, "v.jpg", None).await;
    w.event(
        "ObjectRemoved:DeleteMarkerCreated",
        "v.jpg",
        "0D",
        marker.as_deref(),
    )
    .await;
    assert_eq!(w.status_of("v.jpg").await, "DELETED");

    // A delete of an old version says nothing about newer versions, even
    // one whose create event arrives after it.
    let x1 = put_version(&w, &s3, "x.jpg").await;
    w.event("ObjectCreated:Put", "x.jpg", "0A", Some(&x1)).await;
    let x2 = put_version(&w, &s3, "x.jpg").await;
    delete_version(&w, &s3, "x.jpg", Some(&x1)).await;
    w.event("ObjectRemoved:Delete", "x.jpg", "0C", Some(&x1))
        .await;
    w.event("ObjectCreated:Put", "x.jpg", "0B", Some(&x2)).await;
    let record = w.record("x.jpg").await.unwrap();
    assert_eq!(
        (text(&record, "status"), text(&record, "version_id")),
        ("QUEUED".to_owned(), x2)
    );
    let redelivered = w.event("ObjectCreated:Put", "x.jpg", "0A", Some(&x1)).await;
    assert_eq!(redelivered["superseded"], 1, "{redelivered}");

    let w1 = put_version(&w, &s3, "w.jpg").await;
    w.event("ObjectCreated:Put", "w.jpg", "0A", Some(&w1)).await;
    delete_version(&w, &s3, "w.jpg", Some(&w1)).await;
    w.event("ObjectRemoved:Delete", "w.jpg", "0B", Some(&w1))
        .await;
    assert_eq!(w.status_of("w.jpg").await, "DELETED");
}

/// Counterexamples: a console "undelete" (deleting the delete marker) and the
/// permanent delete of the current version both make an older version the
/// key's object again, yet the record stayed DELETED, since neither event
/// names that version. After any version delete the dispatcher now asks S3
/// which version is current and dispatches it under the delete's revision.
#[tokio::test]
async fn an_undelete_or_a_deleted_current_version_brings_the_older_version_back() {
    let w = world(&[]).await;
    let s3 = versioned(&w).await;

    let v1 = put_version(&w, &s3, "undelete.jpg").await;
    w.event("ObjectCreated:Put", "undelete.jpg", "0A", Some(&v1))
        .await;
    let marker = delete_version(&w, &s3, "undelete.jpg", None).await;
    w.event(
        "ObjectRemoved:DeleteMarkerCreated",
        "undelete.jpg",
        "0B",
        marker.as_deref(),
    )
    .await;
    assert_eq!(w.status_of("undelete.jpg").await, "DELETED");
    delete_version(&w, &s3, "undelete.jpg", marker.as_deref()).await;
    w.event(
        "ObjectRemoved:Delete",
        "undelete.jpg",
        "0C",
        marker.as_deref(),
    )
    .await;

    let record = w.record("undelete.jpg").await.unwrap();
    assert_eq!(
        (text(&record, "status"), text(&record, "version_id")),
        ("QUEUED".to_owned(), v1.clone()),
        "{record:?}"
    );

    let older = put_version(&w, &s3, "current.jpg").await;
    let newer = put_version(&w, &s3, "current.jpg").await;
    w.event("ObjectCreated:Put", "current.jpg", "0A", Some(&older))
        .await;
    w.event("ObjectCreated:Put", "current.jpg", "0B", Some(&newer))
        .await;
    delete_version(&w, &s3, "current.jpg", Some(&newer)).await;
    w.event("ObjectRemoved:Delete", "current.jpg", "0C", Some(&newer))
        .await;

    let record = w.record("current.jpg").await.unwrap();
    assert_eq!(
        (text(&record, "status"), text(&record, "version_id")),
        ("QUEUED".to_owned(), older),
        "{record:?}"
    );
}

/// Counterexample (chaos seed 32, versioned bucket, SQS): a picture is
/// uploaded over a delete marker and deleted again for good, and the
/// version delete's event arrives before the upload's. Nothing is current,
/// but the late upload event claimed the deleted version, its job found no
/// such version, and the key ended FAILED. A version delete after which no
/// version is current now tombstones the key under its own revision, so a
/// late event of an older upload loses.
#[tokio::test]
async fn a_version_deleted_before_its_upload_event_arrives_leaves_the_key_deleted() {
    let w = world(&[]).await;
    let s3 = versioned(&w).await;
    let marker = delete_version(&w, &s3, "late.jpg", None).await;
    w.event(
        "ObjectRemoved:DeleteMarkerCreated",
        "late.jpg",
        "0A",
        marker.as_deref(),
    )
    .await;
    let version = put_version(&w, &s3, "late.jpg").await;
    delete_version(&w, &s3, "late.jpg", Some(&version)).await;

    w.event("ObjectRemoved:Delete", "late.jpg", "0C", Some(&version))
        .await;
    w.event("ObjectCreated:Put", "late.jpg", "0B", Some(&version))
        .await;

    let record = w.record("late.jpg").await.unwrap();
    assert_eq!(
        (text(&record, "status"), text(&record, "revision")),
        (
            "DELETED".to_owned(),
            labeler_core::Revision::from_sequencer("0C")
                .unwrap()
                .as_str()
                .to_owned()
        ),
        "{record:?}"
    );
    assert!(w.jobs().await.is_empty(), "no job for a deleted version");
}

/// Counterexample (chaos seeds 92 and 144, versioned bucket): a version
/// uploaded over the recorded one and deleted for good, the delete's event
/// handled before the upload's. The delete found the record describing the
/// version S3 holds again and wrote nothing; the late upload event then
/// claimed the deleted version (or, for an empty one, recorded it SKIPPED),
/// and its job ended FAILED on a version S3 no longer has. The delete now
/// records that every version older than it, other than the recorded one,
/// is gone, and the late event loses to that.
#[tokio::test]
async fn a_version_deleted_before_its_upload_event_arrives_leaves_the_version_before_it_recorded() {
    let w = world(&[]).await;
    let s3 = versioned(&w).await;
    for (key, size) in [("gone.jpg", 1234), ("gone-empty.jpg", 0)] {
        let v1 = put_version(&w, &s3, key).await;
        w.event("ObjectCreated:Put", key, "0A", Some(&v1)).await;
        let v2 = put_version(&w, &s3, key).await;
        delete_version(&w, &s3, key, Some(&v2)).await;

        w.event("ObjectRemoved:Delete", key, "0C", Some(&v2)).await;
        let mut late = s3_record("ObjectCreated:Put", &w.stack.bucket, key, "0B", Some(&v2));
        late["s3"]["object"]["size"] = json!(size);
        w.deliver(&s3_event(vec![late]), &format!("req-late-{key}"))
            .await;

        let record = w.record(key).await.unwrap();
        assert_eq!(
            (text(&record, "status"), text(&record, "version_id")),
            ("QUEUED".to_owned(), v1),
            "{key}: {record:?}"
        );
    }
    assert_eq!(
        w.jobs().await.len(),
        2,
        "one job per first upload, none for the deleted versions"
    );
}

/// Counterexample (chaos seed 14, versioned bucket, actors at once): a
/// delete marker is created and deleted again from the console, and the
/// undelete's event is handled before the marker's. The undelete found the
/// record already describing the current version and wrote nothing; the
/// late marker event then tombstoned the key, and it ended DELETED while S3
/// held the picture. A marker event now asks S3 first, and tombstones the
/// key only when no version is current.
#[tokio::test]
async fn a_delete_marker_event_arriving_after_its_undelete_leaves_the_picture_labeled() {
    let w = world(&[]).await;
    let s3 = versioned(&w).await;
    let v1 = put_version(&w, &s3, "back.jpg").await;
    w.event("ObjectCreated:Put", "back.jpg", "0A", Some(&v1))
        .await;
    let marker = delete_version(&w, &s3, "back.jpg", None).await;
    delete_version(&w, &s3, "back.jpg", marker.as_deref()).await;

    w.event("ObjectRemoved:Delete", "back.jpg", "0C", marker.as_deref())
        .await;
    w.event(
        "ObjectRemoved:DeleteMarkerCreated",
        "back.jpg",
        "0B",
        marker.as_deref(),
    )
    .await;

    let record = w.record("back.jpg").await.unwrap();
    assert_eq!(
        (text(&record, "status"), text(&record, "version_id")),
        ("QUEUED".to_owned(), v1),
        "{record:?}"
    );
}

/// Two uploads over a labeled version, the newer one deleted for good, and
/// the three events in one delivery: removals are handled before creates,
/// and the version current after them (the first upload) is the one queued.
#[tokio::test]
async fn a_batch_with_an_upload_and_its_version_delete_labels_the_version_current_after_them() {
    let w = world(&[]).await;
    let s3 = versioned(&w).await;
    let v1 = put_version(&w, &s3, "batch.jpg").await;
    w.event("ObjectCreated:Put", "batch.jpg", "0A", Some(&v1))
        .await;
    let v2 = put_version(&w, &s3, "batch.jpg").await;
    let v3 = put_version(&w, &s3, "batch.jpg").await;
    delete_version(&w, &s3, "batch.jpg", Some(&v3)).await;
    let bucket = w.stack.bucket.clone();
    let event = s3_event(vec![
        s3_record("ObjectCreated:Put", &bucket, "batch.jpg", "0B", Some(&v2)),
        s3_record("ObjectCreated:Put", &bucket, "batch.jpg", "0C", Some(&v3)),
        s3_record(
            "ObjectRemoved:Delete",
            &bucket,
            "batch.jpg",
            "0D",
            Some(&v3),
        ),
    ]);

    let response = w.deliver(&event, "req-batch").await;

    let record = w.record("batch.jpg").await.unwrap();
    assert_eq!(
        (text(&record, "status"), text(&record, "version_id")),
        ("QUEUED".to_owned(), v2),
        "{response} {record:?}"
    );
}

#[tokio::test]
async fn a_newer_upload_recorded_skipped_takes_the_older_labels_out_of_the_index() {
    let w = world(&[]).await;
    w.event("ObjectCreated:Put", "c.jpg", "0A", None).await;
    let revision = text(&w.record("c.jpg").await.unwrap(), "revision");
    w.label_entry("c.jpg", "Cat", &revision).await;
    let empty = json!({"Records": [{
        "eventSource": "aws:s3", "eventTime": "2026-11-29T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": w.stack.bucket}, "object": {"key": "c.jpg", "size": 0, "sequencer": "0B"}}
    }]});

    w.deliver(&empty, "req-empty").await;

    assert_eq!(w.status_of("c.jpg").await, "SKIPPED");
    assert_eq!(w.items_under("c.jpg").await, 1);
}

#[tokio::test]
async fn a_job_batch_refuses_for_good_records_its_images_failed_and_is_not_redelivered() {
    let w = world(&[("JOB_DEFINITION", "no-such-definition")]).await;
    let sqs = json!({"Records": [{
        "messageId": "m-1", "eventSource": "aws:sqs",
        "body": s3_event(vec![s3_record("ObjectCreated:Put", &w.stack.bucket, "d.jpg", "0A", None)]).to_string()
    }]});

    let response = w.deliver(&sqs, "req-1").await;

    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let record = w.record("d.jpg").await.unwrap();
    assert_eq!(text(&record, "status"), "FAILED");
    assert!(
        text(&record, "reason").contains("could not be submitted"),
        "{record:?}"
    );
}

#[tokio::test]
async fn unreadable_messages_are_answered_once_and_their_neighbours_handled() {
    let w = world(&[]).await;
    let good = s3_event(vec![s3_record(
        "ObjectCreated:Put",
        &w.stack.bucket,
        "e.jpg",
        "0A",
        None,
    )]);
    let sqs = json!({"Records": [
        {"messageId": "empty", "eventSource": "aws:sqs", "body": ""},
        {"messageId": "not-json", "eventSource": "aws:sqs", "body": "hello"},
        {"messageId": "other-json", "eventSource": "aws:sqs", "body": "{\"hello\":1}"},
        {"messageId": "good", "eventSource": "aws:sqs", "body": good.to_string()}
    ]});

    let response = w.deliver(&sqs, "req-1").await;

    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    assert_eq!(w.status_of("e.jpg").await, "QUEUED");
}

mod reconciler {
    use super::*;
    use labeler_core::store::ClaimKind;
    use labeler_core::{ImageRef, Revision};

    fn image(w: &World, key: &str) -> ImageRef {
        ImageRef {
            bucket: w.stack.bucket.clone(),
            key: key.to_owned(),
            revision: Revision::from_sequencer("0A").unwrap(),
            version_id: None,
            etag: None,
            size: Some(10),
        }
    }

    async fn claim_at(w: &World, key: &str, claim: &str, at: Clock) {
        let image = image(w, key);
        let written = store::claim(&w.clients.dynamodb, &w.stack.table, &image, claim, at, 900);
        assert_eq!(written.await.unwrap(), store::WriteOutcome::Written);
    }

    /// A dispatcher that died between its claim and SubmitJob, a backfill
    /// killed mid-batch, a retry whose SubmitJob failed: a claim without a
    /// job that no event will ever revisit.
    #[tokio::test]
    async fn a_claim_that_never_produced_a_job_is_dispatched_again_after_its_lease() {
        let w = world(&[]).await;
        let then = Clock::now();
        claim_at(&w, "stranded.jpg", "died-before-submit", then).await;
        claim_at(&w, "recent.jpg", "still-working", then.plus_secs(1000)).await;

        let report = dispatcher::dispatch::reconcile_now(&w.clients, &w.cfg, then.plus_secs(1000))
            .await
            .unwrap();

        assert_eq!(report.examined, 1, "{report:?}");
        assert_eq!(report.redispatched, 1, "{report:?}");
        let record = w.record("stranded.jpg").await.unwrap();
        assert_eq!(text(&record, "status"), "QUEUED");
        assert!(record.contains_key("job_id"), "{record:?}");
        assert_eq!(record["dispatches"].as_n().unwrap(), "2");
        assert_eq!(w.jobs().await.len(), 1);
        assert!(!w.record("recent.jpg").await.unwrap().contains_key("job_id"));
    }

    /// A job Batch has no trace of, or one that SUCCEEDED without a result
    /// (moto reports every job SUCCEEDED at once): dispatched again with a
    /// doubling delay, keeping the first dispatch's time, and FAILED with
    /// the reason in plain words only when the give-up time has passed.
    #[tokio::test]
    async fn a_queued_image_whose_job_ended_without_a_result_is_retried_then_given_up() {
        let w = world(&[("RECONCILE_GIVE_UP_SECONDS", "7000")]).await;
        let then = Clock::now();
        claim_at(&w, "lost.jpg", "c1", then).await;
        let submission = store::Submission {
            job_id: "no-such-job",
            job_name: "j",
            array_index: None,
        };
        store::record_submitted(
            &w.clients.dynamodb,
            &w.stack.table,
            &image(&w, "lost.jpg"),
            "c1",
            submission,
            then,
        )
        .await
        .unwrap();
        let pass =
            |secs| dispatcher::dispatch::reconcile_now(&w.clients, &w.cfg, then.plus_secs(secs));

        let first = pass(1000).await.unwrap();
        assert_eq!(first.redispatched, 1, "{first:?}");
        let queued_at = text(&w.record("lost.jpg").await.unwrap(), "queued_at");
        assert_eq!(
            queued_at,
            then.rfc3339(),
            "the first dispatch's time is kept"
        );
        let early = pass(2000).await.unwrap();
        assert_eq!((early.backing_off, early.redispatched), (1, 0), "{early:?}");
        let second = pass(2900).await.unwrap();
        assert_eq!(second.redispatched, 1, "{second:?}");

        let last = pass(7000).await.unwrap();
        assert_eq!(last.gave_up, 1, "{last:?}");
        let record = w.record("lost.jpg").await.unwrap();
        assert_eq!(text(&record, "status"), "FAILED");
        let reason = text(&record, "reason");
        assert!(
            reason.contains("gave up after 116 minutes and 3 dispatches"),
            "{reason}"
        );
        let after = pass(9000).await.unwrap();
        assert_eq!(after.examined, 0, "{after:?}");
    }

    /// Counterexample: the pass read shard `QUEUED#00` first against one
    /// global limit, so a backlog there starved a stuck image in any other
    /// shard for as long as the backlog lasted.
    #[tokio::test]
    async fn a_backlog_in_one_shard_does_not_starve_the_others() {
        let w = world(&[("RECONCILE_LIMIT", "16")]).await;
        let shard_of = |key: &str| {
            let pk = labeler_core::schema::image_pk(&w.stack.bucket, key);
            labeler_core::schema::status_key(&pk, labeler_core::Status::Queued).unwrap()
        };
        let first = "QUEUED#00";
        let backlog: Vec<String> = (0..)
            .map(|i| format!("backlog/{i:04}.jpg"))
            .filter(|k| shard_of(k) == first)
            .take(20)
            .collect();
        let lonely = (0..)
            .map(|i| format!("elsewhere/{i:04}.jpg"))
            .find(|k| shard_of(k) != first)
            .unwrap();
        let then = Clock::now();
        for (i, key) in backlog.iter().enumerate() {
            claim_at(&w, key, "died", then.plus_secs(i as u64)).await;
        }
        claim_at(&w, &lonely, "died", then.plus_secs(100)).await;

        let report = dispatcher::dispatch::reconcile_now(&w.clients, &w.cfg, then.plus_secs(2000))
            .await
            .unwrap();

        assert!(report.examined <= 16, "{report:?}");
        let record = w.record(&lonely).await.unwrap();
        assert!(
            record.contains_key("job_id"),
            "the image in {} waited behind {first}: {report:?}",
            shard_of(&lonely)
        );
    }

    #[tokio::test]
    async fn an_operator_retry_killed_before_its_submission_is_picked_up() {
        let w = world(&[]).await;
        let then = Clock::now();
        let db = &w.clients.dynamodb;
        claim_at(&w, "f.jpg", "c1", then).await;
        store::fail_queued(
            db,
            &w.stack.table,
            &image(&w, "f.jpg"),
            store::QueuedBy::Claim("c1"),
            "broken",
            then,
        )
        .await
        .unwrap();
        let failed = image(&w, "f.jpg");
        let retried = store::claim_as(
            db,
            &w.stack.table,
            &failed,
            "retry-1",
            ClaimKind::RetryFailed,
            then,
            900,
        );
        assert_eq!(retried.await.unwrap(), store::WriteOutcome::Written);

        let report = dispatcher::dispatch::reconcile_now(&w.clients, &w.cfg, then.plus_secs(1000))
            .await
            .unwrap();

        assert_eq!(report.redispatched, 1, "{report:?}");
        assert!(w.record("f.jpg").await.unwrap().contains_key("job_id"));
    }

    #[tokio::test]
    async fn the_schedule_s_event_runs_a_pass_through_the_handler() {
        let w = world(&[]).await;
        let scheduled = json!({"version": "0", "id": "1", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2026-11-29T12:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {}});

        let response = w.deliver(&scheduled, "req-1").await;

        assert_eq!(response["reconciled"]["examined"], 0, "{response}");
        let asked = w.deliver(&json!({"reconcile": {}}), "req-2").await;
        assert!(asked["reconciled"].is_object(), "{asked}");
    }
}

fn batch_failure_event(job: &aws_sdk_batch::types::JobDetail, array_index: Option<usize>) -> Value {
    let container = json!({"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"});
    batch_event_failed_so(
        job,
        array_index,
        "Essential container in task exited",
        container,
    )
}

fn batch_event_failed_so(
    job: &aws_sdk_batch::types::JobDetail,
    array_index: Option<usize>,
    status_reason: &str,
    container: Value,
) -> Value {
    let mut detail = json!({
        "jobArn": job.job_arn(),
        "jobName": job.job_name(),
        "jobId": match array_index {
            Some(i) => format!("{}:{i}", job.job_id().unwrap()),
            None => job.job_id().unwrap().to_owned(),
        },
        "jobQueue": job.job_queue(),
        "status": "FAILED",
        "statusReason": status_reason,
        "parameters": job.parameters(),
        "container": container,
    });
    if let Some(i) = array_index {
        detail["arrayProperties"] = json!({"index": i});
    }
    json!({
        "version": "0", "id": "5c4a5c2e-0000-0000-0000-000000000000",
        "detail-type": "Batch Job State Change", "source": "aws.batch",
        "account": "123456789012", "time": "2026-11-23T01:00:00Z", "region": "us-east-1",
        "resources": [job.job_arn()], "detail": detail
    })
}

#[tokio::test]
async fn a_failed_batch_job_marks_its_still_queued_images_failed() {
    let w = world(&[]).await;
    for key in ["a.jpg", "b.jpg"] {
        w.upload(key, b"img").await;
    }
    let event = drain_as_lambda_event(&w.sdk, &w.stack).await;
    w.deliver(&event, "req-1").await;
    let job = w.jobs().await.remove(0);
    w.clients
        .dynamodb
        .update_item()
        .table_name(&w.stack.table)
        .set_key(Some(store::image_key(&w.stack.bucket, "b.jpg")))
        .update_expression("SET #s = :l")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":l", AttributeValue::S(Status::Labeled.as_str().into()))
        .send()
        .await
        .unwrap();

    let response = w.deliver(&batch_failure_event(&job, None), "req-2").await;

    assert_eq!(response["failed_by_batch"], 1);
    let failed = w.record("a.jpg").await.unwrap();
    assert_eq!(text(&failed, "status"), "FAILED");
    let reason = text(&failed, "reason");
    assert!(
        reason.contains("OutOfMemoryError") && reason.contains("137"),
        "{reason}"
    );
    assert_eq!(text(&w.record("b.jpg").await.unwrap(), "status"), "LABELED");

    let again = w.deliver(&batch_failure_event(&job, None), "req-3").await;
    assert_eq!(again["failed_by_batch"], 0, "the event is idempotent");
}

/// A regional brownout, Spot reclaiming the hosts, an ECR incident or a
/// RUNNABLE job cancelled for capacity: Batch spends its attempts within
/// minutes and reports the job FAILED. None of that is about the images, so
/// they stay QUEUED and the reconciler dispatches them again with a growing
/// delay, never recording FAILED for load.
#[tokio::test]
async fn a_job_failed_by_an_outage_leaves_its_images_queued_for_the_reconciler() {
    let w = world(&[]).await;
    let then = Clock::now();
    w.upload("brownout.jpg", b"img").await;
    let event = drain_as_lambda_event(&w.sdk, &w.stack).await;
    handle(&event, "req-1", &w.clients, &w.cfg, then)
        .await
        .unwrap();
    let job = w.jobs().await.remove(0);
    let outages = [
        ("Essential container in task exited", json!({"exitCode": 3})),
        ("Host EC2 (instance i-0123) terminated.", json!({})),
        ("Your Spot Task was interrupted.", json!({})),
        (
            "Task failed to start",
            json!({"reason": "CannotPullContainerError: pull rate exceeded"}),
        ),
        ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", json!({})),
    ];

    for (i, (status_reason, container)) in outages.into_iter().enumerate() {
        let event = batch_event_failed_so(&job, None, status_reason, container);
        let response = handle(&event, &format!("req-e{i}"), &w.clients, &w.cfg, then)
            .await
            .unwrap();
        assert_eq!(
            response["failed_by_batch"], 0,
            "{status_reason}: {response}"
        );
        let record = w.record("brownout.jpg").await.unwrap();
        assert_eq!(text(&record, "status"), "QUEUED", "{status_reason}");
    }

    let pass = dispatcher::dispatch::reconcile_now(&w.clients, &w.cfg, then.plus_secs(1000));
    let report = pass.await.unwrap();
    assert_eq!((report.redispatched, report.failed), (1, 0), "{report:?}");
}

#[tokio::test]
async fn a_large_batch_becomes_one_array_job_with_a_manifest_and_a_dead_child_fails_only_its_chunk()
{
    let w = world(&[("IMAGES_PER_JOB", "5")]).await;
    let keys: Vec<String> = (0..60)
        .map(|i| format!("bulk/{}-{i:03}.jpg", "p".repeat(600)))
        .collect();
    let records: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            direct_put(&w.stack.bucket, k, &format!("0062E99D11AA{i:06X}"))["Records"][0].clone()
        })
        .collect();
    let event = json!({ "Records": records });

    let response = w.deliver(&event, "req-1").await;

    assert_eq!(response["jobs_submitted"], 1);
    assert_eq!(response["images_queued"], 60);
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].array_properties().and_then(|a| a.size()), Some(12));
    let spec = spec_of(&jobs[0]);
    let ImageSource::Manifest(mref) = &spec.images else {
        panic!("60 long keys exceed the inline budget")
    };
    let body = s3_client(&w.sdk)
        .get_object()
        .bucket(&mref.bucket)
        .key(&mref.key)
        .send()
        .await
        .expect("manifest was written")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let manifest = Manifest::from_body(&body, mref).unwrap();
    assert_eq!(manifest.chunks.len(), 12);
    let chunk3: Vec<String> = manifest.chunks[3].iter().map(|i| i.key.clone()).collect();
    let mut parent = batch_failure_event(&jobs[0], None);
    parent["detail"]["arrayProperties"] = json!({"size": 12});
    let ignored = w.deliver(&parent, "req-parent").await;
    assert_eq!(
        ignored["failed_by_batch"], 0,
        "the parent's failure speaks for no chunk: {ignored}"
    );

    let response = w
        .deliver(&batch_failure_event(&jobs[0], Some(3)), "req-2")
        .await;

    assert_eq!(response["failed_by_batch"], 5);
    for key in &keys {
        let status = text(&w.record(key).await.unwrap(), "status");
        let expected = if chunk3.contains(key) {
            "FAILED"
        } else {
            "QUEUED"
        };
        assert_eq!(status, expected, "{key}");
    }
}

/// The in-memory claim rules that `labeler backfill --dry-run` previews with
/// agree with DynamoDB's conditional writes, state by state; and the rules
/// themselves: a claimant retakes its own unsubmitted claim, nobody else
/// does before the lease ends, and only a retry claims a FAILED upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_rules_previewed_in_memory_match_the_conditional_writes() {
    use labeler_core::labeling::{record_failed, record_labeled, Attempt};
    use labeler_core::store::{claim_as, claim_would_win, ClaimKind, Submission, WriteOutcome};
    use labeler_core::{ImageRef, Revision};

    let w = world(&[]).await;
    let db = &w.clients.dynamodb;
    let table = &w.stack.table;
    let image = |key: &str, seq: &str| ImageRef {
        bucket: w.stack.bucket.clone(),
        key: key.to_owned(),
        revision: Revision::from_sequencer(seq).unwrap(),
        version_id: None,
        etag: None,
        size: Some(10),
    };
    let now = Clock::now();
    let attempt = Attempt {
        job_id: Some("job-0".into()),
        owner: "job-0".into(),
        attempt: 1,
    };
    // Stored states, each under its own key.
    let claimed = |key: &'static str, by: &'static str| {
        let img = image(key, "0200");
        async move {
            store::claim(db, table, &img, by, now, 900).await.unwrap();
        }
    };
    claimed("own-unsubmitted.jpg", "me").await;
    claimed("other-unsubmitted.jpg", "other").await;
    claimed("submitted.jpg", "other").await;
    let submission = Submission {
        job_id: "job-0",
        job_name: "j",
        array_index: None,
    };
    store::record_submitted(
        db,
        table,
        &image("submitted.jpg", "0200"),
        "other",
        submission,
        now,
    )
    .await
    .unwrap();
    claimed("labeled.jpg", "other").await;
    labeler_core::labeling::take(db, table, &image("labeled.jpg", "0200"), &attempt, now)
        .await
        .unwrap();
    record_labeled(
        db,
        table,
        &image("labeled.jpg", "0200"),
        &labeler_core::labeling::Detected::as_is(&[], None),
        &attempt,
        now,
    )
    .await
    .unwrap();
    claimed("failed.jpg", "other").await;
    labeler_core::labeling::take(db, table, &image("failed.jpg", "0200"), &attempt, now)
        .await
        .unwrap();
    record_failed(
        db,
        table,
        &image("failed.jpg", "0200"),
        "broken",
        &attempt,
        now,
    )
    .await
    .unwrap();
    claimed("newer.jpg", "other").await;
    // Floors: a version delete found these records describing the current
    // version, and every other version older than it gone.
    claimed("floored.jpg", "other").await;
    claimed("failed-floored.jpg", "other").await;
    let failed_floored = image("failed-floored.jpg", "0200");
    labeler_core::labeling::take(db, table, &failed_floored, &attempt, now)
        .await
        .unwrap();
    record_failed(db, table, &failed_floored, "broken", &attempt, now)
        .await
        .unwrap();
    let delete = Revision::from_sequencer("0400").unwrap();
    for key in ["floored.jpg", "failed-floored.jpg"] {
        let deletion = store::Deletion {
            bucket: &w.stack.bucket,
            key,
            revision: &delete,
            version: Some("gone"),
            reason: "ObjectRemoved:Delete",
        };
        let seen = Revision::from_sequencer("0200").unwrap();
        let floor = store::record_versions_gone(db, table, &deletion, &seen).await;
        assert_eq!(floor.unwrap(), WriteOutcome::Written, "{key}");
    }

    let cases = [
        ("absent.jpg", "0200", ClaimKind::New, true),
        ("own-unsubmitted.jpg", "0200", ClaimKind::New, true),
        ("other-unsubmitted.jpg", "0200", ClaimKind::New, false),
        ("submitted.jpg", "0200", ClaimKind::New, false),
        ("labeled.jpg", "0200", ClaimKind::New, false),
        ("labeled.jpg", "0300", ClaimKind::New, true),
        ("failed.jpg", "0200", ClaimKind::New, false),
        ("labeled.jpg", "0200", ClaimKind::RetryFailed, false),
        ("newer.jpg", "0100", ClaimKind::New, false),
        ("absent-too.jpg", "0200", ClaimKind::RetryFailed, false),
        ("failed.jpg", "0200", ClaimKind::RetryFailed, true),
        ("floored.jpg", "0300", ClaimKind::New, false),
        ("floored.jpg", "0400", ClaimKind::New, false),
        ("floored.jpg", "0500", ClaimKind::New, true),
        ("failed-floored.jpg", "0300", ClaimKind::New, false),
        ("failed-floored.jpg", "0200", ClaimKind::RetryFailed, true),
    ];
    for (key, seq, kind, expected) in cases {
        let img = image(key, seq);
        let stored = w.record(key).await;
        let predicted = claim_would_win(stored.as_ref(), &img, "me", kind, now, 900);
        let written = claim_as(db, table, &img, "me", kind, now, 900)
            .await
            .unwrap();
        assert_eq!(predicted, expected, "{key} {seq} {kind:?}: rule");
        assert_eq!(
            written == WriteOutcome::Written,
            expected,
            "{key} {seq} {kind:?}: DynamoDB, got {written:?}"
        );
    }
    let retried = w.record("failed-floored.jpg").await.unwrap();
    assert_eq!(
        (text(&retried, "status"), text(&retried, "gone_before")),
        ("QUEUED".to_owned(), delete.as_str().to_owned()),
        "a retry keeps the floor it read"
    );
    // Once the lease is over, anyone may retake an abandoned claim.
    let later = Clock {
        unix_millis: now.unix_millis + 901_000,
    };
    let img = image("other-unsubmitted.jpg", "0200");
    let stored = w.record("other-unsubmitted.jpg").await;
    assert!(claim_would_win(
        stored.as_ref(),
        &img,
        "me",
        ClaimKind::New,
        later,
        900
    ));
    assert_eq!(
        claim_as(db, table, &img, "me", ClaimKind::New, later, 900)
            .await
            .unwrap(),
        WriteOutcome::Written
    );
}
