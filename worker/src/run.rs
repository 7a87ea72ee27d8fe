//! One labeling run: resolve the job's chunk, label its images with bounded
//! concurrency, and sum up what happened.

use crate::backend::{Backend, Cascade, Local};
use crate::content::{self, ContentReuse};
use crate::error::{classify, full_chain, Fault, WorkerError};
use crate::exit::ExitCode;
use crate::labels::stored_labels;
use crate::outcome::{ImageOutcome, Outcome};
use crate::rate::{Aimd, RateLimiter};
use crate::shutdown::Shutdown;
use crate::source::{self, Conversions, ConvertSettings, Prepared};
use crate::telemetry::{self, Flusher, Telemetry};
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsOutput;
use aws_sdk_rekognition::types::Image;
use futures::{stream, StreamExt};
use labeler_core::budget::Budget;
use labeler_core::emf;
use labeler_core::job::{select_chunk, ImageSource, Manifest, ManifestRef};
use labeler_core::labeling::{self, Attempt};
use labeler_core::reuse;
use labeler_core::schema::{attr, Label};
use labeler_core::store::{self, Clock, StoreError, WriteOutcome};
use labeler_core::{ImageRef, JobSpec, Revision, Status};
use std::collections::HashMap;
use std::time::Duration;
use tracing::{error, info, warn};

/// The AWS clients of the worker, built once per process.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Amazon Rekognition.
    pub rekognition: aws_sdk_rekognition::Client,
    /// DynamoDB (the results table).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (manifests).
    pub s3: aws_sdk_s3::Client,
}

/// How a run behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Images labeled at the same time (at least 1).
    pub concurrency: usize,
    /// Most DetectLabels calls started per second by this process;
    /// unlimited when `None` (and no fleet is set).
    pub rate_limit: Option<f64>,
    /// The fleet this process belongs to: its DetectLabels calls then keep
    /// to a share of the fleet's rate that adapts to throttling
    /// ([`crate::rate`]).
    pub fleet: Option<Fleet>,
    /// Who adapts the pace to throttling.
    pub rate_control: RateControl,
    /// How long, from the start of the run, throttled DetectLabels calls are
    /// tried again before their images are left QUEUED for Batch's next
    /// attempt.
    pub time_budget: Duration,
    /// How long images in flight may take to finish after a shutdown.
    pub drain: Duration,
    /// Job id and attempt recorded on every image written.
    pub attempt: Attempt,
    /// Content reuse ([`labeler_core::reuse`]); `None` turns it off.
    pub reuse: Option<Reuse>,
    /// How format conversions are bounded ([`crate::source`]).
    pub convert: ConvertSettings,
    /// Who labels the images ([`crate::backend`]).
    pub backend: Backend,
}

/// The worker processes sharing one DetectLabels quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fleet {
    /// DetectLabels calls a second the whole fleet may make (the account's
    /// quota, or the part of it given to this pipeline).
    pub rate: f64,
    /// Most worker processes running at once.
    pub size: u32,
}

/// Who adapts the DetectLabels pace to throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RateControl {
    /// The worker's own limiter: a share of the fleet rate, additive
    /// increase and multiplicative decrease ([`crate::rate`]); the SDK does
    /// not retry throttled calls.
    #[default]
    Aimd,
    /// The AWS SDK's adaptive retry mode: its client-side rate limiter
    /// learns from throttled calls, per process, and retries them itself.
    SdkAdaptive,
}

/// How labels are reused across images with the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Days a stored content entry is reused (its TTL).
    pub ttl_days: u64,
}

impl Default for Reuse {
    fn default() -> Self {
        Self {
            ttl_days: reuse::DEFAULT_TTL_DAYS,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            rate_limit: None,
            fleet: None,
            rate_control: RateControl::Aimd,
            time_budget: Duration::from_secs(3300),
            drain: Duration::from_secs(20),
            attempt: Attempt {
                job_id: None,
                owner: labeler_core::labeling::process_owner(),
                attempt: 1,
            },
            reuse: Some(Reuse::default()),
            convert: ConvertSettings::default(),
            backend: Backend::default(),
        }
    }
}

/// What the process was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// The job parameter: a serialised [`JobSpec`].
    pub job: String,
    /// `AWS_BATCH_JOB_ARRAY_INDEX`, for array children.
    pub array_index: Option<usize>,
    /// Refuse a job for any other table.
    pub expect_table: Option<String>,
}

/// Runs a job from its request: parses and checks the spec, loads the chunk
/// and labels it. Returns the process exit code; logs a summary.
pub async fn execute(
    request: &JobRequest,
    clients: &Clients,
    settings: &Settings,
    shutdown: Shutdown,
) -> ExitCode {
    let (job, chunk) = match load_job(request, &clients.s3).await {
        Ok(loaded) => loaded,
        Err(e) => {
            let code = e.exit_code();
            let error = full_chain(&e);
            error!(
                error,
                exit_code = code.code(),
                meaning = code.meaning(),
                "job not run"
            );
            return code;
        }
    };
    match crate::heif::version() {
        Ok(version) => info!(libheif = %version, "HEIC/HEIF and AVIF can be decoded"),
        Err(e) => warn!(error = %e, "HEIC/HEIF and AVIF images will be recorded FAILED"),
    }
    let outcome = run(&job, &chunk, clients, settings, shutdown).await;
    let code = outcome.exit_code();
    info!(
        table = %job.table,
        images = outcome.images,
        labeled = outcome.labeled,
        reused = outcome.reused,
        failed = outcome.failed,
        already_done = outcome.already_done,
        superseded = outcome.superseded,
        retryable = outcome.retryable,
        unfinished = outcome.unfinished,
        exit_code = code.code(),
        meaning = code.meaning(),
        "chunk done"
    );
    code
}

/// Parses the job spec, checks its table and returns the chunk this process
/// labels: the inline chunk, or the one read from the manifest after its
/// SHA-256 was verified.
pub async fn load_job(
    request: &JobRequest,
    s3: &aws_sdk_s3::Client,
) -> Result<(JobSpec, Vec<ImageRef>), WorkerError> {
    let job = JobSpec::from_parameter(&request.job)?;
    if let Some(expected) = &request.expect_table {
        if *expected != job.table {
            return Err(WorkerError::WrongTable {
                expected: expected.clone(),
                found: job.table.clone(),
            });
        }
    }
    let chunk = match &job.images {
        ImageSource::Inline(chunks) => select_chunk(chunks, request.array_index)?.to_vec(),
        ImageSource::Manifest(manifest) => {
            let manifest = read_manifest(s3, manifest).await?;
            select_chunk(&manifest.chunks, request.array_index)?.to_vec()
        }
    };
    Ok((job, chunk))
}

async fn read_manifest(s3: &aws_sdk_s3::Client, m: &ManifestRef) -> Result<Manifest, WorkerError> {
    let read = |message: String| WorkerError::ManifestRead {
        bucket: m.bucket.clone(),
        key: m.key.clone(),
        message,
    };
    let object = match s3.get_object().bucket(&m.bucket).key(&m.key).send().await {
        Ok(object) => object,
        Err(e) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            let gone = e.as_service_error().is_some_and(|se| {
                se.is_no_such_key()
                    || matches!(
                        se.code(),
                        Some("NoSuchKey" | "NoSuchBucket" | "AccessDenied")
                    )
            });
            let message = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            return Err(if gone {
                WorkerError::ManifestMissing {
                    bucket: m.bucket.clone(),
                    key: m.key.clone(),
                    message,
                }
            } else {
                read(message)
            });
        }
    };
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| read(e.to_string()))?
        .into_bytes();
    Ok(Manifest::from_body(&body, m)?)
}

/// How DetectLabels calls are paced, and until when a throttled one is
/// tried again.
#[derive(Debug)]
pub struct Pace {
    limiter: Option<RateLimiter>,
    deadline: tokio::time::Instant,
}

impl Pace {
    /// The pace `settings` ask for, with the time budget counted from now.
    pub fn new(settings: &Settings) -> Self {
        let limiter = match (settings.fleet, settings.rate_control) {
            (Some(fleet), RateControl::Aimd) => Some(RateLimiter::adaptive(Aimd::for_fleet(
                fleet.rate,
                fleet.size,
                settings.rate_limit,
            ))),
            _ => settings.rate_limit.map(RateLimiter::per_second),
        };
        Self {
            limiter,
            deadline: tokio::time::Instant::now() + settings.time_budget,
        }
    }

    /// The current pace, calls per second, when there is one.
    pub fn rate(&self) -> Option<f64> {
        self.limiter.as_ref().map(RateLimiter::rate)
    }
}

/// Everything a run shares between the images in flight.
struct Shared<'a> {
    job: &'a JobSpec,
    clients: &'a Clients,
    pace: &'a Pace,
    attempt: &'a Attempt,
    reuse: Option<&'a ContentReuse>,
    conversions: &'a Conversions,
    telemetry: &'a Telemetry,
    backend: &'a Backend,
}

/// Labels `chunk`, at most `settings.concurrency` images at a time, and
/// returns the sum of their outcomes.
///
/// Images are pulled from the chunk lazily and each outcome is counted as it
/// arrives, so memory stays flat in the chunk size. Once `shutdown` is
/// requested no new image is started; images in flight get
/// `settings.drain` to finish and are abandoned (left QUEUED) after that.
/// Metrics are written every [`telemetry::FLUSH_EVERY`] and at the end.
pub async fn run(
    job: &JobSpec,
    chunk: &[ImageRef],
    clients: &Clients,
    settings: &Settings,
    shutdown: Shutdown,
) -> Outcome {
    let started = tokio::time::Instant::now();
    let pace = &Pace::new(settings);
    let telemetry = &Telemetry::default();
    let reuse = match settings.reuse {
        Some(r) => {
            let scope = settings.backend.reuse_scope();
            Some(ContentReuse::load(r.ttl_days, &clients.dynamodb, &job.table, scope).await)
        }
        None => None,
    };
    let shared = &Shared {
        job,
        clients,
        pace,
        attempt: &settings.attempt,
        reuse: reuse.as_ref(),
        conversions: &Conversions::new(settings.convert),
        telemetry,
        backend: &settings.backend,
    };
    let mut outcome = Outcome {
        images: chunk.len(),
        ..Outcome::default()
    };
    let mut flusher = Flusher::default();
    let mut results = stream::iter(chunk)
        .take_until(Box::pin(shutdown.clone().requested()))
        .map(|image| async move { (image, label(shared, image).await) })
        .buffer_unordered(settings.concurrency.max(1));
    let drain = settings.drain;
    let deadline = async move {
        shutdown.requested().await;
        warn!(
            drain_seconds = drain.as_secs_f64(),
            "shutdown: finishing the images in flight"
        );
        tokio::time::sleep(drain).await;
    };
    tokio::pin!(deadline);
    let mut flush_every =
        tokio::time::interval_at(started + telemetry::FLUSH_EVERY, telemetry::FLUSH_EVERY);
    loop {
        tokio::select! {
            biased;
            next = results.next() => match next {
                Some((image, result)) => outcome.add(image, result),
                None => break,
            },
            () = &mut deadline => {
                warn!("shutdown: images still in flight are abandoned and stay queued");
                break;
            }
            _ = flush_every.tick() => {
                let flush = flusher.flush(&outcome, telemetry, pace.rate(), None);
                emf::emit(&telemetry::lines(&job.table, Clock::now().unix_millis, flush));
            }
        }
    }
    outcome.unfinished = chunk.len() - outcome.finished();
    let flush = flusher.flush(&outcome, telemetry, pace.rate(), Some(started.elapsed()));
    emf::emit(&telemetry::lines(
        &job.table,
        Clock::now().unix_millis,
        flush,
    ));
    outcome
}

/// What the image record says about labeling `image` now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The record is this upload's and not terminal: label it.
    Label,
    /// This upload already has a terminal record.
    AlreadyDone(Status),
    /// A newer upload owns the record, or there is no record of this upload
    /// (deleted after the upload, or never queued).
    NotOurs {
        /// The newer upload, when that is the reason.
        newer: Option<Revision>,
    },
}

/// Decides from the image record (as read) whether to label `image`.
pub fn decide(
    image: &ImageRef,
    record: Option<&HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) -> Decision {
    let Some(record) = record else {
        return Decision::NotOurs { newer: None };
    };
    let stored = record
        .get(attr::REVISION)
        .and_then(|v| v.as_s().ok())
        .and_then(|r| Revision::try_from(r.clone()).ok());
    match stored {
        Some(rev) if rev == image.revision => {
            let status = record
                .get(attr::STATUS)
                .and_then(|v| v.as_s().ok())
                .and_then(|s| Status::parse(s));
            match status {
                Some(status) if status.is_terminal() => Decision::AlreadyDone(status),
                _ => Decision::Label,
            }
        }
        Some(rev) if rev > image.revision => Decision::NotOurs { newer: Some(rev) },
        _ => Decision::NotOurs { newer: None },
    }
}

/// Labels one image: reads its record, calls DetectLabels if the record is
/// still this upload's and unfinished, and writes the LABELED or FAILED
/// outcome conditionally. Never panics on service errors: they come back as
/// [`ImageOutcome::Retryable`].
async fn label(shared: &Shared<'_>, image: &ImageRef) -> ImageOutcome {
    match label_image(shared, image).await {
        Ok(outcome) => {
            if matches!(outcome, ImageOutcome::TakenElsewhere) {
                shared.telemetry.conflict();
            }
            outcome
        }
        Err(e) => ImageOutcome::Retryable(e),
    }
}

async fn label_image(shared: &Shared<'_>, image: &ImageRef) -> Result<ImageOutcome, WorkerError> {
    let Shared {
        job,
        clients,
        attempt,
        reuse,
        conversions,
        ..
    } = *shared;
    let (db, table) = (&clients.dynamodb, job.table.as_str());
    let record = store::get_image(db, table, &image.bucket, &image.key).await?;
    match decide(image, record.as_ref()) {
        Decision::Label => {}
        Decision::AlreadyDone(status) => {
            return Ok(ImageOutcome::AlreadyDone {
                status: Some(status),
            })
        }
        Decision::NotOurs { newer } => return Ok(ImageOutcome::Superseded { newer }),
    }
    match labeling::take(db, table, image, attempt, Clock::now()).await? {
        WriteOutcome::Written => {}
        WriteOutcome::Duplicate { existing } => {
            return Ok(ImageOutcome::AlreadyDone { status: existing })
        }
        WriteOutcome::Superseded { newer: Some(newer) } => {
            return Ok(ImageOutcome::Superseded { newer: Some(newer) })
        }
        WriteOutcome::Superseded { newer: None } => return Ok(ImageOutcome::TakenElsewhere),
    }
    // Taken: look for labels of the same bytes before paying for them.
    let lookup = match reuse {
        Some(r) => content::look_up(r, (&clients.s3, db), &job.options, image).await,
        None => None,
    };
    if let Some(found) = lookup.as_ref().and_then(|l| l.found.as_ref()) {
        let outcome =
            labeling::record_reused(db, table, image, found, attempt, Clock::now()).await?;
        return Ok(written(
            outcome,
            ImageOutcome::Labeled {
                labels: found.labels.len(),
                reused_from: Some(found.source.clone()),
            },
        ));
    }
    // What Rekognition reads: the object, or the worker's conversion of it.
    let (request_image, conversion) = match source::prepare(&clients.s3, image, conversions).await?
    {
        Prepared::Ready { image, conversion } => (image, conversion),
        Prepared::Refused(refusal) => {
            let outcome =
                labeling::record_failed(db, table, image, &refusal.reason, attempt, Clock::now())
                    .await?;
            return Ok(written(outcome, ImageOutcome::Failed(refusal)));
        }
    };
    let written_outcome = match answer(shared, image, request_image).await {
        Ok(answer) => {
            let detected = labeling::Detected {
                labels: &answer.labels,
                model_version: answer.model_version.as_deref(),
                conversion: conversion.as_deref(),
                note: answer.note.as_deref(),
            };
            let outcome = keep_paid_answer(shared, image, &detected).await?;
            if let (Some(r), Some(lookup), WriteOutcome::Written, true) =
                (reuse, &lookup, &outcome, answer.note.is_none())
            {
                content::remember(r, (&clients.s3, db), (image, lookup), &detected).await;
            }
            (
                outcome,
                ImageOutcome::Labeled {
                    labels: answer.labels.len(),
                    reused_from: None,
                },
            )
        }
        Err(Fault::Permanent(refusal)) => {
            let outcome =
                labeling::record_failed(db, table, image, &refusal.reason, attempt, Clock::now())
                    .await?;
            (outcome, ImageOutcome::Failed(refusal))
        }
        Err(Fault::Transient(message) | Fault::Throttled(message)) => {
            return Err(WorkerError::DetectLabels {
                bucket: image.bucket.clone(),
                key: image.key.clone(),
                message,
            })
        }
    };
    Ok(written(written_outcome.0, written_outcome.1))
}

/// What the run's backend answered for an image.
struct Answer {
    /// The labels, as they will be stored.
    labels: Vec<Label>,
    /// The model that produced them.
    model_version: Option<String>,
    /// Why they are not what the backend normally gives: a cascade kept
    /// the local labels because its budget was spent. Such labels are not
    /// offered to copies of the same bytes either.
    note: Option<String>,
}

/// Labels `image` (as `request` holds it) with the run's backend
/// ([`crate::backend`]).
async fn answer(shared: &Shared<'_>, image: &ImageRef, request: Image) -> Result<Answer, Fault> {
    match shared.backend {
        Backend::Rekognition => rekognition(shared, image, request).await,
        Backend::Local(local) => Ok(local_answer(shared, local, image, &request).await?.0),
        Backend::Cascade(cascade) => cascade_answer(shared, cascade, image, request).await,
    }
}

/// The cascade: the local model's labels when its most probable class
/// reaches `below`, else Rekognition's while the budget allows, else the
/// local labels with a note. What the model cannot read goes to
/// Rekognition as well (it may read it), and ends FAILED only when the
/// budget is spent.
async fn cascade_answer(
    shared: &Shared<'_>,
    cascade: &Cascade,
    image: &ImageRef,
    request: Image,
) -> Result<Answer, Fault> {
    let (local, top) = match local_answer(shared, &cascade.local, image, &request).await {
        Ok((local, top)) if top >= cascade.below => return Ok(local),
        Ok((local, top)) => (Ok(local), top),
        Err(Fault::Permanent(refusal)) => (Err(refusal), 0.0),
        Err(fault) => return Err(fault),
    };
    if let Some(note) = over_budget(shared, cascade, image, top).await? {
        let mut local = local.map_err(Fault::Permanent)?;
        local.note = Some(note);
        return Ok(local);
    }
    shared.telemetry.escalated();
    rekognition(shared, image, request).await
}

async fn rekognition(
    shared: &Shared<'_>,
    image: &ImageRef,
    request: Image,
) -> Result<Answer, Fault> {
    let output = detect(shared, image, request).await?;
    Ok(Answer {
        labels: stored_labels(&output),
        model_version: output.label_model_version().map(str::to_owned),
        note: None,
    })
}

/// The local model's labels of `image`, and the confidence of its most
/// probable class (percent). The bytes are the request's when the worker
/// converted the image, else the object's (one GET of its version).
async fn local_answer(
    shared: &Shared<'_>,
    local: &Local,
    image: &ImageRef,
    request: &Image,
) -> Result<(Answer, f32), Fault> {
    let bytes = match request.bytes() {
        Some(blob) => blob.as_ref().to_vec(),
        None => source::whole(&shared.clients.s3, image)
            .await
            .map_err(|e| Fault::Transient(full_chain(&e)))?
            .map_err(Fault::Permanent)?,
    };
    let started = tokio::time::Instant::now();
    let probabilities = local.model.classify(bytes).await.map_err(|e| {
        Fault::Permanent(crate::error::Refusal::new(e.reason_class(), e.to_string()))
    })?;
    shared.telemetry.local_inference(started.elapsed());
    let top = probabilities.iter().copied().fold(0.0, f32::max) * 100.0;
    let labels =
        labeling::prepare_labels(local.vocabulary.labels(&probabilities, &shared.job.options));
    let answer = Answer {
        labels,
        model_version: Some(local.model.version().to_owned()),
        note: None,
    };
    Ok((answer, top))
}

/// Whether the cascade must keep its local labels of `image` because the
/// fleet's Rekognition budget ([`labeler_core::budget`]) is spent, and if
/// so the note its record carries; takes one call from the budget when
/// there is one left. A store fault leaves the image QUEUED, as any other.
async fn over_budget(
    shared: &Shared<'_>,
    cascade: &Cascade,
    image: &ImageRef,
    top: f32,
) -> Result<Option<String>, Fault> {
    let Some(budget) = cascade.budget else {
        return Ok(None);
    };
    let (db, table) = (&shared.clients.dynamodb, shared.job.table.as_str());
    let allowed = labeler_core::budget::spend(db, table, budget, Clock::now())
        .await
        .map_err(|e| Fault::Transient(full_chain(&e)))?;
    if allowed {
        return Ok(None);
    }
    shared.telemetry.budget_reached();
    info!(
        bucket = image.bucket.as_str(),
        key = image.key.as_str(),
        top_confidence = top,
        cap = budget.cap,
        "the Rekognition budget of this period is spent; keeping the local labels"
    );
    Ok(Some(budget_note(top, cascade.below, budget)))
}

/// The note of an image the cascade would have sent to Rekognition.
fn budget_note(top: f32, below: f32, budget: Budget) -> String {
    format!(
        "local labels only: the local model's top class ({top:.1}%) is below {below}%, \
         and this {}'s Rekognition budget of {} calls is spent",
        budget.period.as_str(),
        budget.cap
    )
}

/// Longest wait between two writes of a paid answer ([`keep_paid_answer`]).
const MAX_PAID_WRITE_WAIT: Duration = Duration::from_secs(60);

/// Writes the LABELED record of a paid DetectLabels answer, and writes it
/// again while DynamoDB is unavailable (a transient [`StoreError`]): 1 s,
/// 2 s, 4 s … at most a minute apart, for as long as the run's time budget
/// lasts. The answer was charged; dropping it would make the next Batch
/// attempt pay again. Only a refused request, or the end of the budget,
/// sends the error up (and the image stays QUEUED). A process killed
/// meanwhile loses the answer: the one documented way to pay twice.
async fn keep_paid_answer(
    shared: &Shared<'_>,
    image: &ImageRef,
    detected: &labeling::Detected<'_>,
) -> Result<WriteOutcome, StoreError> {
    let (db, table) = (&shared.clients.dynamodb, shared.job.table.as_str());
    let mut wait = Duration::from_secs(1);
    loop {
        let written =
            labeling::record_labeled(db, table, image, detected, shared.attempt, Clock::now())
                .await;
        match written {
            Err(e) if e.transient && tokio::time::Instant::now() + wait < shared.pace.deadline => {
                warn!(
                    bucket = image.bucket.as_str(),
                    key = image.key.as_str(),
                    error = %e,
                    retry_in_secs = wait.as_secs(),
                    "could not store a paid answer; keeping it and writing again"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_PAID_WRITE_WAIT);
            }
            other => return other,
        }
    }
}

/// Calls DetectLabels at the run's pace, treating throttling as
/// back-pressure: a throttled call slows the limiter down
/// ([`RateLimiter::throttled`]) and is made again when the slower pace
/// allows (without a limiter, after an exponential backoff with jitter),
/// for as long as the run's time budget lasts. Other faults come back as
/// they are (the SDK has already retried the transient ones).
async fn detect(
    shared: &Shared<'_>,
    image: &ImageRef,
    request: Image,
) -> Result<DetectLabelsOutput, Fault> {
    let options = &shared.job.options;
    let mut throttles: u32 = 0;
    loop {
        if let Some(limiter) = &shared.pace.limiter {
            limiter.acquire().await;
        }
        let started = tokio::time::Instant::now();
        let response = shared
            .clients
            .rekognition
            .detect_labels()
            .image(request.clone())
            .max_labels(i32::try_from(options.max_labels).unwrap_or(i32::MAX))
            .min_confidence(options.min_confidence)
            .send()
            .await;
        let took = started.elapsed();
        let fault = match response {
            Ok(output) => {
                shared.telemetry.detect_labels(took, false);
                if let Some(limiter) = &shared.pace.limiter {
                    limiter.succeeded();
                }
                return Ok(output);
            }
            Err(e) => classify(&e),
        };
        let throttled = matches!(fault, Fault::Throttled(_));
        shared.telemetry.detect_labels(took, throttled);
        if let (true, Some(limiter)) = (throttled, &shared.pace.limiter) {
            limiter.throttled();
        }
        let Fault::Throttled(message) = &fault else {
            return Err(fault);
        };
        throttles += 1;
        let wait = match &shared.pace.limiter {
            Some(_) => Duration::ZERO,
            None => backoff(throttles),
        };
        if tokio::time::Instant::now() + wait >= shared.pace.deadline {
            warn!(
                bucket = image.bucket.as_str(),
                key = image.key.as_str(),
                throttles,
                "still throttled at the end of the time budget; left queued"
            );
            return Err(fault);
        }
        if throttles == 1 || throttles.is_power_of_two() {
            info!(
                bucket = image.bucket.as_str(),
                key = image.key.as_str(),
                throttles,
                message = message.as_str(),
                "DetectLabels throttled; calling again at a slower pace"
            );
        }
        tokio::time::sleep(wait).await;
    }
}

/// Exponential backoff with full jitter for throttled calls of a process
/// without a limiter: up to 0.2 s × 2^(n−1), capped at 20 s.
fn backoff(throttles: u32) -> Duration {
    let ceiling = Duration::from_millis(200)
        .saturating_mul(1 << throttles.saturating_sub(1).min(7))
        .min(Duration::from_secs(20));
    ceiling.mul_f64(fastrand::f64())
}

/// The image's outcome from its result write's: `done` when written.
fn written(outcome: WriteOutcome, done: ImageOutcome) -> ImageOutcome {
    match outcome {
        WriteOutcome::Written => done,
        WriteOutcome::Duplicate { existing } => ImageOutcome::AlreadyDone { status: existing },
        WriteOutcome::Superseded { newer } => ImageOutcome::Superseded { newer },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn image() -> ImageRef {
        ImageRef {
            bucket: "photos".into(),
            key: "a.jpg".into(),
            revision: Revision::from_sequencer("0A").unwrap(),
            version_id: None,
            etag: None,
            size: None,
        }
    }

    fn record(seq: &str, status: Option<&str>) -> HashMap<String, AttributeValue> {
        let mut r = HashMap::from([(
            attr::REVISION.to_owned(),
            AttributeValue::S(Revision::from_sequencer(seq).unwrap().to_string()),
        )]);
        if let Some(status) = status {
            r.insert(attr::STATUS.to_owned(), AttributeValue::S(status.into()));
        }
        r
    }

    #[test]
    fn a_queued_record_of_this_upload_is_labeled() {
        assert_eq!(
            decide(&image(), Some(&record("0A", Some("QUEUED")))),
            Decision::Label
        );
        assert_eq!(decide(&image(), Some(&record("0A", None))), Decision::Label);
    }

    #[test]
    fn a_terminal_record_of_this_upload_is_left_alone() {
        for status in [Status::Labeled, Status::Failed, Status::Skipped] {
            assert_eq!(
                decide(&image(), Some(&record("0A", Some(status.as_str())))),
                Decision::AlreadyDone(status)
            );
        }
    }

    #[test]
    fn a_newer_older_or_missing_record_is_not_ours() {
        assert_eq!(
            decide(&image(), Some(&record("0B", Some("QUEUED")))),
            Decision::NotOurs {
                newer: Some(Revision::from_sequencer("0B").unwrap())
            }
        );
        assert_eq!(
            decide(&image(), Some(&record("09", Some("LABELED")))),
            Decision::NotOurs { newer: None }
        );
        assert_eq!(decide(&image(), None), Decision::NotOurs { newer: None });
    }

    #[test]
    fn a_budget_note_names_the_confidence_the_threshold_and_the_spent_budget() {
        let budget = Budget {
            cap: 1000,
            period: labeler_core::budget::Period::Month,
        };
        assert_eq!(
            budget_note(41.26, 60.0, budget),
            "local labels only: the local model's top class (41.3%) is below 60%, \
             and this month's Rekognition budget of 1000 calls is spent"
        );
    }

    #[test]
    fn a_backoff_stays_under_its_doubling_ceiling_of_at_most_twenty_seconds() {
        for throttles in 0u32..12 {
            let ceiling = Duration::from_millis(200)
                .saturating_mul(1 << throttles.saturating_sub(1).min(7))
                .min(Duration::from_secs(20));
            for _ in 0..50 {
                assert!(backoff(throttles) < ceiling);
            }
        }
        assert!(backoff(30) < Duration::from_secs(20));
    }
}
