//! `labeler serve` started for a test or a benchmark: on a free loopback
//! port, against moto, stopped when dropped.

use crate::Moto;
use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running gallery.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
}

impl Served {
    /// Starts `labeler` (the binary at `bin`) as `serve` on a free loopback
    /// port for `table` in moto, and reads the address it printed.
    pub fn start(bin: &Path, moto: &Moto, table: &str) -> anyhow::Result<Served> {
        let mut child = Command::new(bin)
            .args(["serve", "--bind", "127.0.0.1:0", "--page-size", "50"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(moto.env())
            .env("LABELER_TABLE", table)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} serve", bin.display()))?;
        let mut first = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first);
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches('/').to_owned());
        let served = Served {
            child,
            url: url.unwrap_or_default(),
        };
        read.context("read the address labeler serve prints")?;
        anyhow::ensure!(
            !served.url.is_empty(),
            "labeler serve printed no URL: {first:?}"
        );
        Ok(served)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
