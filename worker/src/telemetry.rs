//! The worker's CloudWatch metrics, written as embedded-metric-format lines
//! on stdout ([`labeler_core::emf`]): the Batch job's `awslogs` driver sends
//! them to the worker's log group, where CloudWatch extracts the metrics.
//!
//! A run writes the metrics of what happened since its last line every
//! [`FLUSH_EVERY`] and once more when its chunk ends, so a dashboard follows
//! a long chunk minute by minute and a short one costs a single line.
//!
//! | metric | unit | what |
//! |---|---|---|
//! | `ImagesLabeled` | Count | images this process recorded LABELED (reuses included) |
//! | `ImagesReused` | Count | of those, labeled with the labels of the same content, without DetectLabels |
//! | `ImagesFailed` | Count | images recorded FAILED; also per `ReasonClass` ([`ReasonClass`]) |
//! | `ImagesAlreadyDone` | Count | images with a terminal record already (retries, duplicate jobs) |
//! | `ImagesSuperseded` | Count | images owned by a newer upload, deleted, or taken by another job |
//! | `ImagesLeftQueued` | Count | images left QUEUED for Batch's next attempt (transient faults, shutdown) |
//! | `DetectLabelsCalls` | Count | DetectLabels calls made, throttled ones included |
//! | `DetectLabelsThrottles` | Count | of those, throttled by the account's quota |
//! | `DetectLabelsLatency` | Milliseconds | every call's duration (percentiles in CloudWatch) |
//! | `WriteConflicts` | Count | conditional writes that lost to another writer |
//! | `LocalInferences` | Count | images the local model classified (backends `local`, `cascade`) |
//! | `LocalLatency` | Milliseconds | each local classification, waiting for a slot included |
//! | `CascadeEscalations` | Count | images the cascade sent on to DetectLabels |
//! | `CascadeBudgetReached` | Count | images the cascade kept local because the period's Rekognition budget was spent |
//! | `RateLimit` | Count/Second | the process's DetectLabels pace at the flush, when it has one |
//! | `ChunkDuration` | Seconds | the whole chunk, in the last line only |
//!
//! Every line has the one dimension `Table`; the per-class `ImagesFailed`
//! lines add `ReasonClass`.

use crate::outcome::Outcome;
use labeler_core::emf::{MetricLine, Unit};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often a run writes its metrics.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Counters of the AWS calls made by the images in flight.
#[derive(Debug, Default)]
pub struct Telemetry {
    calls: AtomicUsize,
    throttles: AtomicUsize,
    conflicts: AtomicUsize,
    latencies_ms: Mutex<Vec<f64>>,
    escalations: AtomicUsize,
    budget_reached: AtomicUsize,
    local_ms: Mutex<Vec<f64>>,
}

/// What [`Telemetry`] counted since it was last taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls {
    /// DetectLabels calls.
    pub calls: usize,
    /// Throttled DetectLabels calls.
    pub throttles: usize,
    /// Conditional writes lost to another writer.
    pub conflicts: usize,
    /// Duration of every DetectLabels call, ms.
    pub latencies_ms: Vec<f64>,
    /// Images the cascade sent on to DetectLabels.
    pub escalations: usize,
    /// Images the cascade kept local for want of budget.
    pub budget_reached: usize,
    /// Duration of every local classification, ms.
    pub local_ms: Vec<f64>,
}

impl Telemetry {
    /// One DetectLabels call that took `took`.
    pub fn detect_labels(&self, took: Duration, throttled: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if throttled {
            self.throttles.fetch_add(1, Ordering::Relaxed);
        }
        push(&self.latencies_ms, took);
    }

    /// A conditional write that lost to another writer.
    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// One image the local model classified in `took`.
    pub fn local_inference(&self, took: Duration) {
        push(&self.local_ms, took);
    }

    /// One image the cascade sends on to DetectLabels.
    pub fn escalated(&self) {
        self.escalations.fetch_add(1, Ordering::Relaxed);
    }

    /// One image the cascade keeps local because the budget is spent.
    pub fn budget_reached(&self) {
        self.budget_reached.fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted since the last call, and a fresh start.
    pub fn take(&self) -> Calls {
        Calls {
            calls: self.calls.swap(0, Ordering::Relaxed),
            throttles: self.throttles.swap(0, Ordering::Relaxed),
            conflicts: self.conflicts.swap(0, Ordering::Relaxed),
            latencies_ms: drain(&self.latencies_ms),
            escalations: self.escalations.swap(0, Ordering::Relaxed),
            budget_reached: self.budget_reached.swap(0, Ordering::Relaxed),
            local_ms: drain(&self.local_ms),
        }
    }
}

fn push(list: &Mutex<Vec<f64>>, took: Duration) {
    list.lock()
        .expect("a latency list lock is never poisoned")
        .push(took.as_secs_f64() * 1e3);
}

fn drain(list: &Mutex<Vec<f64>>) -> Vec<f64> {
    std::mem::take(&mut *list.lock().expect("a latency list lock is never poisoned"))
}

/// One flush: what happened to images since the last one (`images`), the
/// calls counted, the pace and, in the last flush, the chunk's duration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flush {
    /// Image outcomes since the last flush.
    pub images: Outcome,
    /// Calls since the last flush.
    pub calls: Calls,
    /// DetectLabels calls per second the process paces itself to.
    pub rate_limit: Option<f64>,
    /// The chunk's duration, in the last flush.
    pub chunk: Option<Duration>,
}

/// The EMF lines of a flush for `table` at `at_millis`.
pub fn lines(table: &str, at_millis: u64, flush: Flush) -> Vec<String> {
    let Flush {
        images,
        calls,
        rate_limit,
        chunk,
    } = flush;
    let mut main = MetricLine::new(at_millis, table)
        .count("ImagesLabeled", images.labeled)
        .count("ImagesReused", images.reused)
        .count("ImagesFailed", images.failed)
        .count("ImagesAlreadyDone", images.already_done)
        .count("ImagesSuperseded", images.superseded)
        .count("ImagesLeftQueued", images.retryable + images.unfinished)
        .count("DetectLabelsCalls", calls.calls)
        .count("DetectLabelsThrottles", calls.throttles)
        .count("WriteConflicts", calls.conflicts)
        .count("LocalInferences", calls.local_ms.len())
        .count("CascadeEscalations", calls.escalations)
        .count("CascadeBudgetReached", calls.budget_reached)
        .values(
            "DetectLabelsLatency",
            Unit::Milliseconds,
            calls.latencies_ms,
        )
        .values("LocalLatency", Unit::Milliseconds, calls.local_ms);
    if let Some(rate) = rate_limit {
        main = main.value("RateLimit", Unit::CountPerSecond, rate);
    }
    if let Some(chunk) = chunk {
        main = main.value("ChunkDuration", Unit::Seconds, chunk.as_secs_f64());
    }
    let mut out = main.render();
    for (class, count) in &images.failed_by_class {
        out.extend(
            MetricLine::new(at_millis, table)
                .dimension("ReasonClass", class.as_str())
                .count("ImagesFailed", *count)
                .render(),
        );
    }
    out
}

/// Keeps the run's outcome as of the last flush, to write differences.
#[derive(Debug, Default)]
pub struct Flusher {
    reported: Outcome,
}

impl Flusher {
    /// The flush of everything since the last one.
    pub fn flush(
        &mut self,
        now: &Outcome,
        telemetry: &Telemetry,
        rate_limit: Option<f64>,
        chunk: Option<Duration>,
    ) -> Flush {
        let images = now.since(&self.reported);
        self.reported = now.clone();
        Flush {
            images,
            calls: telemetry.take(),
            rate_limit,
            chunk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ReasonClass;
    use crate::outcome::ClassCounts;
    use labeler_core::emf::check;
    use serde_json::Value;

    const AT: u64 = 1_764_460_800_000;

    #[test]
    fn a_flush_writes_every_documented_metric_in_lines_that_pass_the_specification() {
        let telemetry = Telemetry::default();
        telemetry.detect_labels(Duration::from_millis(120), false);
        telemetry.detect_labels(Duration::from_millis(80), true);
        telemetry.conflict();
        telemetry.local_inference(Duration::from_millis(40));
        telemetry.escalated();
        telemetry.budget_reached();
        let now = Outcome {
            images: 5,
            labeled: 3,
            reused: 1,
            failed: 2,
            failed_by_class: ClassCounts::from([
                (ReasonClass::NotAnImage, 1),
                (ReasonClass::TooLarge, 1),
            ]),
            ..Outcome::default()
        };
        let flush =
            Flusher::default().flush(&now, &telemetry, Some(3.125), Some(Duration::from_secs(42)));

        let lines = lines("photos-results", AT, flush);

        assert_eq!(lines.len(), 3, "one line, then one per failure class");
        let names: Vec<String> = lines.iter().flat_map(|l| check(l).unwrap()).collect();
        for name in [
            "ImagesLabeled",
            "ImagesReused",
            "ImagesFailed",
            "ImagesAlreadyDone",
            "ImagesSuperseded",
            "ImagesLeftQueued",
            "DetectLabelsCalls",
            "DetectLabelsThrottles",
            "DetectLabelsLatency",
            "WriteConflicts",
            "LocalInferences",
            "LocalLatency",
            "CascadeEscalations",
            "CascadeBudgetReached",
            "RateLimit",
            "ChunkDuration",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }
        let main: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            main["DetectLabelsLatency"],
            serde_json::json!([120.0, 80.0])
        );
        assert_eq!(main["DetectLabelsThrottles"], 1.0);
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let local = parsed
            .iter()
            .find(|v| !v["LocalLatency"].is_null())
            .unwrap();
        assert_eq!(
            local["LocalLatency"], 40.0,
            "one value is written as a number"
        );
        assert!(parsed.iter().any(|v| v["CascadeEscalations"] == 1.0));
        let class: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(class["ReasonClass"], "not_an_image");
        assert_eq!(class["ImagesFailed"], 1.0);
    }

    #[test]
    fn each_flush_reports_only_what_happened_since_the_last_one() {
        let telemetry = Telemetry::default();
        let mut flusher = Flusher::default();
        let mut now = Outcome {
            labeled: 4,
            ..Outcome::default()
        };
        telemetry.detect_labels(Duration::from_millis(50), false);
        let first = flusher.flush(&now, &telemetry, None, None);
        now.labeled = 6;
        now.failed = 1;
        now.failed_by_class.insert(ReasonClass::Unreadable, 1);
        let second = flusher.flush(&now, &telemetry, None, None);

        assert_eq!(first.images.labeled, 4);
        assert_eq!(first.calls.calls, 1);
        assert_eq!(second.images.labeled, 2);
        assert_eq!(second.images.failed, 1);
        assert_eq!(
            second.images.failed_by_class,
            ClassCounts::from([(ReasonClass::Unreadable, 1)])
        );
        assert_eq!(second.calls, Calls::default());
    }
}
