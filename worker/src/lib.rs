//! The image-labeler worker: the container AWS Batch runs to label one chunk
//! of images with Amazon Rekognition `DetectLabels` and store the results in
//! DynamoDB.
//!
//! Batch starts it as `worker --job <JobSpec JSON>` (the job definition's
//! command `["--job", "Ref::job"]`); an array child picks its chunk with
//! `AWS_BATCH_JOB_ARRAY_INDEX`, and a large job reads its chunks from a
//! manifest in S3 whose SHA-256 the spec carries ([`run::load_job`]).
//!
//! For every image of the chunk, at most `--concurrency` at a time and at
//! most `--rate-limit` DetectLabels calls a second ([`run::label_image`]):
//! 1. read the image record (strongly consistent); a newer upload, a deleted
//!    object or an already terminal record for this upload means nothing to
//!    do, and Rekognition is not called;
//! 2. take it for this job, and look for labels of the same content
//!    ([`labeler_core::reuse`]): a hit is stored without a Rekognition call;
//! 3. read its first 64 KiB and decide from the bytes ([`source`]): JPEG
//!    and PNG within Rekognition's limits are read by Rekognition from S3
//!    (the exact version), anything else decodable is converted to JPEG
//!    ([`convert`]) and sent as bytes, the rest is FAILED with a reason;
//! 4. store the labels and their label-index entries with one conditional
//!    transaction ([`labeler_core::labeling::record_labeled`]), or, when
//!    Rekognition refuses the image for good, a FAILED record with a reason
//!    in plain words ([`error::permanent_reason`]).
//!
//! Throttling, 5xx answers and timeouts are retried inside each AWS call by
//! the SDK's standard retry strategy ([`retry_policy`]); a fault that outlasts
//! those retries leaves its image QUEUED and makes the process ask Batch for
//! another attempt through its exit code. On SIGTERM the worker takes no new
//! image, gives the ones in flight `--drain-seconds` to finish, and exits
//! asking for a retry ([`shutdown`]).
//!
//! # Exit codes
//!
//! The exit code is an API: `retryStrategy.evaluateOnExit` in
//! `infra/job-definition.json` encodes it, and a test checks the two agree.
//! It is defined once, in [`ExitCode`]:
//!
//! | code | meaning | Batch |
//! |---|---|---|
//! | 0 | every image of the chunk has a terminal record (LABELED, FAILED, SKIPPED) or belongs to a newer upload | done |
//! | 2 | command line not understood (clap) | EXIT |
//! | 3 | retryable: transient faults outlasted the in-process retries, or SIGTERM; unfinished images stay QUEUED | RETRY |
//! | 4 | the job is unusable: malformed spec, manifest changed or missing, chunk index out of range, wrong table | EXIT |
//!
//! Anything else (a panic's 101, SIGKILL's 137) is not retried either. When
//! Batch gives up on a job, the dispatcher marks its still-QUEUED images
//! FAILED, so every image still ends with a terminal record.
//!
//! Modules: [`cli`] (flags and settings), [`mod@run`] (the labeling run),
//! [`outcome`] (what a run did, image by image and summed up),
//! [`labels`] (DetectLabels output → stored labels), [`error`] (errors and
//! their classification), [`rate`] (client-side rate limit), [`shutdown`]
//! (SIGTERM), [`batch`] (the job definition template and how Batch resolves
//! it), [`exit`] (the exit codes), [`convert`] (image formats: what
//! Rekognition reads directly, and conversion of the rest to JPEG),
//! [`source`] (what Rekognition reads for an image, bounded conversions).

pub mod backend;
pub mod batch;
pub mod cli;
mod content;
pub mod convert;
pub mod error;
pub mod exit;
mod formats;
pub mod heif;
pub mod labels;
pub mod model;
pub mod outcome;
pub mod rate;
pub mod run;
pub mod shutdown;
pub mod source;
pub mod telemetry;
pub mod vocabulary;

pub use backend::Backend;
pub use error::WorkerError;
pub use exit::ExitCode;
pub use outcome::Outcome;
pub use run::{execute, load_job, run, Clients, Fleet, JobRequest, RateControl, Settings};
pub use shutdown::Shutdown;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use std::time::Duration;

/// The retry policy of every AWS client of the worker: the SDK's standard
/// strategy with `max_attempts` attempts per call. Throttling
/// (`ThrottlingException`, `ProvisionedThroughputExceededException`, …),
/// 5xx answers and timeouts are retried with exponential backoff and full
/// jitter; other errors are returned at once.
pub fn retry_policy(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20))
}

/// Time limits of every AWS call: a connection must open within 5 s and one
/// attempt (DetectLabels on a 15 MB image included) must finish within 60 s;
/// a timed-out attempt is retried like any transient fault.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

/// Builds the AWS clients once, from the SDK's standard environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, the credentials chain). S3 uses path
/// style addressing when an endpoint URL is set (local stacks).
///
/// Rekognition's client depends on who paces DetectLabels: with
/// [`RateControl::Aimd`] the SDK does not retry throttled calls
/// ([`error::ThrottlingIsBackPressure`]), so each one reaches the worker's
/// limiter; with [`RateControl::SdkAdaptive`] it uses the SDK's adaptive
/// retry mode, whose client-side rate limiter learns from them.
pub async fn clients(max_attempts: u32, rate_control: RateControl) -> Clients {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry_policy(max_attempts))
        .timeout_config(timeouts())
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(shared.endpoint_url().is_some())
        .build();
    let rekognition = aws_sdk_rekognition::config::Builder::from(&shared);
    let rekognition = match rate_control {
        RateControl::Aimd => rekognition.retry_classifier(error::ThrottlingIsBackPressure),
        RateControl::SdkAdaptive => rekognition.retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(20)),
        ),
    };
    Clients {
        rekognition: aws_sdk_rekognition::Client::from_conf(rekognition.build()),
        dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        s3: aws_sdk_s3::Client::from_conf(s3),
    }
}

/// Installs JSON logs on stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
