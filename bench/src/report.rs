//! The benchmark's output: a table on stdout, the generated section of
//! `docs/benchmarks.md`, and `target/bench/results.json`.

use crate::cost::{group, Inputs};
use crate::scenario_convert::{ConvertRun, CONTAINER_BYTES};
use crate::scenario_dispatcher::{submit_calls_per_10k, CapResult, SizeResult};
use crate::scenario_fleet::{FleetRun, RATE_TARGET, THROTTLED_TARGET};
use crate::scenario_gallery::{GalleryRun, TARGET_MS};
use crate::scenario_lambda::{Package, Startup, ZIP_TARGET_BYTES};
use crate::scenario_local::{BackendRun, Corpus, LocalResults};
use crate::scenario_worker::WorkerRun;
use serde::Serialize;
use std::fmt::Write;
use std::process::Command;
use worker::backend::Kind as Backend;

/// Worker peak memory target.
pub const WORKER_RSS_TARGET_BYTES: u64 = 64 * 1024 * 1024;

/// Where the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs (`nproc`).
    pub nproc: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Kernel and architecture (`uname -srm`).
    pub os: String,
    /// When (UTC).
    pub date: String,
    /// What else the machine was doing, from `BENCH_CONTEXT` (the ratios
    /// depend on it on a shared machine).
    pub context: Option<String>,
}

impl Machine {
    /// Describes this machine.
    pub fn describe() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            rustc: output("rustc", &["--version"]),
            os: output("uname", &["-srm"]),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            context: std::env::var("BENCH_CONTEXT")
                .ok()
                .filter(|c| !c.trim().is_empty()),
        }
    }

    /// The date part of [`Machine::date`].
    pub fn day(&self) -> &str {
        self.date.split_whitespace().next().unwrap_or(&self.date)
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The settings the figures were measured with.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Stand-in latency of every call in the dispatcher runs, ms.
    pub dispatcher_latency_ms: f64,
    /// Stand-in latency of DetectLabels in the worker runs, ms (other calls 0).
    pub detect_labels_latency_ms: f64,
    /// `WRITE_CONCURRENCY`.
    pub write_concurrency: usize,
    /// `SUBMIT_CONCURRENCY`.
    pub submit_concurrency: usize,
    /// `IMAGES_PER_JOB`.
    pub images_per_job: usize,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Where.
    pub machine: Machine,
    /// With what.
    pub setup: Setup,
    /// Dispatcher invocations by size.
    pub dispatcher: Vec<SizeResult>,
    /// SubmitJob under the cap.
    pub cap: CapResult,
    /// Worker runs.
    pub worker: Vec<WorkerRun>,
    /// Fleets of workers sharing one DetectLabels quota.
    pub fleet: Vec<FleetRun>,
    /// Lambda packages.
    pub packages: Vec<Package>,
    /// Start-up under the emulator.
    pub startup: Option<Startup>,
    /// The web gallery's first page.
    pub gallery: Option<GalleryRun>,
    /// Peak memory while converting large images.
    pub convert: Vec<ConvertRun>,
    /// The local backend and the cascade against Rekognition.
    pub local: Option<LocalResults>,
    /// What could not be measured, and why.
    pub not_measured: Vec<String>,
    /// The cost model's inputs.
    pub cost_inputs: Inputs,
}

/// One headline figure.
#[derive(Debug, Clone)]
pub struct Row {
    /// What.
    pub figure: String,
    /// Measured value.
    pub measured: String,
    /// The ideal or target it is compared with.
    pub ideal: String,
    /// measured / ideal (or ideal / measured for times), formatted.
    pub ratio: String,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}/s")
    } else {
        format!("{v:.1}/s")
    }
}

fn images_rate(v: f64) -> String {
    rate(v).replace("/s", " images/s")
}

/// A duration in seconds, as ms below 10 s.
fn time(seconds: f64) -> String {
    if seconds >= 10.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{:.1} ms", seconds * 1e3)
    }
}

/// The headline table.
pub fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for d in &r.dispatcher {
        rows.push(Row {
            figure: format!(
                "dispatcher, {} image{} per invocation",
                group(d.images as u64),
                if d.images == 1 { "" } else { "s" }
            ),
            measured: format!("{} ({})", images_rate(d.images_per_s), time(d.median_s)),
            ideal: format!(
                "{} ({})",
                images_rate(d.images as f64 / d.ideal_s),
                time(d.ideal_s)
            ),
            ratio: format!("{:.2}", d.ratio),
        });
    }
    if let Some(big) = r.dispatcher.iter().max_by_key(|d| d.images) {
        let per_10k = submit_calls_per_10k(big);
        rows.push(Row {
            figure: "SubmitJob calls per 10,000 images".into(),
            measured: format!(
                "{per_10k:.0} (packed, IMAGES_PER_JOB={})",
                r.setup.images_per_job
            ),
            ideal: "10,000 with one job per image".into(),
            ratio: format!("1/{:.0}", 10_000.0 / per_10k.max(1e-9)),
        });
    }
    let c = &r.cap;
    rows.push(Row {
        figure: format!(
            "SubmitJob at the {:.0}/s cap, {} × {} images at once",
            c.cap_tps, c.invocations, c.images_per_invocation
        ),
        measured: format!(
            "{} sustained, {} 429s retried",
            rate(c.sustained_tps),
            c.throttled
        ),
        ideal: rate(c.cap_tps),
        ratio: format!("{:.2}", c.ratio),
    });
    rows.push(Row {
        figure: "images in accepted jobs at the cap".into(),
        measured: format!(
            "{} of {} ({} lost)",
            group(c.images_in_accepted_jobs as u64),
            group(c.images_sent as u64),
            c.lost_images
        ),
        ideal: group(c.images_sent as u64),
        ratio: format!(
            "{:.2}",
            c.images_in_accepted_jobs as f64 / c.images_sent as f64
        ),
    });
    for w in &r.worker {
        let limit = w
            .rate_limit
            .map_or(String::new(), |l| format!(", rate limit {l:.0}/s"));
        rows.push(Row {
            figure: format!(
                "worker, {} images, concurrency {}{limit}",
                group(w.images as u64),
                w.concurrency
            ),
            measured: images_rate(w.images_per_s),
            ideal: images_rate(w.ideal_per_s),
            ratio: format!("{:.2}", w.ratio),
        });
    }
    if let Some(peak) = r.worker.iter().map(|w| w.peak_rss_bytes).max() {
        rows.push(Row {
            figure: "worker peak RSS (largest run)".into(),
            measured: mib(peak),
            ideal: format!("≤ {}", mib(WORKER_RSS_TARGET_BYTES)),
            ratio: format!("{:.2}", peak as f64 / WORKER_RSS_TARGET_BYTES as f64),
        });
    }
    for f in &r.fleet {
        rows.push(Row {
            figure: format!("fleet, {}", f.label()),
            measured: format!(
                "{} accepted, {:.1}% throttled, {} not LABELED",
                rate(f.sustained_per_s),
                f.throttled_fraction * 100.0,
                f.not_labeled
            ),
            ideal: format!("{} limit", rate(f.limit_per_s)),
            ratio: format!("{:.2}", f.sustained_ratio),
        });
    }
    for p in &r.packages {
        rows.push(Row {
            figure: format!("Lambda zip, {}", p.profile),
            measured: mb(p.zip_bytes),
            ideal: format!("≤ {}", mb(ZIP_TARGET_BYTES)),
            ratio: format!("{:.2}", p.ratio_to_target),
        });
    }
    if let Some(s) = &r.startup {
        rows.push(Row {
            figure: "dispatcher cold invocation (start + init + first event), host build".into(),
            measured: format!("{:.1} ms (median of {})", s.cold_median_ms, s.cold_ms.len()),
            ideal: format!("warm: {:.1} ms", s.warm_median_ms),
            ratio: format!("{:.1}× warm", s.cold_median_ms / s.warm_median_ms.max(1e-9)),
        });
    }
    for c in &r.convert {
        rows.push(Row {
            figure: format!(
                "worker peak RSS converting {}, {} conversion{} at once",
                c.chunk,
                c.convert_concurrency,
                if c.convert_concurrency == 1 { "" } else { "s" }
            ),
            measured: format!("{} ({:.1} s)", mib(c.peak_rss_bytes), c.wall_s),
            ideal: format!("≤ {} (the container)", mib(CONTAINER_BYTES)),
            ratio: format!("{:.2}", c.ratio_to_container),
        });
    }
    if let Some(l) = &r.local {
        rows.extend(local_rows(l));
    }
    if let Some(g) = &r.gallery {
        rows.push(Row {
            figure: format!(
                "gallery first page, {} thumbnails of {} labeled images",
                g.page,
                group(g.images as u64)
            ),
            measured: format!(
                "{:.0} ms (median; cold {:.0} ms)",
                g.warm_median_ms, g.cold_ms
            ),
            ideal: format!("≤ {TARGET_MS:.0} ms"),
            ratio: format!("{:.2}", g.ratio_to_target),
        });
    }
    rows
}

/// The rows as an aligned text table.
pub fn text_table(rows: &[Row]) -> String {
    let header = Row {
        figure: "figure".into(),
        measured: "measured".into(),
        ideal: "ideal / target".into(),
        ratio: "ratio".into(),
    };
    let width = |f: fn(&Row) -> &String| {
        std::iter::once(&header)
            .chain(rows)
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (a, b, c) = (
        width(|r| &r.figure),
        width(|r| &r.measured),
        width(|r| &r.ideal),
    );
    let mut out = String::new();
    for (i, r) in std::iter::once(&header).chain(rows).enumerate() {
        let _ = writeln!(
            out,
            "{:<a$}  {:<b$}  {:<c$}  {}",
            r.figure, r.measured, r.ideal, r.ratio
        );
        if i == 0 {
            let _ = writeln!(out, "{}", "-".repeat(a + b + c + 12));
        }
    }
    out
}

/// Markers around the generated part of `docs/benchmarks.md`.
pub const BEGIN: &str = "<!-- BEGIN generated by `make bench`; do not edit by hand -->";
/// End marker.
pub const END: &str = "<!-- END generated by `make bench` -->";

/// The generated section.
pub fn section(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let s = &r.setup;
    let _ = writeln!(out, "{BEGIN}\n");
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "Measured {} on {} logical CPUs ({}), {}, {}.\n",
        m.date, m.nproc, m.cpu, m.os, m.rustc
    );
    if let Some(context) = &m.context {
        let _ = writeln!(out, "**Context of this run:** {context}\n");
    }
    let _ = writeln!(
        out,
        "| figure | measured | ideal / target | ratio |\n|---|---|---|---:|"
    );
    for row in rows(r) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.figure, row.measured, row.ideal, row.ratio
        );
    }

    let _ = writeln!(out, "\n### Dispatcher\n");
    let _ = writeln!(
        out,
        "`dispatcher::dispatch::handle` in process with SQS batches of S3 `ObjectCreated:Put` \
         notifications, one image per message, default settings (`IMAGES_PER_JOB={}`, \
         `WRITE_CONCURRENCY` W={}, `SUBMIT_CONCURRENCY` S={}); every stand-in call answers in \
         L={} ms. The ideal is what those settings allow: T* = L·(⌈N/W⌉ claims + ⌈J/S⌉·(1 + m) \
         submissions + Σ⌈nⱼ/W⌉ job-id writes), for N images in J jobs of nⱼ images, m = 1 when \
         a job's spec moves to an S3 manifest. Ratio = T*/T (1.00 means no overhead of its own).\n",
        s.images_per_job, s.write_concurrency, s.submit_concurrency, s.dispatcher_latency_ms
    );
    let _ = writeln!(
        out,
        "| images | runs | median | ideal | ratio | SubmitJob calls | array sizes | manifests | DynamoDB calls | DynamoDB WRU per image |\n|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    );
    for d in &r.dispatcher {
        let arrays: Vec<String> = d
            .array_sizes
            .iter()
            .map(|a| a.map_or("plain".into(), |n| n.to_string()))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {:.2} |",
            group(d.images as u64),
            d.reps,
            time(d.median_s),
            time(d.ideal_s),
            d.ratio,
            d.submit_calls,
            arrays.join(", "),
            d.manifests,
            d.dynamodb_calls,
            d.write_units_per_image
        );
    }
    let c = &r.cap;
    let _ = writeln!(out, "\n### SubmitJob at the cap\n");
    let _ = writeln!(
        out,
        "{} invocations of {} images each at once, each with its own SDK clients and retry \
         quota (separate Lambda environments), against a stand-in whose SubmitJob accepts {:.0} \
         calls a second (token bucket, burst {:.0}) and answers the rest HTTP 429 \
         `TooManyRequestsException`. The SDK's standard retry (8 attempts, exponential backoff \
         with full jitter from 100 ms to 5 s) retries the 429s; a job still refused after that \
         releases its claims and reports its messages in `batchItemFailures`, which the \
         benchmark delivers again as SQS would (at once, where SQS waits for the visibility \
         timeout). Once the burst is spread out by the backoff, part of the cap goes unused: \
         the ratio shows how much of it the retries use.\n",
        c.invocations, c.images_per_invocation, c.cap_tps, c.burst
    );
    let _ = writeln!(
        out,
        "| jobs accepted | 429 answers | messages redelivered | images sent | distinct images in accepted jobs | image slots in accepted jobs | lost | sustained SubmitJob/s | ratio to cap | wall |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.1} s |",
        c.jobs_accepted,
        c.throttled,
        c.redelivered_messages,
        c.images_sent,
        c.images_in_accepted_jobs,
        c.image_slots_in_accepted_jobs,
        c.lost_images,
        c.sustained_tps,
        c.ratio,
        c.wall_s
    );
    let _ = writeln!(
        out,
        "\nSustained = accepted calls after the initial burst divided by the time they took. \
         Images are counted from the accepted jobs' specs (and manifests), so an image counts \
         only if a job that will label it was accepted.\n"
    );

    let _ = writeln!(out, "### Worker\n");
    let _ = writeln!(
        out,
        "The release worker binary (`target/release/worker --job <spec> --concurrency C \
         [--rate-limit R]`) on a chunk read from an S3 manifest, its QUEUED records in place; \
         DetectLabels answers in {} ms, every other call at once. The ideal is min(C / latency, \
         R) images per second; the wall time includes process start, the manifest read and \
         exit. Peak RSS is the process's `VmHWM` (its resident high-water mark), sampled from `/proc/<pid>/status` every 5 ms while it runs.\n",
        s.detect_labels_latency_ms
    );
    let _ = writeln!(
        out,
        "| C | rate limit | images | wall | images/s | ideal | ratio | peak RSS | DetectLabels calls | throttled | DynamoDB RRU / WRU per image |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for w in &r.worker {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} s | {:.1} | {:.1} | {:.2} | {} | {} | {} | {:.2} / {:.2} |",
            w.concurrency,
            w.rate_limit.map_or("none".into(), |l| format!("{l:.0}/s")),
            w.images,
            w.wall_s,
            w.images_per_s,
            w.ideal_per_s,
            w.ratio,
            mib(w.peak_rss_bytes),
            w.detect_labels_calls,
            w.detect_labels_throttled,
            w.read_units_per_image,
            w.write_units_per_image
        );
    }

    if !r.fleet.is_empty() {
        let _ = write!(
            out,
            "\n{}",
            fleet_section(&r.fleet, s.detect_labels_latency_ms)
        );
    }

    let _ = writeln!(out, "\n### Lambda package and start-up\n");
    let _ = writeln!(
        out,
        "| build | settings | zip | ratio to 5 MB | build time in this run |\n|---|---|---:|---:|---:|"
    );
    for p in &r.packages {
        let _ = writeln!(
            out,
            "| {} | {} | {} ({} bytes) | {:.2} | {} |",
            p.profile,
            p.settings,
            mb(p.zip_bytes),
            group(p.zip_bytes),
            p.ratio_to_target,
            p.build_s.map_or("(`make lambda`)".into(), |s| if s < 30.0 {
                format!("{s:.0} s (up to date)")
            } else {
                format!("{s:.0} s")
            })
        );
    }
    if let Some(st) = &r.startup {
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\nStart-up under cargo-lambda's Lambda Runtime API emulator (`cargo lambda watch \
             --only-lambda-apis` on 127.0.0.1), running `{}` ({}), a **host-arch ({}) release \
             build** of the same code, not the arm64 zip, which this machine cannot run. Each \
             repetition starts a fresh emulator and process and invokes it with a one-image SQS \
             batch (claim, SubmitJob, job-id write against a stand-in with no latency): the cold \
             invocation is timed from process start to the answer, the warm ones from request to \
             answer.\n",
            st.binary,
            mb(st.binary_bytes),
            std::env::consts::ARCH
        );
        let _ = writeln!(
            out,
            "| cold (median) | warm (median) | process start + init ≈ cold − warm | cold runs, ms | warm runs, ms |\n|---:|---:|---:|---|---|\n| {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
            st.cold_median_ms,
            st.warm_median_ms,
            st.init_ms,
            list(&st.cold_ms),
            list(&st.warm_ms)
        );
    }
    if !r.convert.is_empty() {
        let _ = writeln!(out, "\n### Conversions and memory\n");
        let mut described: Vec<String> = r
            .convert
            .iter()
            .flat_map(|c| &c.images)
            .map(|(what, bytes, w, h)| format!("a {what} is {w}×{h}, {}", mb(*bytes as u64)))
            .collect();
        described.dedup();
        let _ = writeln!(
            out,
            "The release worker at `--concurrency 8` on 8 images Rekognition cannot read as they \
             are (over 15 MB, or HEIC): {}. Each is downloaded, decoded (HEIC with libheif), \
             downscaled and re-encoded as a JPEG under 5 MB. Peak RSS (`VmHWM`) against the job \
             definition's {} container:\n",
            described.join("; "),
            mib(CONTAINER_BYTES)
        );
        let _ = writeln!(
            out,
            "| images | `LABELER_CONVERT_CONCURRENCY` | wall | peak RSS | ratio to the container | DetectLabels calls |\n|---|---:|---:|---:|---:|---:|"
        );
        for c in &r.convert {
            let _ = writeln!(
                out,
                "| {} | {}{} | {:.1} s | {} | {:.2} | {} |",
                c.chunk,
                c.convert_concurrency,
                if c.convert_concurrency == 2 {
                    " (default)"
                } else {
                    ""
                },
                c.wall_s,
                mib(c.peak_rss_bytes),
                c.ratio_to_container,
                c.detect_labels_calls
            );
        }
    }
    if let Some(l) = &r.local {
        let _ = write!(out, "\n{}", local_section(l));
    }
    if let Some(g) = &r.gallery {
        let _ = writeln!(out, "\n### Web gallery\n");
        let _ = writeln!(
            out,
            "`labeler serve` (release build) on moto, {} labeled images ({} labels each, so the \
             gallery's Scan reads past {} label entries per image record), the first page of {} \
             thumbnails ({} bytes each, through presigned URLs) opened in headless Chromium. \
             Timed in the page (Resource Timing): navigation start to the end of the last \
             thumbnail's response. The first navigation is a fresh browser's.\n",
            group(g.images as u64),
            crate::scenario_gallery::LABELS_PER_IMAGE,
            crate::scenario_gallery::LABELS_PER_IMAGE,
            g.page,
            group(g.image_bytes as u64)
        );
        let list = g
            .warm_ms
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| cold | median | ratio to {TARGET_MS:.0} ms | `/api/images` (median) | runs, ms |\n|---:|---:|---:|---:|---|\n| {:.0} ms | {:.0} ms | {:.2} | {:.0} ms | {list} |",
            g.cold_ms, g.warm_median_ms, g.ratio_to_target, g.api_median_ms
        );
    }
    if !r.not_measured.is_empty() {
        let _ = writeln!(out, "\nNot measured in this run:\n");
        for n in &r.not_measured {
            let _ = writeln!(out, "- {n}");
        }
    }
    let _ = writeln!(
        out,
        "\nRaw figures: `target/bench/results.json`. The cost of these calls on AWS: \
         [cost model](cost.md).\n\n{END}"
    );
    out
}

/// The headline rows of `bench --local`: speed per core, memory and
/// throughput against Rekognition, and the cascade's shares.
pub fn local_rows(l: &LocalResults) -> Vec<Row> {
    let mut rows = vec![Row {
        figure: "local model load (`LocalModel::load`: read, SHA-256, tract optimisation)".into(),
        measured: format!(
            "{:.0} ms (median of {})",
            l.model_load_median_ms(),
            l.model_load_ms.len()
        ),
        ideal: format!("model {}", mb(l.model_bytes)),
        ratio: String::new(),
    }];
    for run in l
        .runs
        .iter()
        .filter(|r| r.backend == Backend::Local && r.corpus == Corpus::Bench)
    {
        let inference = run.local_ms_mean.map_or(0.0, |ms| 1e3 / ms);
        rows.push(Row {
            figure: format!(
                "worker --backend local, {} images, per core at local concurrency {}",
                group(run.images as u64),
                run.concurrency
            ),
            measured: format!(
                "{} (p50 {} / p99 {} per image)",
                images_rate(run.per_core()),
                ms(run.local_ms_p50),
                ms(run.local_ms_p99)
            ),
            ideal: format!("{} (1 / mean inference)", images_rate(inference)),
            ratio: format!("{:.2}", run.per_core() / inference.max(1e-9)),
        });
    }
    rows.extend(comparison_rows(l));
    for run in l.runs.iter().filter(|r| r.backend == Backend::Cascade) {
        rows.push(Row {
            figure: format!(
                "cascade share sent to Rekognition, {} corpus ({} images, below {:.0}%)",
                run.corpus.as_str(),
                group(run.images as u64),
                l.cascade_below
            ),
            measured: format!("{} of {}", run.escalations, run.images),
            ideal: format!("{} DetectLabels calls", run.detect_labels_calls),
            ratio: format!("{:.3}", run.escalated_share()),
        });
    }
    rows
}

/// Local against Rekognition on the same chunk: peak RSS and images/s.
fn comparison_rows(l: &LocalResults) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some((local, rekognition)) = l.local_and_rekognition() {
        let same = format!(
            "{} images, concurrency {}",
            group(local.images as u64),
            local.concurrency
        );
        rows.push(Row {
            figure: format!("worker peak RSS, --backend local / rekognition, {same}"),
            measured: mib(local.peak_rss_bytes),
            ideal: format!("rekognition: {}", mib(rekognition.peak_rss_bytes)),
            ratio: format!(
                "{:.2}",
                local.peak_rss_bytes as f64 / rekognition.peak_rss_bytes.max(1) as f64
            ),
        });
        rows.push(Row {
            figure: format!(
                "worker images/s, --backend local / rekognition ({:.0} ms stand-in), {same}",
                l.detect_labels_latency_ms
            ),
            measured: images_rate(local.images_per_s),
            ideal: format!("rekognition: {}", images_rate(rekognition.images_per_s)),
            ratio: format!("{:.2}", local.images_per_s / rekognition.images_per_s),
        });
    }
    rows
}

fn ms(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.1} ms"))
}

/// The generated subsection of `bench --local`: method, every run, the
/// demo corpus image by image, and what the corpora are.
pub fn local_section(l: &LocalResults) -> String {
    let mut out = String::from("### Local model and cascade\n\n");
    let _ = writeln!(
        out,
        "The release worker with `--backend rekognition`, `local` and `cascade` \
         (`--cascade-below {:.0}`, no budget) on the same chunks, `--reuse-labels false`, \
         `--concurrency` = `--local-concurrency` = C, so `LocalLatency` (the worker's EMF metric: \
         decode, resize and inference, waiting for a slot included) has no queue in it. The \
         stand-in's S3 serves the images' real bytes; its DetectLabels answers in {:.0} ms. \
         The **bench** corpus is the worker benchmark's chunk: copies of `samples/sunset.jpg`, a \
         synthetic 320×200 gradient, so its cascade share is one image's verdict repeated. The \
         **demo** corpus is what `make demo` uploads: four real photos (a cat, an espresso, a \
         rocket, a palace) and three synthetic images. Seven images say little about a real \
         photo library's share; they show the mechanism, not a rate to plan on. Wall time \
         includes process start and the model load; the machine is shared, so absolute figures \
         are context only. Model load: `LocalModel::load` timed in the bench process, {} runs \
         ({} ms).\n",
        l.cascade_below,
        l.detect_labels_latency_ms,
        l.model_load_ms.len(),
        l.model_load_ms
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "| backend | corpus | C | images | wall | images/s | per core | LocalLatency p50 / p99 | peak RSS | escalated | DetectLabels calls |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in &l.runs {
        out.push_str(&local_run_row(run));
    }
    if let Some(demo) = l
        .runs
        .iter()
        .find(|r| r.backend == Backend::Cascade && r.corpus == Corpus::Demo)
    {
        out.push_str(&demo_table(l, demo));
    }
    out
}

fn local_run_row(run: &BackendRun) -> String {
    let local = run.backend != Backend::Rekognition;
    format!(
        "| {} | {} | {} | {} | {:.2} s | {:.1} | {} | {} | {} | {} | {} |\n",
        run.backend.as_str(),
        run.corpus.as_str(),
        run.concurrency,
        run.images,
        run.wall_s,
        run.images_per_s,
        if local {
            format!("{:.1}", run.per_core())
        } else {
            "–".into()
        },
        if local {
            format!("{} / {}", ms(run.local_ms_p50), ms(run.local_ms_p99))
        } else {
            "–".into()
        },
        mib(run.peak_rss_bytes),
        if run.backend == Backend::Cascade {
            format!(
                "{} ({:.1}%)",
                run.escalations,
                100.0 * run.escalated_share()
            )
        } else {
            "–".into()
        },
        run.detect_labels_calls
    )
}

/// The demo corpus image by image: the local model's most probable class
/// (what the cascade decides on), its labels, and who labeled the image in
/// the cascade.
fn demo_table(l: &LocalResults, cascade: &BackendRun) -> String {
    let local = l.find(Backend::Local, Corpus::Demo, cascade.concurrency);
    let mut out = format!(
        "\nThe demo corpus image by image: the local model's most probable ImageNet class \
         (classified in the bench process with the worker's code; the cascade asks Rekognition \
         when it is below {:.0}%), the three most confident labels the `local` run stored (a \
         parent label's confidence is the sum of its classes'; none when no label reaches the \
         job's `min_confidence`), and who labeled the image in the `cascade` run.\n\n\
         | image | most probable class | local labels | cascade |\n|---|---|---|---|\n",
        l.cascade_below
    );
    for image in &cascade.per_image {
        let top = l
            .demo_top_classes
            .iter()
            .find(|t| t.name == image.name)
            .map_or("–".into(), |t| {
                format!("{} {:.1}%", t.class, t.confidence)
            });
        let labels = local
            .and_then(|run| run.per_image.iter().find(|i| i.name == image.name))
            .map(|i| {
                i.top_labels
                    .iter()
                    .map(|(name, c)| format!("{name} {c:.0}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| "none".into());
        let who = if image.model_version.starts_with("local:") {
            "local".to_owned()
        } else {
            format!("Rekognition (stand-in, `{}`)", image.model_version)
        };
        let _ = writeln!(out, "| `{}` | {top} | {labels} | {who} |", image.name);
    }
    out
}

/// The fleet figure, relative to `docs/`.
pub const FLEET_PLOT: &str = "img/fleet-rate.svg";

/// "met", or a plain "**missed**".
fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// Exit codes as counts, e.g. `12 × 0, 4 × 3`.
fn exit_counts(codes: &[Option<i32>]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for code in codes {
        *counts.entry(*code).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(code, n)| match code {
            Some(c) => format!("{n} × {c}"),
            None => format!("{n} killed"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fleet runs' part of the generated section: method, figure and a
/// table per run.
pub fn fleet_section(runs: &[FleetRun], detect_latency_ms: f64) -> String {
    let mut out = String::new();
    let Some(f) = runs.first() else {
        return out;
    };
    let _ = writeln!(out, "### A fleet sharing one DetectLabels quota\n");
    let _ = writeln!(
        out,
        "N release workers started together, each on its chunk of one manifest (as the \
         children of one array job, `AWS_BATCH_JOB_ARRAY_INDEX=i`), `LABELER_REUSE_LABELS=false`, \
         against one stand-in whose DetectLabels answers in {detect_latency_ms} ms and accepts \
         {:.0} calls a second from all of them together (token bucket, burst {:.0}: one second's \
         worth, as Rekognition documents none), answering the rest HTTP 400 \
         `ProvisionedThroughputExceededException`. Each worker gets `LABELER_FLEET_RATE={:.0}`, \
         `LABELER_FLEET_SIZE=N` and `LABELER_RATE_CONTROL`; the baseline gets none of them.\n\n\
         The **accepted rate** is (n − 1) accepted calls over the time from the first accepted \
         call to the last (the burst can lift it a little above the limit), and the median of \
         the accepted calls in each whole second of that span (a long tail of backed-off retries \
         pulls it down); **throttled** is throttled calls over all DetectLabels calls; statuses \
         are read from the stand-in's records after the last process exits; **drain** is from \
         starting the processes to the last exit, against the ideal images / limit (not \
         drained while images are left unlabeled). Targets: \
         accepted rate ≥ {RATE_TARGET:.2} of the limit, throttled ≤ {:.0}%, no image FAILED, \
         every image LABELED, every process exiting 0.\n",
        f.limit_per_s,
        f.burst,
        f.limit_per_s,
        THROTTLED_TARGET * 100.0
    );
    let _ = writeln!(
        out,
        "![Accepted and throttled DetectLabels calls per second, per fleet run]({FLEET_PLOT})\n"
    );
    for f in runs {
        let _ = writeln!(out, "{}", fleet_table(f));
    }
    out
}

/// One fleet run's figures against its targets, in Markdown.
pub fn fleet_table(f: &FleetRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#### {}\n", f.label());
    if !f.fleet_flags {
        let _ = writeln!(
            out,
            "The worker binary measured has no `--fleet-rate`: it ignored the fleet settings.\n"
        );
    }
    let calls = f.accepted + f.throttled;
    let all_exit_0 = f.exit_codes.iter().all(|c| *c == Some(0));
    let rows = [
        (
            "accepted DetectLabels rate, first to last accepted call".to_owned(),
            format!(
                "{} ({:.2} of the limit)",
                rate(f.sustained_per_s),
                f.sustained_ratio
            ),
            format!("≥ {RATE_TARGET:.2} × {}", rate(f.limit_per_s)),
            verdict(f.sustained_ratio >= RATE_TARGET),
        ),
        (
            "median accepted calls in a whole second".to_owned(),
            format!(
                "{} ({:.2} of the limit)",
                rate(f.median_per_s),
                f.median_ratio
            ),
            format!("≥ {RATE_TARGET:.2} × {}", rate(f.limit_per_s)),
            verdict(f.median_ratio >= RATE_TARGET),
        ),
        (
            "throttled / all DetectLabels calls".to_owned(),
            format!(
                "{} / {} ({:.1}%)",
                group(f.throttled),
                group(calls),
                f.throttled_fraction * 100.0
            ),
            format!("≤ {:.0}%", THROTTLED_TARGET * 100.0),
            verdict(f.throttled_fraction <= THROTTLED_TARGET),
        ),
        (
            "images whose record ended FAILED".to_owned(),
            group(f.failed as u64),
            "0".to_owned(),
            verdict(f.failed == 0),
        ),
        (
            "images not LABELED".to_owned(),
            format!(
                "{} of {}",
                group(f.not_labeled as u64),
                group(f.images as u64)
            ),
            "0".to_owned(),
            verdict(f.not_labeled == 0),
        ),
        (
            "worker exit codes".to_owned(),
            exit_counts(&f.exit_codes),
            "all 0".to_owned(),
            verdict(all_exit_0),
        ),
        (
            "drain: start to the last exit".to_owned(),
            if f.not_labeled == 0 {
                format!(
                    "{:.1} s (ideal / measured = {:.2})",
                    f.drain_s, f.drain_ratio
                )
            } else {
                format!("{:.1} s, not drained", f.drain_s)
            },
            format!("{:.1} s = images / limit", f.ideal_drain_s),
            "",
        ),
        (
            "peak RSS per process (largest / sum)".to_owned(),
            format!(
                "{} / {}",
                mib(f.peak_rss_max_bytes),
                mib(f.peak_rss_sum_bytes)
            ),
            String::new(),
            "",
        ),
    ];
    let _ = writeln!(out, "| figure | measured | target | |\n|---|---|---|---|");
    for (figure, measured, target, verdict) in rows {
        let _ = writeln!(out, "| {figure} | {measured} | {target} | {verdict} |");
    }
    out
}

/// The hand-written part of a new `docs/benchmarks.md`.
pub const INTRO: &str = "# Benchmarks\n\n\
`make bench` measures the dispatcher, the worker and the dispatcher's Lambda package on one \
machine, against loopback stand-ins of Batch, DynamoDB, Rekognition and S3 \
([bench/README.md](../bench/README.md)) that answer with a fixed latency and throttle like \
the real services. Absolute times depend on the machine and on the latencies chosen for the \
stand-ins, so each figure is given as a **ratio to the ideal** those latencies and the \
code's own settings allow: 1.00 means the code adds nothing of its own; the gap is its \
overhead (CPU, SDK, serialisation, scheduling on a machine it shares with the stand-ins).\n\n\
The section between the markers below is rewritten by every run; the rest of this file is \
not.\n\n";

/// Replaces the generated section of `existing` (or builds a new document).
pub fn document(existing: Option<&str>, section: &str) -> String {
    let section = section.trim_end();
    let doc = match existing {
        Some(doc) => match (doc.find(BEGIN), doc.find(END)) {
            (Some(b), Some(e)) if e > b => {
                format!("{}{}{}", &doc[..b], section, &doc[e + END.len()..])
            }
            _ => format!("{}\n\n{section}", doc.trim_end()),
        },
        None => format!("{INTRO}{section}"),
    };
    format!("{}\n", doc.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_section_is_replaced_in_place() {
        let old = format!("# Title\n\nhand text\n\n{BEGIN}\nold\n{END}\n\ntrailer\n");
        let new = document(Some(&old), &format!("{BEGIN}\nnew\n{END}"));
        assert_eq!(
            new,
            format!("# Title\n\nhand text\n\n{BEGIN}\nnew\n{END}\n\ntrailer\n")
        );
        let again = document(Some(&new), &format!("{BEGIN}\nnew\n{END}\n"));
        assert_eq!(again, new, "rewriting adds nothing");
        assert!(document(None, "x").starts_with("# Benchmarks"));
    }

    #[test]
    fn a_fleet_run_that_meets_its_targets_is_marked_met() {
        let table = fleet_table(&FleetRun::example());

        assert!(!table.contains("missed"), "{table}");
        assert!(table.contains("| 4 × 0 | all 0 | met |"), "{table}");
    }

    #[test]
    fn the_fleet_section_embeds_the_figure_and_a_table_per_run() {
        let runs = [FleetRun::example(), FleetRun::example()];

        let text = fleet_section(&runs, 50.0);

        assert!(text.contains(&format!("]({FLEET_PLOT})")), "{text}");
        assert_eq!(text.matches("#### aimd, 4 processes").count(), 2);
        assert!(fleet_section(&[], 50.0).is_empty());
    }

    #[test]
    fn a_missed_fleet_target_is_marked_plainly() {
        let run = FleetRun {
            throttled: 900,
            throttled_fraction: 0.9,
            not_labeled: 150,
            exit_codes: vec![Some(0), Some(3), Some(3), None],
            fleet_flags: false,
            ..FleetRun::example()
        };

        let table = fleet_table(&run);

        assert!(
            table.contains("| 900 / 1,100 (90.0%) | ≤ 5% | **missed** |"),
            "{table}"
        );
        assert!(table.contains("| 150 of 200 | 0 | **missed** |"), "{table}");
        assert!(table.contains("1 killed, 1 × 0, 2 × 3"), "{table}");
        assert!(table.contains("4.2 s, not drained"), "{table}");
        assert!(table.contains("ignored the fleet settings"), "{table}");
    }
}
