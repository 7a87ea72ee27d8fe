//! `labeler`: see the library documentation and `labeler --help`.

use clap::Parser;
use labeler_cli::{args::Cli, error_line, is_broken_pipe, run, Interrupted};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's message, on one line like every other error.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("labeler: error: {first} (see labeler --help)");
            return ExitCode::from(2);
        }
    };
    // The dispatcher's code logs per image at info; an operator sees its
    // warnings (not the SDK's chatter) unless LABELER_LOG asks for more
    // (e.g. LABELER_LOG=info, or debug to see the credential chain).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LABELER_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error",
                )
            }),
        )
        .compact()
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("labeler: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = runtime.block_on(run(cli, &mut out));
    let result = result.and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => ExitCode::from(130),
        Err(e) => {
            drop(out);
            eprintln!("labeler: error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}
