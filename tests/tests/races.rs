//! Named interleavings: two actors on the same key, with one of them held
//! at a barrier in the loopback [`Gateway`] (a test double in front of moto)
//! while the other runs in exactly that gap. Each test is a race the chaos
//! suite's one-actor-at-a-time storm cannot produce, pinned down so that it
//! fails the moment its fix is undone.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::gateway::{Gateway, Hold};
use integration_tests::{provision, Moto, Stack};
use labeler_core::job::{ImageSource, JobSpec, LabelOptions, CONTRACT_VERSION};
use labeler_core::labeling::{self, Attempt, Detected};
use labeler_core::schema::Label;
use labeler_core::store::{self, Clock, WriteOutcome};
use labeler_core::{ImageRef, Revision};
use std::collections::HashMap;

struct World {
    _moto: Moto,
    stack: Stack,
    gateway: Gateway,
    /// Clients that go through the gateway.
    held: aws_sdk_dynamodb::Client,
    /// Clients that go straight to moto.
    direct: aws_sdk_dynamodb::Client,
    /// The SDK configuration for moto.
    moto_sdk: aws_config::SdkConfig,
}

async fn world() -> World {
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let gateway = Gateway::start(&moto.endpoint).await.expect("gateway");
    let through = sdk.to_builder().endpoint_url(&gateway.endpoint).build();
    World {
        _moto: moto,
        stack,
        gateway,
        held: aws_sdk_dynamodb::Client::new(&through),
        direct: aws_sdk_dynamodb::Client::new(&sdk),
        moto_sdk: sdk,
    }
}

impl World {
    fn image(&self, seq: &str) -> ImageRef {
        ImageRef {
            bucket: self.stack.bucket.clone(),
            key: "race/beach.jpg".into(),
            revision: Revision::from_sequencer(seq).unwrap(),
            version_id: None,
            etag: None,
            size: Some(4321),
        }
    }

    /// `image` claimed and taken by job `owner`, ready for its result.
    async fn taken(&self, image: &ImageRef, owner: &str) -> Attempt {
        let (db, table, now) = (&self.direct, &self.stack.table, Clock::now());
        let claimed = store::claim(db, table, image, "c1", now, 900)
            .await
            .unwrap();
        assert_eq!(claimed, WriteOutcome::Written);
        let attempt = Attempt {
            job_id: Some(owner.to_owned()),
            owner: owner.to_owned(),
            attempt: 1,
        };
        let took = labeling::take(db, table, image, &attempt, now)
            .await
            .unwrap();
        assert_eq!(took, WriteOutcome::Written);
        attempt
    }

    /// Label-index entries of the key, by revision.
    async fn entries(&self) -> Vec<(String, String)> {
        let out = self
            .direct
            .query()
            .table_name(&self.stack.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(labeler_core::schema::image_pk(
                    &self.stack.bucket,
                    "race/beach.jpg",
                )),
            )
            .expression_attribute_values(":p", AttributeValue::S("LABEL#".into()))
            .send()
            .await
            .unwrap();
        let text = |i: &HashMap<String, AttributeValue>, n: &str| {
            i.get(n)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        out.items()
            .iter()
            .map(|i| (text(i, "sk"), text(i, "revision")))
            .collect()
    }

    /// The worker's clients through the gateway, a one-image job and
    /// settings as Batch's job `job-1` would run it.
    fn worker_for(&self, image: &ImageRef) -> (worker::Clients, JobSpec, worker::Settings) {
        let through = self
            .moto_sdk
            .to_builder()
            .endpoint_url(&self.gateway.endpoint)
            .build();
        let clients = worker::Clients {
            rekognition: aws_sdk_rekognition::Client::new(&through),
            dynamodb: aws_sdk_dynamodb::Client::new(&through),
            s3: integration_tests::s3_client(&through),
        };
        let spec = JobSpec {
            v: CONTRACT_VERSION,
            table: self.stack.table.clone(),
            options: LabelOptions::default(),
            images: ImageSource::Inline(vec![vec![image.clone()]]),
        };
        let settings = worker::Settings {
            concurrency: 1,
            time_budget: std::time::Duration::from_secs(120),
            attempt: Attempt {
                job_id: Some("job-1".into()),
                owner: "job-1".into(),
                attempt: 1,
            },
            ..worker::Settings::default()
        };
        (clients, spec, settings)
    }

    /// Once the held call has arrived, the older upload's worker commits its
    /// labels (`Beach`), then the held call goes on.
    async fn label_in_the_gap(&self, hold: &Hold, old: &ImageRef, attempt: &Attempt) {
        hold.reached().await;
        let labels = beach();
        let detected = Detected::as_is(&labels, Some("3.0"));
        let (db, table) = (&self.direct, &self.stack.table);
        let labeled = labeling::record_labeled(db, table, old, &detected, attempt, Clock::now());
        assert_eq!(labeled.await.unwrap(), WriteOutcome::Written);
        hold.release();
    }

    /// Runs Batch job `job-1` over `image` through the gateway while
    /// `meanwhile` runs.
    async fn worker_run_while(
        &self,
        image: &ImageRef,
        meanwhile: impl std::future::Future<Output = ()>,
    ) -> worker::Outcome {
        let (clients, spec, settings) = self.worker_for(image);
        let chunk = vec![image.clone()];
        let run = worker::run(
            &spec,
            &chunk,
            &clients,
            &settings,
            worker::Shutdown::never(),
        );
        let (outcome, ()) = tokio::join!(run, meanwhile);
        outcome
    }

    /// `body` uploaded at the test key and claimed with its ETag and size,
    /// as the dispatcher claims an event's object.
    async fn claimed_upload(&self, body: &[u8]) -> ImageRef {
        let etag = self.put(body).await;
        let image = ImageRef {
            etag: Some(etag),
            size: Some(body.len() as u64),
            ..self.image("0A")
        };
        let (db, table) = (&self.direct, &self.stack.table);
        let claimed = store::claim(db, table, &image, "c1", Clock::now(), 900);
        assert_eq!(claimed.await.unwrap(), WriteOutcome::Written);
        image
    }

    /// Puts `body` at the test key; returns its ETag, unquoted.
    /// The content entry served for `bytes` now, if any.
    async fn content_entry(&self, bytes: &[u8]) -> Option<labeler_core::labeling::Reused> {
        use labeler_core::reuse::{self, Content, ContentKey};
        use sha2::Digest;
        let content = Content {
            sha256: sha2::Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
        };
        let key = ContentKey::new(&content, &LabelOptions::default());
        let (db, table) = (&self.direct, &self.stack.table);
        let current = reuse::current_model(db, table).await.unwrap();
        reuse::lookup(db, table, &key, &current, Clock::now())
            .await
            .unwrap()
    }

    async fn put(&self, body: &[u8]) -> String {
        let out = integration_tests::s3_client(&self.moto_sdk)
            .put_object()
            .bucket(&self.stack.bucket)
            .key("race/beach.jpg")
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
        out.e_tag().unwrap().trim_matches('"').to_owned()
    }

    async fn status(&self) -> String {
        let item = store::get_image(
            &self.direct,
            &self.stack.table,
            &self.stack.bucket,
            "race/beach.jpg",
        )
        .await
        .unwrap()
        .expect("a record");
        item["status"].as_s().unwrap().clone()
    }
}

fn beach() -> Vec<Label> {
    vec![Label {
        name: "Beach".into(),
        confidence: 97.5,
        parents: vec![],
        categories: vec!["Travel and Adventure".into()],
        instances: vec![],
    }]
}

/// Counterexample: a skip (or a delete) of a newer upload cleared the older
/// upload's label entries *before* writing its record; the older upload's
/// worker committed its labels in between, and its `LABEL#Beach` entry
/// stayed in the label index forever, under a SKIPPED record.
#[tokio::test]
async fn a_worker_commit_between_a_newer_skip_s_cleanup_and_its_record_leaves_no_entries() {
    let w = world().await;
    let old = w.image("0A");
    let attempt = w.taken(&old, "job-1").await;
    let newer = w.image("0B");
    let hold = w.gateway.hold("DynamoDB_20120810.PutItem");

    let skip = {
        let (db, table) = (w.held.clone(), w.stack.table.clone());
        let newer = newer.clone();
        tokio::spawn(async move {
            store::record_skipped(&db, &table, &newer, "not an image", Clock::now()).await
        })
    };
    w.label_in_the_gap(&hold, &old, &attempt).await;

    assert_eq!(skip.await.unwrap().unwrap(), WriteOutcome::Written);
    assert_eq!(w.status().await, "SKIPPED");
    assert_eq!(
        w.entries().await,
        [],
        "entries of the skipped key's older upload"
    );
}

/// The same gap for a delete's tombstone.
#[tokio::test]
async fn a_worker_commit_between_a_delete_s_cleanup_and_its_tombstone_leaves_no_entries() {
    let w = world().await;
    let old = w.image("0A");
    let attempt = w.taken(&old, "job-1").await;
    let delete = Revision::from_sequencer("0B").unwrap();
    let hold = w.gateway.hold("DynamoDB_20120810.PutItem");

    let tombstone = {
        let (db, table) = (w.held.clone(), w.stack.table.clone());
        let (bucket, delete) = (w.stack.bucket.clone(), delete.clone());
        tokio::spawn(async move {
            let deletion = store::Deletion {
                bucket: &bucket,
                key: "race/beach.jpg",
                revision: &delete,
                version: None,
                reason: "the object was deleted",
            };
            store::tombstone(&db, &table, &deletion, Clock::now(), 86_400).await
        })
    };
    w.label_in_the_gap(&hold, &old, &attempt).await;

    assert_eq!(tombstone.await.unwrap().unwrap(), WriteOutcome::Written);
    assert_eq!(w.status().await, "DELETED");
    assert_eq!(w.entries().await, [], "entries of the deleted key's upload");
}

/// Counterexample: a dispatcher slow to record its submission rewrote
/// `job_id` on a record its job had already labeled (the condition looked at
/// the claim token only).
#[tokio::test]
async fn a_submission_recorded_after_the_image_was_labeled_changes_nothing() {
    let w = world().await;
    let image = w.image("0A");
    let attempt = w.taken(&image, "job-1").await;
    let labels = beach();
    let detected = Detected::as_is(&labels, Some("3.0"));
    let (db, table) = (&w.direct, &w.stack.table);
    let labeled = labeling::record_labeled(db, table, &image, &detected, &attempt, Clock::now());
    assert_eq!(labeled.await.unwrap(), WriteOutcome::Written);

    let submission = store::Submission {
        job_id: "job-late",
        job_name: "late",
        array_index: None,
    };
    let late = store::record_submitted(db, table, &image, "c1", submission, Clock::now());

    assert_ne!(late.await.unwrap(), WriteOutcome::Written);
    let item = store::get_image(db, table, &w.stack.bucket, "race/beach.jpg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item["status"].as_s().unwrap(), "LABELED");
    assert_ne!(
        item.get("job_id")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("job-late")
    );
}

/// Counterexample: the failure of job `job-1` recorded FAILED an image that
/// job `job-2` had taken and was labeling (the condition looked at the
/// recorded job id only, not at who holds the image).
#[tokio::test]
async fn a_dead_job_s_failure_leaves_an_image_another_job_holds() {
    let w = world().await;
    let image = w.image("0A");
    let (db, table) = (&w.direct, &w.stack.table);
    w.taken(&image, "job-2").await;
    let submission = store::Submission {
        job_id: "job-1",
        job_name: "first",
        array_index: None,
    };
    store::record_submitted(db, table, &image, "c1", submission, Clock::now())
        .await
        .unwrap();

    let by = store::QueuedBy::Job {
        job_id: "job-1",
        dead: "job-1",
    };
    let failed = store::fail_queued(
        db,
        table,
        &image,
        by,
        "Batch job first failed",
        Clock::now(),
    );

    assert_ne!(failed.await.unwrap(), WriteOutcome::Written);
    assert_eq!(w.status().await, "QUEUED");
}

/// Counterexample: DetectLabels answered (and charged), then DynamoDB browned
/// out for longer than the SDK's retries; the worker dropped the paid answer
/// and exited 3, and each of Batch's attempts paid again. The worker now
/// keeps the answer and writes it again with a growing delay, within its
/// time budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_answer_outlives_a_dynamodb_brownout_during_its_write() {
    use integration_tests::gateway::Service;
    let w = world().await;
    let image = w.image("0A");
    let (db, table, now) = (&w.direct, &w.stack.table, Clock::now());
    let claimed = store::claim(db, table, &image, "c1", now, 900)
        .await
        .unwrap();
    assert_eq!(claimed, WriteOutcome::Written);
    let hold = w.gateway.hold("DynamoDB_20120810.TransactWriteItems");
    let outcome = w
        .worker_run_while(&image, async {
            hold.reached().await;
            w.gateway.outage(Some(Service::DynamoDb));
            hold.release();
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            w.gateway.outage(None);
        })
        .await;

    assert!(w.gateway.outage_calls() > 0, "the brownout refused calls");
    assert_eq!((outcome.labeled, outcome.retryable), (1, 0), "{outcome:?}");
    assert_eq!(w.status().await, "LABELED");
    let calls = w.gateway.detect_calls();
    assert_eq!(calls["race/beach.jpg"].charged, 1, "{calls:?}");
}

/// Counterexample: an upload overwritten while its job ran (an unversioned
/// bucket, or a backfill) had the new bytes' labels stored under the old
/// bytes' content key, and every later copy of the old bytes got them for 30
/// days. Labels are now remembered as content only when the object still has
/// the ETag the key names after DetectLabels read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_of_an_object_overwritten_during_its_job_are_not_remembered_as_its_content() {
    let w = world().await;
    let image = w.claimed_upload(b"the beach, as uploaded first").await;
    let hold = w.gateway.hold("RekognitionService.DetectLabels");
    let outcome = w
        .worker_run_while(&image, async {
            hold.reached().await;
            w.put(b"a different picture").await;
            hold.release();
        })
        .await;

    assert_eq!(outcome.labeled, 1, "{outcome:?}");
    let entry = w.content_entry(b"the beach, as uploaded first").await;
    assert_eq!(
        entry, None,
        "the old bytes' key must not hold the new bytes' labels"
    );
}

/// The other side of the check above: an object left alone has its labels
/// remembered as its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_of_an_object_left_alone_are_remembered_as_its_content() {
    let w = world().await;
    let image = w.claimed_upload(b"the beach, as uploaded first").await;

    let outcome = w.worker_run_while(&image, async {}).await;

    assert_eq!(outcome.labeled, 1, "{outcome:?}");
    let entry = w.content_entry(b"the beach, as uploaded first").await;
    assert!(entry.is_some(), "the content entry is stored");
}

/// Counterexample: reuse keyed on the ETag (an MD5 for a single-part upload)
/// with the size let two different pictures with the same MD5 and size —
/// a known construction — share labels: the second was recorded with the
/// first's labels and no DetectLabels call. Here the second upload's event
/// names the first's ETag (the collision) over other bytes of the same
/// size; reuse is keyed on the SHA-256 of the bytes the worker reads, so
/// the second picture is labeled on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_whose_etag_and_size_collide_with_another_is_labeled_on_its_own() {
    let w = world().await;
    let first = w.claimed_upload(b"picture one, 24 bytes...").await;
    let outcome = w.worker_run_while(&first, async {}).await;
    assert_eq!((outcome.labeled, outcome.reused), (1, 0), "{outcome:?}");

    w.put(b"picture two, 24 bytes!!!").await;
    let second = ImageRef {
        etag: first.etag.clone(),
        size: first.size,
        ..w.image("0B")
    };
    let (db, table) = (&w.direct, &w.stack.table);
    let claimed = store::claim(db, table, &second, "c2", Clock::now(), 900);
    assert_eq!(claimed.await.unwrap(), WriteOutcome::Written);
    let outcome = w.worker_run_while(&second, async {}).await;

    assert_eq!((outcome.labeled, outcome.reused), (1, 0), "{outcome:?}");
    let calls = w.gateway.detect_calls();
    assert_eq!(calls["race/beach.jpg"].charged, 2, "{calls:?}");
    assert!(
        w.content_entry(b"picture two, 24 bytes!!!").await.is_some(),
        "the second picture's labels are remembered under its own bytes"
    );
}

/// Counterexample: content entries of an older label model were served for
/// their whole 30 days after Rekognition moved to a new one. Once an answer
/// names a new model (here: the fleet's marker says 3.1, as another
/// worker's answer would have set it), a copy of the same bytes is labeled
/// afresh and its entry replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_of_an_older_label_model_are_not_reused() {
    let w = world().await;
    let bytes = b"the same picture, twice";
    let first = w.claimed_upload(bytes).await;
    let outcome = w.worker_run_while(&first, async {}).await;
    assert_eq!((outcome.labeled, outcome.reused), (1, 0), "{outcome:?}");
    let (db, table) = (&w.direct, &w.stack.table);
    let newer_model = labeler_core::reuse::model_marker(Some("3.1"), Clock::now());
    labeler_core::reuse::remember(db, table, newer_model)
        .await
        .unwrap();

    let copy = ImageRef {
        size: first.size,
        ..w.image("0B")
    };
    let claimed = store::claim(db, table, &copy, "c2", Clock::now(), 900);
    assert_eq!(claimed.await.unwrap(), WriteOutcome::Written);
    let outcome = w.worker_run_while(&copy, async {}).await;

    assert_eq!((outcome.labeled, outcome.reused), (1, 0), "{outcome:?}");
    let calls = w.gateway.detect_calls();
    assert_eq!(calls["race/beach.jpg"].charged, 2, "{calls:?}");
}
