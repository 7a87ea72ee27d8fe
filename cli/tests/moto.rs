//! The `labeler` binary against moto on loopback: records written by the
//! pipeline's own code, objects in moto's S3, jobs submitted to moto's Batch.
//! Each test starts its own moto and fails loudly if it cannot.

use aws_config::SdkConfig;
use futures::{stream, StreamExt};
use integration_tests::{provision, s3_client, Moto, Stack};
use labeler_core::job::{ImageSource, Manifest, JOB_PARAMETER};
use labeler_core::labeling::{record_failed, record_labeled, Attempt};
use labeler_core::schema::Label;
use labeler_core::store::{self, Clock, WriteOutcome};
use labeler_core::{ImageRef, JobSpec, Revision};
use labeler_local::executor::job_ids;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labeler");

struct World {
    moto: Moto,
    sdk: SdkConfig,
    stack: Stack,
    dir: PathBuf,
}

async fn world() -> World {
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let dir = integration_tests::repo_root()
        .join("target/cli-tests")
        .join(format!("{}-{:x}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    World {
        moto,
        sdk,
        stack,
        dir,
    }
}

impl World {
    fn db(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// `labeler` with the stack's endpoint, credentials and names.
    fn labeler(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(self.moto.env())
            .env("LABELER_TABLE", &self.stack.table)
            .env("LABELER_JOB_QUEUE", &self.stack.job_queue)
            .env("LABELER_JOB_DEFINITION", &self.stack.job_definition)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.labeler(args).output().expect("labeler runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "labeler {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    fn image(&self, key: &str, seq: &str) -> ImageRef {
        ImageRef {
            bucket: self.stack.bucket.clone(),
            key: key.to_owned(),
            revision: Revision::from_sequencer(seq).unwrap(),
            version_id: None,
            etag: Some("0123abcd".into()),
            size: Some(1000),
        }
    }

    /// Writes records exactly as the dispatcher and worker do.
    async fn labeled(&self, key: &str, labels: &[(&str, f32)]) {
        let image = self.image(key, "0100");
        let db = self.db();
        let now = Clock::now();
        assert_eq!(
            store::claim(&db, &self.stack.table, &image, "seed", now, 900)
                .await
                .unwrap(),
            WriteOutcome::Written
        );
        let labels: Vec<Label> = labels
            .iter()
            .map(|(name, confidence)| Label {
                name: (*name).to_owned(),
                confidence: *confidence,
                parents: vec!["Animal".into()],
                categories: vec![],
                instances: vec![],
            })
            .collect();
        let attempt = Attempt {
            job_id: Some("job-1".into()),
            owner: "job-1".into(),
            attempt: 1,
        };
        let taken = labeler_core::labeling::take(&db, &self.stack.table, &image, &attempt, now);
        assert_eq!(taken.await.unwrap(), WriteOutcome::Written);
        let outcome = record_labeled(
            &db,
            &self.stack.table,
            &image,
            &labeler_core::labeling::Detected::as_is(&labels, Some("3.0")),
            &attempt,
            now,
        )
        .await
        .unwrap();
        assert_eq!(outcome, WriteOutcome::Written);
    }

    async fn failed(&self, key: &str, reason: &str) {
        let image = self.image(key, "0100");
        let db = self.db();
        let now = Clock::now();
        store::claim(&db, &self.stack.table, &image, "seed", now, 900)
            .await
            .unwrap();
        let attempt = Attempt {
            job_id: Some("job-1".into()),
            owner: "job-1".into(),
            attempt: 2,
        };
        let taken = labeler_core::labeling::take(&db, &self.stack.table, &image, &attempt, now);
        assert_eq!(taken.await.unwrap(), WriteOutcome::Written);
        let outcome = record_failed(&db, &self.stack.table, &image, reason, &attempt, now)
            .await
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Written);
    }

    async fn skipped(&self, key: &str) {
        let image = self.image(key, "0100");
        store::record_skipped(
            &self.db(),
            &self.stack.table,
            &image,
            "not an image",
            Clock::now(),
        )
        .await
        .unwrap();
    }

    async fn upload_many(&self, keys: Vec<String>, body: &'static [u8]) {
        let s3 = s3_client(&self.sdk);
        let bucket = self.stack.bucket.clone();
        stream::iter(keys)
            .map(|key| {
                let (s3, bucket) = (s3.clone(), bucket.clone());
                async move {
                    s3.put_object()
                        .bucket(bucket)
                        .key(&key)
                        .body(body.to_vec().into())
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("upload {key}: {e}"));
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    }

    /// How many submitted jobs (children of array jobs counted through
    /// their parent's spec) hold each image key.
    async fn submitted_images(&self) -> BTreeMap<String, usize> {
        let batch = aws_sdk_batch::Client::new(&self.sdk);
        let ids = job_ids(&batch, &self.stack.job_queue).await.unwrap();
        let mut held: BTreeMap<String, usize> = BTreeMap::new();
        for chunk in ids.chunks(100) {
            let jobs = batch
                .describe_jobs()
                .set_jobs(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap()
                .jobs
                .unwrap_or_default();
            for job in jobs {
                let raw = &job.parameters.as_ref().unwrap()[JOB_PARAMETER];
                let spec = JobSpec::from_parameter(raw).unwrap();
                let chunks = match &spec.images {
                    ImageSource::Inline(chunks) => chunks.clone(),
                    ImageSource::Manifest(m) => {
                        let body = s3_client(&self.sdk)
                            .get_object()
                            .bucket(&m.bucket)
                            .key(&m.key)
                            .send()
                            .await
                            .unwrap()
                            .body
                            .collect()
                            .await
                            .unwrap()
                            .into_bytes();
                        Manifest::from_body(&body, m).unwrap().chunks
                    }
                };
                for image in chunks.iter().flatten() {
                    *held.entry(image.key.clone()).or_default() += 1;
                }
            }
        }
        held
    }

    async fn record(&self, key: &str) -> Option<labeler_cli::record::Record> {
        store::get_image(&self.db(), &self.stack.table, &self.stack.bucket, key)
            .await
            .unwrap()
            .as_ref()
            .and_then(labeler_cli::record::Record::from_item)
    }
}

fn stderr_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_find_status_and_export_read_what_the_pipeline_wrote() {
    let w = world().await;
    // 40 images carry "Dog", at 40.0, 41.5, ... 98.5; every third also "Cat".
    for i in 0..40 {
        let confidence = 40.0 + 1.5 * i as f32;
        let mut labels = vec![("Dog", confidence)];
        if i % 3 == 0 {
            labels.push(("Cat", 60.0));
        }
        w.labeled(&format!("pets/dog {i:02}.jpg"), &labels).await;
    }
    w.failed(
        "broken.jpg",
        "Rekognition InvalidImageFormatException: the image is not a valid JPEG or PNG",
    )
    .await;
    w.failed("throttled.png", "ThrottlingException: rate exceeded")
        .await;
    w.skipped("notes.txt").await;

    // get: one object with status, reason and labels.
    let uri = format!("s3://{}/pets/dog 39.jpg", w.stack.bucket);
    let one = w.json(&["get", &uri, "--json"]);
    assert_eq!(one["status"], "LABELED");
    assert!(one["reason"].is_null());
    assert_eq!(one["labels"][0]["name"], "Dog");
    assert!((one["labels"][0]["confidence"].as_f64().unwrap() - 98.5).abs() < 1e-3);
    assert_eq!(one["labels"][1]["name"], "Cat");
    assert_eq!(one["job_id"], "job-1");
    assert_eq!(one["label_model_version"], "3.0");
    let human = w.ok(&["get", &uri]);
    assert!(human.contains("status       LABELED"), "{human}");
    assert!(human.contains("Dog"), "{human}");
    let failed = w.json(&[
        "get",
        &format!("s3://{}/broken.jpg", w.stack.bucket),
        "--json",
    ]);
    assert_eq!(failed["status"], "FAILED");
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .contains("InvalidImageFormat"));

    // find: a Query, paged 7 items at a time, most confident first.
    let hits = w.json(&[
        "find",
        "dog",
        "--min-confidence",
        "70",
        "--limit",
        "100",
        "--page-size",
        "7",
        "--json",
    ]);
    let hits = hits.as_array().unwrap();
    let expected = (0..40).filter(|i| 40.0 + 1.5 * *i as f64 >= 70.0).count();
    assert_eq!(hits.len(), expected, "every hit across pages");
    let confidences: Vec<f64> = hits
        .iter()
        .map(|h| h["confidence"].as_f64().unwrap())
        .collect();
    assert!(
        confidences.windows(2).all(|p| p[0] >= p[1]),
        "{confidences:?}"
    );
    assert!(confidences.iter().all(|c| *c >= 70.0));
    assert_eq!(hits[0]["label"], "Dog");
    let limited = w.json(&["find", "Dog", "--limit", "9", "--page-size", "4", "--json"]);
    assert_eq!(limited.as_array().unwrap().len(), 9);
    let csv = w.ok(&["find", "cat", "--csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("uri,bucket,key,label,confidence"));
    assert_eq!(lines.count(), 14);
    let table = w.ok(&["find", "Cat", "--limit", "2"]);
    assert!(table.starts_with("CONFIDENCE  LABEL  IMAGE\n"), "{table}");
    let none = w.ok(&["find", "Unicorn"]);
    assert!(none.contains("no image carries"), "{none}");

    // status: counts by status and the failures with their reasons.
    let status = w.json(&["status", "--json", "--segments", "3"]);
    assert_eq!(status["total"], 43);
    assert_eq!(status["counts"]["LABELED"], 40);
    assert_eq!(status["counts"]["FAILED"], 2);
    assert_eq!(status["counts"]["SKIPPED"], 1);
    assert_eq!(status["counts"]["QUEUED"], 0);
    let reasons: Vec<&str> = status["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.iter().any(|r| r.contains("ThrottlingException")));
    let human = w.ok(&["status"]);
    assert!(human.contains("LABELED      40"), "{human}");
    assert!(human.contains("most recent failures"), "{human}");

    // export: every image record (not the label entries), across pages.
    let lines = w.ok(&["export", "--format", "json", "--page-size", "7"]);
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 43);
    assert!(records
        .iter()
        .all(|r| r["uri"].as_str().unwrap().starts_with("s3://")));
    let csv = w.ok(&["export", "--page-size", "5"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap().get(0), Some("uri"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 43);
    let dog = rows
        .iter()
        .find(|r| r.get(2) == Some("pets/dog 00.jpg"))
        .unwrap();
    assert_eq!(dog.get(5), Some("Cat:60.0;Dog:40.0"));
    let file = w.dir.join("export.jsonl");
    w.ok(&["export", "--format", "json", "-o", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 43);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_clear_line_and_a_nonzero_exit() {
    let w = world().await;
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["get", "photos/a.jpg"], 2, "not an S3 URI"),
        (vec!["get", "s3://Bad_Bucket/a.jpg"], 2, "lower-case"),
        (
            vec!["find", "dog", "--min-confidence", "120"],
            2,
            "between 0 and 100",
        ),
        (
            vec!["get", "s3://image-labeler-images"],
            1,
            "names a bucket",
        ),
        (
            vec!["get", "s3://image-labeler-images/missing.jpg"],
            1,
            "no record for",
        ),
        (
            vec!["backfill", "s3://no-such-bucket-here"],
            1,
            "does not exist",
        ),
    ];
    for (args, code, text) in cases {
        let out = w.run(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = stderr_line(&out);
        assert!(err.contains(text), "{args:?}: {err}");
    }

    let out = w
        .labeler(&["status"])
        .env("LABELER_TABLE", "no-such-table")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_line(&out);
    assert!(
        err.contains("table \"no-such-table\" does not exist"),
        "{err}"
    );

    let out = w
        .labeler(&["get", "s3://image-labeler-images/a.jpg"])
        .env_remove("LABELER_TABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("--table"));

    let out = w
        .labeler(&["status"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("no AWS credentials"));

    let out = w
        .labeler(&["backfill", "s3://image-labeler-images"])
        .env_remove("LABELER_JOB_QUEUE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("JOB_QUEUE"));
}

/// State file of a backfill of the whole bucket.
fn state_file(w: &World) -> PathBuf {
    labeler_cli::commands::backfill::default_state_file(&w.stack.table, &w.stack.bucket, "")
        .map(|p| {
            // The test's XDG_STATE_HOME, not this process's.
            w.dir
                .join("state/image-labeler")
                .join(p.file_name().unwrap())
        })
        .unwrap()
}

fn wait_for(path: &Path, what: impl Fn(&Value) -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(v) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            if what(&v) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_dispatches_thousands_once_and_resumes_after_interruptions() {
    let w = world().await;
    let images: Vec<String> = (0..2500)
        .map(|i| format!("archive/img-{i:05}.jpg"))
        .collect();
    w.upload_many(images.clone(), b"\xff\xd8\xff not really a jpeg")
        .await;
    w.upload_many(vec!["archive/readme.txt".into()], b"text")
        .await;
    w.upload_many(vec!["archive/empty.png".into()], b"").await;
    w.upload_many(vec!["labeler-manifests/old.json".into()], b"{}")
        .await;
    let bucket_uri = format!("s3://{}", w.stack.bucket);

    // A dry run predicts and writes nothing.
    let dry = w.json(&["backfill", &bucket_uri, "--dry-run", "--json"]);
    assert_eq!(dry["listed"], 2503);
    assert_eq!(dry["queued"], 2500);
    assert_eq!(dry["jobs"], 3, "1,000 images per submission: {dry}");
    assert_eq!(dry["skipped"], 2);
    assert_eq!(dry["ignored"], 1);
    assert!(w.submitted_images().await.is_empty());
    assert!(w.record("archive/img-00000.jpg").await.is_none());
    assert!(!state_file(&w).exists());

    // 1. Stopped by --limit: progress saved, the next run continues.
    let first = w.json(&[
        "backfill",
        &bucket_uri,
        "--limit",
        "700",
        "--batch",
        "300",
        "--json",
    ]);
    assert_eq!(first["complete"], false);
    assert_eq!(first["listed"], 700);
    assert!(state_file(&w).exists());

    // 2. Killed mid-way (SIGKILL: no chance to save anything more).
    let mut child = w
        .labeler(&["backfill", &bucket_uri, "--batch", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let progressed = wait_for(
        &state_file(&w),
        |s| s["totals"]["listed"].as_u64().unwrap_or(0) >= 1100,
        Duration::from_secs(120),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        progressed,
        "the second run made progress before it was killed"
    );

    // 3. Resumed to the end.
    let last = w.json(&["backfill", &bucket_uri, "--json"]);
    assert_eq!(last["complete"], true, "{last}");
    assert!(last["resumed_after"].is_string(), "{last}");
    assert!(
        !state_file(&w).exists(),
        "finished backfills leave no state"
    );

    // Every image was submitted exactly once and records its job.
    let held = w.submitted_images().await;
    assert_eq!(held.len(), 2500);
    let twice: Vec<_> = held.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "submitted more than once: {twice:?}");
    for key in [
        "archive/img-00000.jpg",
        "archive/img-01234.jpg",
        "archive/img-02499.jpg",
    ] {
        let r = w.record(key).await.unwrap();
        assert_eq!(r.status, "QUEUED");
        assert!(r.job_id.is_some(), "{key} records its job");
    }
    assert_eq!(
        w.record("archive/readme.txt").await.unwrap().status,
        "SKIPPED"
    );
    assert_eq!(
        w.record("archive/empty.png").await.unwrap().status,
        "SKIPPED"
    );
    assert!(w.record("labeler-manifests/old.json").await.is_none());

    // A new backfill finds everything recorded and submits nothing.
    let again = w.json(&["backfill", &bucket_uri, "--json"]);
    assert_eq!(again["queued"], 0);
    assert_eq!(again["already_recorded"], 2502);
    assert_eq!(w.submitted_images().await.len(), 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_requeues_only_matching_failures() {
    let w = world().await;
    w.failed("a.jpg", "ThrottlingException: rate exceeded")
        .await;
    w.failed("b.jpg", "throttled again").await;
    w.failed("c.jpg", "InvalidImageFormatException: not an image")
        .await;
    w.labeled("d.jpg", &[("Dog", 90.0)]).await;

    let dry = w.json(&[
        "retry",
        "--failed",
        "--reason-contains",
        "THROTTL",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["matched"], 2);
    assert_eq!(dry["queued"], 0);
    assert_eq!(w.record("a.jpg").await.unwrap().status, "FAILED");

    let done = w.json(&[
        "retry",
        "--failed",
        "--reason-contains",
        "throttl",
        "--json",
    ]);
    assert_eq!(done["matched"], 2);
    assert_eq!(done["queued"], 2);
    assert_eq!(done["jobs"], 1);
    for key in ["a.jpg", "b.jpg"] {
        let r = w.record(key).await.unwrap();
        assert_eq!(r.status, "QUEUED", "{key}");
        assert!(
            r.job_id.is_some_and(|j| j != "job-1"),
            "{key} is in a new job"
        );
    }
    assert_eq!(w.record("c.jpg").await.unwrap().status, "FAILED");
    assert_eq!(w.record("d.jpg").await.unwrap().status, "LABELED");
    let held = w.submitted_images().await;
    assert_eq!(held.keys().collect::<Vec<_>>(), ["a.jpg", "b.jpg"]);

    // Nothing left to retry with that reason; the human view says so.
    let out = w.ok(&["retry", "--failed", "--reason-contains", "throttl"]);
    assert!(out.contains("no FAILED image matches"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_takes_its_settings_from_the_deployed_dispatcher() {
    let w = world().await;
    // The real deploy path (cargo lambda deploy) into moto, with settings
    // that differ from the defaults: only .png, two images per array child.
    let role = format!(
        "arn:aws:iam::{}:role/image-labeler-dispatcher",
        labeler_local::moto::ACCOUNT
    );
    let env: Vec<(String, String)> = [
        ("JOB_QUEUE", w.stack.job_queue.as_str()),
        ("JOB_DEFINITION", w.stack.job_definition.as_str()),
        ("TABLE_NAME", w.stack.table.as_str()),
        ("IMAGE_SUFFIXES", ".png"),
        ("IMAGES_PER_JOB", "2"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    labeler_local::lambda::deploy(&w.moto.endpoint, &role, &env, &w.dir.join("deploy.log"))
        .expect("cargo lambda deploy into moto");
    w.upload_many(
        ["a.png", "b.png", "c.png", "d.jpg"]
            .map(String::from)
            .to_vec(),
        b"\x89PNG",
    )
    .await;

    let settings_from_function = |args: &[&str]| {
        w.labeler(args)
            .env_remove("LABELER_TABLE")
            .env_remove("LABELER_JOB_QUEUE")
            .env_remove("LABELER_JOB_DEFINITION")
            .output()
            .unwrap()
    };
    let bucket_uri = format!("s3://{}", w.stack.bucket);
    let out = settings_from_function(&["backfill", &bucket_uri, "--function", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("\"nope\" does not exist"));

    let out = settings_from_function(&[
        "backfill",
        &bucket_uri,
        "--function",
        "dispatcher",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["queued"], 3, "{summary}");
    assert_eq!(
        summary["skipped"], 1,
        "the function's suffixes apply: {summary}"
    );
    assert_eq!(summary["jobs"], 1);
    let reason = w.record("d.jpg").await.unwrap().reason.unwrap();
    assert!(reason.contains(".png"), "{reason}");
    let batch = aws_sdk_batch::Client::new(&w.sdk);
    let ids = job_ids(&batch, &w.stack.job_queue).await.unwrap();
    let job = batch
        .describe_jobs()
        .set_jobs(Some(ids))
        .send()
        .await
        .unwrap()
        .jobs
        .unwrap();
    assert_eq!(job.len(), 1);
    assert_eq!(
        job[0].array_properties.as_ref().and_then(|a| a.size),
        Some(2),
        "three images at two per child"
    );
}
