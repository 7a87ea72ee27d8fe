//! The command line: every flag with its environment fallback.

use crate::s3uri::S3Uri;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
AWS region, credentials and endpoint come from the standard SDK environment
(AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...).

Exit status: 0 success, 1 error (one line on stderr), 2 usage error,
130 interrupted (backfill saves its progress first).";

/// Inspect image-labeler results in DynamoDB and operate the pipeline.
#[derive(Debug, Parser)]
#[command(name = "labeler", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// DynamoDB results table (backfill and retry also read it from the
    /// dispatcher's settings).
    #[arg(long, env = "LABELER_TABLE", global = true)]
    pub table: Option<String>,

    /// AWS region (default: AWS_REGION or the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// Named profile from the AWS config files (default: AWS_PROFILE).
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// Endpoint for every AWS service (default: AWS_ENDPOINT_URL), e.g. a local emulator.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show one image's record: status, reason, labels, job, timestamps.
    Get(GetArgs),
    /// Images carrying a label, most confident first (a Query on the label index).
    Find(FindArgs),
    /// Counts by status and the most recent failures.
    Status(StatusArgs),
    /// Dispatch existing objects that have no record for their current upload.
    Backfill(BackfillArgs),
    /// Re-dispatch images recorded FAILED.
    Retry(RetryArgs),
    /// Every image record, streamed as CSV or JSON Lines.
    Export(ExportArgs),
    /// Converge old QUEUED records now: dispatch again what lost its job or
    /// claim, record FAILED what Batch failed (what the scheduled pass does).
    Reconcile(ReconcileArgs),
    /// Serve a read-only web gallery of the labeled images on this machine:
    /// thumbnails, label search, failures, bounding boxes.
    Serve(ServeArgs),
}

/// `labeler serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but a loopback address shows the
    /// bucket's images to whoever can reach the port.
    #[arg(long, default_value = "127.0.0.1:8080", env = "LABELER_SERVE_BIND")]
    pub bind: SocketAddr,
    /// Open the gallery in the default web browser.
    #[arg(long)]
    pub open: bool,
    /// Lifetime of the presigned S3 URLs the pages show images through, in
    /// seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(60..=43_200))]
    pub url_expiry: u64,
    /// Images per gallery page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub page_size: u32,
}

/// `labeler reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Look at records QUEUED for longer than this many seconds (default:
    /// the dispatcher's RECONCILE_AFTER_SECONDS).
    #[arg(long, value_name = "SECONDS")]
    pub older_than: Option<u64>,
    #[command(flatten)]
    pub settings: DispatchSettings,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Output format of single-object commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct ObjectFormat {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Output format of list commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct ListFormat {
    /// Print a JSON array instead of a table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (with a header row) instead of a table.
    #[arg(long)]
    pub csv: bool,
}

/// `labeler get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The image, as s3://BUCKET/KEY (the key exactly as stored, unencoded).
    pub uri: S3Uri,
    #[command(flatten)]
    pub format: ObjectFormat,
}

/// `labeler find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Label name, case-insensitive (e.g. Dog).
    pub label: String,
    /// Only images where the label's confidence is at least this (0-100).
    #[arg(long, default_value_t = 0.0, value_parser = confidence)]
    pub min_confidence: f64,
    /// At most this many images.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Items per DynamoDB page.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i32).range(1..), hide_short_help = true)]
    pub page_size: i32,
    #[command(flatten)]
    pub format: ListFormat,
}

/// `labeler status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show this many of the most recent failures.
    #[arg(long, default_value_t = 10)]
    pub failures: usize,
    /// Refresh every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "5",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    /// Parallel scan segments.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub segments: i32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the dispatcher's settings come from, for commands that dispatch.
#[derive(Debug, Clone, Args)]
pub struct DispatchSettings {
    /// Read the dispatcher's settings (queue, job definition, table, filters,
    /// chunking) from this deployed Lambda function's environment.
    #[arg(long, env = "LABELER_FUNCTION")]
    pub function: Option<String>,
    /// Batch job queue (overrides the function's JOB_QUEUE).
    #[arg(long, env = "LABELER_JOB_QUEUE")]
    pub job_queue: Option<String>,
    /// Batch job definition (overrides the function's JOB_DEFINITION).
    #[arg(long, env = "LABELER_JOB_DEFINITION")]
    pub job_definition: Option<String>,
    /// Images per Batch job submission at most; each submission is one
    /// (array) job. Larger batches mean fewer SubmitJob calls.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
}

/// `labeler backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Bucket and optional key prefix: s3://BUCKET or s3://BUCKET/PREFIX.
    pub uri: S3Uri,
    /// Show what would be dispatched; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop after listing this many objects (progress is saved; run again to continue).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Progress file for resuming (default: under $XDG_STATE_HOME/image-labeler).
    #[arg(long, env = "LABELER_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Ignore saved progress and start from the first key.
    #[arg(long)]
    pub restart: bool,
    /// Objects per ListObjectsV2 page.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=1000), hide_short_help = true)]
    pub page_size: i32,
    #[command(flatten)]
    pub settings: DispatchSettings,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `labeler retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Retry images recorded FAILED (the only selection there is, for now).
    #[arg(long, required = true)]
    pub failed: bool,
    /// Only failures whose reason contains TEXT (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub reason_contains: Option<String>,
    /// Show what would be retried; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub settings: DispatchSettings,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Formats of `labeler export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One row per image; labels as `Name:confidence` joined by `;`.
    Csv,
    /// JSON Lines: one full record per line.
    Json,
}

/// `labeler export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Items per DynamoDB page.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i32).range(1..), hide_short_help = true)]
    pub page_size: i32,
}

fn confidence(raw: &str) -> Result<f64, String> {
    let v: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err("confidence is a percentage between 0 and 100".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn confidence_is_a_percentage() {
        assert_eq!(confidence("90"), Ok(90.0));
        assert!(confidence("101").is_err());
        assert!(confidence("-1").is_err());
        assert!(confidence("high").is_err());
    }

    #[test]
    fn retry_requires_a_selection() {
        let err = Cli::try_parse_from(["labeler", "retry"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(Cli::try_parse_from(["labeler", "retry", "--failed"]).is_ok());
    }

    #[test]
    fn status_watch_defaults_to_five_seconds() {
        let cli = Cli::try_parse_from(["labeler", "status", "--watch"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("status expected")
        };
        assert_eq!(args.watch, Some(5));
    }
}
