//! Child processes measured as a whole (wall time, peak resident memory),
//! a minimal HTTP client for loopback calls, and small helpers.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a measured child process ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// From spawn to exit.
    pub wall: Duration,
    /// Peak resident set size, in bytes: the largest `VmHWM` seen in
    /// `/proc/<pid>/status` while the process ran.
    pub peak_rss_bytes: u64,
}

/// How often a running child's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Runs `cmd` to completion and measures it.
///
/// Peak memory is the kernel's high-water mark of the process's resident
/// set (`VmHWM`), read while it runs. `ru_maxrss` from `wait4` would not do:
/// a child spawned with `vfork`/`posix_spawn` carries its parent's
/// high-water mark from before `exec` into its `ru_maxrss`. `VmHWM` belongs
/// to the address space `exec` created, and only grows, so the last sample
/// before exit is within a few milliseconds of the peak.
pub async fn run_measured(cmd: Command) -> anyhow::Result<Finished> {
    run_measured_within(cmd, Duration::MAX).await
}

/// Like [`run_measured`], killing the child (exit code `None`) if it still
/// runs after `limit`.
pub async fn run_measured_within(mut cmd: Command, limit: Duration) -> anyhow::Result<Finished> {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut child = cmd.spawn().context("start the child process")?;
        let status_file = format!("/proc/{}/status", child.id());
        let mut peak_kib = 0;
        let status = loop {
            if let Some(kib) = std::fs::read_to_string(&status_file)
                .ok()
                .as_deref()
                .and_then(high_water_kib)
            {
                peak_kib = peak_kib.max(kib);
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > limit {
                child.kill()?;
                break child.wait()?;
            }
            std::thread::sleep(SAMPLE_EVERY);
        };
        Ok(Finished {
            code: status.code(),
            wall: start.elapsed(),
            peak_rss_bytes: peak_kib * 1024,
        })
    })
    .await?
}

/// `VmHWM` of a `/proc/<pid>/status`, in KiB.
fn high_water_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft limit on open files to its hard limit (at
/// most 65,536): the SubmitJob-cap run holds a few thousand loopback
/// connections at once, more than the common soft limit of 1,024.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            let wanted = limit.rlim_max.min(65_536);
            if limit.rlim_cur < wanted {
                limit.rlim_cur = wanted;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub async fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs `body` to `http://127.0.0.1:port{path}` and returns the status and
/// body (one request per connection).
pub async fn http_post(port: u16, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status in the answer")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload).context("malformed chunked answer")?;
    }
    Ok((status, String::from_utf8_lossy(&payload).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }

    #[tokio::test]
    async fn a_child_is_measured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.05; exit 3"]);
        let done = run_measured(cmd).await.unwrap();
        assert_eq!(done.code, Some(3));
        assert!(done.peak_rss_bytes > 0);
    }

    #[tokio::test]
    async fn a_child_past_its_limit_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let done = run_measured_within(cmd, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(done.code, None);
        assert!(done.wall < Duration::from_secs(2), "{:?}", done.wall);
    }

    #[test]
    fn the_high_water_mark_is_read_from_proc_status() {
        let status = "Name:\tworker\nVmPeak:\t  900 kB\nVmHWM:\t   15600 kB\nVmRSS:\t 15000 kB\n";
        assert_eq!(high_water_kib(status), Some(15600));
    }
}
