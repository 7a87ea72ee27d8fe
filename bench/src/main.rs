//! `make bench`: measures the dispatcher, the worker and the Lambda package
//! against loopback stand-ins, prints the figures with their ratio to the
//! ideal, and writes `docs/benchmarks.md`, `docs/cost.md` and
//! `target/bench/results.json`.
//!
//! Flags: `--quick` (smaller runs, for a smoke test), and
//! `--worker IMAGES CONCURRENCY`, `--cap INVOCATIONS IMAGES`,
//! `--gallery IMAGES NAVIGATIONS`, `--fleet PROCESSES CONCURRENCY IMAGES
//! aimd|sdk-adaptive|none`, `--convert` and `--local [IMAGES]` (one worker
//! run, one run against the SubmitJob cap, the gallery's first page, one
//! fleet, the conversion memory runs, or the local model and the cascade
//! against Rekognition, printed only; the fleet's figure goes to
//! `target/bench/fleet-rate.svg`).
//! Expects `make lambda`, `make browser`, `make model` and `cargo build --release -p worker -p dispatcher -p labeler-cli`
//! to have run (`make bench` does all of them).

use anyhow::Context;
use bench::cost::{self, Inputs};
use bench::process::repo_root;
use bench::report::{self, Machine, Results, Setup};
use bench::scenario_dispatcher::{self as dispatch, SizeResult};
use bench::scenario_fleet::{self as fleet, Control, FleetCase};
use bench::scenario_lambda as lambda;
use bench::scenario_local::{self as local, LocalResults};
use bench::scenario_worker::{self as worker, Case};
use std::time::Duration;

/// Stand-in latency of every call in the dispatcher runs.
const DISPATCHER_LATENCY: Duration = Duration::from_millis(10);
/// Stand-in latency of DetectLabels in the worker runs.
const DETECT_LATENCY: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    bench::process::raise_open_file_limit();
    let root = repo_root();
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        let number = |j: usize| -> anyhow::Result<usize> {
            args.get(i + j)
                .context("--worker IMAGES CONCURRENCY")?
                .parse()
                .context("--worker IMAGES CONCURRENCY")
        };
        let case = Case {
            concurrency: number(2)?,
            rate_limit: None,
        };
        let runs = worker::runs(
            &root.join("target/release/worker"),
            number(1)?,
            &[case],
            DETECT_LATENCY,
        )
        .await?;
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--cap") {
        let number = |j: usize| -> anyhow::Result<usize> {
            args.get(i + j)
                .context("--cap INVOCATIONS IMAGES")?
                .parse()
                .context("--cap INVOCATIONS IMAGES")
        };
        let cap = dispatch::cap(number(1)?, number(2)?, DISPATCHER_LATENCY).await?;
        println!("{}", serde_json::to_string_pretty(&cap)?);
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--gallery") {
        let number = |j: usize| -> anyhow::Result<usize> {
            args.get(i + j)
                .context("--gallery IMAGES NAVIGATIONS")?
                .parse()
                .context("--gallery IMAGES NAVIGATIONS")
        };
        let run = bench::scenario_gallery::run(
            &root.join("target/release/labeler"),
            number(1)?,
            number(2)?.max(1),
        )
        .await?;
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--fleet") {
        const USAGE: &str = "--fleet PROCESSES CONCURRENCY IMAGES aimd|sdk-adaptive|none";
        let arg = |j: usize| args.get(i + j).context(USAGE);
        let number = |j: usize| -> anyhow::Result<usize> { arg(j)?.parse().context(USAGE) };
        let case = FleetCase {
            processes: number(1)?,
            concurrency: number(2)?,
            images: number(3)?,
            control: Control::parse(arg(4)?).context(USAGE)?,
        };
        let run = fleet::run(&root.join("target/release/worker"), &case, DETECT_LATENCY).await?;
        std::fs::write(
            out_dir.join("fleet-rate.svg"),
            bench::plot::fleet_rates(std::slice::from_ref(&run))?,
        )?;
        println!("{}", report::fleet_table(&run));
        let seconds: Vec<String> = run
            .per_second
            .iter()
            .map(|(accepted, throttled)| format!("{accepted}/{throttled}"))
            .collect();
        println!("accepted/throttled each second: {}", seconds.join(" "));
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--local") {
        let images = match args.get(i + 1).filter(|a| !a.starts_with("--")) {
            Some(n) => n.parse().context("--local [IMAGES]")?,
            None => local_images(quick),
        };
        let plan = local::Plan::new(&root, images, DETECT_LATENCY);
        let results = local::measure(&plan).await?;
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    if args.iter().any(|a| a == "--convert") {
        let worker = root.join("target/release/worker");
        for run in bench::scenario_convert::runs(&worker, &[2, 8]).await? {
            println!("{}", serde_json::to_string(&run)?);
        }
        return Ok(());
    }
    let machine = Machine::describe();
    let cfg = dispatch::config();
    let mut not_measured = Vec::new();

    let sizes: &[(usize, usize)] = if quick {
        &[(1, 5), (10, 3), (100, 2), (1_000, 1)]
    } else {
        &[(1, 30), (10, 20), (100, 10), (10_000, 1)]
    };
    eprintln!("bench: dispatcher, {} invocation sizes …", sizes.len());
    let dispatcher = dispatch::sizes(sizes, DISPATCHER_LATENCY).await?;

    let (invocations, per) = if quick { (40, 10) } else { (200, 10) };
    eprintln!("bench: {invocations} concurrent invocations against the SubmitJob cap …");
    let cap = dispatch::cap(invocations, per, DISPATCHER_LATENCY).await?;

    let worker_bin = root.join("target/release/worker");
    anyhow::ensure!(
        worker_bin.exists(),
        "{} is missing: run `cargo build --release -p worker` (make bench does)",
        worker_bin.display()
    );
    let images = if quick { 200 } else { 1_000 };
    let cases = [
        Case {
            concurrency: 1,
            rate_limit: None,
        },
        Case {
            concurrency: 8,
            rate_limit: None,
        },
        Case {
            concurrency: 32,
            rate_limit: None,
        },
        Case {
            concurrency: 32,
            rate_limit: Some(200.0),
        },
    ];
    eprintln!("bench: worker, {images} images at concurrency 1, 8, 32 and 32 rate-limited …");
    let workers = worker::runs(&worker_bin, images, &cases, DETECT_LATENCY).await?;

    let mut fleet_runs = Vec::new();
    for case in fleet::cases(quick) {
        eprintln!(
            "bench: fleet of {} workers × concurrency {}, {} images, rate control {} …",
            case.processes,
            case.concurrency,
            case.images,
            case.control.as_str()
        );
        match fleet::run(&worker_bin, &case, DETECT_LATENCY).await {
            Ok(run) => fleet_runs.push(run),
            Err(e) => not_measured.push(format!("fleet {}: {e:#}", case.control.as_str())),
        }
    }

    let mut packages = Vec::new();
    match lambda::release_package() {
        Ok(p) => packages.push(p),
        Err(e) => not_measured.push(format!("release Lambda zip: {e:#}")),
    }
    // `make lambda` builds with the size profile itself; the other
    // profiles' sizes are recorded in docs/benchmarks.md.
    let dispatcher_bin = root.join("target/release/dispatcher");
    let (reps, warm) = if quick { (2, 3) } else { (5, 5) };
    eprintln!("bench: dispatcher start-up under cargo-lambda's emulator, {reps} cold starts …");
    let startup = if dispatcher_bin.exists() {
        match lambda::startup(&dispatcher_bin, reps, warm).await {
            Ok(s) => Some(s),
            Err(e) => {
                not_measured.push(format!("start-up under the emulator: {e:#}"));
                None
            }
        }
    } else {
        not_measured.push(format!(
            "start-up under the emulator: {} is missing (cargo build --release -p dispatcher)",
            dispatcher_bin.display()
        ));
        None
    };

    let (gallery_images, gallery_reps) = if quick { (200, 3) } else { (1_000, 7) };
    eprintln!(
        "bench: web gallery, first page of {gallery_images} labeled images in headless Chromium …"
    );
    let gallery = match bench::scenario_gallery::run(
        &root.join("target/release/labeler"),
        gallery_images,
        gallery_reps,
    )
    .await
    {
        Ok(g) => Some(g),
        Err(e) => {
            not_measured.push(format!("web gallery: {e:#}"));
            None
        }
    };

    eprintln!("bench: worker converting large JPEGs, with and without the conversion bound …");
    let convert = match bench::scenario_convert::runs(&worker_bin, &[2, 8]).await {
        Ok(runs) => runs,
        Err(e) => {
            not_measured.push(format!("conversions: {e:#}"));
            Vec::new()
        }
    };

    let local = local_run(&root, quick, &mut not_measured).await;

    let cost_inputs = cost_inputs(&dispatcher, &workers, local.as_ref());
    let results = Results {
        machine,
        setup: Setup {
            dispatcher_latency_ms: DISPATCHER_LATENCY.as_secs_f64() * 1e3,
            detect_labels_latency_ms: DETECT_LATENCY.as_secs_f64() * 1e3,
            write_concurrency: cfg.write_concurrency,
            submit_concurrency: cfg.submit_concurrency,
            images_per_job: cfg.images_per_job,
        },
        dispatcher,
        cap,
        worker: workers,
        fleet: fleet_runs,
        packages,
        startup,
        gallery,
        convert,
        local,
        not_measured,
        cost_inputs,
    };

    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs)?;
    if !results.fleet.is_empty() {
        let plot = docs.join(report::FLEET_PLOT);
        std::fs::create_dir_all(plot.parent().context("a folder for the figure")?)?;
        std::fs::write(&plot, bench::plot::fleet_rates(&results.fleet)?)
            .with_context(|| format!("write {}", plot.display()))?;
    }
    let path = docs.join("benchmarks.md");
    let existing = std::fs::read_to_string(&path).ok();
    std::fs::write(
        &path,
        report::document(existing.as_deref(), &report::section(&results)),
    )
    .with_context(|| format!("write {}", path.display()))?;
    std::fs::write(
        docs.join("cost.md"),
        cost::render(&results.cost_inputs, results.machine.day()),
    )?;

    println!("{}", report::text_table(&report::rows(&results)));
    for n in &results.not_measured {
        println!("not measured: {n}");
    }
    println!("written: docs/benchmarks.md, docs/cost.md, docs/img/fleet-rate.svg, target/bench/results.json");
    Ok(())
}

/// Images of the bench corpus in the local-backend runs.
fn local_images(quick: bool) -> usize {
    if quick {
        200
    } else {
        1_000
    }
}

/// The local backend and the cascade against Rekognition, or why not.
async fn local_run(
    root: &std::path::Path,
    quick: bool,
    not_measured: &mut Vec<String>,
) -> Option<LocalResults> {
    let images = local_images(quick);
    eprintln!("bench: local model and cascade against Rekognition, {images} images …");
    match local::measure(&local::Plan::new(root, images, DETECT_LATENCY)).await {
        Ok(results) => Some(results),
        Err(e) => {
            not_measured.push(format!("local backend: {e:#}"));
            None
        }
    }
}

/// The cost model's inputs, from the measured runs where there is one.
fn cost_inputs(
    dispatcher: &[SizeResult],
    workers: &[worker::WorkerRun],
    local: Option<&LocalResults>,
) -> Inputs {
    let mut inputs = Inputs::from_code();
    inputs.local = local.and_then(LocalResults::cost_inputs);
    let by_size = |n: usize| dispatcher.iter().find(|d| d.images == n);
    if let Some(single) = by_size(1) {
        inputs.lambda_seconds_single = single.median_s;
    }
    if let Some(batch) = by_size(inputs.sqs_batch_size) {
        inputs.lambda_seconds_batch = batch.median_s;
        inputs.dispatcher_wru_per_image = batch.write_units_per_image;
        inputs.manifest_puts_per_image = batch.manifests as f64 / batch.images as f64;
    }
    if let Some(w) = workers
        .iter()
        .find(|w| w.concurrency == inputs.worker_concurrency && w.rate_limit.is_none())
    {
        inputs.worker_rru_per_image = w.read_units_per_image;
        inputs.worker_wru_per_image = w.write_units_per_image;
        inputs.worker_efficiency = w.ratio.min(1.0);
    }
    inputs.labels_per_image = bench::standin::Settings::default().labels_per_image;
    inputs
}
