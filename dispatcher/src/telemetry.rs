//! The dispatcher's CloudWatch metrics: one embedded-metric-format line per
//! invocation on stdout ([`labeler_core::emf`]), which Lambda sends to the
//! function's log group, where CloudWatch extracts the metrics.
//!
//! | metric | unit | what |
//! |---|---|---|
//! | `ImagesQueued` | Count | images queued into submitted (or adopted) jobs |
//! | `ImagesSkipped` | Count | images recorded SKIPPED (suffix, size, empty) |
//! | `Duplicates` | Count | redeliveries of uploads already claimed or done |
//! | `ImagesRemoved` | Count | records removed after a delete |
//! | `JobsSubmitted` | Count | Batch jobs submitted (adopted ones not counted) |
//! | `ArrayChildrenSubmitted` | Count | array children in those jobs |
//! | `SubmitJobRetries` | Count | SubmitJob calls made again after a transient failure |
//! | `SubmitJobThrottles` | Count | SubmitJob calls Batch throttled |
//! | `DeliveriesFailed` | Count | deliveries handed back to the platform for a retry |
//! | `ImagesFailedByBatch` | Count | images recorded FAILED because their job failed |
//! | `ImagesFailedToSubmit` | Count | images recorded FAILED because Batch refused their job |
//! | `InvocationDuration` | Milliseconds | the handler's own time |
//! | `OldestQueuedAgeSeconds` | Seconds | reconciler passes only: the oldest QUEUED image's age, 0 when none is older than `RECONCILE_AFTER_SECONDS` |
//! | `ReconcileRedispatched` | Count | reconciler passes only: images dispatched again |
//! | `ReconcileFailed` | Count | reconciler passes only: images recorded FAILED (job failed, or too many dispatches) |
//!
//! Every line has the one dimension `Table`.

use labeler_core::emf::{MetricLine, Unit};
use std::time::Duration;

/// What one invocation did, in the terms of its metrics (the dispatch
/// summary converts into it): one field a metric, named after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `ImagesQueued`.
    pub images_queued: usize,
    /// `ImagesSkipped`.
    pub skipped: usize,
    /// `Duplicates`.
    pub duplicates: usize,
    /// `ImagesRemoved`.
    pub removed: usize,
    /// `JobsSubmitted`.
    pub jobs_submitted: usize,
    /// `ArrayChildrenSubmitted`.
    pub array_children_submitted: usize,
    /// `SubmitJobRetries`.
    pub submit_retries: usize,
    /// `SubmitJobThrottles`.
    pub submit_throttles: usize,
    /// `DeliveriesFailed`.
    pub failed_deliveries: usize,
    /// `ImagesFailedByBatch`.
    pub failed_by_batch: usize,
    /// `ImagesFailedToSubmit`.
    pub failed_to_submit: usize,
    /// The reconciler pass's metrics, when one ran.
    pub reconciled: Option<Reconciled>,
}

/// The metrics of a reconciler pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// `OldestQueuedAgeSeconds`.
    pub oldest_queued_secs: u64,
    /// `ReconcileRedispatched`.
    pub redispatched: usize,
    /// `ReconcileFailed`.
    pub failed: usize,
}

/// The EMF lines of one invocation.
pub fn lines(table: &str, at_millis: u64, counts: &Counts, took: Duration) -> Vec<String> {
    let mut line = MetricLine::new(at_millis, table)
        .count("ImagesQueued", counts.images_queued)
        .count("ImagesSkipped", counts.skipped)
        .count("Duplicates", counts.duplicates)
        .count("ImagesRemoved", counts.removed)
        .count("JobsSubmitted", counts.jobs_submitted)
        .count("ArrayChildrenSubmitted", counts.array_children_submitted)
        .count("SubmitJobRetries", counts.submit_retries)
        .count("SubmitJobThrottles", counts.submit_throttles)
        .count("DeliveriesFailed", counts.failed_deliveries)
        .count("ImagesFailedByBatch", counts.failed_by_batch)
        .count("ImagesFailedToSubmit", counts.failed_to_submit)
        .value(
            "InvocationDuration",
            Unit::Milliseconds,
            took.as_secs_f64() * 1e3,
        );
    if let Some(reconciled) = &counts.reconciled {
        line = line
            .value(
                "OldestQueuedAgeSeconds",
                Unit::Seconds,
                reconciled.oldest_queued_secs as f64,
            )
            .count("ReconcileRedispatched", reconciled.redispatched)
            .count("ReconcileFailed", reconciled.failed);
    }
    line.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use labeler_core::emf::check;

    #[test]
    fn an_invocation_writes_one_line_that_passes_the_specification() {
        let counts = Counts {
            images_queued: 7,
            jobs_submitted: 2,
            array_children_submitted: 3,
            submit_throttles: 1,
            ..Counts::default()
        };

        let lines = lines("t", 1_764_460_800_000, &counts, Duration::from_millis(84));

        assert_eq!(lines.len(), 1);
        let names = check(&lines[0]).unwrap();
        assert_eq!(names.len(), 12);
        assert!(!names.iter().any(|n| n == "OldestQueuedAgeSeconds"));
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["ImagesQueued"], 7.0);
        assert_eq!(v["ArrayChildrenSubmitted"], 3.0);
        assert_eq!(v["InvocationDuration"], 84.0);
    }

    #[test]
    fn a_reconciler_pass_adds_the_backlog_age() {
        let counts = Counts {
            reconciled: Some(Reconciled {
                oldest_queued_secs: 5400,
                redispatched: 2,
                failed: 2,
            }),
            ..Counts::default()
        };

        let line = lines("t", 1, &counts, Duration::ZERO).remove(0);

        check(&line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["OldestQueuedAgeSeconds"], 5400.0);
        assert_eq!(v["ReconcileFailed"], 2.0);
    }
}
