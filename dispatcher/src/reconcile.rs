//! The reconciler: the part of the dispatcher that makes every image reach a
//! terminal record even when events, responses or processes are lost.
//!
//! Events make the pipeline fast; this pass makes it correct. It runs on a
//! schedule (an EventBridge rule invokes the dispatcher with
//! `{"reconcile": {}}`) and on demand (`labeler reconcile`), and:
//!
//! 1. finds records QUEUED for longer than `RECONCILE_AFTER_SECONDS` through
//!    the sparse status index (Queries per shard, never a Scan), at most
//!    `RECONCILE_LIMIT` of them, shared fairly between the shards;
//! 2. asks Batch about the jobs they name (`DescribeJobs`, 100 ids a call);
//! 3. decides per record with [`verdict`] — a pure function with the whole
//!    rule — and applies the decision with a conditional write that loses to
//!    any worker or dispatcher that moved the record meanwhile.
//!
//! | record | Batch says | action |
//! |---|---|---|
//! | no job, claim within its lease | — | wait (its dispatcher may still submit) |
//! | no job, claim expired | — | dispatch again |
//! | job (or owning child) | SUBMITTED … RUNNING | wait |
//! | job | FAILED by an outage ([`crate::failure`]) | dispatch again |
//! | job | FAILED for any other cause | record FAILED with Batch's reason |
//! | job | SUCCEEDED, yet the record is still QUEUED | dispatch again |
//! | job | unknown (never created, or forgotten) | dispatch again |
//!
//! "Dispatch again" replaces the record by a fresh claim, which the caller
//! submits like any claim ([`crate::dispatch::reconcile_now`]). It waits
//! for a delay that doubles with each dispatch ([`redispatch_delay`]: the
//! threshold, twice it, four times, … at most [`MAX_REDISPATCH_DELAY_SECS`]),
//! so an outage of hours costs a handful of jobs, not hundreds. Only time
//! ends it: an upload still not labeled `RECONCILE_GIVE_UP_SECONDS` after
//! its first dispatch is recorded FAILED with the last cause in plain
//! words; a count of dispatches never is. A pass is idempotent and
//! bounded, and safe to run beside events and other passes.

use crate::aws::{describe as describe_error, Clients};
use crate::config::Config;
use crate::failure::{Cause, JobFailure};
use crate::plan;
use labeler_core::rule::Stored;
use labeler_core::schema::{self, attr, Status};
use labeler_core::store::{self, Clock, Item, QueuedBy, WriteOutcome};
use labeler_core::{ImageRef, Revision};
use serde::Serialize;
use std::collections::HashMap;
use tracing::{info, warn};

/// Most job ids one DescribeJobs call accepts.
pub const DESCRIBE_BATCH: usize = 100;

/// Longest wait between two dispatches of one upload (4 hours).
pub const MAX_REDISPATCH_DELAY_SECS: u64 = 4 * 3600;

/// How long the reconciler waits after a record's latest dispatch (its
/// `dispatches`-th) before dispatching it again: `after_secs` doubled for
/// each dispatch after the first, at most [`MAX_REDISPATCH_DELAY_SECS`].
pub fn redispatch_delay(after_secs: u64, dispatches: u32) -> u64 {
    let doublings = dispatches.saturating_sub(1).min(32);
    after_secs
        .saturating_mul(1u64 << doublings)
        .min(MAX_REDISPATCH_DELAY_SECS.max(after_secs))
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// QUEUED records older than the threshold that were examined.
    pub examined: usize,
    /// Records whose job is still alive, or whose claim is still leased.
    pub waiting: usize,
    /// Records dispatched again.
    pub redispatched: usize,
    /// Records recorded FAILED because Batch reports their job failed.
    pub failed: usize,
    /// Records recorded FAILED after `RECONCILE_GIVE_UP_SECONDS`.
    pub gave_up: usize,
    /// Records whose next dispatch waits for its growing delay.
    pub backing_off: usize,
    /// Records that changed while the pass looked at them (left to their writer).
    pub changed: usize,
    /// DescribeJobs calls that failed; their records wait for the next pass.
    pub describe_errors: usize,
    /// Seconds the oldest image examined has been QUEUED; 0 when no image
    /// has been QUEUED longer than the reconcile threshold (the backlog
    /// alarm's metric, `OldestQueuedAgeSeconds`).
    pub oldest_queued_secs: u64,
}

/// Seconds the oldest of `records` has been QUEUED at `now` (0 for none).
pub fn oldest_queued_secs(records: &[Queued], now: Clock) -> u64 {
    records
        .iter()
        .filter_map(|r| r.since.as_deref().and_then(schema::parse_rfc3339_millis))
        .min()
        .map_or(0, |at| now.unix_millis.saturating_sub(at) / 1000)
}

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading the status index failed.
    #[error("querying the status index: {0}")]
    Query(String),
    /// A conditional write failed for a reason other than its condition.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// One QUEUED record as the reconciler reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// The upload.
    pub image: ImageRef,
    /// The rule-relevant attributes.
    pub stored: Stored,
    /// Dispatches so far.
    pub dispatches: u32,
    /// Array child holding it, when its job is an array job.
    pub array_index: Option<usize>,
    /// Since when it has been QUEUED (the status index's sort key): its
    /// latest dispatch.
    pub since: Option<String>,
}

impl Queued {
    /// Reads a record from the status index; `None` if it lacks an upload.
    pub fn from_item(item: &Item) -> Option<Self> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut stored = Stored::from_item(item);
        let since = text(schema::STATUS_INDEX_SK);
        // Records whose `queued_at` a re-dispatch used to overwrite: their
        // latest dispatch is the best lower bound, and re-dispatching now
        // carries it.
        stored.queued_at = stored
            .queued_at
            .or_else(|| since.as_deref().and_then(schema::parse_rfc3339_millis));
        let image = ImageRef {
            bucket: text(attr::BUCKET)?,
            key: text(attr::KEY)?,
            revision: Revision::try_from(text(attr::REVISION)?).ok()?,
            version_id: text(attr::VERSION_ID),
            etag: text(attr::ETAG),
            size: number(attr::SIZE),
        };
        Some(Self {
            image,
            stored,
            dispatches: number(attr::DISPATCHES).unwrap_or(1) as u32,
            array_index: number(attr::ARRAY_INDEX).map(|i| i as usize),
            since,
        })
    }

    /// The Batch job to ask about: the owning job (array child id
    /// included), else the recorded job (its child, for array jobs).
    pub fn job_ref(&self) -> Option<String> {
        if let Some(owner) = &self.stored.owner {
            return Some(owner.clone());
        }
        let job = self.stored.job_id.as_ref()?;
        Some(match self.array_index {
            Some(i) => format!("{job}:{i}"),
            None => job.clone(),
        })
    }
}

/// What Batch says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Submitted, pending, runnable, starting or running.
    Live,
    /// Ended successfully.
    Succeeded,
    /// Ended in failure.
    Failed {
        /// Batch's reason, naming the job.
        reason: String,
        /// Whether the images or an outage are to blame.
        cause: Cause,
    },
    /// DescribeJobs does not return it.
    Unknown,
    /// DescribeJobs failed for it: nothing is known this pass.
    Unanswered,
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it: its job or claim is alive.
    Wait,
    /// Leave it: its next dispatch is not due yet ([`redispatch_delay`]).
    NotYet,
    /// Dispatch it again, for this reason.
    Redispatch(String),
    /// Record it FAILED with this reason.
    Fail(String),
}

/// The settings [`verdict`] decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A claim younger than this (seconds) may still get its job.
    pub lease_secs: u64,
    /// The reconcile threshold: the first re-dispatch delay.
    pub after_secs: u64,
    /// An upload first dispatched longer ago than this ends FAILED.
    pub give_up_secs: u64,
}

impl Policy {
    /// The policy `cfg` configures.
    pub fn of(cfg: &Config) -> Self {
        Self {
            lease_secs: cfg.claim_lease_secs,
            after_secs: cfg.reconcile.after_secs,
            give_up_secs: cfg.reconcile.give_up_secs,
        }
    }
}

/// The reconciler's whole rule for one QUEUED record (see the module table).
///
/// `job` is Batch's answer for [`Queued::job_ref`], `None` when the record
/// names no job.
pub fn verdict(record: &Queued, job: Option<&JobState>, now: Clock, policy: Policy) -> Verdict {
    let now_secs = now.unix_secs();
    let why = match job {
        None => {
            let expired = record
                .stored
                .claimed_at
                .is_none_or(|at| at < now_secs.saturating_sub(policy.lease_secs));
            if !expired {
                return Verdict::Wait;
            }
            "its claim expired without a job being recorded".to_owned()
        }
        Some(JobState::Live | JobState::Unanswered) => return Verdict::Wait,
        Some(JobState::Failed {
            reason,
            cause: Cause::Job,
        }) => return Verdict::Fail(reason.clone()),
        Some(JobState::Failed {
            reason,
            cause: Cause::Outage,
        }) => reason.clone(),
        Some(JobState::Succeeded) => "its Batch job succeeded without recording a result".into(),
        Some(JobState::Unknown) => "Batch does not know its job".into(),
    };
    let first = record.stored.queued_at.map_or(now_secs, |ms| ms / 1000);
    let elapsed = now_secs.saturating_sub(first);
    if elapsed >= policy.give_up_secs {
        return Verdict::Fail(format!(
            "gave up after {} and {} dispatches; the last one ended so: {why}",
            plain_duration(elapsed),
            record.dispatches
        ));
    }
    let last = record
        .since
        .as_deref()
        .and_then(schema::parse_rfc3339_millis)
        .map_or(first, |ms| ms / 1000);
    if now_secs < last + redispatch_delay(policy.after_secs, record.dispatches) {
        return Verdict::NotYet;
    }
    Verdict::Redispatch(why)
}

/// `secs` in the largest whole unit that fits, for reasons people read.
fn plain_duration(secs: u64) -> String {
    match secs {
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 2 * 60 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// What a pass decided: its report, and the images it re-claimed under
/// `claim`, which the caller submits ([`crate::dispatch::reconcile_now`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// What the pass did.
    pub report: Report,
    /// The claim token of the re-dispatches.
    pub claim: String,
    /// Images claimed again, to submit.
    pub again: Vec<ImageRef>,
}

/// Runs one pass: examines, fails and re-claims; submitting the re-claimed
/// images is the caller's.
pub async fn pass(clients: &Clients, cfg: &Config, now: Clock) -> Result<Pass, ReconcileError> {
    let records = old_queued(clients, cfg, now).await?;
    let refs: Vec<String> = records.iter().filter_map(Queued::job_ref).collect();
    let (states, describe_errors) = describe(clients, &refs).await;
    let mut report = Report {
        examined: records.len(),
        describe_errors,
        oldest_queued_secs: oldest_queued_secs(&records, now),
        ..Report::default()
    };
    let claim = format!("reconcile-{}-{:08x}", now.unix_millis, fastrand::u32(..));
    let mut again = Vec::new();
    for record in &records {
        let state = record
            .job_ref()
            .map(|r| states.get(&r).cloned().unwrap_or(JobState::Unknown));
        let (bucket, key) = (&record.image.bucket, &record.image.key);
        match verdict(record, state.as_ref(), now, Policy::of(cfg)) {
            Verdict::Wait => report.waiting += 1,
            Verdict::NotYet => report.backing_off += 1,
            Verdict::Fail(reason) => {
                let by = QueuedBy::Seen {
                    claim: record.stored.claim.as_deref().unwrap_or_default(),
                    owner: record.stored.owner.as_deref(),
                };
                match store::fail_queued(
                    &clients.dynamodb,
                    &cfg.table,
                    &record.image,
                    by,
                    &reason,
                    now,
                )
                .await?
                {
                    WriteOutcome::Written => {
                        warn!(bucket, key, reason, "recorded FAILED by the reconciler");
                        if matches!(state, Some(JobState::Failed { .. })) {
                            report.failed += 1;
                        } else {
                            report.gave_up += 1;
                        }
                    }
                    _ => report.changed += 1,
                }
            }
            Verdict::Redispatch(why) => {
                let written = store::redispatch(
                    &clients.dynamodb,
                    &cfg.table,
                    &record.image,
                    &record.stored,
                    &claim,
                    record.dispatches + 1,
                    now,
                )
                .await?;
                match written {
                    WriteOutcome::Written => {
                        info!(
                            bucket,
                            key,
                            why,
                            dispatches = record.dispatches + 1,
                            "dispatching again"
                        );
                        again.push(record.image.clone());
                    }
                    _ => report.changed += 1,
                }
            }
        }
    }
    report.redispatched = again.len();
    info!(
        examined = report.examined,
        waiting = report.waiting,
        redispatched = report.redispatched,
        failed = report.failed,
        gave_up = report.gave_up,
        changed = report.changed,
        "reconciler pass done"
    );
    Ok(Pass {
        report,
        claim,
        again,
    })
}

/// Records QUEUED before `now - RECONCILE_AFTER_SECONDS`, oldest first per
/// shard, at most `RECONCILE_LIMIT`, shared fairly between the shards.
///
/// Each shard first gets an equal share of the limit (at least one record);
/// what shards with fewer old records leave unused goes, in a second round,
/// to the shards that had more. A backlog in one shard therefore never
/// starves a stuck image in another. The first shard read rotates with the
/// pass, so a limit below the shard count still reaches every shard in turn.
async fn old_queued(
    clients: &Clients,
    cfg: &Config,
    now: Clock,
) -> Result<Vec<Queued>, ReconcileError> {
    let cutoff = Clock {
        unix_millis: now
            .unix_millis
            .saturating_sub(cfg.reconcile.after_secs * 1000),
    }
    .rfc3339();
    let limit = cfg.reconcile.limit;
    let mut shards = schema::status_keys(Status::Queued);
    let rotate = (now.unix_secs() / 60) as usize % shards.len();
    shards.rotate_left(rotate);
    let share = limit.div_ceil(shards.len()).max(1);
    let mut records = Vec::new();
    let mut more = Vec::new();
    for shard in &shards {
        let room = share.min(limit.saturating_sub(records.len()));
        if room == 0 {
            break;
        }
        let from = Cursor { shard, start: None };
        let (page, next) = query_shard(clients, cfg, &cutoff, from, room).await?;
        records.extend(page);
        if let Some(start) = next {
            more.push(Cursor {
                shard,
                start: Some(start),
            });
        }
    }
    for from in more {
        let room = limit.saturating_sub(records.len());
        if room == 0 {
            break;
        }
        let (page, _) = query_shard(clients, cfg, &cutoff, from, room).await?;
        records.extend(page);
    }
    Ok(records)
}

/// Where a read of one status shard starts: its first page, or where an
/// earlier read stopped.
struct Cursor<'a> {
    shard: &'a str,
    start: Option<Item>,
}

/// Up to `room` records QUEUED before `cutoff`, oldest first, from `from`;
/// and where to go on, when the shard has more.
async fn query_shard(
    clients: &Clients,
    cfg: &Config,
    cutoff: &str,
    from: Cursor<'_>,
    room: usize,
) -> Result<(Vec<Queued>, Option<Item>), ReconcileError> {
    let Cursor { shard, mut start } = from;
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut records = Vec::new();
    while records.len() < room {
        let page = clients
            .dynamodb
            .query()
            .table_name(&cfg.table)
            .index_name(schema::STATUS_INDEX)
            .key_condition_expression("#k = :k AND #at < :cutoff")
            .expression_attribute_names("#k", schema::STATUS_INDEX_PK)
            .expression_attribute_names("#at", schema::STATUS_INDEX_SK)
            .expression_attribute_values(":k", AttributeValue::S(shard.to_owned()))
            .expression_attribute_values(":cutoff", AttributeValue::S(cutoff.to_owned()))
            .limit((room - records.len()).min(1000) as i32)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| {
                ReconcileError::Query(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
            })?;
        records.extend(
            page.items()
                .iter()
                .filter(|i| Stored::from_item(i).status == Some(Status::Queued))
                .filter_map(Queued::from_item),
        );
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok((records, None)),
        }
    }
    Ok((records, start))
}

/// Batch's answer for each job id, [`DESCRIBE_BATCH`] ids per call. A call
/// that fails (after the SDK's retries) marks its ids
/// [`JobState::Unanswered`] and the pass goes on: one throttled page must
/// not stop every other record from converging.
async fn describe(clients: &Clients, ids: &[String]) -> (HashMap<String, JobState>, usize) {
    let mut unique: Vec<&String> = ids.iter().collect();
    unique.sort();
    unique.dedup();
    let mut states = HashMap::new();
    let mut errors = 0;
    for batch in unique.chunks(DESCRIBE_BATCH) {
        let out = clients
            .batch
            .describe_jobs()
            .set_jobs(Some(batch.iter().map(|s| (*s).clone()).collect()))
            .send()
            .await;
        match out {
            Ok(out) => states.extend(out.jobs().iter().filter_map(job_state)),
            Err(e) => {
                warn!(jobs = batch.len(), error = %describe_error(&e), "DescribeJobs failed; their records wait for the next pass");
                errors += 1;
                states.extend(batch.iter().map(|id| ((*id).clone(), JobState::Unanswered)));
            }
        }
    }
    (states, errors)
}

/// One job of a DescribeJobs answer, as the reconciler sees it.
fn job_state(job: &aws_sdk_batch::types::JobDetail) -> Option<(String, JobState)> {
    use aws_sdk_batch::types::JobStatus;
    let state = match job.status() {
        Some(JobStatus::Succeeded) => JobState::Succeeded,
        Some(JobStatus::Failed) => {
            let container = job.container();
            let failure = JobFailure {
                status_reason: job.status_reason().map(str::to_owned),
                container_reason: container.and_then(|c| c.reason()).map(str::to_owned),
                exit_code: container.and_then(|c| c.exit_code()).map(i64::from),
            };
            JobState::Failed {
                reason: plan::job_failed_reason(
                    job.job_name().unwrap_or_default(),
                    job.job_id().unwrap_or_default(),
                    &failure,
                ),
                cause: failure.cause(),
            }
        }
        _ => JobState::Live,
    };
    Some((job.job_id()?.to_owned(), state))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Clock = Clock {
        unix_millis: 2_000_000_000_000,
    };
    const LEASE: u64 = 900;

    fn queued(claimed_ago: u64, job: Option<&str>, dispatches: u32) -> Queued {
        Queued {
            image: ImageRef {
                bucket: "photos".into(),
                key: "a b.jpg".into(),
                revision: Revision::from_sequencer("0A").unwrap(),
                version_id: None,
                etag: None,
                size: None,
            },
            stored: Stored {
                revision: Some(Revision::from_sequencer("0A").unwrap()),
                status: Some(Status::Queued),
                claim: Some("c".into()),
                claimed_at: Some(NOW.unix_secs() - claimed_ago),
                job_id: job.map(str::to_owned),
                queued_at: Some(NOW.unix_millis - claimed_ago * 1000),
                ..Stored::default()
            },
            dispatches,
            array_index: None,
            since: Some(schema::rfc3339_millis(NOW.unix_millis - claimed_ago * 1000)),
        }
    }

    #[test]
    fn the_backlog_age_is_the_oldest_examined_record_and_zero_without_one() {
        let records = [
            queued(700, None, 1),
            queued(5000, None, 1),
            Queued {
                since: None,
                ..queued(90_000, None, 1)
            },
        ];
        assert_eq!(oldest_queued_secs(&records, NOW), 5000);
        assert_eq!(oldest_queued_secs(&[], NOW), 0);
    }

    const POLICY: Policy = Policy {
        lease_secs: LEASE,
        after_secs: 900,
        give_up_secs: 86_400,
    };

    fn failed(cause: Cause) -> JobState {
        JobState::Failed {
            reason: "Batch job j (1) failed: exit code 3".into(),
            cause,
        }
    }

    #[test]
    fn a_claim_without_a_job_waits_for_its_lease_then_is_dispatched_again() {
        assert_eq!(
            verdict(&queued(10, None, 1), None, NOW, POLICY),
            Verdict::Wait
        );
        assert!(matches!(
            verdict(&queued(LEASE + 1, None, 1), None, NOW, POLICY),
            Verdict::Redispatch(_)
        ));
    }

    #[test]
    fn a_live_job_is_left_to_run_and_one_failed_for_its_images_fails_them_with_its_reason() {
        let r = queued(5000, Some("j"), 1);
        assert_eq!(
            verdict(&r, Some(&JobState::Live), NOW, POLICY),
            Verdict::Wait
        );
        assert_eq!(
            verdict(&r, Some(&JobState::Unanswered), NOW, POLICY),
            Verdict::Wait
        );
        assert_eq!(
            verdict(&r, Some(&failed(Cause::Job)), NOW, POLICY),
            Verdict::Fail("Batch job j (1) failed: exit code 3".into())
        );
    }

    /// Counterexample: a 30-minute brownout made the worker exit 3, Batch
    /// spent its three attempts in minutes, and the image ended FAILED.
    #[test]
    fn a_job_failed_by_an_outage_is_dispatched_again_however_often_it_failed() {
        for dispatches in [1, 3, 7] {
            let r = queued(MAX_REDISPATCH_DELAY_SECS + 1, Some("j"), dispatches);
            assert!(
                matches!(
                    verdict(&r, Some(&failed(Cause::Outage)), NOW, POLICY),
                    Verdict::Redispatch(why) if why.contains("exit code 3")
                ),
                "dispatch {dispatches}"
            );
        }
    }

    #[test]
    fn each_dispatch_waits_twice_as_long_as_the_one_before_up_to_four_hours() {
        let delays: Vec<u64> = (1..=7).map(|d| redispatch_delay(900, d)).collect();
        assert_eq!(delays, [900, 1800, 3600, 7200, 14_400, 14_400, 14_400]);
        let r = queued(3000, Some("j"), 3);
        assert_eq!(
            verdict(&r, Some(&JobState::Unknown), NOW, POLICY),
            Verdict::NotYet
        );
        let r = queued(3700, Some("j"), 3);
        assert!(matches!(
            verdict(&r, Some(&JobState::Unknown), NOW, POLICY),
            Verdict::Redispatch(_)
        ));
    }

    #[test]
    fn only_the_time_since_the_first_dispatch_ends_an_upload_failed() {
        let mut r = queued(MAX_REDISPATCH_DELAY_SECS, Some("j"), 9);
        r.stored.queued_at = Some(NOW.unix_millis - 86_399_000);
        assert!(matches!(
            verdict(&r, Some(&failed(Cause::Outage)), NOW, POLICY),
            Verdict::Redispatch(_)
        ));
        r.stored.queued_at = Some(NOW.unix_millis - 86_400_000);
        let Verdict::Fail(reason) = verdict(&r, Some(&failed(Cause::Outage)), NOW, POLICY) else {
            panic!("expected the reconciler to give up");
        };
        assert!(
            reason.contains("gave up after 24 hours and 9 dispatches"),
            "{reason}"
        );
        assert!(reason.contains("exit code 3"), "{reason}");
    }

    #[test]
    fn a_job_that_succeeded_or_vanished_is_dispatched_again() {
        let r = queued(5000, Some("j"), 2);
        for state in [JobState::Succeeded, JobState::Unknown] {
            assert!(matches!(
                verdict(&r, Some(&state), NOW, POLICY),
                Verdict::Redispatch(_)
            ));
        }
    }

    #[test]
    fn the_job_asked_about_is_the_owner_then_the_recorded_array_child() {
        let mut r = queued(0, Some("parent"), 1);
        assert_eq!(r.job_ref().as_deref(), Some("parent"));
        r.array_index = Some(7);
        assert_eq!(r.job_ref().as_deref(), Some("parent:7"));
        r.stored.owner = Some("other:2".into());
        assert_eq!(r.job_ref().as_deref(), Some("other:2"));
        assert_eq!(queued(0, None, 1).job_ref(), None);
    }
}
