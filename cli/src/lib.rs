//! `labeler`: inspect image-labeler results and operate the pipeline.
//!
//! | command | reads | writes |
//! |---|---|---|
//! | `get s3://B/K` | GetItem (strongly consistent) | — |
//! | `find LABEL` | Query on the `by-label` index, paginated | — |
//! | `status` | parallel Scan, projected | — |
//! | `backfill s3://B[/P]` | ListObjectsV2, the dispatcher's settings | the dispatcher's claims, manifests and SubmitJob |
//! | `retry --failed` | parallel Scan | claims (FAILED → QUEUED) and SubmitJob |
//! | `export` | Scan, streamed | — |
//! | `serve` | per page: see [`serve`] | — |
//!
//! Commands that dispatch call the dispatcher's own code
//! ([`dispatcher::dispatch::dispatch_changes`]) with the deployed
//! dispatcher's settings ([`settings`]).

pub mod args;
pub mod aws;
pub mod commands;
pub mod output;
pub mod record;
pub mod s3uri;
pub mod serve;
pub mod settings;

use anyhow::bail;
use args::{Cli, Command};
use aws_config::SdkConfig;
use std::io::Write;

/// The run was interrupted (Ctrl-C) after saving what it could; exit 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// What every command gets: the SDK configuration and the table flag.
pub struct Context {
    sdk: SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    /// `--table` / `LABELER_TABLE`.
    pub table: Option<String>,
}

impl Context {
    /// Builds the context from loaded SDK configuration.
    pub fn new(sdk: SdkConfig, table: Option<String>) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            table,
        }
    }

    /// The SDK configuration.
    pub fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }

    /// DynamoDB.
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// S3.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws::s3(&self.sdk)
    }

    /// The clients the dispatcher's code calls.
    pub fn dispatch_clients(&self) -> dispatcher::dispatch::Clients {
        dispatcher::dispatch::Clients {
            batch: aws_sdk_batch::Client::new(&self.sdk),
            dynamodb: self.dynamodb.clone(),
            s3: self.s3(),
        }
    }

    /// The results table, which read commands need.
    pub fn table(&self) -> anyhow::Result<&str> {
        match self.table.as_deref() {
            Some(t) if !t.trim().is_empty() => Ok(t),
            _ => bail!("no results table: pass --table or set LABELER_TABLE"),
        }
    }
}

/// Runs a parsed command line, writing results to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let sdk = aws::load(&cli).await?;
    let ctx = Context::new(sdk, cli.table);
    match &cli.command {
        Command::Get(a) => commands::get::run(&ctx, a, out).await,
        Command::Find(a) => commands::find::run(&ctx, a, out).await,
        Command::Status(a) => commands::status::run(&ctx, a, out).await,
        Command::Backfill(a) => commands::backfill::run(&ctx, a, out).await,
        Command::Retry(a) => commands::retry::run(&ctx, a, out).await,
        Command::Export(a) => commands::export::run(&ctx, a, out).await,
        Command::Reconcile(a) => commands::reconcile::run(&ctx, a, out).await,
        Command::Serve(a) => serve::run(&ctx, a, out).await,
    }?;
    out.flush()?;
    Ok(())
}

/// The one line printed for an error: the whole context chain, no newlines.
pub fn error_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace(['\n', '\r'], " ")
}

/// Whether the error is a closed pipe on the output (`labeler export | head`),
/// which is how a reader says it has seen enough.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|ce| {
                matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|je| je.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
