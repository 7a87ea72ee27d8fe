//! The real dispatcher binary behind cargo-lambda's Lambda Runtime API
//! emulator (`cargo lambda watch`), invoked with committed fixtures through
//! `cargo lambda invoke`, talking to moto through the standard
//! `AWS_ENDPOINT_URL`.

use integration_tests::{assert_dispatched_s3_put, free_port, provision, repo_root, Moto};
use labeler_local::lambda::{cargo_lambda, Watch};
use serde_json::Value;
use std::process::Output;

fn invoke(port: u16, fixture: &str) -> Output {
    cargo_lambda()
        .expect("cargo-lambda is installed")
        .args(["invoke", "dispatcher", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .args([
            "--data-file",
            &format!("dispatcher/tests/fixtures/{fixture}"),
        ])
        .output()
        .expect("run cargo lambda invoke")
}

#[tokio::test]
async fn dispatcher_answers_under_cargo_lambda_watch_and_submits_to_moto() {
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let port = free_port().unwrap();
    let env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .chain(stack.dispatcher_env())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let log = repo_root().join(format!("target/moto-logs/dispatcher-{port}.log"));
    let _watch = tokio::task::spawn_blocking(move || Watch::start(port, &env, &log))
        .await
        .unwrap()
        .expect("the dispatcher starts under cargo lambda watch");

    let out = invoke(port, "s3-put.json");

    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_dispatched_s3_put(&sdk, &stack, &summary).await;

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
