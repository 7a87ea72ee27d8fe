//! The dispatcher's effects: records, manifests and jobs.
//!
//! One invocation runs in four steps, each with bounded concurrency:
//! 1. recognise the payload and decide per object change ([`crate::plan`]);
//! 2. write SKIPPED records, record deletes as tombstones, and fail the
//!    QUEUED images of Batch jobs that died;
//! 3. claim every image to label with a conditional QUEUED write: the claim
//!    is what makes redelivered and out-of-order events submit nothing;
//! 4. pack the claimed images into jobs (array jobs when there is more than
//!    one chunk), write manifests, submit, and record the job on each image.
//!    Before each SubmitJob (and before each retry of one, which the SDK
//!    must not do on its own: SubmitJob has no idempotency token) a live job
//!    of the same deterministic name is looked up and adopted. A job that
//!    cannot be submitted for a transient reason gives its claims back and
//!    fails the deliveries it came from, so the platform redelivers them; a
//!    permanent refusal (unknown job definition, disabled queue, invalid
//!    request) records its images FAILED with Batch's reason.
//!
//! A reconciler pass ([`crate::reconcile`]) runs when the payload asks for
//! one, after everything else.
//!
//! Failures are per delivery: an SQS message that failed is reported in
//! `batchItemFailures` and its neighbours are not; any other invocation
//! returns an error so Lambda retries it.

use crate::config::Config;
use crate::event::{recognise, Delivery, JobEnded, Notice, ObjectChange};
use crate::plan::{self, Decision};
use crate::restore::{self, Current};
use crate::telemetry;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_sdk_batch::types::ArrayProperties;
use futures::{stream, StreamExt};
use labeler_core::job::{ImageSource, Manifest, PlannedJob, JOB_PARAMETER};
use labeler_core::store::{self, ClaimKind, Clock, QueuedBy, WriteOutcome};
use labeler_core::{ImageRef, JobSpec};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use tracing::{error, info, warn};

use crate::aws::describe;
pub use crate::aws::Clients;

/// Why an invocation (or part of one) failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Some deliveries could not be handled; the platform should retry them.
    #[error("{failed} of {total} deliveries failed; first error: {first}")]
    Deliveries {
        /// Failed deliveries.
        failed: usize,
        /// All deliveries.
        total: usize,
        /// The first error seen.
        first: String,
    },
}

/// Counts of what an invocation did, returned to non-SQS callers and logged.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Jobs submitted.
    pub jobs_submitted: usize,
    /// Images newly queued into those jobs.
    pub images_queued: usize,
    /// Images already claimed or done for the same upload (redeliveries).
    pub duplicates: usize,
    /// Images for which a newer upload already exists.
    pub superseded: usize,
    /// Images recorded SKIPPED.
    pub skipped: usize,
    /// Records removed after a delete.
    pub removed: usize,
    /// Older versions current again after a version delete (an undelete),
    /// dispatched ([`crate::restore`]).
    pub restored: usize,
    /// Images marked FAILED because their Batch job died.
    pub failed_by_batch: usize,
    /// Failed Batch jobs whose images were left QUEUED because the cause
    /// was an outage, not the images ([`crate::failure`]).
    pub left_to_reconciler: usize,
    /// Notices ignored (test events, other event types, filtered prefixes).
    pub ignored: usize,
    /// Images recorded FAILED because their job could never be submitted.
    pub failed_to_submit: usize,
    /// Jobs found already submitted under the same name and adopted.
    pub jobs_adopted: usize,
    /// Deliveries that can never be read, answered once and logged.
    pub unreadable: usize,
    /// Deliveries that failed and will be retried by the platform.
    pub failed_deliveries: usize,
    /// Array children in the jobs submitted.
    pub array_children_submitted: usize,
    /// SubmitJob calls made again after a transient failure.
    pub submit_retries: usize,
    /// Of the failed SubmitJob calls, those throttled by Batch.
    pub submit_throttles: usize,
    /// What a reconciler pass did, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<crate::reconcile::Report>,
}

impl From<&Summary> for telemetry::Counts {
    /// The summary's metrics. `summary` is taken apart with no `..`: a new
    /// field does not compile until it is given a metric or left out here.
    fn from(summary: &Summary) -> Self {
        let Summary {
            jobs_submitted,
            images_queued,
            duplicates,
            superseded: _,
            skipped,
            removed,
            restored: _,
            failed_by_batch,
            left_to_reconciler: _,
            ignored: _,
            failed_to_submit,
            jobs_adopted: _,
            unreadable: _,
            failed_deliveries,
            array_children_submitted,
            submit_retries,
            submit_throttles,
            reconciled,
        } = summary;
        Self {
            images_queued: *images_queued,
            skipped: *skipped,
            duplicates: *duplicates,
            removed: *removed,
            jobs_submitted: *jobs_submitted,
            array_children_submitted: *array_children_submitted,
            submit_retries: *submit_retries,
            submit_throttles: *submit_throttles,
            failed_deliveries: *failed_deliveries,
            failed_by_batch: *failed_by_batch,
            failed_to_submit: *failed_to_submit,
            reconciled: reconciled.as_ref().map(|report| telemetry::Reconciled {
                oldest_queued_secs: report.oldest_queued_secs,
                redispatched: report.redispatched,
                failed: report.failed + report.gave_up,
            }),
        }
    }
}

/// Handles one invocation payload.
///
/// `claim` identifies this invocation in the records it claims (the Lambda
/// request id). SQS batches are answered with `batchItemFailures`; anything
/// else with a [`Summary`], or an error if any part failed.
pub async fn handle(
    payload: &Value,
    claim: &str,
    clients: &Clients,
    cfg: &Config,
    now: Clock,
) -> Result<Value, DispatchError> {
    let started = std::time::Instant::now();
    let invocation = recognise(payload);
    let run = process(
        &invocation.deliveries,
        claim,
        ClaimKind::New,
        clients,
        cfg,
        now,
    )
    .await;
    labeler_core::emf::emit(&telemetry::lines(
        &cfg.table,
        Clock::now().unix_millis,
        &telemetry::Counts::from(&run.summary),
        started.elapsed(),
    ));
    if invocation.from_sqs {
        let mut response = SqsBatchResponse::default();
        for d in &run.failed {
            let id = invocation.deliveries[*d]
                .message_id
                .clone()
                .unwrap_or_default();
            response.add_failure(id);
        }
        return Ok(serde_json::to_value(response).expect("a batch response serialises"));
    }
    run.result(invocation.deliveries.len())
        .map(|summary| serde_json::to_value(summary).expect("a summary serialises"))
}

/// Dispatches object changes that did not come from an event (a backfill's
/// listing, an operator's retry) through the same filters, claims, chunking
/// and submission as [`handle`], as one delivery.
///
/// `claim` names the claimant: a caller that reuses its token after an
/// interruption retakes the claims it took but never submitted. `kind`
/// chooses which records may be claimed ([`ClaimKind::RetryFailed`] re-queues
/// FAILED ones).
pub async fn dispatch_changes(
    changes: Vec<ObjectChange>,
    claim: &str,
    kind: ClaimKind,
    clients: &Clients,
    cfg: &Config,
    now: Clock,
) -> Result<Summary, DispatchError> {
    let delivery = Delivery {
        message_id: None,
        notices: Ok(changes.into_iter().map(Notice::Object).collect()),
    };
    process(&[delivery], claim, kind, clients, cfg, now)
        .await
        .result(1)
}

/// One reconciler pass ([`crate::reconcile::pass`]) whose re-dispatched
/// images are then submitted like any claimed images. The schedule's event,
/// `{"reconcile": {}}` and `labeler reconcile` all come here.
pub async fn reconcile_now(
    clients: &Clients,
    cfg: &Config,
    now: Clock,
) -> Result<crate::reconcile::Report, crate::reconcile::ReconcileError> {
    let pass = crate::reconcile::pass(clients, cfg, now).await?;
    if !pass.again.is_empty() {
        if let Err(e) = submit_claimed(pass.again, &pass.claim, clients, cfg, now).await {
            // Claims were released (or failed); the next pass retries them.
            warn!(error = %e, "re-dispatch incomplete");
        }
    }
    Ok(pass.report)
}

/// Submits images already claimed under `claim` (the reconciler's
/// re-dispatches) exactly as claimed images of an event are submitted.
async fn submit_claimed(
    images: Vec<ImageRef>,
    claim: &str,
    clients: &Clients,
    cfg: &Config,
    now: Clock,
) -> Result<Summary, DispatchError> {
    let mut run = Run {
        clients,
        cfg,
        now,
        claim,
        kind: ClaimKind::New,
        failed: BTreeSet::new(),
        first_error: None,
        summary: Summary::default(),
    };
    let origin = images
        .iter()
        .map(|i| ((i.bucket.clone(), i.key.clone()), 0))
        .collect();
    run.submit_claimed(images, &origin).await;
    run.result(1)
}

/// Runs the four steps over `deliveries`.
async fn process<'a>(
    deliveries: &[Delivery],
    claim: &'a str,
    kind: ClaimKind,
    clients: &'a Clients,
    cfg: &'a Config,
    now: Clock,
) -> Run<'a> {
    let mut run = Run {
        clients,
        cfg,
        now,
        claim,
        kind,
        failed: BTreeSet::new(),
        first_error: None,
        summary: Summary::default(),
    };

    let Work {
        mut labels,
        mut skips,
        removes,
        ended,
        reconcile,
    } = sort(deliveries, &mut run);
    for change in run.remove_all(removes).await {
        match plan::decide(&change.1, cfg) {
            Decision::Label(image) => labels.push((change.0, image)),
            Decision::Skip(image, reason) => skips.push((change.0, image, reason)),
            _ => {}
        }
    }
    run.skip_all(skips).await;
    for (d, job) in ended {
        if let Err(e) = run.job_ended(&job).await {
            error!(job_id = %job.job_id, error = %e, "could not record the failure of a Batch job");
            run.fail(d, e);
        }
    }
    run.label_all(labels).await;
    if reconcile {
        match reconcile_now(clients, cfg, now).await {
            Ok(report) => run.summary.reconciled = Some(report),
            Err(e) => {
                error!(error = %e, "reconciler pass failed");
                run.fail(0, e.to_string());
            }
        }
    }
    run.summary.failed_deliveries = run.failed.len();
    info!(summary = ?run.summary, "invocation done");
    run
}

/// What one invocation's notices ask for, sorted by step.
#[derive(Default)]
struct Work {
    labels: Vec<(usize, ImageRef)>,
    skips: Vec<(usize, ImageRef, String)>,
    removes: Vec<TaggedRemoval>,
    ended: Vec<(usize, JobEnded)>,
    reconcile: bool,
}

/// Sorts the notices of `deliveries` into [`Work`]; unreadable deliveries
/// and ignored notices are counted (and failed, where the caller must see
/// why) on `run`.
fn sort(deliveries: &[Delivery], run: &mut Run<'_>) -> Work {
    let mut work = Work::default();
    for (d, delivery) in deliveries.iter().enumerate() {
        let notices = match &delivery.notices {
            Ok(n) => n,
            // An SQS message no retry can make readable is answered once, so
            // it does not cycle to the dead-letter queue; a direct invocation
            // with such a payload fails, so its caller sees why.
            Err(e) if delivery.message_id.is_some() => {
                error!(message_id = delivery.message_id.as_deref(), error = %e, "unreadable message dropped");
                run.summary.unreadable += 1;
                continue;
            }
            Err(e) => {
                error!(error = %e, "unreadable payload");
                run.summary.unreadable += 1;
                run.fail(d, e.clone());
                continue;
            }
        };
        for notice in notices {
            match notice {
                Notice::Object(change) => match plan::decide(change, run.cfg) {
                    Decision::Label(image) => work.labels.push((d, image)),
                    Decision::Skip(image, reason) => work.skips.push((d, image, reason)),
                    Decision::Remove(removal) => work.removes.push((d, removal)),
                    Decision::Ignore(reason) => {
                        info!(bucket = %change.bucket, key = %change.key, reason, "ignored");
                        run.summary.ignored += 1;
                    }
                },
                Notice::JobEnded(job) => work.ended.push((d, job.clone())),
                Notice::TestEvent => {
                    info!("s3:TestEvent acknowledged");
                    run.summary.ignored += 1;
                }
                Notice::Ignored(reason) => {
                    info!(reason, "ignored");
                    run.summary.ignored += 1;
                }
                Notice::Reconcile => work.reconcile = true,
            }
        }
    }

    work
}

/// What recording one removal did.
struct Removed {
    /// The tombstone's write; `None` when S3 showed a version current after
    /// a delete marker, and none was written.
    tombstone: Option<Result<WriteOutcome, store::StoreError>>,
    /// A version current again, to dispatch (or the error asking S3).
    back: Result<Option<ObjectChange>, String>,
}

/// Records one removal as a tombstone; after a version delete, also finds
/// the version that is current again, if one must be dispatched
/// ([`restore`]).
///
/// A delete marker's event can arrive after the marker was deleted again
/// (a console undelete whose event came first, and found the record already
/// describing the version current again): S3 is asked first, and the key
/// is tombstoned only when no version is current. If S3 changes between the
/// question and the tombstone, the change's own event comes later, with a
/// newer revision, and corrects the record.
async fn remove_one(
    clients: &Clients,
    table: &str,
    removal: &plan::Removal,
    (now, ttl): (Clock, u64),
) -> Removed {
    let deletion = removal.deletion();
    if removal.marker {
        let back = match restore::current_version(clients, table, &deletion).await {
            Ok(Current::Nothing) => None,
            Ok(Current::Recorded) => Some(Ok(None)),
            Ok(Current::Dispatch(change)) => Some(Ok(Some(change))),
            Err(e) => Some(Err(e)),
        };
        if let Some(back) = back {
            return Removed {
                tombstone: None,
                back,
            };
        }
    }
    let r = store::tombstone(&clients.dynamodb, table, &deletion, now, ttl).await;
    let back = match (&r, &removal.version) {
        (Ok(_), Some(_)) => after_version_delete(clients, table, &deletion, (now, ttl)).await,
        _ => Ok(None),
    };
    Removed {
        tombstone: Some(r),
        back,
    }
}

/// After the permanent delete of a version: the version current again, to
/// dispatch; or, when none is, the key tombstoned under the delete's
/// revision, so the late event of an upload already deleted loses.
async fn after_version_delete(
    clients: &Clients,
    table: &str,
    deletion: &store::Deletion<'_>,
    (now, ttl): (Clock, u64),
) -> Result<Option<ObjectChange>, String> {
    match restore::current_version(clients, table, deletion).await? {
        Current::Dispatch(change) => Ok(Some(change)),
        Current::Recorded => Ok(None),
        Current::Nothing => {
            let gone = store::Deletion {
                version: None,
                reason: "no version is current after a version delete",
                ..deletion.clone()
            };
            store::tombstone(&clients.dynamodb, table, &gone, now, ttl)
                .await
                .map(|_| None)
                .map_err(|e| e.to_string())
        }
    }
}

/// A delete to record, and the delivery it came in.
type TaggedRemoval = (usize, plan::Removal);

struct Run<'a> {
    clients: &'a Clients,
    cfg: &'a Config,
    now: Clock,
    claim: &'a str,
    kind: ClaimKind,
    failed: BTreeSet<usize>,
    first_error: Option<String>,
    summary: Summary,
}

impl Run<'_> {
    /// The summary, or an error naming the first failure.
    fn result(self, total: usize) -> Result<Summary, DispatchError> {
        match self.first_error {
            Some(first) => Err(DispatchError::Deliveries {
                failed: self.failed.len(),
                total,
                first,
            }),
            None => Ok(self.summary),
        }
    }

    fn fail(&mut self, delivery: usize, error: String) {
        self.failed.insert(delivery);
        self.first_error.get_or_insert(error);
    }

    fn db(&self) -> &aws_sdk_dynamodb::Client {
        &self.clients.dynamodb
    }

    async fn skip_all(&mut self, skips: Vec<(usize, ImageRef, String)>) {
        let (db, table, now) = (self.db(), &self.cfg.table, self.now);
        let results: Vec<_> = stream::iter(skips)
            .map(|(d, image, reason)| async move {
                let r = store::record_skipped(db, table, &image, &reason, now).await;
                (d, image, reason, r)
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        for (d, image, reason, r) in results {
            match r {
                Ok(WriteOutcome::Written) => {
                    info!(bucket = %image.bucket, key = %image.key, reason, "skipped");
                    self.summary.skipped += 1;
                }
                Ok(other) => self.count_conflict(&image, &other),
                Err(e) => self.fail(d, e.to_string()),
            }
        }
    }

    /// Records the removals; returns the versions that became current
    /// again through a version delete ([`crate::restore`]), to dispatch.
    async fn remove_all(&mut self, removes: Vec<TaggedRemoval>) -> Vec<(usize, ObjectChange)> {
        let (table, now, ttl) = (&self.cfg.table, self.now, self.cfg.tombstone_ttl_secs);
        let clients = self.clients;
        let results: Vec<_> = stream::iter(removes)
            .map(|(d, removal)| async move {
                let removed = remove_one(clients, table, &removal, (now, ttl)).await;
                (d, removal, removed)
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        let mut again = Vec::new();
        for (d, removal, Removed { tombstone, back }) in results {
            let (bucket, key) = (&removal.bucket, &removal.key);
            match back {
                Ok(Some(change)) => {
                    let version = change.version_id.as_deref();
                    info!(
                        bucket,
                        key, version, "an older version is current again; dispatching it"
                    );
                    self.summary.restored += 1;
                    again.push((d, change));
                }
                Ok(None) => {}
                Err(e) => self.fail(d, e),
            }
            match tombstone {
                Some(r) => self.count_tombstone(d, &removal, r),
                None => info!(
                    bucket,
                    key, "a version is current after the delete marker; no tombstone"
                ),
            }
        }
        again
    }

    /// Counts (and logs) what one removal's tombstone write did.
    fn count_tombstone(
        &mut self,
        d: usize,
        removal: &plan::Removal,
        written: Result<WriteOutcome, store::StoreError>,
    ) {
        let (bucket, key, version) = (&removal.bucket, &removal.key, removal.version.as_deref());
        match written {
            Ok(WriteOutcome::Written) => {
                info!(bucket, key, version, "tombstone recorded");
                self.summary.removed += 1;
            }
            Ok(WriteOutcome::Duplicate { .. }) => {
                info!(bucket, key, "delete already recorded");
                self.summary.duplicates += 1;
            }
            Ok(WriteOutcome::Superseded { .. }) => {
                info!(
                    bucket,
                    key, version, "a newer upload, or another version, owns the record; kept"
                );
                self.summary.superseded += 1;
            }
            Err(e) => self.fail(d, e.to_string()),
        }
    }

    fn count_conflict(&mut self, image: &ImageRef, outcome: &WriteOutcome) {
        match outcome {
            WriteOutcome::Superseded { .. } => {
                info!(bucket = %image.bucket, key = %image.key, "a newer upload exists; nothing to do");
                self.summary.superseded += 1;
            }
            _ => {
                info!(bucket = %image.bucket, key = %image.key, "already handled for this upload");
                self.summary.duplicates += 1;
            }
        }
    }

    /// Marks the images a dead Batch job still holds as FAILED.
    async fn job_ended(&mut self, job: &JobEnded) -> Result<(), String> {
        let raw = match plan::failed_job_to_handle(job, &self.cfg.job_queue) {
            Ok(raw) => raw,
            Err(plan::LeftAlone::Outage) => {
                warn!(job_id = %job.job_id, failure = %job.failure, "job failed for a cause outside its images; they stay QUEUED and the reconciler dispatches them again");
                self.summary.left_to_reconciler += 1;
                return Ok(());
            }
            Err(plan::LeftAlone::Ignored(why)) => {
                info!(job_id = %job.job_id, status = %job.status, queue = %job.job_queue, why, "job event ignored");
                self.summary.ignored += 1;
                return Ok(());
            }
        };
        let spec = JobSpec::from_parameter(raw).map_err(|e| e.to_string())?;
        let chunks = match &spec.images {
            ImageSource::Inline(chunks) => chunks.clone(),
            ImageSource::Manifest(m) => {
                let object = self
                    .clients
                    .s3
                    .get_object()
                    .bucket(&m.bucket)
                    .key(&m.key)
                    .send()
                    .await
                    .map_err(|e| format!("reading manifest s3://{}/{}: {e}", m.bucket, m.key))?;
                let body = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| format!("reading manifest s3://{}/{}: {e}", m.bucket, m.key))?
                    .into_bytes();
                Manifest::from_body(&body, m)
                    .map_err(|e| e.to_string())?
                    .chunks
            }
        };
        let parent = plan::parent_job_id(&job.job_id);
        let reason = plan::job_failed_reason(&job.job_name, &job.job_id, &job.failure);
        let images: Vec<&ImageRef> = plan::chunks_of_ended_job(&chunks, job.array_index)
            .into_iter()
            .flat_map(|(_, c)| c.iter())
            .collect();
        let by = QueuedBy::Job {
            job_id: parent,
            dead: &job.job_id,
        };
        let (db, table, now, reason) = (self.db(), &spec.table, self.now, &reason);
        let results: Vec<_> = stream::iter(images)
            .map(|image| async move {
                (
                    image,
                    store::fail_queued(db, table, image, by, reason, now).await,
                )
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        let mut first_error = None;
        for (image, r) in results {
            match r {
                Ok(WriteOutcome::Written) => {
                    warn!(bucket = %image.bucket, key = %image.key, job_id = %job.job_id, reason = %reason, "image failed with its job");
                    self.summary.failed_by_batch += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn label_all(&mut self, labels: Vec<(usize, ImageRef)>) {
        let (labels, superseded) = plan::newest_per_key(labels);
        for (_, image) in &superseded {
            info!(bucket = %image.bucket, key = %image.key, "older upload in the same batch dropped");
            self.summary.superseded += 1;
        }
        let (db, table, now, claim, kind, lease) = (
            self.db(),
            &self.cfg.table,
            self.now,
            self.claim,
            self.kind,
            self.cfg.claim_lease_secs,
        );
        let results: Vec<_> = stream::iter(labels)
            .map(|(d, image)| async move {
                let r = store::claim_as(db, table, &image, claim, kind, now, lease).await;
                (d, image, r)
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        let mut claimed = Vec::new();
        let mut origin: HashMap<(String, String), usize> = HashMap::new();
        for (d, image, r) in results {
            match r {
                Ok(WriteOutcome::Written) => {
                    origin.insert((image.bucket.clone(), image.key.clone()), d);
                    claimed.push(image);
                }
                Ok(other) => self.count_conflict(&image, &other),
                Err(e) => self.fail(d, e.to_string()),
            }
        }
        self.submit_claimed(claimed, &origin).await;
    }

    /// Packs claimed images into jobs and makes sure a Batch job holds each.
    async fn submit_claimed(
        &mut self,
        mut claimed: Vec<ImageRef>,
        origin: &HashMap<(String, String), usize>,
    ) {
        // Sorted so that the same images make the same jobs, whatever order the claims finished in.
        claimed.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
        let jobs = match plan::plan_jobs(claimed.clone(), self.cfg) {
            Ok(jobs) => jobs,
            Err(e) => {
                self.give_back(&claimed, origin, &e.to_string()).await;
                return;
            }
        };
        let (clients, cfg) = (self.clients, self.cfg);
        let tally = &SubmitTally::default();
        let submitted: Vec<_> = stream::iter(jobs)
            .map(|job| async move {
                let r = submit_tallied(clients, cfg, &job, tally).await;
                (job, r)
            })
            .buffer_unordered(self.cfg.submit_concurrency)
            .collect()
            .await;
        let (retries, throttles) = tally.counts();
        self.summary.submit_retries += retries;
        self.summary.submit_throttles += throttles;
        for (job, r) in submitted {
            let images = job_images(&job);
            match r {
                Ok(Submitted { job_id, adopted }) => {
                    self.record_jobs(&job, &job_id).await;
                    let keys: Vec<&str> = images.iter().map(|(_, i)| i.key.as_str()).collect();
                    info!(
                        bucket = %images[0].1.bucket,
                        keys = ?keys,
                        job_id,
                        job_name = %job.name,
                        array_size = job.array_size,
                        adopted,
                        "job submitted"
                    );
                    if adopted {
                        self.summary.jobs_adopted += 1;
                    } else {
                        self.summary.jobs_submitted += 1;
                        self.summary.array_children_submitted += job.array_size.unwrap_or(0);
                    }
                    self.summary.images_queued += images.len();
                }
                Err(SubmitError::Permanent(why)) => {
                    error!(job_name = %job.name, error = %why, "job refused for good; its images are recorded FAILED");
                    let owned: Vec<ImageRef> = images.into_iter().map(|(_, i)| i.clone()).collect();
                    self.fail_unsubmittable(&owned, origin, &why).await;
                }
                Err(SubmitError::Transient(why)) => {
                    error!(job_name = %job.name, error = %why, "job not submitted; claims released for redelivery");
                    let owned: Vec<ImageRef> = images.into_iter().map(|(_, i)| i.clone()).collect();
                    self.give_back(&owned, origin, &why).await;
                }
            }
        }
    }

    /// Records FAILED the claimed images of a job Batch refuses for good.
    async fn fail_unsubmittable(
        &mut self,
        images: &[ImageRef],
        origin: &HashMap<(String, String), usize>,
        why: &str,
    ) {
        let reason = format!("the Batch job could not be submitted: {why}");
        let (db, table, claim, now, reason_ref) =
            (self.db(), &self.cfg.table, self.claim, self.now, &reason);
        let results: Vec<_> = stream::iter(images)
            .map(|image| async move {
                let by = QueuedBy::Claim(claim);
                let r = store::fail_queued(db, table, image, by, reason_ref, now).await;
                (image, r)
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        for (image, r) in results {
            match r {
                Ok(WriteOutcome::Written) => self.summary.failed_to_submit += 1,
                Ok(other) => self.count_conflict(image, &other),
                Err(e) => {
                    if let Some(d) = origin.get(&(image.bucket.clone(), image.key.clone())) {
                        self.fail(*d, e.to_string());
                    }
                }
            }
        }
    }

    async fn record_jobs(&mut self, job: &PlannedJob, job_id: &str) {
        let (db, table, claim, now) = (self.db(), &self.cfg.table, self.claim, self.now);
        let array = job.array_size.is_some();
        let results: Vec<_> = stream::iter(job_images(job))
            .map(|(index, image)| async move {
                let submission = store::Submission {
                    job_id,
                    job_name: &job.name,
                    array_index: array.then_some(index),
                };
                let r = store::record_submitted(db, table, image, claim, submission, now).await;
                (image, r)
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        for (image, r) in results {
            // The job exists and will label the image either way; only the
            // job id on the record is missing, so this is logged, not retried.
            if let Err(e) = r {
                error!(bucket = %image.bucket, key = %image.key, job_id, error = %e, "job id not recorded");
            }
        }
    }

    async fn give_back(
        &mut self,
        images: &[ImageRef],
        origin: &HashMap<(String, String), usize>,
        why: &str,
    ) {
        let reason =
            format!("job submission failed, waiting for the event to be redelivered: {why}");
        let (db, table, claim, now, reason_ref) =
            (self.db(), &self.cfg.table, self.claim, self.now, &reason);
        let released: Vec<_> = stream::iter(images)
            .map(|image| async move {
                (
                    image,
                    store::release_claim(db, table, image, claim, reason_ref, now).await,
                )
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        for (image, r) in released {
            if let Err(e) = r {
                warn!(bucket = %image.bucket, key = %image.key, error = %e, "claim not released; it expires with its lease");
            }
            if let Some(d) = origin.get(&(image.bucket.clone(), image.key.clone())) {
                self.fail(*d, why.to_owned());
            }
        }
    }
}

/// Every image of a planned job with its chunk index.
fn job_images(job: &PlannedJob) -> Vec<(usize, &ImageRef)> {
    job.chunks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |image| (i, image)))
        .collect()
}

/// A job that Batch holds for a planned job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its job id.
    pub job_id: String,
    /// True when it was found under the planned job's name rather than
    /// submitted now.
    pub adopted: bool,
}

/// Why a planned job holds no Batch job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Throttling, 5xx, timeouts: retrying later may succeed.
    #[error("{0}")]
    Transient(String),
    /// Batch refuses the request itself; no retry will change that.
    #[error("{0}")]
    Permanent(String),
}

/// Job states in which a job will still run its images.
const LIVE_STATES: [aws_sdk_batch::types::JobStatus; 5] = [
    aws_sdk_batch::types::JobStatus::Submitted,
    aws_sdk_batch::types::JobStatus::Pending,
    aws_sdk_batch::types::JobStatus::Runnable,
    aws_sdk_batch::types::JobStatus::Starting,
    aws_sdk_batch::types::JobStatus::Running,
];

/// Writes the job's manifest (if any) and makes sure one Batch job holds
/// it: a live job already submitted under its deterministic name (by an
/// attempt whose response was lost, or by an invocation that died before
/// recording it) is adopted; otherwise the job is submitted.
///
/// SubmitJob has no idempotency token, so the SDK does not retry it: this
/// loop does, with full-jitter backoff, and looks for an adoptable job
/// before every attempt. Throttling (`TooManyRequestsException`, or Batch's
/// `ClientException` with HTTP 429) and 5xx are transient; any other
/// `ClientException` is permanent.
pub async fn submit(
    clients: &Clients,
    cfg: &Config,
    job: &PlannedJob,
) -> Result<Submitted, SubmitError> {
    submit_tallied(clients, cfg, job, &SubmitTally::default()).await
}

/// [`submit`], counting its retries and throttles into `tally`.
pub async fn submit_tallied(
    clients: &Clients,
    cfg: &Config,
    job: &PlannedJob,
    tally: &SubmitTally,
) -> Result<Submitted, SubmitError> {
    if let Some((bucket, key, body)) = &job.manifest {
        clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.clone().into())
            .send()
            .await
            .map_err(|e| {
                let why = format!("writing manifest s3://{bucket}/{key}: {}", describe(&e));
                match e.raw_response().map(|r| r.status().as_u16()) {
                    Some(403 | 404) => SubmitError::Permanent(why),
                    _ => SubmitError::Transient(why),
                }
            })?;
    }
    let no_retry = aws_sdk_batch::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::disabled());
    let mut last = String::new();
    for attempt in 0..cfg.max_attempts.max(1) {
        if attempt > 0 {
            tally
                .retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(backoff(attempt)).await;
        }
        if let Some(job_id) = live_job_named(clients, cfg, &job.name).await {
            return Ok(Submitted {
                job_id,
                adopted: true,
            });
        }
        let sent = clients
            .batch
            .submit_job()
            .job_name(&job.name)
            .job_queue(&cfg.job_queue)
            .job_definition(&cfg.job_definition)
            .parameters(JOB_PARAMETER, job.spec.to_parameter())
            .set_array_properties(
                job.array_size
                    .map(|n| ArrayProperties::builder().size(n as i32).build()),
            )
            .customize()
            .config_override(no_retry.clone())
            .send()
            .await;
        match sent {
            Ok(out) => {
                return out
                    .job_id()
                    .map(|id| Submitted {
                        job_id: id.to_owned(),
                        adopted: false,
                    })
                    .ok_or_else(|| {
                        SubmitError::Transient(format!("SubmitJob {} returned no job id", job.name))
                    })
            }
            Err(e) => {
                last = format!("SubmitJob {}: {}", job.name, describe(&e));
                if submit_error_is_throttling(&e) {
                    tally
                        .throttles
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if !submit_error_is_transient(&e) {
                    return Err(SubmitError::Permanent(last));
                }
                warn!(job_name = %job.name, attempt, error = %last, "SubmitJob failed; retrying");
            }
        }
    }
    Err(SubmitError::Transient(last))
}

/// SubmitJob calls made again, and throttled, across concurrent submits.
#[derive(Debug, Default)]
pub struct SubmitTally {
    retries: std::sync::atomic::AtomicUsize,
    throttles: std::sync::atomic::AtomicUsize,
}

impl SubmitTally {
    /// (retries, throttles) counted.
    pub fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.retries.load(Relaxed), self.throttles.load(Relaxed))
    }
}

/// Whether a SubmitJob failure is Batch's throttling.
fn submit_error_is_throttling(
    e: &aws_sdk_batch::error::SdkError<
        aws_sdk_batch::operation::submit_job::SubmitJobError,
        aws_sdk_batch::config::http::HttpResponse,
    >,
) -> bool {
    use aws_sdk_batch::error::ProvideErrorMetadata;
    e.as_service_error().is_some_and(|err| {
        let message = err.message().unwrap_or_default().to_ascii_lowercase();
        e.raw_response().is_some_and(|r| r.status().as_u16() == 429)
            || err.code() == Some("TooManyRequestsException")
            || message.contains("too many requests")
            || message.contains("rate exceeded")
            || message.contains("throttl")
    })
}

/// Whether a failed SubmitJob may succeed if tried again.
fn submit_error_is_transient(
    e: &aws_sdk_batch::error::SdkError<
        aws_sdk_batch::operation::submit_job::SubmitJobError,
        aws_sdk_batch::config::http::HttpResponse,
    >,
) -> bool {
    use aws_sdk_batch::error::{ProvideErrorMetadata, SdkError};
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.err();
            let code = err.code().unwrap_or_default();
            let message = err.message().unwrap_or_default().to_ascii_lowercase();
            status == 429
                || status >= 500
                || code == "TooManyRequestsException"
                || code == "ServerException"
                || message.contains("too many requests")
                || message.contains("rate exceeded")
                || message.contains("throttl")
        }
        // Construction failures are bugs in the request, not the network.
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// Full-jitter exponential backoff: up to 100 ms × 2^attempt, at most 5 s.
fn backoff(attempt: u32) -> std::time::Duration {
    let cap = (100u64 << attempt.min(6)).min(5_000);
    std::time::Duration::from_millis(fastrand::u64(0..=cap))
}

/// A live job of our queue named `name`, if Batch has one. A failed lookup
/// is logged and treated as "none": at worst a duplicate job is submitted,
/// which the worker's take keeps from labeling anything twice.
async fn live_job_named(clients: &Clients, cfg: &Config, name: &str) -> Option<String> {
    use aws_sdk_batch::types::KeyValuesPair;
    let listed = clients
        .batch
        .list_jobs()
        .job_queue(&cfg.job_queue)
        .filters(
            KeyValuesPair::builder()
                .name("JOB_NAME")
                .values(name)
                .build(),
        )
        .send()
        .await;
    match listed {
        Ok(out) => out
            .job_summary_list()
            .iter()
            .filter(|j| j.job_name() == Some(name))
            .find(|j| j.status().is_some_and(|s| LIVE_STATES.contains(s)))
            .and_then(|j| j.job_id().map(str::to_owned)),
        Err(e) => {
            warn!(job_name = name, error = %describe(&e), "could not look for a job of the same name");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Report;

    #[test]
    fn a_summary_gives_its_metrics_and_a_reconciler_pass_counts_both_kinds_of_failure() {
        let summary = Summary {
            images_queued: 7,
            jobs_submitted: 2,
            jobs_adopted: 1,
            submit_throttles: 1,
            reconciled: Some(Report {
                oldest_queued_secs: 5400,
                redispatched: 2,
                failed: 1,
                gave_up: 1,
                ..Report::default()
            }),
            ..Summary::default()
        };

        assert_eq!(
            telemetry::Counts::from(&summary),
            telemetry::Counts {
                images_queued: 7,
                jobs_submitted: 2,
                submit_throttles: 1,
                reconciled: Some(telemetry::Reconciled {
                    oldest_queued_secs: 5400,
                    redispatched: 2,
                    failed: 2,
                }),
                ..telemetry::Counts::default()
            }
        );
    }
}
