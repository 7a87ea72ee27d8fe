//! Why a Batch job failed, and whether that is about its images or about
//! the machinery that ran them: the one rule both the job-state event
//! ([`crate::dispatch`]) and the reconciler ([`crate::reconcile`]) apply.
//!
//! | Batch reports | cause | the images |
//! |---|---|---|
//! | exit code 3 ([`RETRYABLE_EXIT`]): transient faults outlasted the worker's retries, or SIGTERM | outage | stay QUEUED |
//! | exit code 4 ([`JOB_UNUSABLE_EXIT`]): the job's spec or manifest cannot be used | outage (a new dispatch writes a new spec) | stay QUEUED |
//! | status `Host EC2*`, `Your Spot Task was interrupted*` | outage (the host went away) | stay QUEUED |
//! | container `CannotPullContainerError*`, `CannotStartContainerError*`, `CannotCreateContainerError*`, `CannotInspectContainerError*`, `ResourceInitializationError*`, `DockerTimeoutError*` | outage (the task never ran) | stay QUEUED |
//! | status `CAPACITY:*`, `MISCONFIGURATION:*` (a RUNNABLE job cancelled by the queue's `job_state_time_limit_action`) | outage (it never ran) | stay QUEUED |
//! | anything else: killed for memory (137), a panic (101), the attempt timeout, an operator's cancel | possibly the images | FAILED with Batch's reason |
//!
//! "Stay QUEUED" means nothing is written: the reconciler finds the record,
//! asks Batch, gets the same answer from [`JobFailure::cause`], and
//! dispatches the images again with a growing delay, for as long as
//! `RECONCILE_GIVE_UP_SECONDS` allows. A count of Batch attempts never ends
//! an image: three Spot interruptions in a row are three minutes of one
//! incident.

use std::fmt;

/// The worker's exit code for "transient faults outlasted the retries"
/// (`worker::ExitCode::Retryable`; `infra/job-definition.json` retries it).
pub const RETRYABLE_EXIT: i64 = 3;

/// The worker's exit code for "this job cannot be run"
/// (`worker::ExitCode::JobUnusable`).
pub const JOB_UNUSABLE_EXIT: i64 = 4;

/// Batch `statusReason` prefixes of a host that went away.
const HOST_GONE: [&str; 2] = ["Host EC2", "Your Spot Task was interrupted"];

/// Batch `statusReason` prefixes of a RUNNABLE job cancelled by the queue's
/// `job_state_time_limit_action` (`infra/batch.tf`).
const CANCELLED_RUNNABLE: [&str; 2] = ["CAPACITY:", "MISCONFIGURATION:"];

/// Container reasons of a task that never started.
const NEVER_STARTED: [&str; 6] = [
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
    "CannotInspectContainerError",
    "ResourceInitializationError",
    "DockerTimeoutError",
];

/// Batch's account of a failed job, as its state-change event and
/// `DescribeJobs` both report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFailure {
    /// The job's `statusReason`.
    pub status_reason: Option<String>,
    /// The container's `reason`.
    pub container_reason: Option<String>,
    /// The container's exit code.
    pub exit_code: Option<i64>,
}

/// What a failure says about the images the job still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The service, the host or the capacity failed, not the images: they
    /// are dispatched again.
    Outage,
    /// Nothing shows the failure was not about the images: they are
    /// recorded FAILED with Batch's reason.
    Job,
}

impl JobFailure {
    /// Which row of the module's table this failure falls in.
    pub fn cause(&self) -> Cause {
        let starts = |text: &Option<String>, prefixes: &[&str]| {
            text.as_deref()
                .is_some_and(|t| prefixes.iter().any(|p| t.starts_with(p)))
        };
        let outage = matches!(self.exit_code, Some(RETRYABLE_EXIT | JOB_UNUSABLE_EXIT))
            || starts(&self.status_reason, &HOST_GONE)
            || starts(&self.status_reason, &CANCELLED_RUNNABLE)
            || starts(&self.container_reason, &NEVER_STARTED);
        if outage {
            Cause::Outage
        } else {
            Cause::Job
        }
    }
}

/// Batch's `statusReason` (or "no reason given"), the container's reason
/// and its exit code, in one line.
impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status_reason.as_deref().filter(|r| !r.is_empty());
        f.write_str(status.unwrap_or("no reason given"))?;
        if let Some(r) = self.container_reason.as_deref().filter(|r| !r.is_empty()) {
            write!(f, "; container: {r}")?;
        }
        if let Some(code) = self.exit_code {
            write!(f, "; exit code {code}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: &str, container: &str, code: Option<i64>) -> JobFailure {
        let text = |t: &str| (!t.is_empty()).then(|| t.to_owned());
        JobFailure {
            status_reason: text(status),
            container_reason: text(container),
            exit_code: code,
        }
    }

    #[test]
    fn outages_leave_images_queued_and_everything_else_fails_them() {
        let cases = [
            (
                "Essential container in task exited",
                "",
                Some(3),
                Cause::Outage,
            ),
            (
                "Essential container in task exited",
                "",
                Some(4),
                Cause::Outage,
            ),
            (
                "Host EC2 (instance i-0abc) terminated.",
                "",
                None,
                Cause::Outage,
            ),
            ("Your Spot Task was interrupted.", "", None, Cause::Outage),
            (
                "Task failed to start",
                "CannotPullContainerError: ref pull has been retried 5 time(s)",
                None,
                Cause::Outage,
            ),
            (
                "Task failed to start",
                "ResourceInitializationError: unable to pull secrets",
                None,
                Cause::Outage,
            ),
            (
                "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
                "",
                None,
                Cause::Outage,
            ),
            (
                "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
                "",
                None,
                Cause::Outage,
            ),
            (
                "Essential container in task exited",
                "OutOfMemoryError: Container killed due to memory usage",
                Some(137),
                Cause::Job,
            ),
            (
                "Essential container in task exited",
                "",
                Some(101),
                Cause::Job,
            ),
            (
                "Job attempt duration exceeded timeout",
                "",
                None,
                Cause::Job,
            ),
            ("cancelled by an operator", "", None, Cause::Job),
            ("", "", None, Cause::Job),
        ];
        for (status, container, code, expected) in cases {
            let f = failure(status, container, code);
            assert_eq!(f.cause(), expected, "{f}");
        }
    }

    #[test]
    fn the_reason_names_batch_s_status_the_container_and_the_exit_code() {
        assert_eq!(
            failure("Essential container in task exited", "OOM", Some(137)).to_string(),
            "Essential container in task exited; container: OOM; exit code 137"
        );
        assert_eq!(failure("", "", None).to_string(), "no reason given");
    }
}
