//! The dispatcher as a Lambda package: the size of the arm64 zip `make
//! lambda` builds (and of a size-optimised profile), and its start-up and
//! invocation times behind cargo-lambda's Lambda Runtime API emulator.

use crate::events;
use crate::process::{free_port, http_post, median, repo_root, wait_for_port};
use crate::standin::{Settings, StandIn};
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The project's target for the zipped package (Lambda itself accepts up
/// to 50 MB zipped; a small package uploads and cold-starts faster).
pub const ZIP_TARGET_BYTES: u64 = 5_000_000;

/// The zip `make lambda` builds.
pub fn release_zip() -> PathBuf {
    repo_root().join("target/lambda/dispatcher/bootstrap.zip")
}

/// Name of the size-optimised profile measured next to `release`.
pub const SIZE_PROFILE: &str = "lambda-zip";

/// Its settings, as `--config` overrides (the same lines would go into the
/// workspace's Cargo.toml as `[profile.lambda-zip]`). `panic = "unwind"` is
/// explicit: `cargo lambda build --release` adds `panic = "abort"` to a
/// release profile that does not set `panic`, while a named profile gets
/// nothing added.
pub const SIZE_PROFILE_SETTINGS: [(&str, &str); 5] = [
    ("inherits", "\"release\""),
    ("opt-level", "\"z\""),
    ("lto", "\"fat\""),
    ("codegen-units", "1"),
    ("panic", "\"unwind\""),
];

/// A zip, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    /// Which build.
    pub profile: String,
    /// Settings that differ from the workspace's release profile.
    pub settings: String,
    /// Zip size, bytes.
    pub zip_bytes: u64,
    /// `zip_bytes / ZIP_TARGET_BYTES`.
    pub ratio_to_target: f64,
    /// Build time, seconds (`None` when not built by the benchmark).
    pub build_s: Option<f64>,
}

/// Measures the zip `make lambda` built.
pub fn release_package() -> anyhow::Result<Package> {
    let zip = release_zip();
    let bytes = std::fs::metadata(&zip)
        .with_context(|| format!("{} is missing: run `make lambda`", zip.display()))?
        .len();
    Ok(Package {
        profile: format!("[profile.{SIZE_PROFILE}] (as `make lambda` builds it)"),
        settings: "opt-level \"z\", lto \"fat\", codegen-units 1, panic \"unwind\", strip".into(),
        zip_bytes: bytes,
        ratio_to_target: bytes as f64 / ZIP_TARGET_BYTES as f64,
        build_s: None,
    })
}

/// `cargo lambda` from the project's virtualenv, at the repository root.
fn cargo_lambda() -> anyhow::Result<Command> {
    let root = repo_root();
    let bin = root.join(".venv/bin");
    if !bin.join("cargo-lambda").exists() {
        bail!(
            "{} is missing: run `make setup`",
            bin.join("cargo-lambda").display()
        );
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(bin.join("cargo-lambda"));
    cmd.current_dir(&root).env("PATH", path).arg("lambda");
    Ok(cmd)
}

/// Builds the arm64 zip with the size-optimised profile (given as
/// `--config` overrides, so the workspace's Cargo.toml is untouched) into
/// `target/bench/lambda-zip/` and measures it.
pub fn size_profile_package() -> anyhow::Result<Package> {
    let dir = repo_root().join("target/bench").join(SIZE_PROFILE);
    let mut cmd = cargo_lambda()?;
    cmd.args([
        "build",
        "--arm64",
        "--output-format",
        "zip",
        "-p",
        "dispatcher",
    ])
    .args(["--profile", SIZE_PROFILE])
    .arg("--lambda-dir")
    .arg(&dir);
    for (key, value) in SIZE_PROFILE_SETTINGS {
        cmd.arg("--config")
            .arg(format!("profile.{SIZE_PROFILE}.{key}={value}"));
    }
    let log = std::fs::File::create(repo_root().join("target/bench/lambda-zip-build.log"))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let status = cmd.status().context("run cargo lambda build")?;
    if !status.success() {
        bail!("cargo lambda build --profile {SIZE_PROFILE} failed; see target/bench/lambda-zip-build.log");
    }
    let bytes = std::fs::metadata(dir.join("dispatcher/bootstrap.zip"))?.len();
    Ok(Package {
        profile: format!("[profile.{SIZE_PROFILE}]"),
        settings: SIZE_PROFILE_SETTINGS
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        zip_bytes: bytes,
        ratio_to_target: bytes as f64 / ZIP_TARGET_BYTES as f64,
        build_s: Some(started.elapsed().as_secs_f64()),
    })
}

/// Start-up and invocation times under the emulator.
#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    /// Binary measured.
    pub binary: String,
    /// Its size, bytes.
    pub binary_bytes: u64,
    /// Cold invocations: from process start to the answer, milliseconds.
    pub cold_ms: Vec<f64>,
    /// Warm invocations: request to answer, milliseconds.
    pub warm_ms: Vec<f64>,
    /// Median cold.
    pub cold_median_ms: f64,
    /// Median warm.
    pub warm_median_ms: f64,
    /// Median cold minus median warm: process start and initialisation.
    pub init_ms: f64,
}

/// The emulator (`cargo lambda watch --only-lambda-apis`), stopped with its
/// process group when dropped.
struct Emulator {
    child: Child,
    port: u16,
}

impl Emulator {
    async fn start(log: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(log)?;
        let mut cmd = cargo_lambda()?;
        cmd.args(["watch", "--only-lambda-apis", "-p", "dispatcher"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let emulator = Self {
            child: cmd.spawn().context("start cargo lambda watch")?,
            port,
        };
        wait_for_port(port, Duration::from_secs(60)).await?;
        Ok(emulator)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The emulator's own process group (started with process_group(0)).
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Kills and reaps a function process when dropped.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the host-arch `binary` `reps` times behind a fresh emulator; each
/// time measures the first (cold) invocation from process start, then
/// `warm` more invocations. Every invocation is a one-image SQS batch
/// answered by a stand-in with no latency.
pub async fn startup(binary: &Path, reps: usize, warm: usize) -> anyhow::Result<Startup> {
    let scratch = repo_root().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    let standin = StandIn::start(Settings::default()).await?;
    let mut cold_ms = Vec::new();
    let mut warm_ms = Vec::new();
    for rep in 0..reps {
        let emulator = Emulator::start(&scratch.join("emulator.log")).await?;
        let mut cmd = Command::new(binary);
        for name in crate::clients::CHILD_ENV_REMOVE {
            cmd.env_remove(name);
        }
        cmd.envs(crate::clients::child_env(&standin.endpoint(), &scratch))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", emulator.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("JOB_QUEUE", "bench-queue")
            .env("JOB_DEFINITION", "bench-job-definition")
            .env("TABLE_NAME", crate::scenario_dispatcher::TABLE)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                scratch.join("dispatcher-startup.log"),
            )?);
        let started = Instant::now();
        let _function = Function(cmd.spawn().context("start the dispatcher")?);
        for i in 0..=warm {
            let payload = events::sqs_batch(&format!("startup-{rep}-{i}"), 0..1).to_string();
            let sent = Instant::now();
            let (status, body) = http_post(
                emulator.port,
                "/2015-03-31/functions/_/invocations",
                &payload,
            )
            .await
            .context("invoke the dispatcher through the emulator")?;
            if status != 200 || body.contains("errorType") || !body.contains("batchItemFailures") {
                bail!("the dispatcher answered {status}: {body}");
            }
            if i == 0 {
                cold_ms.push(started.elapsed().as_secs_f64() * 1e3);
            } else {
                warm_ms.push(sent.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let cold = median(&cold_ms);
    let warm_median = median(&warm_ms);
    Ok(Startup {
        binary: binary
            .strip_prefix(repo_root())
            .unwrap_or(binary)
            .display()
            .to_string(),
        binary_bytes: std::fs::metadata(binary)?.len(),
        cold_ms,
        warm_ms,
        cold_median_ms: cold,
        warm_median_ms: warm_median,
        init_ms: cold - warm_median,
    })
}
