//! The arm64 `bootstrap` that `make lambda` packs into
//! `target/lambda/dispatcher/bootstrap.zip`, executed: extracted from the
//! zip, run under QEMU user-mode emulation (`qemu-aarch64-static -L
//! /usr/aarch64-linux-gnu`, not binfmt) behind cargo-lambda's Runtime API
//! emulator alone (`cargo lambda watch --only-lambda-apis`, which builds
//! nothing), and invoked with a committed S3 event against moto.
//!
//! A missing zip (`make lambda`), QEMU or AArch64 sysroot fails the test.

use integration_tests::{assert_dispatched_s3_put, free_port, provision, repo_root, Moto};
use labeler_local::lambda::{Bootstrap, Emulated, RuntimeApi};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = repo_root().join("dispatcher/tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_arm64_bootstrap_from_the_zip_dispatches_an_s3_event_under_qemu() {
    let zip = repo_root().join("target/lambda/dispatcher/bootstrap.zip");
    let bootstrap = Bootstrap::extract(&zip).unwrap_or_else(|e| panic!("{e:#}"));
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let stack = provision(&sdk).await;
    let env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .chain(stack.dispatcher_env())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let port = free_port().unwrap();
    let logs = repo_root().join("target/moto-logs");
    let (api, _function) = tokio::task::spawn_blocking(move || {
        let api = RuntimeApi::start(port, &logs.join(format!("runtime-api-{port}.log")))?;
        let log = logs.join(format!("dispatcher-arm64-{port}.log"));
        let function = Emulated::start(&bootstrap, &api, &env, &log)?;
        anyhow::Ok((api, (function, bootstrap)))
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("the arm64 bootstrap starts under qemu: {e:#}"));

    let summary = api
        .invoker()
        .invoke(fixture("s3-put.json"))
        .await
        .unwrap_or_else(|e| panic!("invoking the arm64 dispatcher: {e:#}"));

    assert_dispatched_s3_put(&sdk, &stack, &summary).await;
}
