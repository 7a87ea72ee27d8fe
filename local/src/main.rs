//! `labeler-local`: run image-labeler's whole pipeline on this machine.

use clap::{Parser, Subcommand};
use labeler_local::container::{self, Image, Worker};
use labeler_local::stack::{Options, Stack};
use std::path::PathBuf;
use std::process::ExitCode;
use worker::backend::Kind;

/// Runs image-labeler locally: moto for AWS, the dispatcher under
/// cargo-lambda, a local AWS Batch executor running the worker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Directory for logs and `stack.env`.
    #[arg(
        long,
        global = true,
        default_value = ".local",
        env = "LABELER_LOCAL_DIR"
    )]
    state_dir: PathBuf,
    /// Port for moto (0 picks a free one).
    #[arg(long, global = true, default_value_t = 0, env = "LABELER_MOTO_PORT")]
    moto_port: u16,
    /// Worker binary the local Batch executor runs.
    #[arg(
        long,
        global = true,
        default_value = "target/debug/worker",
        env = "LABELER_WORKER_BIN"
    )]
    worker_bin: PathBuf,
    /// Run the worker's container image (`make image`) under podman instead
    /// of the binary: an OCI reference, by default the arm64 image, which
    /// runs through qemu on an amd64 host.
    #[arg(long, global = true, value_name = "OCI_REF", num_args = 0..=1,
          default_missing_value = container::DEFAULT_IMAGE, env = "LABELER_WORKER_IMAGE")]
    worker_image: Option<String>,
    /// Skip exercising `cargo lambda deploy` into moto.
    #[arg(long, global = true)]
    no_deploy: bool,
    /// Leave S3 notifications on the events queue instead of delivering them
    /// to the dispatcher (uploads then wait for `labeler backfill`).
    #[arg(long, global = true)]
    no_events: bool,
    /// Use this AWS-compatible endpoint, already running on loopback (a
    /// moto server, LocalStack, a fault-injecting proxy), instead of
    /// starting moto; it is provisioned like a fresh moto and left running.
    #[arg(long, global = true, value_name = "URL", env = "LABELER_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// Who labels the images: the worker's own model (`local`, the labels
    /// say what is in the pictures), moto's DetectLabels (`rekognition`:
    /// the same fixed labels for every image), or the model first and moto
    /// below 60% (`cascade`).
    #[arg(long, global = true, value_enum, default_value_t = Kind::Local, env = "LABELER_BACKEND")]
    backend: Kind,
}

#[derive(Subcommand)]
enum Command {
    /// Start the stack, write `stack.env`, and run until interrupted.
    Up,
    /// Start the stack, upload the sample images, show their labels, stop.
    Demo {
        /// Then serve the web gallery (`labeler serve`) on the demo's results
        /// at ADDR until Ctrl-C.
        #[arg(long, value_name = "ADDR", num_args = 0..=1,
              default_missing_value = labeler_local::demo::GALLERY_BIND)]
        serve: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let worker = match &cli.worker_image {
        None => Worker::Binary(cli.worker_bin),
        Some(reference) => match Image::load(reference) {
            Ok(image) => Worker::Image(image),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    let opts = Options {
        state_dir: cli.state_dir,
        moto_port: cli.moto_port,
        worker,
        deploy: !cli.no_deploy,
        deliver_events: !cli.no_events,
        aws_endpoint: cli.aws_endpoint,
        backend: cli.backend,
        ..Options::default()
    };
    let result = match cli.command {
        Command::Demo { serve } => labeler_local::demo::run(&opts, serve.as_deref()).await,
        Command::Up => up(&opts).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(opts: &Options) -> anyhow::Result<()> {
    let stack = Stack::up(opts).await?;
    println!("{}", stack.exports());
    println!(
        "Local stack is up; exports written to {}/stack.env. Stop with Ctrl-C or `make down`.",
        opts.state_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stack.down().await;
    let _ = std::fs::remove_file(opts.state_dir.join("stack.env"));
    Ok(())
}
