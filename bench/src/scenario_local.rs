//! The worker's own model against Rekognition (`bench --local`): the
//! release worker binary with `--backend rekognition`, `local` and
//! `cascade` on the same chunks, against a stand-in whose DetectLabels
//! answers in a fixed time and whose S3 serves the images' real bytes.
//!
//! Two corpora:
//!
//! * **bench**: the chunk every worker run of the benchmark labels
//!   ([`crate::scenario_worker::chunk`]): N copies of `samples/sunset.jpg`,
//!   a synthetic 320×200 gradient, so its cascade share is one image's
//!   verdict N times;
//! * **demo**: [`DEMO`]: the four photos `make demo` uploads, whose content
//!   is known, and the three synthetic samples of earlier demos.
//!
//! Every run sets `--reuse-labels false` (the bench corpus is one image
//! N times: reuse would classify it once) and `--concurrency` equal to
//! `--local-concurrency`, so `LocalLatency` (which includes waiting for an
//! inference slot) is the classification itself: decode, resize, run.
//! The model's load time is [`worker::model::LocalModel::load`] (read,
//! SHA-256 check, tract's optimisation) timed in this process.

use crate::cost::LocalInputs;
use crate::events::{self, BUCKET};
use crate::process::{repo_root, run_measured};
use crate::scenario_dispatcher::TABLE;
use crate::scenario_worker::{chunk, command, prepare_objects, IMAGE};
use crate::standin::{op, Settings, StandIn};
use anyhow::{ensure, Context};
use labeler_core::schema::{self, attr};
use labeler_core::{ImageRef, Revision};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use worker::backend::Kind as Backend;
use worker::model::LocalModel;

/// Where `make model` writes the local model, relative to the repository.
pub const MODEL: &str = "target/model/efficientnet-lite0.onnx";

/// The demo corpus, under `samples/`: the photos first.
pub const DEMO: [&str; 7] = [
    "photos/chelsea.png",
    "photos/coffee.jpg",
    "photos/rocket.jpg",
    "photos/china.jpg",
    "beach day.png",
    "sunset.jpg",
    "forest.png",
];

/// The worker's `--cascade-below` default, which the runs keep.
pub const CASCADE_BELOW: f64 = 60.0;

/// `--backend`'s value, for the results' JSON.
fn backend_name<S: serde::Serializer>(backend: &Backend, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(backend.as_str())
}

/// Which images a run labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Corpus {
    /// The benchmark's worker chunk: copies of `samples/sunset.jpg`.
    Bench,
    /// The seven images of [`DEMO`].
    Demo,
}

impl Corpus {
    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Corpus::Bench => "bench",
            Corpus::Demo => "demo",
        }
    }
}

/// One worker run: backend, corpus and concurrency (`--concurrency` and
/// `--local-concurrency` alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalCase {
    /// `--backend`.
    pub backend: Backend,
    /// The images.
    pub corpus: Corpus,
    /// `--concurrency` and `--local-concurrency`.
    pub concurrency: usize,
}

/// What the scenario runs with.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The release worker binary.
    pub worker: PathBuf,
    /// The model file (`make model`).
    pub model: PathBuf,
    /// Images of the bench corpus.
    pub bench_images: usize,
    /// Stand-in DetectLabels latency.
    pub detect_latency: Duration,
    /// Times the model is loaded in process.
    pub load_reps: usize,
}

impl Plan {
    /// The release worker and `make model`'s file under `root`.
    pub fn new(root: &Path, bench_images: usize, detect_latency: Duration) -> Self {
        Self {
            worker: root.join("target/release/worker"),
            model: root.join(MODEL),
            bench_images,
            detect_latency,
            load_reps: 3,
        }
    }
}

/// How one image of a demo run ended up labeled.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// File under `samples/`.
    pub name: String,
    /// The record's `label_model_version` (`local:…` or Rekognition's).
    pub model_version: String,
    /// Its three most confident labels, with confidence in percent.
    pub top_labels: Vec<(String, f64)>,
}

/// The local model's most probable class of a demo image: what the
/// cascade compares with `--cascade-below`.
#[derive(Debug, Clone, Serialize)]
pub struct TopClass {
    /// File under `samples/`.
    pub name: String,
    /// The ImageNet class, as the vocabulary names it.
    pub class: String,
    /// Its probability, in percent.
    pub confidence: f64,
}

/// One measured worker run.
#[derive(Debug, Clone, Serialize)]
pub struct BackendRun {
    /// `--backend`.
    #[serde(serialize_with = "backend_name")]
    pub backend: Backend,
    /// The images.
    pub corpus: Corpus,
    /// `--concurrency` = `--local-concurrency`.
    pub concurrency: usize,
    /// Images in the chunk.
    pub images: usize,
    /// Process wall time (start, model load, manifest, labeling, exit), s.
    pub wall_s: f64,
    /// `images / wall_s`.
    pub images_per_s: f64,
    /// Peak resident memory (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// `ImagesLabeled`, from the worker's EMF lines.
    pub labeled: u64,
    /// `LocalInferences`.
    pub local_inferences: u64,
    /// `LocalLatency`, mean, ms.
    pub local_ms_mean: Option<f64>,
    /// `LocalLatency`, median, ms.
    pub local_ms_p50: Option<f64>,
    /// `LocalLatency`, 99th percentile (nearest rank), ms.
    pub local_ms_p99: Option<f64>,
    /// `CascadeEscalations`.
    pub escalations: u64,
    /// DetectLabels calls the stand-in answered.
    pub detect_labels_calls: u64,
    /// Per image (demo corpus only): who labeled it, and how.
    pub per_image: Vec<ImageResult>,
}

impl BackendRun {
    /// Images per second per inference slot (one core each).
    pub fn per_core(&self) -> f64 {
        self.images_per_s / self.concurrency.max(1) as f64
    }

    /// Share of the images the cascade sent to DetectLabels.
    pub fn escalated_share(&self) -> f64 {
        self.escalations as f64 / self.images.max(1) as f64
    }
}

/// Everything `bench --local` measured.
#[derive(Debug, Clone, Serialize)]
pub struct LocalResults {
    /// The model file's size, bytes.
    pub model_bytes: u64,
    /// Each `LocalModel::load`, ms.
    pub model_load_ms: Vec<f64>,
    /// `--cascade-below` of the cascade runs.
    pub cascade_below: f64,
    /// Stand-in DetectLabels latency, ms.
    pub detect_labels_latency_ms: f64,
    /// The demo images' most probable classes, classified in process.
    pub demo_top_classes: Vec<TopClass>,
    /// The worker runs.
    pub runs: Vec<BackendRun>,
}

impl LocalResults {
    /// The run of `backend` on `corpus` at `concurrency`.
    pub fn find(
        &self,
        backend: Backend,
        corpus: Corpus,
        concurrency: usize,
    ) -> Option<&BackendRun> {
        self.runs
            .iter()
            .find(|r| r.backend == backend && r.corpus == corpus && r.concurrency == concurrency)
    }

    /// Median model load, ms.
    pub fn model_load_median_ms(&self) -> f64 {
        crate::process::median(&self.model_load_ms)
    }

    /// The local and the Rekognition runs on the bench corpus at the same
    /// concurrency, to compare.
    pub fn local_and_rekognition(&self) -> Option<(&BackendRun, &BackendRun)> {
        let rekognition = self
            .runs
            .iter()
            .find(|r| r.backend == Backend::Rekognition)?;
        let local = self.find(Backend::Local, Corpus::Bench, rekognition.concurrency)?;
        Some((local, rekognition))
    }

    /// Local / Rekognition-stand-in (peak RSS, images/s) of
    /// [`LocalResults::local_and_rekognition`].
    pub fn local_vs_rekognition(&self) -> Option<(f64, f64)> {
        let (local, rekognition) = self.local_and_rekognition()?;
        Some((
            local.peak_rss_bytes as f64 / rekognition.peak_rss_bytes.max(1) as f64,
            local.images_per_s / rekognition.images_per_s,
        ))
    }

    /// The cascade's share sent to Rekognition on `corpus`.
    pub fn cascade_share(&self, corpus: Corpus) -> Option<f64> {
        self.runs
            .iter()
            .find(|r| r.backend == Backend::Cascade && r.corpus == corpus)
            .map(BackendRun::escalated_share)
    }

    /// Seconds of one core per local classification: the mean
    /// `LocalLatency` of the one-slot run.
    pub fn inference_seconds_per_core(&self) -> Option<f64> {
        self.find(Backend::Local, Corpus::Bench, 1)?
            .local_ms_mean
            .map(|ms| ms / 1e3)
    }

    /// The cost model's inputs: the time per image per core and the
    /// cascade's share on each corpus (demo first).
    pub fn cost_inputs(&self) -> Option<LocalInputs> {
        Some(LocalInputs {
            inference_seconds_per_core: self.inference_seconds_per_core()?,
            cascade_shares: [Corpus::Demo, Corpus::Bench]
                .into_iter()
                .filter_map(|c| Some((c.as_str().to_owned(), self.cascade_share(c)?)))
                .collect(),
        })
    }
}

/// The runs `measure` makes, in order.
pub const CASES: [LocalCase; 6] = [
    LocalCase {
        backend: Backend::Rekognition,
        corpus: Corpus::Bench,
        concurrency: 2,
    },
    LocalCase {
        backend: Backend::Local,
        corpus: Corpus::Bench,
        concurrency: 1,
    },
    LocalCase {
        backend: Backend::Local,
        corpus: Corpus::Bench,
        concurrency: 2,
    },
    LocalCase {
        backend: Backend::Cascade,
        corpus: Corpus::Bench,
        concurrency: 2,
    },
    LocalCase {
        backend: Backend::Local,
        corpus: Corpus::Demo,
        concurrency: 2,
    },
    LocalCase {
        backend: Backend::Cascade,
        corpus: Corpus::Demo,
        concurrency: 2,
    },
];

/// Loads the model `plan.load_reps` times, then makes every run of [`CASES`].
pub async fn measure(plan: &Plan) -> anyhow::Result<LocalResults> {
    ensure!(
        plan.worker.exists(),
        "{} is missing: run `cargo build --release -p worker`",
        plan.worker.display()
    );
    let model_bytes = std::fs::metadata(&plan.model)
        .with_context(|| format!("{} is missing: run `make model`", plan.model.display()))?
        .len();
    let (model_load_ms, model) = load_times(&plan.model, plan.load_reps)?;
    let demo_top_classes = top_classes(&model, &corpus(Corpus::Demo, "top", 0)?).await?;
    let mut runs = Vec::new();
    for case in CASES {
        eprintln!(
            "bench: worker --backend {} on the {} corpus, concurrency {} …",
            case.backend.as_str(),
            case.corpus.as_str(),
            case.concurrency
        );
        runs.push(run(plan, case).await?);
    }
    Ok(LocalResults {
        model_bytes,
        model_load_ms,
        cascade_below: CASCADE_BELOW,
        detect_labels_latency_ms: plan.detect_latency.as_secs_f64() * 1e3,
        demo_top_classes,
        runs,
    })
}

/// `LocalModel::load` timed `reps` times (ms), and the last model loaded.
fn load_times(model: &Path, reps: usize) -> anyhow::Result<(Vec<f64>, LocalModel)> {
    let mut times = Vec::new();
    loop {
        let started = Instant::now();
        let loaded = LocalModel::load(model, 1)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if times.len() >= reps {
            return Ok((times, loaded));
        }
    }
}

/// The most probable class of each demo image, as the worker computes it.
async fn top_classes(
    model: &LocalModel,
    images: &[(ImageRef, Vec<u8>)],
) -> anyhow::Result<Vec<TopClass>> {
    let vocabulary = worker::vocabulary::Vocabulary::imagenet();
    let mut out = Vec::new();
    for ((_, bytes), name) in images.iter().zip(DEMO) {
        let probabilities = model.classify(bytes.clone()).await?;
        let (index, top) = probabilities
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .context("the model answered no class")?;
        out.push(TopClass {
            name: name.to_owned(),
            class: vocabulary.name(index).unwrap_or("?").to_owned(),
            confidence: f64::from(top) * 100.0,
        });
    }
    Ok(out)
}

/// The images of `corpus` for run `run`, with their bytes.
pub fn corpus(
    corpus: Corpus,
    run: &str,
    bench_images: usize,
) -> anyhow::Result<Vec<(ImageRef, Vec<u8>)>> {
    match corpus {
        Corpus::Bench => Ok(chunk(run, bench_images)
            .into_iter()
            .map(|image| (image, IMAGE.to_vec()))
            .collect()),
        Corpus::Demo => DEMO
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let path = repo_root().join("samples").join(name);
                let bytes =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                let image = ImageRef {
                    bucket: BUCKET.to_owned(),
                    key: format!("bench/{run}/{name}"),
                    revision: Revision::from_sequencer(&events::sequencer(i))
                        .expect("valid sequencer"),
                    version_id: None,
                    etag: None,
                    size: Some(bytes.len() as u64),
                };
                Ok((image, bytes))
            })
            .collect(),
    }
}

/// One run of `case` against a fresh stand-in.
async fn run(plan: &Plan, case: LocalCase) -> anyhow::Result<BackendRun> {
    let scratch = repo_root().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    let standin = StandIn::start(Settings {
        latency_per_op: [(op::DETECT_LABELS, plan.detect_latency)]
            .into_iter()
            .collect(),
        ..Settings::default()
    })
    .await?;
    let name = format!(
        "{}-{}-c{}",
        case.backend.as_str(),
        case.corpus.as_str(),
        case.concurrency
    );
    let images = corpus(case.corpus, &name, plan.bench_images)?;
    let parameter = prepare_objects(&standin, &name, &images);
    let stdout_path = scratch.join(format!("{name}.emf"));
    let log = std::fs::File::create(scratch.join(format!("{name}.log")))?;
    let mut cmd = command(&plan.worker, &parameter, case.concurrency, &standin, log);
    cmd.args([
        "--backend",
        case.backend.as_str(),
        "--reuse-labels",
        "false",
    ])
    .arg("--model")
    .arg(&plan.model)
    .args(["--local-concurrency", &case.concurrency.to_string()])
    .stdout(std::fs::File::create(&stdout_path)?);
    let done = run_measured(cmd)
        .await
        .with_context(|| format!("run {}", plan.worker.display()))?;
    let transactions = standin.op(op::TRANSACT_WRITE_ITEMS).calls;
    ensure!(
        done.code == Some(0) && transactions == images.len() as u64,
        "worker run {name} exited with {:?} after {transactions} of {} labelings; see target/bench/{name}.log",
        done.code,
        images.len()
    );
    let metrics = emf_values(&std::fs::read_to_string(&stdout_path)?);
    let mut out = summarise(case, images.len(), &done, &metrics);
    out.detect_labels_calls = standin.op(op::DETECT_LABELS).calls;
    if case.corpus == Corpus::Demo {
        out.per_image = per_image(&standin, &images);
    }
    Ok(out)
}

/// The run's figures from its process and its EMF metrics.
fn summarise(
    case: LocalCase,
    images: usize,
    done: &crate::process::Finished,
    metrics: &BTreeMap<String, Vec<f64>>,
) -> BackendRun {
    let count = |name: &str| metrics.get(name).map_or(0.0, |v| v.iter().sum()) as u64;
    let latency = metrics.get("LocalLatency").cloned().unwrap_or_default();
    let wall = done.wall.as_secs_f64();
    BackendRun {
        backend: case.backend,
        corpus: case.corpus,
        concurrency: case.concurrency,
        images,
        wall_s: wall,
        images_per_s: images as f64 / wall,
        peak_rss_bytes: done.peak_rss_bytes,
        labeled: count("ImagesLabeled"),
        local_inferences: count("LocalInferences"),
        local_ms_mean: (!latency.is_empty())
            .then(|| latency.iter().sum::<f64>() / latency.len() as f64),
        local_ms_p50: percentile(&latency, 0.50),
        local_ms_p99: percentile(&latency, 0.99),
        escalations: count("CascadeEscalations"),
        detect_labels_calls: 0,
        per_image: Vec::new(),
    }
}

/// Who labeled each image, read back from its record.
fn per_image(standin: &StandIn, images: &[(ImageRef, Vec<u8>)]) -> Vec<ImageResult> {
    images
        .iter()
        .zip(DEMO)
        .map(|((image, _), name)| {
            let pk = schema::image_pk(&image.bucket, &image.key);
            let record = standin
                .item(TABLE, &pk, schema::IMAGE_SK)
                .unwrap_or_default();
            ImageResult {
                name: name.to_owned(),
                model_version: record[attr::LABEL_MODEL_VERSION]["S"]
                    .as_str()
                    .unwrap_or("none")
                    .to_owned(),
                top_labels: top_labels(&record, 3),
            }
        })
        .collect()
}

/// The `n` most confident labels of a record in DynamoDB JSON.
fn top_labels(record: &Value, n: usize) -> Vec<(String, f64)> {
    let mut labels: Vec<(String, f64)> = record[attr::LABELS]["L"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let name = l["M"]["name"]["S"].as_str()?;
            let confidence = l["M"]["confidence"]["N"].as_str()?.parse().ok()?;
            Some((name.to_owned(), confidence))
        })
        .collect();
    labels.sort_by(|a, b| b.1.total_cmp(&a.1));
    labels.truncate(n);
    labels
}

/// Every metric value in the worker's EMF lines, by metric name: counts to
/// sum, latencies to rank. The per-class `ImagesFailed` lines repeat a
/// count of the main line and are skipped.
pub fn emf_values(stdout: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if !fields.contains_key("_aws") || fields.contains_key("ReasonClass") {
            continue;
        }
        for (name, value) in fields {
            let values = match value {
                Value::Number(n) => n.as_f64().into_iter().collect(),
                Value::Array(list) => list.iter().filter_map(Value::as_f64).collect(),
                _ => Vec::new(),
            };
            if !values.is_empty() {
                out.entry(name).or_default().extend(values);
            }
        }
    }
    out
}

/// The `q` quantile of `values` by nearest rank (`None` when empty).
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_taken_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn emf_lines_are_summed_and_ranked_by_metric_and_the_per_class_lines_skipped() {
        let stdout = [
            r#"{"_aws":{"Timestamp":1},"Table":"t","ImagesLabeled":3,"LocalLatency":[10.0,30.0],"CascadeEscalations":1}"#,
            r#"{"_aws":{"Timestamp":1},"Table":"t","ReasonClass":"too_large","ImagesFailed":1}"#,
            "not json: a stray line",
            r#"{"_aws":{"Timestamp":2},"Table":"t","ImagesLabeled":2,"LocalLatency":20.0,"ImagesFailed":1}"#,
        ]
        .join("\n");

        let metrics = emf_values(&stdout);

        assert_eq!(metrics["ImagesLabeled"], vec![3.0, 2.0]);
        assert_eq!(metrics["LocalLatency"], vec![10.0, 30.0, 20.0]);
        assert_eq!(metrics["CascadeEscalations"], vec![1.0]);
        assert_eq!(
            metrics["ImagesFailed"],
            vec![1.0],
            "the per-class line is skipped"
        );
        assert!(!metrics.contains_key("Table"));
    }

    #[test]
    fn the_demo_corpus_is_the_four_photos_and_the_three_synthetic_samples() {
        let images = corpus(Corpus::Demo, "t", 0).unwrap();
        assert_eq!(images.len(), 7);
        assert!(images
            .iter()
            .all(|(image, bytes)| image.size == Some(bytes.len() as u64)));
        assert!(images[0].0.key.ends_with("photos/chelsea.png"));
        assert_eq!(corpus(Corpus::Bench, "t", 3).unwrap().len(), 3);
    }

    fn example_run(backend: Backend, concurrency: usize, images_per_s: f64) -> BackendRun {
        BackendRun {
            backend,
            corpus: Corpus::Bench,
            concurrency,
            images: 100,
            wall_s: 100.0 / images_per_s,
            images_per_s,
            peak_rss_bytes: if backend == Backend::Rekognition {
                20
            } else {
                60
            },
            labeled: 100,
            local_inferences: 100,
            local_ms_mean: Some(25.0),
            local_ms_p50: Some(24.0),
            local_ms_p99: Some(40.0),
            escalations: if backend == Backend::Cascade { 10 } else { 0 },
            detect_labels_calls: 0,
            per_image: Vec::new(),
        }
    }

    #[test]
    fn ratios_compare_local_with_rekognition_at_the_same_concurrency() {
        let results = LocalResults {
            model_bytes: 1,
            model_load_ms: vec![300.0, 100.0, 200.0],
            cascade_below: CASCADE_BELOW,
            detect_labels_latency_ms: 50.0,
            demo_top_classes: Vec::new(),
            runs: vec![
                example_run(Backend::Rekognition, 2, 40.0),
                example_run(Backend::Local, 1, 30.0),
                example_run(Backend::Local, 2, 50.0),
                example_run(Backend::Cascade, 2, 45.0),
            ],
        };

        assert_eq!(results.local_vs_rekognition(), Some((3.0, 1.25)));
        assert_eq!(results.cascade_share(Corpus::Bench), Some(0.1));
        assert_eq!(results.cascade_share(Corpus::Demo), None);
        assert_eq!(results.inference_seconds_per_core(), Some(0.025));
        assert_eq!(results.model_load_median_ms(), 200.0);
        assert_eq!(results.runs[2].per_core(), 25.0);
    }
}
