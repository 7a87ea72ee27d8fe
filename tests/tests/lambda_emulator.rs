//! The real dispatcher binary behind cargo-lambda's Lambda Runtime API
//! emulator (`cargo lambda watch`), invoked with committed fixtures through
//! `cargo lambda invoke`, talking to moto through the standard
//! `AWS_ENDPOINT_URL`.

use integration_tests::{free_port, provision, repo_root, venv_bin, Moto};
use labeler_core::store;
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `cargo lambda watch`, stopped (with its process group) when dropped.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        // The emulator runs the function as a grandchild: stop the whole group.
        let _ = Command::new("kill")
            .args(["-TERM", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda() -> Command {
    let bin_dir = venv_bin("cargo-lambda")
        .parent()
        .expect("venv bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root()).env("PATH", path).arg("lambda");
    cmd
}

fn invoke(port: u16, fixture: &str) -> Output {
    cargo_lambda()
        .args(["invoke", "dispatcher", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .args(["--data-file", &format!("dispatcher/tests/fixtures/{fixture}")])
        .output()
        .expect("run cargo lambda invoke")
}

#[tokio::test]
async fn dispatcher_answers_under_cargo_lambda_watch_and_submits_to_moto() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let port = free_port();
    let mut watch = cargo_lambda();
    watch
        .args(["watch", "--ignore-changes", "-p", "dispatcher"])
        .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .envs(moto.env())
        .envs(stack.dispatcher_env())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut watch, 0);
    let _watch = Watch(watch.spawn().expect("start cargo lambda watch"));

    // The first invocation waits for the emulator to build and boot the
    // function; retry until it answers or the deadline passes.
    let deadline = Instant::now() + Duration::from_secs(600);
    let out = loop {
        let out = invoke(port, "s3-put.json");
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_secs(2));
    };

    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(summary["jobs_submitted"], 1, "{summary}");
    let jobs = aws_sdk_batch::Client::new(&sdk)
        .list_jobs()
        .job_queue(&stack.job_queue)
        .filters(
            aws_sdk_batch::types::KeyValuesPair::builder()
                .name("JOB_NAME")
                .values("*")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .job_summary_list
        .unwrap_or_default();
    assert_eq!(jobs.len(), 1);
    let record = store::get_image(
        &aws_sdk_dynamodb::Client::new(&sdk),
        &stack.table,
        "photos-bucket",
        "holiday/beach day+sun.jpg",
    )
    .await
    .unwrap()
    .expect("QUEUED record under the decoded key");
    assert_eq!(record["status"].as_s().unwrap(), "QUEUED");

    let test_event = invoke(port, "s3-test-event.json");
    assert!(test_event.status.success());
    let summary: Value = serde_json::from_slice(&test_event.stdout).unwrap();
    assert_eq!(summary["ignored"], 1);
    assert_eq!(summary["jobs_submitted"], 0);

    let garbage = invoke(port, "awkward-keys.json");
    assert!(
        !garbage.status.success(),
        "an unrecognisable payload is an invocation error"
    );
}
