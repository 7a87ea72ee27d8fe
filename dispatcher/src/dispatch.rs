//! The dispatcher's effects: records, manifests and jobs.
//!
//! One invocation runs in four steps, each with bounded concurrency:
//! 1. recognise the payload and decide per object change ([`crate::plan`]);
//! 2. write SKIPPED records, apply deletes, and fail the QUEUED images of
//!    Batch jobs that died;
//! 3. claim every image to label with a conditional QUEUED write: the claim
//!    is what makes redelivered and out-of-order events submit nothing;
//! 4. pack the claimed images into jobs (array jobs when there is more than
//!    one chunk), write manifests, submit, and record the job on each image.
//!    A job that cannot be submitted gives its claims back and fails the
//!    deliveries it came from, so the platform redelivers them.
//!
//! Failures are per delivery: an SQS message that failed is reported in
//! `batchItemFailures` and its neighbours are not; any other invocation
//! returns an error so Lambda retries it.

use crate::config::Config;
use crate::event::{recognise, Delivery, JobEnded, Notice, ObjectChange};
use crate::plan::{self, Decision};
use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_sdk_batch::types::ArrayProperties;
use futures::{stream, StreamExt};
use labeler_core::job::{ImageSource, Manifest, PlannedJob, JOB_PARAMETER};
use labeler_core::store::{self, ClaimKind, Clock, WriteOutcome};
use labeler_core::{ImageRef, JobSpec, Revision};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use tracing::{error, info, warn};

/// The AWS clients the dispatcher calls, built once per cold start.
#[derive(Clone, Debug)]
pub struct Clients {
    /// AWS Batch.
    pub batch: aws_sdk_batch::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (manifests).
    pub s3: aws_sdk_s3::Client,
}

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
    /// Images marked FAILED because their Batch job died.
    pub failed_by_batch: usize,
    /// Notices ignored (test events, other event types, filtered prefixes).
    pub ignored: usize,
    /// Deliveries that failed and will be retried by the platform.
    pub failed_deliveries: usize,
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

    let mut labels = Vec::new();
    let mut skips = Vec::new();
    let mut removes = Vec::new();
    let mut ended = Vec::new();
    for (d, delivery) in deliveries.iter().enumerate() {
        let notices = match &delivery.notices {
            Ok(n) => n,
            Err(e) => {
                error!(message_id = delivery.message_id.as_deref(), error = %e, "unreadable delivery");
                run.fail(d, e.clone());
                continue;
            }
        };
        for notice in notices {
            match notice {
                Notice::Object(change) => match plan::decide(change, cfg) {
                    Decision::Label(image) => labels.push((d, image)),
                    Decision::Skip(image, reason) => skips.push((d, image, reason)),
                    Decision::Remove {
                        bucket,
                        key,
                        revision,
                    } => removes.push((d, bucket, key, revision)),
                    Decision::Ignore(reason) => {
                        info!(bucket = %change.bucket, key = %change.key, reason, "ignored");
                        run.summary.ignored += 1;
                    }
                },
                Notice::JobEnded(job) => ended.push((d, job.clone())),
                Notice::TestEvent => {
                    info!("s3:TestEvent acknowledged");
                    run.summary.ignored += 1;
                }
                Notice::Ignored(reason) => {
                    info!(reason, "ignored");
                    run.summary.ignored += 1;
                }
            }
        }
    }

    run.skip_all(skips).await;
    run.remove_all(removes).await;
    for (d, job) in ended {
        if let Err(e) = run.job_ended(&job).await {
            error!(job_id = %job.job_id, error = %e, "could not record the failure of a Batch job");
            run.fail(d, e);
        }
    }
    run.label_all(labels).await;
    run.summary.failed_deliveries = run.failed.len();
    info!(summary = ?run.summary, "invocation done");
    run
}

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

    async fn remove_all(&mut self, removes: Vec<(usize, String, String, Revision)>) {
        let (db, table) = (self.db(), &self.cfg.table);
        let results: Vec<_> = stream::iter(removes)
            .map(|(d, bucket, key, revision)| async move {
                let r = store::remove(db, table, &bucket, &key, &revision).await;
                (d, bucket, key, r)
            })
            .buffer_unordered(self.cfg.write_concurrency)
            .collect()
            .await;
        for (d, bucket, key, r) in results {
            match r {
                Ok(WriteOutcome::Written) => {
                    info!(bucket, key, "record removed");
                    self.summary.removed += 1;
                }
                Ok(_) => {
                    info!(
                        bucket,
                        key, "delete is older than the stored upload; record kept"
                    );
                    self.summary.superseded += 1;
                }
                Err(e) => self.fail(d, e.to_string()),
            }
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
        if !plan::is_our_queue(&job.job_queue, &self.cfg.job_queue) {
            info!(job_id = %job.job_id, queue = %job.job_queue, "job of another queue ignored");
            self.summary.ignored += 1;
            return Ok(());
        }
        let Some(raw) = job.parameters.get(JOB_PARAMETER) else {
            info!(job_id = %job.job_id, "job without a labeling spec ignored");
            self.summary.ignored += 1;
            return Ok(());
        };
        if job.status != "FAILED" {
            info!(job_id = %job.job_id, status = %job.status, "job finished");
            self.summary.ignored += 1;
            return Ok(());
        }
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
        let reason = format!(
            "Batch job {} ({}) failed: {}",
            job.job_name, job.job_id, job.reason
        );
        let images: Vec<&ImageRef> = plan::chunks_of_ended_job(&chunks, job.array_index)
            .into_iter()
            .flat_map(|(_, c)| c.iter())
            .collect();
        let (db, table, now, reason) = (self.db(), &spec.table, self.now, &reason);
        let results: Vec<_> = stream::iter(images)
            .map(|image| async move {
                (
                    image,
                    store::fail_if_still_queued(db, table, image, parent, reason, now).await,
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
        // Sorted so that the same images make the same jobs, whatever order the claims finished in.
        claimed.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
        let jobs = match plan::plan_jobs(claimed.clone(), self.cfg) {
            Ok(jobs) => jobs,
            Err(e) => {
                self.give_back(&claimed, &origin, &e.to_string()).await;
                return;
            }
        };
        let (clients, cfg) = (self.clients, self.cfg);
        let submitted: Vec<_> = stream::iter(jobs)
            .map(|job| async move {
                let r = submit(clients, cfg, &job).await;
                (job, r)
            })
            .buffer_unordered(self.cfg.submit_concurrency)
            .collect()
            .await;
        for (job, r) in submitted {
            let images = job_images(&job);
            match r {
                Ok(job_id) => {
                    self.record_jobs(&job, &job_id).await;
                    let keys: Vec<&str> = images.iter().map(|(_, i)| i.key.as_str()).collect();
                    info!(
                        bucket = %images[0].1.bucket,
                        keys = ?keys,
                        job_id,
                        job_name = %job.name,
                        array_size = job.array_size,
                        "job submitted"
                    );
                    self.summary.jobs_submitted += 1;
                    self.summary.images_queued += images.len();
                }
                Err(e) => {
                    error!(job_name = %job.name, error = %e, "job not submitted; claims released for redelivery");
                    let owned: Vec<ImageRef> = images.into_iter().map(|(_, i)| i.clone()).collect();
                    self.give_back(&owned, &origin, &e).await;
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

/// Writes the job's manifest (if any) and submits it; returns the job id.
///
/// Throttling (`TooManyRequestsException`) and 5xx answers are retried by the
/// SDK's standard retry strategy (exponential backoff with full jitter, up to
/// `MAX_ATTEMPTS` attempts), configured where the clients are built.
pub async fn submit(clients: &Clients, cfg: &Config, job: &PlannedJob) -> Result<String, String> {
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
            .map_err(|e| format!("writing manifest s3://{bucket}/{key}: {}", describe(&e)))?;
    }
    let out = clients
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
        .send()
        .await
        .map_err(|e| format!("SubmitJob {}: {}", job.name, describe(&e)))?;
    out.job_id()
        .map(str::to_owned)
        .ok_or_else(|| format!("SubmitJob {} returned no job id", job.name))
}

/// An SDK error with its service code and message, for logs and records.
fn describe<E, R>(e: &aws_sdk_batch::error::SdkError<E, R>) -> String
where
    E: aws_sdk_batch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        aws_sdk_batch::error::SdkError::ServiceError(se) => {
            let err = se.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("service error"),
                err.message().unwrap_or("no message")
            )
        }
        other => aws_sdk_batch::error::DisplayErrorContext(other).to_string(),
    }
}
