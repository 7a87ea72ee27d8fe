//! The dispatcher in process: `dispatcher::dispatch::handle` with SQS
//! batches of S3 notifications, its clients pointed at a stand-in.

use crate::events;
use crate::process::median;
use crate::standin::{op, AcceptedJob, Settings, StandIn, SUBMIT_JOB_TPS};
use anyhow::{bail, Context};
use dispatcher::config::Config;
use labeler_core::job::{ImageSource, Manifest};
use labeler_core::store::Clock;
use labeler_core::{ImageRef, JobSpec};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Results table the dispatcher writes.
pub const TABLE: &str = "bench-labels";

/// The dispatcher's configuration with its defaults (`IMAGES_PER_JOB=100`,
/// `SUBMIT_CONCURRENCY=4`, `WRITE_CONCURRENCY=16`, `MAX_ATTEMPTS=8`).
pub fn config() -> Config {
    Config::from_lookup(|name| match name {
        "JOB_QUEUE" => Some("bench-queue".into()),
        "JOB_DEFINITION" => Some("bench-job-definition".into()),
        "TABLE_NAME" => Some(TABLE.into()),
        _ => None,
    })
    .expect("the benchmark's configuration is valid")
}

/// The images a job accepted by the stand-in holds (inline or in its
/// manifest, which the stand-in's S3 kept).
pub fn job_images(standin: &StandIn, job: &AcceptedJob) -> anyhow::Result<Vec<ImageRef>> {
    let raw = job
        .parameter
        .as_deref()
        .context("job without a `job` parameter")?;
    let spec = JobSpec::from_parameter(raw)?;
    let chunks = match spec.images {
        ImageSource::Inline(chunks) => chunks,
        ImageSource::Manifest(m) => {
            let body = standin.object(&m.bucket, &m.key).with_context(|| {
                format!("manifest s3://{}/{} was never written", m.bucket, m.key)
            })?;
            Manifest::from_body(&body, &m)?.chunks
        }
    };
    Ok(chunks.into_iter().flatten().collect())
}

/// One invocation size, measured.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    /// Images per invocation.
    pub images: usize,
    /// Measured invocations.
    pub reps: usize,
    /// Median invocation time, seconds.
    pub median_s: f64,
    /// Stand-in-limited ideal time, seconds.
    pub ideal_s: f64,
    /// `ideal_s / median_s`.
    pub ratio: f64,
    /// Images per second at the median.
    pub images_per_s: f64,
    /// SubmitJob calls per invocation.
    pub submit_calls: u64,
    /// Jobs' array sizes (`None` for plain jobs).
    pub array_sizes: Vec<Option<u64>>,
    /// Manifests written per invocation.
    pub manifests: u64,
    /// DynamoDB calls per invocation.
    pub dynamodb_calls: u64,
    /// DynamoDB write units per image.
    pub write_units_per_image: f64,
    /// Images in the accepted jobs (= `images`).
    pub images_in_jobs: usize,
}

/// The ideal time of one invocation of `n` images against a stand-in that
/// answers every call in `latency`, given the jobs the dispatcher made:
/// `⌈n/W⌉` rounds of claims, `⌈J/S⌉` rounds of (manifest PUT +) SubmitJob,
/// then for each job `⌈n_j/W⌉` rounds of job-id writes, with `W` writes and
/// `S` submissions in flight.
pub fn ideal_seconds(
    n: usize,
    job_sizes: &[usize],
    manifests: bool,
    cfg: &Config,
    latency: Duration,
) -> f64 {
    let w = cfg.write_concurrency.max(1);
    let s = cfg.submit_concurrency.max(1);
    let claims = n.div_ceil(w);
    let submits = job_sizes.len().div_ceil(s) * if manifests { 2 } else { 1 };
    let records: usize = job_sizes.iter().map(|j| j.div_ceil(w)).sum();
    (claims + submits + records) as f64 * latency.as_secs_f64()
}

/// Measures invocations of each `(images, repetitions)` against a stand-in
/// answering in `latency`.
pub async fn sizes(cases: &[(usize, usize)], latency: Duration) -> anyhow::Result<Vec<SizeResult>> {
    let standin = StandIn::start(Settings {
        latency,
        ..Settings::default()
    })
    .await?;
    let cfg = config();
    let clients = crate::clients::dispatcher(&standin.endpoint(), &cfg).await;
    // A warm-up invocation: connections open, as in a warm Lambda.
    invoke(&clients, &cfg, "warmup", 0..cfg.write_concurrency).await?;

    let mut results = Vec::new();
    for &(n, reps) in cases {
        let mut times = Vec::new();
        let mut last = None;
        for rep in 0..reps.max(1) {
            standin.reset_stats();
            let run = format!("n{n}-r{rep}");
            let started = Instant::now();
            invoke(&clients, &cfg, &run, 0..n).await?;
            times.push(started.elapsed().as_secs_f64());
            last = Some(standin.stats());
        }
        let stats = last.unwrap_or_default();
        let jobs = standin.accepted_jobs();
        let mut job_sizes = Vec::new();
        for job in &jobs {
            job_sizes.push(job_images(&standin, job)?.len());
        }
        let manifests = stats.get(op::PUT_OBJECT).map_or(0, |s| s.calls);
        let ideal = ideal_seconds(n, &job_sizes, manifests > 0, &cfg, latency);
        let median_s = median(&times);
        let dynamodb: Vec<_> = stats
            .iter()
            .filter(|(k, _)| k.starts_with("DynamoDB."))
            .map(|(_, v)| v)
            .collect();
        results.push(SizeResult {
            images: n,
            reps: times.len(),
            median_s,
            ideal_s: ideal,
            ratio: ideal / median_s,
            images_per_s: n as f64 / median_s,
            submit_calls: stats.get(op::SUBMIT_JOB).map_or(0, |s| s.calls),
            array_sizes: jobs.iter().map(|j| j.array_size).collect(),
            manifests,
            dynamodb_calls: dynamodb.iter().map(|s| s.calls).sum(),
            write_units_per_image: dynamodb.iter().map(|s| s.write_units).sum::<f64>() / n as f64,
            images_in_jobs: job_sizes.iter().sum(),
        });
    }
    Ok(results)
}

/// Invokes the dispatcher once with the images `range` of `run`; fails if
/// any delivery failed.
async fn invoke(
    clients: &dispatcher::dispatch::Clients,
    cfg: &Config,
    run: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let payload = events::sqs_batch(run, range);
    let answer = dispatcher::dispatch::handle(
        &payload,
        &format!("{run}-request"),
        clients,
        cfg,
        Clock::now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let failed = events::failed_message_ids(&answer);
    if !failed.is_empty() {
        bail!("{} deliveries of {run} failed", failed.len());
    }
    Ok(())
}

/// Many concurrent invocations against the SubmitJob cap.
#[derive(Debug, Clone, Serialize)]
pub struct CapResult {
    /// Concurrent invocations.
    pub invocations: usize,
    /// Images per invocation.
    pub images_per_invocation: usize,
    /// Images sent.
    pub images_sent: usize,
    /// Distinct images in accepted jobs.
    pub images_in_accepted_jobs: usize,
    /// Images in accepted jobs counted with repeats (> distinct means an
    /// image was submitted twice).
    pub image_slots_in_accepted_jobs: usize,
    /// SubmitJob calls accepted.
    pub jobs_accepted: usize,
    /// SubmitJob calls answered 429.
    pub throttled: u64,
    /// Messages the platform had to redeliver (their job was still
    /// throttled after all attempts).
    pub redelivered_messages: usize,
    /// Images never accepted (after up to 20 deliveries).
    pub lost_images: usize,
    /// The cap, SubmitJob calls per second.
    pub cap_tps: f64,
    /// The stand-in's burst.
    pub burst: f64,
    /// Accepted SubmitJob calls per second after the initial burst.
    pub sustained_tps: f64,
    /// `sustained_tps / cap_tps`.
    pub ratio: f64,
    /// From the first invocation to the last acceptance, seconds.
    pub wall_s: f64,
}

/// `invocations` concurrent invocations of `per` images each, every one
/// with its own clients and retry quota (as separate Lambda execution
/// environments have, see [`crate::clients::dispatcher_environment`]),
/// against a stand-in capping SubmitJob at 50 per second. Messages reported
/// in `batchItemFailures` are delivered again, as SQS would.
pub async fn cap(invocations: usize, per: usize, latency: Duration) -> anyhow::Result<CapResult> {
    let burst = SUBMIT_JOB_TPS;
    let standin = Arc::new(
        StandIn::start(Settings {
            latency,
            submit_job_tps: Some(SUBMIT_JOB_TPS),
            submit_job_burst: burst,
            ..Settings::default()
        })
        .await?,
    );
    let cfg = Arc::new(config());
    let started = Instant::now();
    // One task polls all invocations: the dispatcher's future is not `Send`
    // for `tokio::spawn` (higher-ranked lifetimes in its streams), and at
    // 50 SubmitJob calls a second the CPU is not the limit.
    let invocations_done = futures::future::join_all((0..invocations).map(|inv| {
        let (standin, cfg) = (Arc::clone(&standin), Arc::clone(&cfg));
        async move {
            let run = format!("cap{inv:04}");
            let clients =
                crate::clients::dispatcher_environment(&standin.endpoint(), &cfg, &run).await;
            let mut pending: Vec<usize> = (0..per).collect();
            let mut redelivered = 0;
            for attempt in 1..=20 {
                let payload = events::sqs_batch(&run, pending.iter().copied());
                let claim = format!("{run}-request-{attempt}");
                let failed: HashSet<String> = match dispatcher::dispatch::handle(
                    &payload,
                    &claim,
                    &clients,
                    &cfg,
                    Clock::now(),
                )
                .await
                {
                    Ok(answer) => events::failed_message_ids(&answer).into_iter().collect(),
                    Err(_) => pending
                        .iter()
                        .map(|&i| events::message_id(&run, i))
                        .collect(),
                };
                pending.retain(|&i| failed.contains(&events::message_id(&run, i)));
                if pending.is_empty() {
                    break;
                }
                redelivered += pending.len();
            }
            redelivered
        }
    }))
    .await;
    let redelivered: usize = invocations_done.into_iter().sum();
    let wall = started.elapsed();

    let jobs = standin.accepted_jobs();
    let mut distinct = HashSet::new();
    let mut slots = 0;
    for job in &jobs {
        for image in job_images(&standin, job)? {
            slots += 1;
            distinct.insert((image.bucket, image.key));
        }
    }
    let sent = invocations * per;
    let mut times: Vec<f64> = jobs.iter().map(|j| j.at.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    let b = burst as usize;
    let sustained = if times.len() > b + 1 {
        (times.len() - b) as f64 / (times[times.len() - 1] - times[b - 1]).max(1e-9)
    } else {
        0.0
    };
    Ok(CapResult {
        invocations,
        images_per_invocation: per,
        images_sent: sent,
        images_in_accepted_jobs: distinct.len(),
        image_slots_in_accepted_jobs: slots,
        jobs_accepted: jobs.len(),
        throttled: standin.op(op::SUBMIT_JOB).throttled,
        redelivered_messages: redelivered,
        lost_images: sent.saturating_sub(distinct.len()),
        cap_tps: SUBMIT_JOB_TPS,
        burst,
        sustained_tps: sustained,
        ratio: sustained / SUBMIT_JOB_TPS,
        wall_s: wall.as_secs_f64(),
    })
}

/// SubmitJob calls per 10,000 images, packed, from a measured invocation.
pub fn submit_calls_per_10k(result: &SizeResult) -> f64 {
    result.submit_calls as f64 * 10_000.0 / result.images as f64
}
