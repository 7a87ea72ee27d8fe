//! Entry point of the worker container: logs, flags, clients, run, exit code.

use clap::Parser;
use worker::cli::Cli;
use worker::{ExitCode, Shutdown};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    worker::init_tracing();
    let cli = Cli::parse();
    let shutdown = match Shutdown::on_signals() {
        Ok(shutdown) => shutdown,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return ExitCode::Retryable.into();
        }
    };
    let mut settings = cli.settings();
    settings.backend = match cli.backend() {
        Ok(backend) => backend,
        Err(e) => {
            tracing::error!(error = %e, "cannot load the labeling backend");
            return ExitCode::Usage.into();
        }
    };
    let clients = worker::clients(cli.max_attempts, cli.rate_control).await;
    worker::execute(&cli.job_request(), &clients, &settings, shutdown)
        .await
        .into()
}
