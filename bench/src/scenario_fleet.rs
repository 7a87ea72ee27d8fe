//! A fleet of workers sharing one DetectLabels quota: N release workers
//! started together, each on its chunk of one manifest as the children of
//! one array job are, against one stand-in whose DetectLabels accepts
//! [`LIMIT`] calls a second from all of them together and throttles the
//! rest. Each worker is told the fleet's rate and size through the
//! environment (`LABELER_FLEET_RATE`, `LABELER_FLEET_SIZE`,
//! `LABELER_RATE_CONTROL`); the baseline leaves them unset.

use crate::process::{median, repo_root, run_measured_within};
use crate::scenario_dispatcher::TABLE;
use crate::scenario_worker::{chunk, command, prepare};
use crate::standin::{op, RateSeries, Settings, StandIn, SERIES_STEP};
use anyhow::ensure;
use labeler_core::schema::{self, attr, Status};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// DetectLabels calls a second the stand-in accepts from the whole fleet.
pub const LIMIT: f64 = 50.0;
/// Calls the stand-in's DetectLabels bucket holds when full: one second of
/// the limit. Rekognition documents no burst; one second's worth lets the
/// fleet's simultaneous start through without letting it overshoot for long.
pub const BURST: f64 = 50.0;
/// Target: the accepted rate as a fraction of [`LIMIT`].
pub const RATE_TARGET: f64 = 0.9;
/// Target: throttled calls as a fraction of all DetectLabels calls.
pub const THROTTLED_TARGET: f64 = 0.05;

/// The environment the fleet settings are read from.
const FLEET_ENV: [&str; 3] = [
    "LABELER_FLEET_RATE",
    "LABELER_FLEET_SIZE",
    "LABELER_RATE_CONTROL",
];

/// How the workers share the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// `LABELER_RATE_CONTROL=aimd`: each worker starts at rate / size and
    /// adapts to throttling.
    Aimd,
    /// `LABELER_RATE_CONTROL=sdk-adaptive`: the SDK's adaptive retry mode.
    SdkAdaptive,
    /// No fleet settings at all (the baseline).
    None,
}

impl Control {
    /// The name on the command line and in `LABELER_RATE_CONTROL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Aimd => "aimd",
            Control::SdkAdaptive => "sdk-adaptive",
            Control::None => "none",
        }
    }

    /// Parses [`Control::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        [Control::Aimd, Control::SdkAdaptive, Control::None]
            .into_iter()
            .find(|c| c.as_str() == name)
    }
}

/// One fleet: how many workers, how each runs, on how many images.
#[derive(Debug, Clone, Copy)]
pub struct FleetCase {
    /// Worker processes started together.
    pub processes: usize,
    /// `--concurrency` of each.
    pub concurrency: usize,
    /// Images over all processes.
    pub images: usize,
    /// Fleet rate control.
    pub control: Control,
}

/// The cases of `make bench` (`quick`: about 1,000 images each).
pub fn cases(quick: bool) -> Vec<FleetCase> {
    let (large, baseline) = if quick {
        (1_000, 1_000)
    } else {
        (10_000, 2_000)
    };
    let case = |control, processes, concurrency, images| FleetCase {
        processes,
        concurrency,
        images,
        control,
    };
    vec![
        case(Control::Aimd, 16, 8, large),
        case(Control::Aimd, 4, 32, large),
        case(Control::SdkAdaptive, 16, 8, large),
        case(Control::None, 16, 8, baseline),
    ]
}

/// One fleet run.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    /// Fleet rate control.
    pub control: Control,
    /// Worker processes.
    pub processes: usize,
    /// `--concurrency` of each.
    pub concurrency: usize,
    /// Images over all processes.
    pub images: usize,
    /// Whether the worker binary knows `--fleet-rate` (an older one ignores
    /// the fleet settings).
    pub fleet_flags: bool,
    /// DetectLabels calls a second the stand-in accepts.
    pub limit_per_s: f64,
    /// Its burst.
    pub burst: f64,
    /// DetectLabels calls accepted.
    pub accepted: u64,
    /// DetectLabels calls throttled.
    pub throttled: u64,
    /// `throttled / (accepted + throttled)`.
    pub throttled_fraction: f64,
    /// [`sustained_rate`] of the accepted calls.
    pub sustained_per_s: f64,
    /// `sustained_per_s / limit_per_s`.
    pub sustained_ratio: f64,
    /// [`median_rate`] of the accepted calls.
    pub median_per_s: f64,
    /// `median_per_s / limit_per_s`.
    pub median_ratio: f64,
    /// Images whose record ended FAILED.
    pub failed: usize,
    /// Images whose record did not end LABELED.
    pub not_labeled: usize,
    /// Exit code of each process (`None`: killed by a signal).
    pub exit_codes: Vec<Option<i32>>,
    /// From starting the processes to the last one's exit, seconds.
    pub drain_s: f64,
    /// `images / limit_per_s`.
    pub ideal_drain_s: f64,
    /// `ideal_drain_s / drain_s`.
    pub drain_ratio: f64,
    /// Largest peak RSS of one process, bytes.
    pub peak_rss_max_bytes: u64,
    /// Sum of the processes' peak RSS, bytes.
    pub peak_rss_sum_bytes: u64,
    /// DetectLabels calls (accepted, throttled) in each second from the
    /// stand-in's start.
    pub per_second: Vec<(u32, u32)>,
}

impl FleetRun {
    /// The case in words, e.g. `aimd, 16 processes × concurrency 8, 10,000 images`.
    pub fn label(&self) -> String {
        let control = match self.control {
            Control::None => "baseline (no fleet settings)",
            other => other.as_str(),
        };
        format!(
            "{control}, {} processes × concurrency {}, {} images",
            self.processes,
            self.concurrency,
            crate::cost::group(self.images as u64)
        )
    }
}

#[cfg(test)]
impl FleetRun {
    /// A short aimd run that stayed near the limit, for tests.
    pub(crate) fn example() -> Self {
        Self {
            control: Control::Aimd,
            processes: 4,
            concurrency: 8,
            images: 200,
            fleet_flags: true,
            limit_per_s: LIMIT,
            burst: BURST,
            accepted: 200,
            throttled: 4,
            throttled_fraction: 4.0 / 204.0,
            sustained_per_s: 49.0,
            sustained_ratio: 0.98,
            median_per_s: 50.0,
            median_ratio: 1.0,
            failed: 0,
            not_labeled: 0,
            exit_codes: vec![Some(0); 4],
            drain_s: 4.2,
            ideal_drain_s: 4.0,
            drain_ratio: 4.0 / 4.2,
            peak_rss_max_bytes: 20 << 20,
            peak_rss_sum_bytes: 80 << 20,
            per_second: vec![(50, 4), (50, 0), (50, 0), (50, 0)],
        }
    }
}

/// Steps of a [`RateSeries`] in one second.
fn steps_per_second() -> usize {
    (Duration::from_secs(1).as_nanos() / SERIES_STEP.as_nanos()) as usize
}

/// Accepted calls a second from the first accepted call to the last:
/// `(n − 1) / (last − first)`, since n calls bound n − 1 intervals; 0 with
/// fewer than two calls.
pub fn sustained_rate(series: &RateSeries) -> f64 {
    let n = series.total_accepted();
    match (series.first_accepted, series.last_accepted) {
        (Some(first), Some(last)) if n >= 2 && last > first => {
            (n - 1) as f64 / (last - first).as_secs_f64()
        }
        _ => 0.0,
    }
}

/// Median of the accepted calls in each whole second from the first
/// accepted call's step on, up to the last accepted call's step; the
/// [`sustained_rate`] when that span holds no whole second.
pub fn median_rate(series: &RateSeries) -> f64 {
    let step = |at: Option<Duration>| at.map(|t| (t.as_nanos() / SERIES_STEP.as_nanos()) as usize);
    let (Some(first), Some(last)) = (step(series.first_accepted), step(series.last_accepted))
    else {
        return 0.0;
    };
    let per = steps_per_second();
    let seconds: Vec<f64> = (0..(last + 1 - first) / per)
        .map(|k| first + k * per)
        .map(|s| series.accepted[s..s + per].iter().sum::<u32>() as f64)
        .collect();
    if seconds.is_empty() {
        sustained_rate(series)
    } else {
        median(&seconds)
    }
}

/// Accepted and throttled calls in each second from the start.
pub fn per_second(series: &RateSeries) -> Vec<(u32, u32)> {
    let per = steps_per_second();
    series
        .accepted
        .chunks(per)
        .zip(series.throttled.chunks(per))
        .map(|(a, t)| (a.iter().sum(), t.iter().sum()))
        .collect()
}

/// Splits `items` in order into `parts` chunks whose sizes differ by at most
/// one (fewer chunks when there are fewer items).
pub fn split_evenly<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let parts = parts.clamp(1, items.len().max(1));
    let (size, larger) = (items.len() / parts, items.len() % parts);
    let mut rest = items.into_iter();
    (0..parts)
        .map(|i| rest.by_ref().take(size + usize::from(i < larger)).collect())
        .collect()
}

/// Whether `worker --help` lists `--fleet-rate`.
fn knows_fleet_flags(worker: &Path) -> bool {
    std::process::Command::new(worker)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--fleet-rate"))
}

/// Runs one fleet against a fresh stand-in whose DetectLabels answers in
/// `detect_latency`, capped at [`LIMIT`] with burst [`BURST`]. A process
/// still running after three times the ideal drain time (plus a minute) is
/// killed.
pub async fn run(
    worker: &Path,
    case: &FleetCase,
    detect_latency: Duration,
) -> anyhow::Result<FleetRun> {
    ensure!(
        case.processes >= 1 && case.images >= case.processes,
        "a fleet needs at least one image per process"
    );
    let scratch = repo_root().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    let standin = StandIn::start(Settings {
        latency_per_op: [(op::DETECT_LABELS, detect_latency)].into_iter().collect(),
        detect_labels_tps: Some(LIMIT),
        detect_labels_burst: Some(BURST),
        ..Settings::default()
    })
    .await?;
    let run = format!(
        "fleet-{}-{}x{}",
        case.control.as_str(),
        case.processes,
        case.concurrency
    );
    let chunks = split_evenly(chunk(&run, case.images), case.processes);
    let parameter = prepare(&standin, &run, &chunks);
    let log = std::fs::File::create(scratch.join(format!("{run}.log")))?;
    let ideal_drain_s = case.images as f64 / LIMIT;
    let deadline = Duration::from_secs_f64(ideal_drain_s * 3.0 + 60.0);

    let mut children = Vec::new();
    for index in 0..chunks.len() {
        let mut cmd = command(
            worker,
            &parameter,
            case.concurrency,
            &standin,
            log.try_clone()?,
        );
        cmd.env("AWS_BATCH_JOB_ARRAY_INDEX", index.to_string())
            .env("LABELER_REUSE_LABELS", "false");
        for name in FLEET_ENV {
            cmd.env_remove(name);
        }
        if case.control != Control::None {
            let [rate, size, control] = FLEET_ENV;
            cmd.env(rate, LIMIT.to_string())
                .env(size, chunks.len().to_string())
                .env(control, case.control.as_str());
        }
        children.push(run_measured_within(cmd, deadline));
    }
    let started = Instant::now();
    let done = futures::future::try_join_all(children).await?;
    let drain_s = started.elapsed().as_secs_f64();

    let status_of = |bucket: &str, key: &str| {
        standin
            .item(TABLE, &schema::image_pk(bucket, key), schema::IMAGE_SK)
            .and_then(|item| item[attr::STATUS]["S"].as_str().map(str::to_owned))
    };
    let statuses: Vec<Option<String>> = chunks
        .iter()
        .flatten()
        .map(|image| status_of(&image.bucket, &image.key))
        .collect();
    let is = |s: &Option<String>, status: Status| s.as_deref() == Some(status.as_str());
    let series = standin.detect_labels_series();
    let (accepted, throttled) = (series.total_accepted(), series.total_throttled());
    let sustained_per_s = sustained_rate(&series);
    let median_per_s = median_rate(&series);
    Ok(FleetRun {
        control: case.control,
        processes: chunks.len(),
        concurrency: case.concurrency,
        images: case.images,
        fleet_flags: knows_fleet_flags(worker),
        limit_per_s: LIMIT,
        burst: BURST,
        accepted,
        throttled,
        throttled_fraction: throttled as f64 / (accepted + throttled).max(1) as f64,
        sustained_per_s,
        sustained_ratio: sustained_per_s / LIMIT,
        median_per_s,
        median_ratio: median_per_s / LIMIT,
        failed: statuses.iter().filter(|s| is(s, Status::Failed)).count(),
        not_labeled: statuses.iter().filter(|s| !is(s, Status::Labeled)).count(),
        exit_codes: done.iter().map(|d| d.code).collect(),
        drain_s,
        ideal_drain_s,
        drain_ratio: ideal_drain_s / drain_s,
        peak_rss_max_bytes: done.iter().map(|d| d.peak_rss_bytes).max().unwrap_or(0),
        peak_rss_sum_bytes: done.iter().map(|d| d.peak_rss_bytes).sum(),
        per_second: per_second(&series),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series with `per_step` accepted calls in each of `steps` steps, the
    /// first at `first_step`.
    fn steady(first_step: usize, steps: usize, per_step: u32) -> RateSeries {
        let mut series = RateSeries::default();
        for s in first_step..first_step + steps {
            for k in 0..per_step {
                let at = SERIES_STEP * s as u32 + SERIES_STEP * k / per_step;
                series.record(at, false);
            }
        }
        series
    }

    #[test]
    fn the_sustained_rate_counts_intervals_between_the_first_and_last_accepted_call() {
        let series = steady(3, 20, 5);

        let rate = sustained_rate(&series);

        assert!((rate - 50.0).abs() < 0.01, "{rate}");
    }

    #[test]
    fn a_single_accepted_call_has_no_rate() {
        let mut series = RateSeries::default();
        series.record(Duration::from_millis(10), false);
        series.record(Duration::from_millis(20), true);

        assert_eq!(sustained_rate(&series), 0.0);
        assert_eq!(median_rate(&series), 0.0);
    }

    #[test]
    fn the_median_rate_sees_through_a_burst_and_a_stall() {
        let mut series = steady(5, 60, 5);
        series.accepted[5] += 40;
        for step in 30..40 {
            series.accepted[step] = 0;
        }

        assert_eq!(median_rate(&series), 50.0);
        assert_ne!(sustained_rate(&series).round(), 50.0);
    }

    #[test]
    fn the_median_rate_falls_back_to_the_sustained_rate_within_a_second() {
        let series = steady(0, 5, 4);

        assert_eq!(median_rate(&series), sustained_rate(&series));
    }

    #[test]
    fn calls_are_summed_per_second_from_the_start() {
        let mut series = steady(8, 4, 1);
        series.record(SERIES_STEP * 11, true);

        assert_eq!(per_second(&series), [(2, 0), (2, 1)]);
    }

    #[test]
    fn images_are_split_evenly_and_in_order() {
        let chunks = split_evenly((0..10).collect(), 4);

        assert_eq!(
            chunks,
            [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![8, 9]]
        );
        assert_eq!(split_evenly(vec![1, 2], 5), [vec![1], vec![2]]);
        assert_eq!(split_evenly(Vec::<u8>::new(), 3), [Vec::<u8>::new()]);
    }

    #[test]
    fn control_names_round_trip() {
        for control in [Control::Aimd, Control::SdkAdaptive, Control::None] {
            assert_eq!(Control::parse(control.as_str()), Some(control));
        }
        assert_eq!(Control::parse("fast"), None);
    }
}
