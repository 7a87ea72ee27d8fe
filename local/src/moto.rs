//! moto in server mode on loopback: the local stand-in for AWS.
//!
//! moto comes from the project's virtualenv (`make setup` installs the
//! pinned `moto[server]` into `.venv`); starting it fails loudly, with the
//! command that fixes it, when it is missing.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Region every local resource lives in.
pub const REGION: &str = "us-east-1";
/// Account id moto reports.
pub const ACCOUNT: &str = "123456789012";

/// Root of the repository (where `.venv` and `infra/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("local/ has a parent")
        .to_path_buf()
}

/// A program installed in the project's virtualenv.
pub fn venv_bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = repo_root().join(".venv/bin").join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `make setup` (it installs the pinned local tooling into .venv)",
        path.display()
    );
    Ok(path)
}

/// A moto server on 127.0.0.1, stopped when dropped.
pub struct Moto {
    /// The server process, when this handle started it ([`Moto::attach`]
    /// leaves a server it did not start alone).
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its port.
    pub port: u16,
}

impl Moto {
    /// Starts moto on `port` (0 picks a free one), waits until it answers and
    /// turns off Docker for Batch (jobs are tracked, not run: the local
    /// executor runs them). moto's log goes to `log`.
    pub fn start(port: u16, log: &Path) -> anyhow::Result<Moto> {
        let port = if port == 0 { free_port()? } else { port };
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(venv_bin("moto_server")?)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()?;
        let moto = Moto {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(port, "GET", "/moto-api/data.json", "").is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within 60 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = http(
            port,
            "POST",
            "/moto-api/config",
            r#"{"batch":{"use_docker":false}}"#,
        )?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "moto refused its config: {status} {body}"
        );
        Ok(moto)
    }

    /// Uses an AWS-compatible endpoint that is already running (a moto
    /// server, LocalStack, or a fault-injecting proxy in front of one) instead
    /// of starting moto. If it is moto, Docker is turned off for its Batch as
    /// [`Moto::start`] does; anything else is used as it is. The server is
    /// left running when the handle is dropped.
    pub fn attach(endpoint: &str) -> anyhow::Result<Moto> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let port = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| anyhow::anyhow!("{endpoint} has no port: expected http://HOST:PORT"))?;
        anyhow::ensure!(
            endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
            "{endpoint} is not on loopback: the local stack only talks to http://127.0.0.1:PORT"
        );
        let reachable = http(port, "GET", "/", "");
        anyhow::ensure!(reachable.is_ok(), "nothing answers at {endpoint}");
        if let Ok((status, _)) = http(
            port,
            "POST",
            "/moto-api/config",
            r#"{"batch":{"use_docker":false}}"#,
        ) {
            if !(200..300).contains(&status) {
                tracing::info!(endpoint, status, "not a moto server; used as it is");
            }
        }
        Ok(Moto {
            child: None,
            endpoint,
            port,
        })
    }

    /// Starts moto on a free port with its log under `target/moto-logs/`.
    pub fn start_for_tests() -> Moto {
        let port = free_port().expect("a free loopback port");
        let log = repo_root().join(format!("target/moto-logs/moto-{port}.log"));
        Moto::start(port, &log).unwrap_or_else(|e| panic!("moto could not start: {e:#}"))
    }

    /// SDK configuration pointing every client at this server.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// Environment that points a child process's AWS SDK at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// Minimal HTTP/1.0 request on loopback; returns (status, body). HTTP/1.0
/// keeps answers unchunked, which is all a loopback control call needs.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(900)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
