//! A real browser for tests and benchmarks: Debian's Chromium, headless,
//! driven through ChromeDriver's W3C WebDriver endpoint on loopback.
//!
//! Only the handful of WebDriver commands the gallery's tests need: open a
//! session, navigate, run a script, take a screenshot. Assertions are made on
//! what the page shows, read with `execute/sync` scripts.
//!
//! Chromium and ChromeDriver are installed by `scripts/install-browser.sh`
//! (`make browser`, part of `make test`); without them a test fails and says
//! how to install them.

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian installs it.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long [`Browser::wait_for`] waits.
pub const WAIT: Duration = Duration::from_secs(20);

/// A headless Chromium session; dropping it ends the session and ChromeDriver.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: Client<HttpConnector, Full<Bytes>>,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a headless
    /// Chromium session with a fresh profile and a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: run `make browser` (scripts/install-browser.sh installs Debian's chromium and chromium-driver)");
            }
        }
        let port = crate::free_port()?;
        // Its own process group, so that dropping the session also ends the
        // Chromium processes ChromeDriver started.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver")?;
        let profile = std::env::temp_dir().join(format!(
            "labeler-chromium-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&profile)?;
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            _profile: TempDir(profile.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = browser.call("GET", "/status", None).await {
                if status["ready"] == true {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let session = browser
            .call(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }}})),
            )
            .await
            .context("open a Chromium session")?;
        browser.session = session["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {session}"))?
            .to_owned();
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        let response = tokio::time::timeout(Duration::from_secs(60), self.http.request(request))
            .await
            .map_err(|_| anyhow!("WebDriver {method} {path}: no answer within 60 s"))??;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("WebDriver {method} {path}: not JSON"))?;
        if !status.is_success() {
            bail!("WebDriver {method} {path}: {status}: {}", value["value"]);
        }
        Ok(value["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        )
        .await?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page
    /// and returns what it returns.
    pub async fn eval(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script` until it returns something other than `null` or
    /// `false`, and returns that; fails after [`WAIT`] saying `what`.
    pub async fn wait_for(&self, what: &str, script: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(script, json!([])).await?;
            if !value.is_null() && value != Value::Bool(false) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let text = self
                    .eval(
                        "return document.body ? document.body.innerText : ''",
                        json!([]),
                    )
                    .await
                    .unwrap_or_default();
                bail!("waited {WAIT:?} for {what}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The current URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        let v = self.call("GET", &self.session_path("/url"), None).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a PNG screenshot of the window at `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self
            .call("GET", &self.session_path("/screenshot"), None)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .context("screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group is ChromeDriver's own (it leads it): never signal any
        // other group.
        let pid = self.driver.id() as libc::pid_t;
        // SAFETY: getpgid and kill only read their arguments.
        unsafe {
            if pid > 1 && libc::getpgid(pid) == pid {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What a plain HTTP request got: status, headers, body.
#[derive(Debug)]
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: hyper::HeaderMap,
    /// Body, as text.
    pub body: String,
}

/// One HTTP/1.1 request without a browser, with an optional Host header
/// (to see what the server answers a name other than its own).
pub async fn fetch(method: &str, url: &str, host: Option<&str>) -> anyhow::Result<Fetched> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(request.body(Full::new(Bytes::new()))?),
    )
    .await
    .map_err(|_| anyhow!("{method} {url}: no answer within 30 s"))??;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Fetched {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
