//! What the local Batch executor starts for a job attempt: the worker binary
//! built on this machine, or the worker's container image (`make image`),
//! run without a Docker daemon by podman. An arm64 image runs on an amd64
//! host through qemu-user-static's binfmt_misc handler
//! (`scripts/install-image-tools.sh`).
//!
//! The image is started as Batch starts it: its own ENTRYPOINT and user, the
//! job definition's resolved `command` as arguments, the job's environment.
//! The container shares the host's network namespace so the worker reaches
//! the stack's loopback endpoint, as it reaches AWS's from a Fargate task.

use anyhow::{ensure, Context};
use std::path::PathBuf;
use std::process::Command;

/// The OCI image `make image` writes for arm64, the architecture Batch runs.
pub const DEFAULT_IMAGE: &str = "oci:target/worker-image/oci:arm64";

/// The program behind each container attempt.
#[derive(Debug, Clone)]
pub enum Worker {
    /// The worker binary, started directly.
    Binary(PathBuf),
    /// The worker image, loaded into podman's store.
    Image(Image),
}

/// A worker image in podman's store.
#[derive(Debug, Clone)]
pub struct Image {
    /// Where it came from (`oci:DIR:TAG`).
    pub reference: String,
    /// Podman's image id.
    pub id: String,
}

impl Image {
    /// Loads `reference` (`oci:DIR:TAG`, as `make image` writes it) into
    /// podman's store; relative directories are taken from the repository root.
    pub fn load(reference: &str) -> anyhow::Result<Image> {
        let out = Command::new("podman")
            .args(["pull", "--quiet", reference])
            .current_dir(crate::moto::repo_root())
            .output()
            .context("run podman (make image-tools installs it)")?;
        ensure!(
            out.status.success(),
            "podman could not load {reference} (run `make image`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let id = String::from_utf8(out.stdout)?.trim().to_owned();
        ensure!(
            !id.is_empty(),
            "podman pull {reference} printed no image id"
        );
        Ok(Image {
            reference: reference.to_owned(),
            id,
        })
    }
}

impl Worker {
    /// Fails naming what is missing before the stack starts.
    pub fn check(&self) -> anyhow::Result<()> {
        match self {
            Worker::Binary(bin) => ensure!(
                bin.exists(),
                "{} is missing: run `cargo build -p worker`",
                bin.display()
            ),
            Worker::Image(_) => {}
        }
        Ok(())
    }

    /// The command for one attempt: `argv` after the entrypoint, `env` set
    /// for the worker (and only for it).
    pub fn command(&self, argv: &[String], env: &[(String, String)]) -> tokio::process::Command {
        match self {
            Worker::Binary(bin) => {
                let mut cmd = tokio::process::Command::new(bin);
                cmd.args(argv).envs(env.iter().cloned());
                cmd
            }
            Worker::Image(image) => {
                let mut cmd = tokio::process::Command::new("podman");
                cmd.args(podman_run_args(&image.id, argv, env))
                    .envs(env.iter().cloned());
                cmd
            }
        }
    }
}

/// `podman run` for one attempt. Values travel in podman's own environment
/// (`--env NAME` copies it), so credentials stay off its command line.
///
/// runc rather than crun: crun refuses hosts with hybrid cgroups (v1
/// controllers beside a v2 mount), which container sandboxes often are.
/// podman's default `nofile`/`nproc` limits exceed what an unprivileged
/// sandbox may raise to, so modest explicit ones are set.
fn podman_run_args(image: &str, argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--network",
        "host",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
    ]
    .map(String::from)
    .to_vec();
    for (name, _) in env {
        args.extend(["--env".to_owned(), name.clone()]);
    }
    args.push(image.to_owned());
    args.extend(argv.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_gets_the_job_command_as_arguments_and_env_by_name_only() {
        let env = [("AWS_SECRET_ACCESS_KEY".to_owned(), "s3cret".to_owned())];
        let argv = ["--job".to_owned(), "{\"images\":[]}".to_owned()];
        let args = podman_run_args("abc123", &argv, &env);
        let image_at = args.iter().position(|a| a == "abc123").unwrap();
        assert_eq!(args[image_at + 1..], argv);
        assert!(args[..image_at]
            .windows(2)
            .any(|w| w == ["--env", "AWS_SECRET_ACCESS_KEY"]));
        assert!(!args.iter().any(|a| a.contains("s3cret")));
    }

    #[test]
    fn a_missing_worker_binary_is_named() {
        let err = Worker::Binary("/nonexistent/worker".into())
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/worker is missing"));
    }
}
