//! End to end on the local stack: uploads to moto's S3, notifications through
//! SQS to the real dispatcher under `cargo lambda watch`, jobs in moto's
//! Batch run by the local executor with the real worker binary, records in
//! moto's DynamoDB. Each test starts its own stack.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{drain_as_lambda_event, repo_root, s3_client};
use labeler_core::schema::{attr, label_from_attr, Label};
use labeler_core::Status;
use labeler_local::container::{Image, Worker, DEFAULT_IMAGE};
use labeler_local::executor::job_ids;
use labeler_local::stack::{Options, Stack};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use worker::backend::Kind;

async fn stack(tweak: impl FnOnce(&mut Options)) -> Stack {
    let state = repo_root().join(format!(
        "target/e2e/{}-{}",
        std::process::id(),
        integration_tests::free_port().unwrap()
    ));
    let mut opts = Options {
        state_dir: state,
        deploy: false,
        ..Options::default()
    };
    tweak(&mut opts);
    Stack::up(&opts)
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e:#}"))
}

async fn upload(stack: &Stack, key: &str, body: &[u8]) {
    s3_client(&stack.sdk)
        .put_object()
        .bucket(&stack.provisioned.names.bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .expect("upload");
}

/// A real picture from `samples/`: the worker reads each image's first bytes
/// and fails what is not one.
fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("samples").join(name)).unwrap()
}

async fn record(stack: &Stack, key: &str) -> Option<HashMap<String, AttributeValue>> {
    let names = &stack.provisioned.names;
    labeler_core::store::get_image(
        &aws_sdk_dynamodb::Client::new(&stack.sdk),
        &names.table,
        &names.bucket,
        key,
    )
    .await
    .unwrap()
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn status(item: &HashMap<String, AttributeValue>) -> Option<Status> {
    Status::parse(&text(item, attr::STATUS))
}

/// Waits until every key has a terminal record; returns them.
async fn terminal(
    stack: &Stack,
    keys: &[String],
    within: Duration,
) -> Vec<HashMap<String, AttributeValue>> {
    let deadline = Instant::now() + within;
    loop {
        let mut records = Vec::new();
        for key in keys {
            match record(stack, key).await {
                Some(r) if status(&r).is_some_and(Status::is_terminal) => records.push(r),
                _ => break,
            }
        }
        if records.len() == keys.len() {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} images reached a terminal record",
            records.len(),
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn submitted_jobs(stack: &Stack) -> Vec<String> {
    job_ids(
        &aws_sdk_batch::Client::new(&stack.sdk),
        &stack.provisioned.names.job_queue,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_keys_are_labeled_under_their_exact_names_and_bad_input_is_skipped() {
    // The Rekognition backend (moto's DetectLabels), deployed with cargo lambda.
    let stack = stack(|o| {
        o.deploy = true;
        o.backend = Kind::Rekognition;
    })
    .await;
    let png = std::fs::read(repo_root().join("samples/forest.png")).unwrap();
    let images = [
        "a b.png",
        "1+1=2.png",
        "100% real.png",
        "фото/日本 café.PNG",
        "x=y&z?.png",
    ];
    for key in images {
        upload(&stack, key, &png).await;
    }
    upload(&stack, "notes/readme.txt", b"text").await;
    upload(&stack, "empty.jpg", b"").await;
    let mut keys: Vec<String> = images.iter().map(|k| k.to_string()).collect();
    keys.extend(["notes/readme.txt".into(), "empty.jpg".into()]);

    let records = terminal(&stack, &keys, Duration::from_secs(240)).await;

    for (key, r) in keys.iter().zip(&records) {
        assert_eq!(&text(r, attr::KEY), key);
        let expected = if key.ends_with(".txt") || key == "empty.jpg" {
            Status::Skipped
        } else {
            Status::Labeled
        };
        assert_eq!(status(r), Some(expected), "{key}: {r:?}");
        if expected == Status::Labeled {
            assert!(
                !r[attr::LABELS].as_l().unwrap().is_empty(),
                "{key} has labels"
            );
        } else {
            assert!(!text(r, attr::REASON).is_empty(), "{key} has a reason");
        }
    }
    // Metrics: the dispatcher's and the worker's embedded-metric-format
    // lines in the stack's logs, each checked against the specification.
    let labeled = metric_total(&stack, "worker.log", "ImagesLabeled");
    assert_eq!(
        labeled,
        images.len() as f64,
        "worker metrics count every label"
    );
    let queued = metric_total(&stack, "dispatcher.log", "ImagesQueued");
    assert_eq!(
        queued,
        images.len() as f64,
        "dispatcher metrics count every queued image"
    );
    let skipped = metric_total(&stack, "dispatcher.log", "ImagesSkipped");
    assert_eq!(skipped, 2.0);
    stack.down().await;
}

/// `make demo`'s photographs, through the whole local stack on its default
/// backend (the worker's own model): each record's labels say what is in
/// the picture, with the hierarchy's parents, and the model is named.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_photos_are_labeled_with_what_is_in_them() {
    let stack = stack(|_| {}).await;
    labeler_local::demo::upload(&stack).await.unwrap();
    let keys: Vec<String> = labeler_local::demo::UPLOADS
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    let records = terminal(&stack, &keys, Duration::from_secs(240)).await;
    let labels = |key: &str| -> Vec<Label> {
        let r = &records[keys.iter().position(|k| k == key).unwrap()];
        assert_eq!(status(r), Some(Status::Labeled), "{key}: {r:?}");
        assert!(
            text(r, attr::LABEL_MODEL_VERSION).starts_with("local:efficientnet-lite0@"),
            "{key}: {r:?}"
        );
        r[attr::LABELS]
            .as_l()
            .unwrap()
            .iter()
            .filter_map(label_from_attr)
            .collect()
    };
    let named = |labels: &[Label], name: &str| labels.iter().find(|l| l.name == name).cloned();

    let cat = labels("my cat.png");
    let label = named(&cat, "Cat").unwrap_or_else(|| panic!("no Cat: {cat:?}"));
    assert!(label.confidence >= 80.0, "{label:?}");
    assert!(label.parents.iter().any(|p| p == "Animal"), "{label:?}");
    assert!(named(&cat, "Food").is_none(), "{cat:?}");

    let coffee = labels("café/λ+1 espresso.jpg");
    assert!(named(&coffee, "Espresso").is_some(), "{coffee:?}");
    assert!(named(&coffee, "Beverage").is_some(), "{coffee:?}");
    assert!(named(&coffee, "Animal").is_none(), "{coffee:?}");

    let palace = labels("trips/summer palace.jpg");
    assert!(
        named(&palace, "Building").is_some() || named(&palace, "Architecture").is_some(),
        "{palace:?}"
    );
    let rocket = labels("trips/launch pad.jpg");
    assert!(
        named(&rocket, "Animal").is_none() && named(&rocket, "Food").is_none(),
        "{rocket:?}"
    );
    for (key, reason) in [("notes/readme.txt", "not an image"), ("empty.jpg", "empty")] {
        let r = &records[keys.iter().position(|k| k == key).unwrap()];
        assert_eq!(status(r), Some(Status::Skipped), "{key}: {r:?}");
        assert!(text(r, attr::REASON).contains(reason), "{key}: {r:?}");
    }
    stack.down().await;
}

/// The sum of `metric` over the EMF lines of one of the stack's logs; every
/// EMF line found must pass [`labeler_core::emf::check`].
fn metric_total(stack: &Stack, log: &str, metric: &str) -> f64 {
    let path = stack.state_dir.join(log);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut total = 0.0;
    let mut lines = 0;
    for line in text.lines().filter(|l| l.contains("\"_aws\"")) {
        let json = &line[line.find('{').expect("an EMF line is a JSON object")..];
        let names = labeler_core::emf::check(json).unwrap_or_else(|e| panic!("{log}: {e}: {json}"));
        lines += 1;
        if names.iter().any(|n| n == metric) {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            if v.get("ReasonClass").is_none() {
                total += v[metric].as_f64().expect("a single value");
            }
        }
    }
    assert!(lines > 0, "no EMF line in {}", path.display());
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_upload_event_delivered_twice_yields_one_job_and_one_record() {
    let stack = stack(|o| o.deliver_events = false).await;
    upload(&stack, "twice.png", &sample("forest.png")).await;
    let stack_names = integration_tests::Stack::from(&stack);
    let event = drain_as_lambda_event(&stack.sdk, &stack_names).await;

    let first = stack.invoker.invoke(event.clone()).await.unwrap();
    terminal(&stack, &["twice.png".into()], Duration::from_secs(120)).await;
    let second = stack.invoker.invoke(event).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(first["batchItemFailures"], serde_json::json!([]));
    assert_eq!(second["batchItemFailures"], serde_json::json!([]));
    assert_eq!(submitted_jobs(&stack).await.len(), 1);
    let r = record(&stack, "twice.png").await.unwrap();
    assert_eq!(status(&r), Some(Status::Labeled));
    assert_eq!(
        r[attr::ATTEMPTS].as_n().unwrap(),
        "1",
        "labeled exactly once"
    );
    stack.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_processed_out_of_order_keep_the_newer_labels() {
    let stack = stack(|o| o.deliver_events = false).await;
    let names = integration_tests::Stack::from(&stack);
    upload(&stack, "same.png", &sample("forest.png")).await;
    let older = drain_as_lambda_event(&stack.sdk, &names).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    upload(&stack, "same.png", &sample("beach day.png")).await;
    let newer = drain_as_lambda_event(&stack.sdk, &names).await;

    let a = stack.invoker.invoke(newer).await.unwrap();
    let b = stack.invoker.invoke(older).await.unwrap();
    let r = terminal(&stack, &["same.png".into()], Duration::from_secs(120)).await;

    assert_eq!(a["batchItemFailures"], serde_json::json!([]));
    assert_eq!(b["batchItemFailures"], serde_json::json!([]));
    assert_eq!(
        submitted_jobs(&stack).await.len(),
        1,
        "the older upload submits nothing"
    );
    let newer_revision = text(&r[0], attr::REVISION);
    assert_eq!(status(&r[0]), Some(Status::Labeled));
    let etag = text(&r[0], attr::ETAG);
    let head = s3_client(&stack.sdk)
        .head_object()
        .bucket(&names.bucket)
        .key("same.png")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.e_tag().unwrap().trim_matches('"'),
        etag.trim_matches('"'),
        "the record describes the newer upload ({newer_revision})"
    );
    stack.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_leaves_a_tombstone_and_no_labels() {
    let stack = stack(|_| {}).await;
    upload(&stack, "gone.png", &sample("forest.png")).await;
    terminal(&stack, &["gone.png".into()], Duration::from_secs(120)).await;

    s3_client(&stack.sdk)
        .delete_object()
        .bucket(&stack.provisioned.names.bucket)
        .key("gone.png")
        .send()
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = record(&stack, "gone.png").await;
        if r.as_ref().and_then(status) == Some(Status::Deleted) {
            let r = r.unwrap();
            assert!(
                !r.contains_key(attr::LABELS),
                "a tombstone carries no labels"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delete never reached the record"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_worker_is_killed_ends_with_its_images_failed_with_a_reason() {
    let crash = repo_root().join("target/e2e/crashing-worker.sh");
    std::fs::create_dir_all(crash.parent().unwrap()).unwrap();
    std::fs::write(
        &crash,
        "#!/bin/sh\n# Stands in for a container killed mid-run (OOM, SIGKILL).\nkill -9 $$\n",
    )
    .unwrap();
    std::fs::set_permissions(&crash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let stack = stack(|o| o.worker = Worker::Binary(crash.clone())).await;
    upload(&stack, "doomed/one.png", &sample("forest.png")).await;
    upload(&stack, "doomed/two.png", &sample("forest.png")).await;

    let records = terminal(
        &stack,
        &["doomed/one.png".into(), "doomed/two.png".into()],
        Duration::from_secs(120),
    )
    .await;

    for r in records {
        assert_eq!(status(&r), Some(Status::Failed));
        let reason = text(&r, attr::REASON);
        assert!(
            reason.contains("failed") && reason.contains("137"),
            "{reason}"
        );
    }
    stack.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_200_uploads_all_reach_a_terminal_state() {
    let stack = stack(|_| {}).await;
    let png = std::fs::read(repo_root().join("samples/beach day.png")).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("burst/{i:03}.png")).collect();
    for key in &keys {
        upload(&stack, key, &png).await;
    }

    let records = terminal(&stack, &keys, Duration::from_secs(420)).await;

    assert!(records.iter().all(|r| status(r) == Some(Status::Labeled)));
    let jobs = submitted_jobs(&stack).await.len();
    assert!(
        jobs < 200 / 5,
        "images are packed into few jobs ({jobs} jobs)"
    );
    stack.down().await;
}

/// `labeler-local up --aws-endpoint URL`: the stack runs against an endpoint
/// someone else started (here a second moto; in practice LocalStack or a
/// fault-injecting proxy) and leaves it running when it stops.
#[tokio::test(flavor = "multi_thread")]
async fn the_stack_runs_against_an_endpoint_that_is_already_running() {
    let outside = integration_tests::Moto::start_for_tests();
    let endpoint = outside.endpoint.clone();
    let stack = stack(|o| o.aws_endpoint = Some(endpoint.clone())).await;
    upload(&stack, "attached.png", &sample("forest.png")).await;

    let records = terminal(&stack, &["attached.png".into()], Duration::from_secs(120)).await;

    assert_eq!(status(&records[0]), Some(Status::Labeled));
    stack.down().await;
    let still_up = labeler_local::moto::http(outside.port, "GET", "/moto-api/data.json", "");
    assert!(
        still_up.is_ok(),
        "the endpoint it was given outlives the stack"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_copied_to_a_new_key_is_labeled_with_the_labels_of_its_original() {
    let stack = stack(|_| {}).await;
    let png = std::fs::read(repo_root().join("samples/forest.png")).unwrap();
    upload(&stack, "photos/forest.png", &png).await;
    let original = terminal(
        &stack,
        &["photos/forest.png".into()],
        Duration::from_secs(120),
    )
    .await
    .remove(0);
    assert_eq!(status(&original), Some(Status::Labeled));
    assert!(!original.contains_key(attr::REUSED_FROM));

    // Moving a photo in S3 is a CopyObject (then a delete): same bytes, new key.
    let bucket = &stack.provisioned.names.bucket;
    s3_client(&stack.sdk)
        .copy_object()
        .bucket(bucket)
        .key("albums/2026/forest copy.png")
        .copy_source(format!("{bucket}/photos/forest.png"))
        .send()
        .await
        .unwrap();
    let copy = terminal(
        &stack,
        &["albums/2026/forest copy.png".into()],
        Duration::from_secs(120),
    )
    .await
    .remove(0);

    assert_eq!(status(&copy), Some(Status::Labeled), "{copy:?}");
    assert_eq!(
        text(&copy, attr::REUSED_FROM),
        format!("s3://{bucket}/photos/forest.png"),
        "labeled from the content entry, without a DetectLabels call"
    );
    assert_eq!(copy[attr::LABELS], original[attr::LABELS]);
    stack.down().await;
}

/// A file of the worker's test fixtures (`worker/tests/fixtures/`).
fn worker_fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("worker/tests/fixtures").join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_of_mixed_formats_is_labeled_and_a_file_whose_suffix_lies_fails_plainly() {
    let stack = stack(|_| {}).await;
    let photo = std::fs::read(repo_root().join("samples/sunset.jpg")).unwrap();
    // WebP, GIF, BMP and TIFF of a real picture, a JPEG named .png, a JPEG
    // over Rekognition's 15 MB, a text file named .gif, and a HEIC and an
    // AVIF (320×200, from the worker's test fixtures).
    let picture = image::load_from_memory(&photo).unwrap();
    let encode = |format: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        picture.to_rgb8().write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    let mut oversized = photo[..2].to_vec();
    for _ in 0..256 {
        oversized.extend_from_slice(&[0xFF, 0xFE, 0xFF, 0xFF]);
        oversized.extend_from_slice(&vec![b'x'; 65_533]);
    }
    oversized.extend_from_slice(&photo[2..]);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("mixed/web.webp", encode(image::ImageFormat::WebP)),
        ("mixed/anim.gif", encode(image::ImageFormat::Gif)),
        ("mixed/scan.bmp", encode(image::ImageFormat::Bmp)),
        ("mixed/scan.tiff", encode(image::ImageFormat::Tiff)),
        ("mixed/really a jpeg.png", photo.clone()),
        ("mixed/camera.jpg", oversized),
        ("mixed/notes.gif", b"not a picture at all".to_vec()),
        // As phones name them; decoded with libheif.
        ("mixed/IMG_0001.HEIC", worker_fixture("halves.heic")),
        ("mixed/web.avif", worker_fixture("halves.avif")),
    ];
    for (key, body) in &files {
        upload(&stack, key, body).await;
    }
    let keys: Vec<String> = files.iter().map(|(k, _)| k.to_string()).collect();
    let records = terminal(&stack, &keys, Duration::from_secs(240)).await;

    for ((key, _), r) in files.iter().zip(&records) {
        if *key == "mixed/notes.gif" {
            assert_eq!(status(r), Some(Status::Failed), "{key}: {r:?}");
            assert!(text(r, attr::REASON).starts_with("not an image"), "{r:?}");
            continue;
        }
        assert_eq!(status(r), Some(Status::Labeled), "{key}: {r:?}");
        let conversion = text(r, attr::CONVERSION);
        if *key == "mixed/really a jpeg.png" {
            assert!(
                conversion.is_empty(),
                "read by Rekognition as it is: {conversion}"
            );
        } else {
            assert!(conversion.starts_with("converted from "), "{key}: {r:?}");
            assert!(conversion.contains("320×200"), "{key}: {conversion}");
            let from = match *key {
                "mixed/IMG_0001.HEIC" => "HEIC/HEIF",
                "mixed/web.avif" => "AVIF",
                _ => "",
            };
            assert!(
                conversion.starts_with(&format!("converted from {from}")),
                "{key}: {conversion}"
            );
        }
    }
    stack.down().await;
}

/// What ships: the worker's arm64 container image (`make image`), started
/// by podman as Batch starts it (its entrypoint and user, the job
/// definition's command), every instruction emulated by qemu, its glibc and
/// libheif from the Debian packages in the image.
#[tokio::test(flavor = "multi_thread")]
async fn the_arm64_worker_image_labels_a_jpeg_and_a_heic_under_qemu() {
    let image = Image::load(DEFAULT_IMAGE)
        .unwrap_or_else(|e| panic!("the arm64 worker image is needed (make image): {e:#}"));
    let arch = std::process::Command::new("podman")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Architecture}}",
            &image.id,
        ])
        .output()
        .expect("podman image inspect");
    assert_eq!(String::from_utf8_lossy(&arch.stdout).trim(), "arm64");
    let stack = stack(|o| o.worker = Worker::Image(image)).await;
    let files = [
        ("arm64/sunset.jpg", sample("sunset.jpg")),
        ("arm64/IMG_0002.HEIC", worker_fixture("halves.heic")),
    ];
    for (key, body) in &files {
        upload(&stack, key, body).await;
    }
    let keys: Vec<String> = files.iter().map(|(k, _)| k.to_string()).collect();

    let records = terminal(&stack, &keys, Duration::from_secs(300)).await;

    for (key, r) in keys.iter().zip(&records) {
        assert_eq!(status(r), Some(Status::Labeled), "{key}: {r:?}");
        assert!(r.contains_key(attr::LABELS), "{key}: {r:?}");
    }
    let heic = text(&records[1], attr::CONVERSION);
    assert!(heic.starts_with("converted from HEIC/HEIF"), "{heic}");
    stack.down().await;
}
