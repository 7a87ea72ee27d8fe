//! The worker's command line. Every flag has an environment fallback, so the
//! job definition can set defaults in `environment` and Batch's own
//! variables (`AWS_BATCH_JOB_*`) are picked up without flags.

use crate::backend::{Backend, Cascade, Kind, Local};
use crate::model::{LocalModel, ModelError};
use crate::run::{Fleet, JobRequest, RateControl, Reuse, Settings};
use crate::source::ConvertSettings;
use crate::vocabulary::Vocabulary;
use clap::Parser;
use labeler_core::budget::{Budget, Period};
use labeler_core::labeling::Attempt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Labels one chunk of images with Amazon Rekognition and stores the labels
/// in DynamoDB. Run by AWS Batch as `worker --job Ref::job`.
///
/// Exit codes: 0 every image has a terminal record; 2 usage error; 3 retry
/// the job (transient faults exhausted, or SIGTERM); 4 the job is unusable.
#[derive(Debug, Clone, Parser)]
#[command(name = "worker", version)]
pub struct Cli {
    /// The job: the compact JSON job spec the dispatcher put in the Batch
    /// job parameter `job`.
    #[arg(long, env = "LABELER_JOB", value_name = "JSON")]
    pub job: String,

    /// Images labeled at the same time.
    #[arg(
        long,
        env = "LABELER_CONCURRENCY",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub concurrency: u16,

    /// Most DetectLabels calls started per second by this process; unlimited
    /// when not set. Array children each get this rate. With a fleet rate,
    /// the adaptive pace never goes above it.
    #[arg(long, env = "LABELER_RATE_LIMIT", value_name = "PER_SECOND", value_parser = positive_rate)]
    pub rate_limit: Option<f64>,

    /// DetectLabels calls per second the whole fleet of workers may make:
    /// the account's quota in the region (Service Quotas), or the part of it
    /// given to this pipeline. Each process starts at its share,
    /// fleet rate / fleet size, and adapts to throttling.
    #[arg(long, env = "LABELER_FLEET_RATE", value_name = "PER_SECOND", value_parser = positive_rate)]
    pub fleet_rate: Option<f64>,

    /// Most worker processes running at once (Batch's max vCPUs divided by
    /// the vCPUs of one job).
    #[arg(
        long,
        env = "LABELER_FLEET_SIZE",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        value_name = "N"
    )]
    pub fleet_size: u32,

    /// Who adapts the pace to throttling: the worker's own AIMD limiter
    /// (`aimd`), or the AWS SDK's adaptive retry mode (`sdk-adaptive`).
    #[arg(
        long,
        env = "LABELER_RATE_CONTROL",
        value_enum,
        default_value_t = RateControl::Aimd
    )]
    pub rate_control: RateControl,

    /// Seconds from the start during which throttled DetectLabels calls are
    /// made again; after that their images stay QUEUED for Batch's next
    /// attempt. Keep it below the job's attempt timeout minus the drain.
    #[arg(
        long,
        env = "LABELER_TIME_BUDGET_SECONDS",
        default_value_t = 3300,
        value_name = "SECONDS"
    )]
    pub time_budget_seconds: u64,

    /// Attempts per AWS call; throttling, 5xx answers and timeouts are
    /// retried with exponential backoff and jitter.
    #[arg(
        long,
        env = "LABELER_MAX_ATTEMPTS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=20)
    )]
    pub max_attempts: u32,

    /// Seconds images in flight may take to finish after SIGTERM; keep it
    /// below the container's stop timeout (30 s by default).
    #[arg(long, env = "LABELER_DRAIN_SECONDS", default_value_t = 20)]
    pub drain_seconds: u64,

    /// Results table this worker is deployed for; a job naming another table
    /// is refused (exit 4). Any table is accepted when not set.
    #[arg(long, env = "LABELER_TABLE", value_name = "TABLE")]
    pub expect_table: Option<String>,

    /// Array child index: selects the chunk of an array job. Set by Batch
    /// for array children only.
    #[arg(long, env = "AWS_BATCH_JOB_ARRAY_INDEX", value_name = "INDEX")]
    pub array_index: Option<usize>,

    /// Batch job id, recorded on every image written (for an array child,
    /// its parent's id).
    #[arg(long, env = "AWS_BATCH_JOB_ID", value_name = "ID")]
    pub batch_job_id: Option<String>,

    /// Reuse the labels of an image with the same content (same ETag and
    /// size, same labeling options) instead of calling DetectLabels again,
    /// and store each image's labels for its copies. `false` turns it off.
    #[arg(
        long,
        env = "LABELER_REUSE_LABELS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub reuse_labels: bool,

    /// Days stored labels are reused before a copy is labeled afresh (the
    /// content entry's TTL), so a new Rekognition label model is picked up.
    #[arg(
        long,
        env = "LABELER_REUSE_TTL_DAYS",
        default_value_t = labeler_core::reuse::DEFAULT_TTL_DAYS,
        value_parser = clap::value_parser!(u64).range(1..=3650),
        value_name = "DAYS"
    )]
    pub reuse_ttl_days: u64,

    /// Images converted at the same time (WebP, GIF, TIFF, BMP, and JPEG or
    /// PNG beyond Rekognition's limits); each may hold hundreds of MB.
    #[arg(
        long,
        env = "LABELER_CONVERT_CONCURRENCY",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub convert_concurrency: u16,

    /// Largest object downloaded to convert; larger ones end FAILED.
    #[arg(
        long,
        env = "LABELER_MAX_CONVERT_BYTES",
        default_value_t = 100 * 1024 * 1024,
        value_name = "BYTES"
    )]
    pub max_convert_bytes: u64,

    /// Who labels the images: Amazon Rekognition (`rekognition`), the
    /// worker's own model (`local`: EfficientNet-Lite0 on the CPU, no AWS
    /// call), or the local model first and Rekognition for the images it
    /// is unsure of (`cascade`).
    #[arg(long, env = "LABELER_BACKEND", value_enum, default_value_t = Kind::Rekognition)]
    pub backend: Kind,

    /// The local model's ONNX file (`make model`; in the worker image at
    /// this default path). Refused unless its SHA-256 is the pinned one.
    #[arg(
        long,
        env = "LABELER_MODEL",
        default_value = DEFAULT_MODEL,
        value_name = "PATH"
    )]
    pub model: PathBuf,

    /// Images the local model classifies at once, each on a blocking
    /// thread (one per core is the fastest).
    #[arg(
        long,
        env = "LABELER_LOCAL_CONCURRENCY",
        value_parser = clap::value_parser!(u16).range(1..=256),
        value_name = "N"
    )]
    pub local_concurrency: Option<u16>,

    /// The cascade asks Rekognition when the local model's most probable
    /// class is below this confidence, in percent.
    #[arg(
        long,
        env = "LABELER_CASCADE_BELOW",
        default_value_t = 60.0,
        value_parser = percent,
        value_name = "PERCENT"
    )]
    pub cascade_below: f32,

    /// Most DetectLabels calls the cascade makes per period, counted in the
    /// results table for the whole fleet; past it, images keep their local
    /// labels. `none` (the default) sets no cap.
    // The full path keeps clap from treating the flag as optional: `none`
    // is a value, so that a deployment can always set the variable.
    #[arg(
        long,
        env = "LABELER_REKOGNITION_BUDGET",
        default_value = "none",
        value_parser = calls,
        value_name = "CALLS"
    )]
    pub rekognition_budget: std::option::Option<u64>,

    /// The period of `--rekognition-budget`: a UTC `day` or `month`.
    #[arg(
        long,
        env = "LABELER_BUDGET_PERIOD",
        default_value = "month",
        value_name = "PERIOD"
    )]
    pub budget_period: Period,

    /// Batch attempt number, recorded on every image written.
    #[arg(
        long,
        env = "AWS_BATCH_JOB_ATTEMPT",
        default_value_t = 1,
        value_name = "N"
    )]
    pub batch_attempt: u32,
}

/// Where the worker image carries the local model.
pub const DEFAULT_MODEL: &str = "/opt/image-labeler/efficientnet-lite0.onnx";

fn percent(raw: &str) -> Result<f32, String> {
    match raw.trim().parse::<f32>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{raw:?} is not a percentage from 0 to 100")),
    }
}

fn calls(raw: &str) -> Result<Option<u64>, String> {
    match raw.trim() {
        "none" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| format!("{raw:?} is neither a whole number of calls nor `none`")),
    }
}

fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{raw:?} is not a positive number of requests per second"
        )),
    }
}

/// The Batch job id without an array child's `:<index>` suffix.
pub fn parent_job_id(job_id: &str) -> &str {
    job_id.split_once(':').map_or(job_id, |(parent, _)| parent)
}

impl Cli {
    /// What to run: the job, the chunk selector and the table guard.
    pub fn job_request(&self) -> JobRequest {
        JobRequest {
            job: self.job.clone(),
            array_index: self.array_index,
            expect_table: self.expect_table.clone(),
        }
    }

    /// The backend the flags ask for, its model loaded (once per process).
    pub fn backend(&self) -> Result<Backend, ModelError> {
        let local = || -> Result<Local, ModelError> {
            let concurrency = self.local_concurrency.map_or_else(
                || std::thread::available_parallelism().map_or(1, usize::from),
                usize::from,
            );
            Ok(Local {
                model: LocalModel::load(&self.model, concurrency)?,
                vocabulary: Vocabulary::imagenet(),
            })
        };
        Ok(match self.backend {
            Kind::Rekognition => Backend::Rekognition,
            Kind::Local => Backend::Local(Arc::new(local()?)),
            Kind::Cascade => Backend::Cascade(Arc::new(Cascade {
                local: local()?,
                below: self.cascade_below,
                budget: self.rekognition_budget.map(|cap| Budget {
                    cap,
                    period: self.budget_period,
                }),
            })),
        })
    }

    /// How to run it, with Rekognition as the backend until [`Cli::backend`]
    /// loads the one asked for.
    pub fn settings(&self) -> Settings {
        Settings {
            concurrency: usize::from(self.concurrency),
            rate_limit: self.rate_limit,
            fleet: self.fleet_rate.map(|rate| Fleet {
                rate,
                size: self.fleet_size,
            }),
            rate_control: self.rate_control,
            time_budget: Duration::from_secs(self.time_budget_seconds),
            drain: Duration::from_secs(self.drain_seconds),
            attempt: Attempt {
                job_id: self
                    .batch_job_id
                    .as_deref()
                    .map(|id| parent_job_id(id).to_owned()),
                owner: self
                    .batch_job_id
                    .clone()
                    .unwrap_or_else(labeler_core::labeling::process_owner),
                attempt: self.batch_attempt,
            },
            reuse: self.reuse_labels.then_some(Reuse {
                ttl_days: self.reuse_ttl_days,
            }),
            convert: ConvertSettings {
                concurrency: usize::from(self.convert_concurrency),
                max_bytes: self.max_convert_bytes,
            },
            backend: Backend::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitCode;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("worker").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_documented_values() {
        let cli = parse(&["--job", "{}"]).unwrap();
        assert_eq!(cli.concurrency, 8);
        assert_eq!(cli.max_attempts, 8);
        assert_eq!(cli.rate_limit, None);
        assert_eq!(cli.settings().drain, Duration::from_secs(20));
        assert_eq!(cli.settings().fleet, None);
        assert_eq!(cli.settings().rate_control, RateControl::Aimd);
        assert_eq!(cli.settings().time_budget, Duration::from_secs(3300));
    }

    #[test]
    fn a_fleet_rate_and_size_make_the_fleet_this_process_shares() {
        let cli = parse(&[
            "--job",
            "{}",
            "--fleet-rate",
            "50",
            "--fleet-size",
            "16",
            "--rate-control",
            "sdk-adaptive",
        ])
        .unwrap();
        let settings = cli.settings();
        assert_eq!(
            settings.fleet,
            Some(Fleet {
                rate: 50.0,
                size: 16
            })
        );
        assert_eq!(settings.rate_control, RateControl::SdkAdaptive);
    }

    #[test]
    fn a_local_backend_without_its_model_fails_naming_the_file_and_variable() {
        let cli = parse(&[
            "--job",
            "{}",
            "--backend",
            "local",
            "--model",
            "/nonexistent.onnx",
        ])
        .unwrap();
        let err = cli.backend().unwrap_err().to_string();
        assert!(err.contains("/nonexistent.onnx"), "{err}");
        assert!(err.contains("LABELER_MODEL"), "{err}");
        let rekognition = parse(&["--job", "{}", "--model", "/nonexistent.onnx"]).unwrap();
        assert_eq!(rekognition.backend().unwrap(), Backend::Rekognition);
    }

    #[test]
    fn array_children_record_their_parent_job_id() {
        let cli = parse(&[
            "--job",
            "{}",
            "--batch-job-id",
            "4c1b2e3f-9a:17",
            "--batch-attempt",
            "2",
        ])
        .unwrap();
        let attempt = cli.settings().attempt;
        assert_eq!(attempt.job_id.as_deref(), Some("4c1b2e3f-9a"));
        assert_eq!(attempt.attempt, 2);
        assert_eq!(parent_job_id("plain-id"), "plain-id");
    }

    #[test]
    fn a_rekognition_budget_is_a_number_of_calls_or_none() {
        let cap = |args: &[&str]| parse(args).unwrap().rekognition_budget;
        assert_eq!(cap(&["--job", "{}"]), None);
        assert_eq!(cap(&["--job", "{}", "--rekognition-budget", "none"]), None);
        assert_eq!(cap(&["--job", "{}", "--rekognition-budget", "0"]), Some(0));
        assert_eq!(
            cap(&["--job", "{}", "--rekognition-budget", "1000"]),
            Some(1000)
        );
    }

    #[test]
    fn usage_errors_exit_with_the_usage_code() {
        for args in [
            &["--job", "{}", "--concurrency", "0"][..],
            &["--job", "{}", "--rate-limit", "-1"][..],
            &["--job", "{}", "--rate-limit", "fast"][..],
            &["--job", "{}", "--max-attempts", "0"][..],
            &["--job", "{}", "--fleet-rate", "0"][..],
            &["--job", "{}", "--fleet-size", "0"][..],
            &["--job", "{}", "--rate-control", "fast"][..],
            &["--job", "{}", "--backend", "gpu"][..],
            &["--job", "{}", "--cascade-below", "101"][..],
            &["--job", "{}", "--budget-period", "week"][..],
            &["--job", "{}", "--rekognition-budget", "-1"][..],
            &["--job", "{}", "--rekognition-budget", "lots"][..],
            &["--job", "{}", "--unknown"][..],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.exit_code(),
                i32::from(ExitCode::Usage.code()),
                "{args:?}"
            );
        }
    }

    #[test]
    fn help_names_every_flag_with_its_environment_variable() {
        let help = Cli::command().render_long_help().to_string();
        for (flag, env) in [
            ("--job", "LABELER_JOB"),
            ("--concurrency", "LABELER_CONCURRENCY"),
            ("--rate-limit", "LABELER_RATE_LIMIT"),
            ("--fleet-rate", "LABELER_FLEET_RATE"),
            ("--fleet-size", "LABELER_FLEET_SIZE"),
            ("--rate-control", "LABELER_RATE_CONTROL"),
            ("--time-budget-seconds", "LABELER_TIME_BUDGET_SECONDS"),
            ("--max-attempts", "LABELER_MAX_ATTEMPTS"),
            ("--drain-seconds", "LABELER_DRAIN_SECONDS"),
            ("--expect-table", "LABELER_TABLE"),
            ("--reuse-labels", "LABELER_REUSE_LABELS"),
            ("--reuse-ttl-days", "LABELER_REUSE_TTL_DAYS"),
            ("--convert-concurrency", "LABELER_CONVERT_CONCURRENCY"),
            ("--max-convert-bytes", "LABELER_MAX_CONVERT_BYTES"),
            ("--array-index", "AWS_BATCH_JOB_ARRAY_INDEX"),
            ("--batch-job-id", "AWS_BATCH_JOB_ID"),
            ("--batch-attempt", "AWS_BATCH_JOB_ATTEMPT"),
            ("--backend", "LABELER_BACKEND"),
            ("--model", "LABELER_MODEL"),
            ("--local-concurrency", "LABELER_LOCAL_CONCURRENCY"),
            ("--cascade-below", "LABELER_CASCADE_BELOW"),
            ("--rekognition-budget", "LABELER_REKOGNITION_BUDGET"),
            ("--budget-period", "LABELER_BUDGET_PERIOD"),
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
            assert!(
                help.contains(&format!("env: {env}")),
                "{env} missing from --help"
            );
        }
        Cli::command().debug_assert();
    }
}
