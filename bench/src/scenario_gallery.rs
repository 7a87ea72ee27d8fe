//! The gallery's first page: `labeler serve` (release build) on moto with a
//! table of labeled images, opened in headless Chromium; how long until the
//! first page's thumbnails have all loaded.
//!
//! Moto here, not the stand-ins: the gallery reads real Scan pages (image
//! records interleaved with their label entries) and loads real image bytes
//! through presigned URLs, which the stand-ins do not serve.
//!
//! Timed in the page with the Resource Timing API: from navigation start to
//! the end of the last thumbnail's response, so the polling interval of the
//! WebDriver client does not blur the figure.

use anyhow::Context;
use futures::{stream, StreamExt, TryStreamExt};
use integration_tests::browser::Browser;
use integration_tests::served::Served;
use integration_tests::{provision, s3_client, seed, Moto};
use labeler_core::schema::{BoundingBox, Instance, Label};
use labeler_core::{ImageRef, Revision};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The bar: the first page renders within a second.
pub const TARGET_MS: f64 = 1000.0;
/// Labels per seeded image (each one a label entry the Scan reads past).
pub const LABELS_PER_IMAGE: usize = 10;

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct GalleryRun {
    /// Labeled images in the table.
    pub images: usize,
    /// Thumbnails on the first page.
    pub page: usize,
    /// First navigation of a fresh browser, ms.
    pub cold_ms: f64,
    /// Later navigations, ms.
    pub warm_ms: Vec<f64>,
    /// Their median.
    pub warm_median_ms: f64,
    /// The `/api/images` answer within the warm navigations (median), ms.
    pub api_median_ms: f64,
    /// warm median / [`TARGET_MS`].
    pub ratio_to_target: f64,
    /// Bytes of each thumbnail's image.
    pub image_bytes: usize,
}

/// Seeds `images` labeled images and times the first page `reps` times.
pub async fn run(labeler: &Path, images: usize, reps: usize) -> anyhow::Result<GalleryRun> {
    anyhow::ensure!(
        labeler.exists(),
        "{} is missing: run `cargo build --release -p labeler-cli` (make bench does)",
        labeler.display()
    );
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let body = std::fs::read(integration_tests::repo_root().join("samples/forest.png"))?;
    let image_bytes = body.len();
    let s3 = s3_client(&sdk);
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let labels: Vec<Label> = (0..LABELS_PER_IMAGE)
        .map(|i| Label {
            name: format!("Label{i}"),
            confidence: 99.0 - i as f32,
            parents: vec!["Nature".into()],
            categories: vec!["Nature and Outdoors".into()],
            instances: vec![Instance {
                confidence: 95.0,
                bounding_box: BoundingBox {
                    left: 0.1,
                    top: 0.1,
                    width: 0.5,
                    height: 0.5,
                },
            }],
        })
        .collect();
    let seeded = Instant::now();
    stream::iter(0..images)
        .map(|i| {
            let (s3, db, body, labels) = (&s3, &db, &body, &labels);
            let (bucket, table) = (&stack.bucket, &stack.table);
            async move {
                let key = format!("photos/{i:05}.png");
                s3.put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(body.clone().into())
                    .send()
                    .await
                    .with_context(|| format!("upload {key}"))?;
                let image = ImageRef {
                    bucket: bucket.clone(),
                    key,
                    revision: Revision::from_sequencer("0100").expect("hex"),
                    version_id: None,
                    etag: None,
                    size: Some(body.len() as u64),
                };
                seed::labeled(db, table, &image, labels).await
            }
        })
        // moto's server answers concurrent transactions with errors beyond a
        // few at once: seeding is set-up, not the measurement.
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!(
        "bench: gallery table seeded with {images} labeled images in {:.0} s",
        seeded.elapsed().as_secs_f64()
    );

    let served = Served::start(labeler, &moto, &stack.table)?;
    measure(&served.url, reps, images, image_bytes).await
}

async fn measure(
    url: &str,
    reps: usize,
    images: usize,
    image_bytes: usize,
) -> anyhow::Result<GalleryRun> {
    let url = format!("{url}/");
    let browser = Browser::start(1280, 900).await?;
    let mut samples = Vec::new();
    for _ in 0..=reps {
        browser.goto(&url).await?;
        let timing = browser
            .wait_for(
                "50 loaded thumbnails",
                "const imgs = [...document.querySelectorAll('#grid .card img')];
                 if (imgs.length < 50 || !imgs.every(i => i.complete && i.naturalWidth > 0)) return null;
                 const entries = performance.getEntriesByType('resource');
                 const thumbs = entries.filter(e => e.initiatorType === 'img');
                 const api = entries.find(e => e.name.includes('/api/images'));
                 return { page: Math.max(...thumbs.map(e => e.responseEnd)),
                          api: api ? api.responseEnd - api.startTime : -1,
                          count: imgs.length };",
            )
            .await?;
        let page = timing["page"].as_f64().unwrap_or(f64::NAN);
        let api = timing["api"].as_f64().unwrap_or(f64::NAN);
        let count = timing["count"].as_u64().unwrap_or(0) as usize;
        samples.push((page, api, count));
    }
    let (cold, warm) = samples.split_first().expect("at least one navigation");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let warm_ms: Vec<f64> = warm.iter().map(|s| s.0).collect();
    let warm_median_ms = median(warm_ms.clone());
    Ok(GalleryRun {
        images,
        page: cold.2,
        cold_ms: cold.0,
        api_median_ms: median(warm.iter().map(|s| s.1).collect()),
        ratio_to_target: warm_median_ms / TARGET_MS,
        warm_median_ms,
        warm_ms,
        image_bytes,
    })
}
