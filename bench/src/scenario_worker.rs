//! The worker binary as Batch runs it (`worker --job <spec>`), against a
//! stand-in whose DetectLabels answers in a fixed time: throughput against
//! `min(C / latency, rate limit)` and the process's peak memory.

use crate::events::{self, BUCKET};
use crate::process::{repo_root, run_measured};
use crate::scenario_dispatcher::TABLE;
use crate::standin::{op, Settings, StandIn};
use anyhow::{ensure, Context};
use labeler_core::job::{ImageSource, LabelOptions, Manifest, ManifestRef, CONTRACT_VERSION};
use labeler_core::schema::{self, attr};
use labeler_core::{ImageRef, JobSpec, Revision};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One worker run.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRun {
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--rate-limit`.
    pub rate_limit: Option<f64>,
    /// Images in the chunk.
    pub images: usize,
    /// Process wall time, seconds (start, manifest, labeling, exit).
    pub wall_s: f64,
    /// Images per second.
    pub images_per_s: f64,
    /// `min(C / latency, rate limit)`.
    pub ideal_per_s: f64,
    /// `images_per_s / ideal_per_s`.
    pub ratio: f64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: u64,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// DetectLabels calls (accepted + throttled).
    pub detect_labels_calls: u64,
    /// DetectLabels calls the stand-in throttled.
    pub detect_labels_throttled: u64,
    /// Labeling transactions written.
    pub transactions: u64,
    /// DynamoDB read units per image.
    pub read_units_per_image: f64,
    /// DynamoDB write units per image.
    pub write_units_per_image: f64,
}

/// A worker case: concurrency and optional rate limit.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--rate-limit`.
    pub rate_limit: Option<f64>,
}

/// The images of the chunk, as the dispatcher would have queued them.
pub fn chunk(run: &str, images: usize) -> Vec<ImageRef> {
    (0..images)
        .map(|i| ImageRef {
            bucket: BUCKET.to_owned(),
            key: events::key(run, i),
            revision: Revision::from_sequencer(&events::sequencer(i)).expect("valid sequencer"),
            version_id: None,
            etag: None,
            size: Some(183_520),
        })
        .collect()
}

/// A real 320×200 JPEG: the worker reads the first 64 KiB of every image to
/// decide its format, and hands this one to Rekognition as it is. Every
/// image of the benchmark's chunks is a copy of it.
pub const IMAGE: &[u8] = include_bytes!("../../samples/sunset.jpg");

/// Puts the objects, the QUEUED records and the manifest of `chunks` (one
/// per array child) into the stand-in and returns the job parameter that
/// points at them.
pub fn prepare(standin: &StandIn, run: &str, chunks: &[Vec<ImageRef>]) -> String {
    for image in chunks.iter().flatten() {
        queue(standin, image, IMAGE.to_vec());
    }
    job_parameter(standin, run, chunks)
}

/// Like [`prepare`] for one chunk whose images each have their own bytes.
pub fn prepare_objects(standin: &StandIn, run: &str, images: &[(ImageRef, Vec<u8>)]) -> String {
    for (image, body) in images {
        queue(standin, image, body.clone());
    }
    let chunk: Vec<ImageRef> = images.iter().map(|(image, _)| image.clone()).collect();
    job_parameter(standin, run, &[chunk])
}

/// Puts `image`'s object (`body`) and its QUEUED record into the stand-in.
fn queue(standin: &StandIn, image: &ImageRef, body: Vec<u8>) {
    standin.put_object(&image.bucket, &image.key, body);
    let s = |v: &str| json!({ "S": v });
    let item: serde_json::Map<String, serde_json::Value> = [
        (schema::PK, s(&schema::image_pk(&image.bucket, &image.key))),
        (schema::SK, s(schema::IMAGE_SK)),
        (attr::BUCKET, s(&image.bucket)),
        (attr::KEY, s(&image.key)),
        (attr::REVISION, s(image.revision.as_str())),
        (attr::STATUS, s("QUEUED")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    standin.put_item(TABLE, serde_json::Value::Object(item));
}

/// Puts the manifest of `chunks` into the stand-in and returns the job
/// parameter that points at it.
fn job_parameter(standin: &StandIn, run: &str, chunks: &[Vec<ImageRef>]) -> String {
    let (body, sha256) = Manifest {
        v: CONTRACT_VERSION,
        chunks: chunks.to_vec(),
    }
    .to_body();
    let key = format!("labeler-manifests/bench-{run}.json");
    standin.put_object(BUCKET, &key, body);
    JobSpec {
        v: CONTRACT_VERSION,
        table: TABLE.to_owned(),
        options: LabelOptions::default(),
        images: ImageSource::Manifest(ManifestRef {
            bucket: BUCKET.to_owned(),
            key,
            sha256,
            chunks: chunks.len() as u32,
            images: chunks.iter().map(Vec::len).sum::<usize>() as u32,
        }),
    }
    .to_parameter()
}

/// `worker --job <parameter> --concurrency <n>` against `standin`, its log
/// to `log`, with the child environment every worker run gets.
pub fn command(
    worker: &Path,
    parameter: &str,
    concurrency: usize,
    standin: &StandIn,
    log: std::fs::File,
) -> Command {
    let scratch = repo_root().join("target/bench");
    let mut cmd = Command::new(worker);
    cmd.arg("--job")
        .arg(parameter)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--expect-table")
        .arg(TABLE);
    for name in crate::clients::CHILD_ENV_REMOVE {
        cmd.env_remove(name);
    }
    cmd.envs(crate::clients::child_env(&standin.endpoint(), &scratch))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}

/// Runs `worker` once per case on a fresh `images`-image chunk, against a
/// stand-in whose DetectLabels answers in `detect_latency` (other calls at
/// once).
pub async fn runs(
    worker: &Path,
    images: usize,
    cases: &[Case],
    detect_latency: Duration,
) -> anyhow::Result<Vec<WorkerRun>> {
    let scratch = repo_root().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    let mut out = Vec::new();
    for case in cases {
        let standin = StandIn::start(Settings {
            latency_per_op: [(op::DETECT_LABELS, detect_latency)].into_iter().collect(),
            ..Settings::default()
        })
        .await?;
        let rate = case.rate_limit.map_or(String::new(), |r| format!("-r{r}"));
        let run = format!("worker-c{}{rate}", case.concurrency);
        let parameter = prepare(&standin, &run, &[chunk(&run, images)]);
        let log = std::fs::File::create(scratch.join(format!("{run}.log")))?;

        let mut cmd = command(worker, &parameter, case.concurrency, &standin, log);
        if let Some(r) = case.rate_limit {
            cmd.arg("--rate-limit").arg(r.to_string());
        }
        let done = run_measured(cmd)
            .await
            .with_context(|| format!("run {}", worker.display()))?;

        let stats = standin.stats();
        let get = |name: &str| stats.get(name).cloned().unwrap_or_default();
        let detect = get(op::DETECT_LABELS);
        let transact = get(op::TRANSACT_WRITE_ITEMS);
        ensure!(
            done.code == Some(0) && transact.calls == images as u64,
            "worker run {run} exited with {:?} after {} of {images} labelings; see target/bench/{run}.log",
            done.code,
            transact.calls
        );
        let wall = done.wall.as_secs_f64();
        let per_s = images as f64 / wall;
        let by_latency = case.concurrency as f64 / detect_latency.as_secs_f64();
        let ideal = case.rate_limit.map_or(by_latency, |r| r.min(by_latency));
        let dynamodb: Vec<_> = stats
            .iter()
            .filter(|(k, _)| k.starts_with("DynamoDB."))
            .map(|(_, v)| v)
            .collect();
        out.push(WorkerRun {
            concurrency: case.concurrency,
            rate_limit: case.rate_limit,
            images,
            wall_s: wall,
            images_per_s: per_s,
            ideal_per_s: ideal,
            ratio: per_s / ideal,
            peak_rss_bytes: done.peak_rss_bytes,
            exit_code: done.code,
            detect_labels_calls: detect.calls,
            detect_labels_throttled: detect.throttled,
            transactions: transact.calls,
            read_units_per_image: dynamodb.iter().map(|s| s.read_units).sum::<f64>()
                / images as f64,
            write_units_per_image: dynamodb.iter().map(|s| s.write_units).sum::<f64>()
                / images as f64,
        });
    }
    Ok(out)
}
