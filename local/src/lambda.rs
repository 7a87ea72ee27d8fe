//! The dispatcher as Lambda runs it: the real binary behind cargo-lambda's
//! Lambda Runtime API emulator (`cargo lambda watch`), and the real deploy
//! path (`cargo lambda deploy --endpoint-url …`) exercised against moto.

use crate::moto::{http, repo_root, venv_bin};
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Name of the function.
pub const FUNCTION: &str = "dispatcher";

/// `cargo lambda` from the project's virtualenv, run at the repository root.
pub fn cargo_lambda() -> anyhow::Result<Command> {
    let bin = venv_bin("cargo-lambda")?;
    let dir = bin.parent().context("venv bin dir")?;
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root()).env("PATH", path).arg("lambda");
    Ok(cmd)
}

/// `cargo lambda watch` serving the dispatcher, stopped (with the function
/// process it started) when dropped.
pub struct Watch {
    child: Child,
    /// Port of the Runtime API emulator's invoke endpoint.
    pub port: u16,
}

impl Watch {
    /// Starts the emulator with `env` for the function and waits until the
    /// function answers (the first start compiles it).
    pub fn start(port: u16, env: &[(String, String)], log: &Path) -> anyhow::Result<Watch> {
        let log_file = std::fs::File::create(log)?;
        let mut cmd = cargo_lambda()?;
        cmd.args(["watch", "--ignore-changes", "-p", FUNCTION])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let watch = Watch {
            child: cmd.spawn().context("start cargo lambda watch")?,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        let probe =
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"local-readiness-probe"}"#;
        loop {
            if let Ok(answer) = watch.invoker().invoke_blocking(probe) {
                if answer.get("ignored").is_some() {
                    return Ok(watch);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the dispatcher did not answer within 15 minutes; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// A handle that invokes the dispatcher through the Runtime API.
    pub fn invoker(&self) -> Invoker {
        Invoker { port: self.port }
    }
}

/// Invokes the dispatcher served by a [`Watch`].
#[derive(Debug, Clone, Copy)]
pub struct Invoker {
    port: u16,
}

impl Invoker {
    fn invoke_blocking(self, payload: &str) -> anyhow::Result<Value> {
        let (status, body) = http(
            self.port,
            "POST",
            &format!("/2015-03-31/functions/{FUNCTION}/invocations"),
            payload,
        )?;
        let answer: Value = serde_json::from_str(&body)
            .with_context(|| format!("dispatcher answered {status} with non-JSON: {body}"))?;
        if !(200..300).contains(&status) || answer.get("errorType").is_some() {
            bail!("dispatcher failed ({status}): {answer}");
        }
        Ok(answer)
    }

    /// Invokes the dispatcher with `event`; an error answer is an `Err`.
    pub async fn invoke(self, event: Value) -> anyhow::Result<Value> {
        let body = event.to_string();
        tokio::task::spawn_blocking(move || self.invoke_blocking(&body)).await?
    }
}

/// Sends `signal` to the process group `pgid` (`--` keeps the negative id
/// from being read as an option).
fn signal_group(signal: &str, pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .status();
}

impl Drop for Watch {
    fn drop(&mut self) {
        signal_group("TERM", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group("KILL", self.child.id());
        let _ = self.child.wait();
    }
}

/// Deploys the built zip into moto's Lambda with `cargo lambda deploy`
/// (`make lambda` builds it), with the function's role and environment.
pub fn deploy(
    endpoint: &str,
    role_arn: &str,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<()> {
    let zip = repo_root().join("target/lambda/dispatcher/bootstrap.zip");
    anyhow::ensure!(
        zip.exists(),
        "{} is missing: run `make lambda`",
        zip.display()
    );
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let log_file = std::fs::File::create(log)?;
    let mut cmd = cargo_lambda()?;
    cmd.args([
        "deploy",
        "--endpoint-url",
        endpoint,
        "--region",
        crate::moto::REGION,
    ])
    .args([
        "--iam-role",
        role_arn,
        "--timeout",
        "120",
        "--memory",
        "256",
    ])
    .args(["--env-var", &vars.join(",")])
    .arg(FUNCTION)
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .stdout(log_file.try_clone()?)
    .stderr(log_file);
    let status = cmd.status().context("run cargo lambda deploy")?;
    anyhow::ensure!(
        status.success(),
        "cargo lambda deploy failed; see {}",
        log.display()
    );
    Ok(())
}
