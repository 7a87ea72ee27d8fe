//! The dispatcher as Lambda runs it: the real binary behind cargo-lambda's
//! Lambda Runtime API emulator (`cargo lambda watch`), the arm64 `bootstrap`
//! of the Lambda zip run under QEMU behind that emulator alone
//! (`--only-lambda-apis`), and the real deploy path (`cargo lambda deploy
//! --endpoint-url …`) exercised against moto.

use crate::moto::{http, repo_root, venv_bin};
use anyhow::{bail, Context};
use serde_json::Value;
use std::fs::Permissions;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Name of the function.
pub const FUNCTION: &str = "dispatcher";

/// The function's memory, as `make deploy` sets it (dispatcher/Cargo.toml).
pub const MEMORY_MB: u32 = 256;

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

/// A child process in its own process group, stopped with its whole group
/// (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Group {
    child: Child,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Group> {
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("start {what}"))?;
        Ok(Group { child })
    }

    /// Fails when the process has already exited.
    fn ensure_running(&mut self, what: &str, log: &Path) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{what} exited ({status}); see {}", log.display()),
            None => Ok(()),
        }
    }
}

impl Drop for Group {
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

/// Starts `cargo lambda watch` with `args` on `127.0.0.1:port`, passing
/// `env` to the function it runs; its output goes to `log`.
fn spawn_watch(
    args: &[&str],
    port: u16,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<Group> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut cmd = cargo_lambda()?;
    cmd.args(["watch", "--ignore-changes"])
        .args(args)
        .args(["--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    Group::spawn(cmd, "cargo lambda watch")
}

/// An `s3:TestEvent`: the dispatcher answers it without calling AWS.
const PROBE: &str =
    r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"local-readiness-probe"}"#;

/// Invokes the dispatcher with [`PROBE`] until it answers, failing early
/// when `process` (which serves it) exits, or when `limit` passes.
fn await_dispatcher(
    invoker: Invoker,
    process: &mut Group,
    what: &str,
    limit: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        // The probe waits inside the emulator until a function takes it,
        // so it runs on its own thread while `process` is watched here.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(invoker.invoke_blocking(PROBE)));
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(answer)) if answer.get("ignored").is_some() => return Ok(()),
                Ok(_) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            process.ensure_running(what, log)?;
            if Instant::now() > deadline {
                bail!(
                    "the dispatcher did not answer within {} s; see {}",
                    limit.as_secs(),
                    log.display()
                );
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `cargo lambda watch` serving the dispatcher, stopped (with the function
/// process it started) when dropped.
pub struct Watch {
    _process: Group,
    /// Port of the Runtime API emulator's invoke endpoint.
    pub port: u16,
}

impl Watch {
    /// Starts the emulator with `env` for the function and waits until the
    /// function answers (the first start compiles it).
    pub fn start(port: u16, env: &[(String, String)], log: &Path) -> anyhow::Result<Watch> {
        let mut process = spawn_watch(&["-p", FUNCTION], port, env, log)?;
        let invoker = Invoker { port };
        let limit = Duration::from_secs(900);
        await_dispatcher(invoker, &mut process, "cargo lambda watch", limit, log)?;
        Ok(Watch {
            _process: process,
            port,
        })
    }

    /// A handle that invokes the dispatcher through the Runtime API.
    pub fn invoker(&self) -> Invoker {
        Invoker { port: self.port }
    }
}

/// cargo-lambda's Lambda Runtime API emulator alone (`cargo lambda watch
/// --only-lambda-apis`): it builds and starts nothing, and serves whatever
/// function process polls it. Stopped when dropped.
pub struct RuntimeApi {
    _process: Group,
    log: PathBuf,
    /// Port of both the invoke endpoint and the Runtime API.
    pub port: u16,
}

impl RuntimeApi {
    /// Starts the emulator on `127.0.0.1:port` and waits until it listens.
    pub fn start(port: u16, log: &Path) -> anyhow::Result<RuntimeApi> {
        let mut process = spawn_watch(&["--only-lambda-apis"], port, &[], log)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            process.ensure_running("cargo lambda watch --only-lambda-apis", log)?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the Runtime API emulator did not listen on port {port} within 120 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(RuntimeApi {
            _process: process,
            log: log.to_path_buf(),
            port,
        })
    }

    /// The variables the Lambda service gives a function process: where the
    /// Runtime API is (this emulator's route for [`FUNCTION`]), the
    /// function's name, version and memory size in MB.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let api = format!("http://127.0.0.1:{}/.rt/{FUNCTION}", self.port);
        [
            ("AWS_LAMBDA_RUNTIME_API", api),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A handle that invokes the dispatcher through this emulator.
    pub fn invoker(&self) -> Invoker {
        Invoker { port: self.port }
    }
}

/// The `bootstrap` of the dispatcher's Lambda zip, extracted into a
/// directory of its own that is removed when this is dropped.
pub struct Bootstrap {
    dir: PathBuf,
    /// The extracted executable.
    pub path: PathBuf,
}

/// ELF machine number of AArch64.
const EM_AARCH64: u16 = 183;

impl Bootstrap {
    /// Extracts `bootstrap` from the zip at `zip` (with Python's `zipfile`;
    /// `make lambda` needs python3 too) and checks it is an AArch64 ELF.
    pub fn extract(zip: &Path) -> anyhow::Result<Bootstrap> {
        anyhow::ensure!(
            zip.exists(),
            "{} is missing: run `make lambda`",
            zip.display()
        );
        static EXTRACTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "labeler-bootstrap-{}-{}",
            std::process::id(),
            EXTRACTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let bootstrap = Bootstrap {
            path: dir.join("bootstrap"),
            dir,
        };
        let out = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(zip)
            .arg(&bootstrap.dir)
            .output()
            .context("run python3 -m zipfile (python3 unzips the Lambda zip)")?;
        anyhow::ensure!(
            out.status.success() && bootstrap.path.exists(),
            "could not extract bootstrap from {}: {}",
            zip.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::set_permissions(&bootstrap.path, Permissions::from_mode(0o755))?;
        bootstrap.ensure_aarch64()?;
        Ok(bootstrap)
    }

    /// Fails unless the file is an ELF executable for AArch64.
    fn ensure_aarch64(&self) -> anyhow::Result<()> {
        let mut head = [0u8; 20];
        std::fs::File::open(&self.path)?
            .read_exact(&mut head)
            .with_context(|| format!("read the ELF header of {}", self.path.display()))?;
        anyhow::ensure!(&head[..4] == b"\x7fELF", "bootstrap is not an ELF file");
        let machine = u16::from_le_bytes([head[18], head[19]]);
        anyhow::ensure!(
            machine == EM_AARCH64,
            "bootstrap is for ELF machine {machine}, not AArch64 ({EM_AARCH64})"
        );
        Ok(())
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// QEMU's user-mode emulator for AArch64 (Debian's `qemu-user-static`).
pub const QEMU_AARCH64: &str = "/usr/bin/qemu-aarch64-static";
/// Sysroot holding the AArch64 glibc and `ld-linux-aarch64.so.1` (Debian's
/// `libc6-arm64-cross`).
pub const AARCH64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// An arm64 function process run under QEMU user-mode emulation, polling a
/// [`RuntimeApi`]; killed when dropped.
pub struct Emulated {
    _process: Group,
}

impl Emulated {
    /// Runs `bootstrap` under `qemu-aarch64-static -L` [`AARCH64_SYSROOT`]
    /// (explicitly, not through binfmt_misc) with only the environment Lambda
    /// would give it: `api`'s function variables plus `env`. Waits until the
    /// dispatcher answers a probe through `api`; its output goes to `log`.
    pub fn start(
        bootstrap: &Bootstrap,
        api: &RuntimeApi,
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Emulated> {
        for (path, package) in [
            (QEMU_AARCH64, "qemu-user-static"),
            (AARCH64_SYSROOT, "libc6-arm64-cross"),
        ] {
            anyhow::ensure!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (scripts/install-image-tools.sh)"
            );
        }
        let log_file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = Command::new(QEMU_AARCH64);
        cmd.args(["-L", AARCH64_SYSROOT])
            .arg(&bootstrap.path)
            .current_dir(&bootstrap.dir)
            .env_clear()
            .envs(api.function_env())
            .envs(env.iter().cloned())
            .env("LAMBDA_TASK_ROOT", &bootstrap.dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let mut process = Group::spawn(cmd, QEMU_AARCH64)?;
        let what = "the arm64 bootstrap under qemu-aarch64-static";
        let limit = Duration::from_secs(300);
        await_dispatcher(api.invoker(), &mut process, what, limit, log)
            .with_context(|| format!("Runtime API log: {}", api.log.display()))?;
        Ok(Emulated { _process: process })
    }
}

/// Invokes the dispatcher served by a [`Watch`] or a [`RuntimeApi`].
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
        &MEMORY_MB.to_string(),
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
