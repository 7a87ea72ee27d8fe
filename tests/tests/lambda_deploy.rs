//! The code-only update a user runs by hand after `make deploy`: a bare
//! `cargo lambda deploy`, with no name and no flags, against moto's Lambda.
//! It must update the function `make deploy` wired, keep that function's
//! role and environment, and create no stray function.

use integration_tests::{repo_root, Moto};
use labeler_local::lambda::cargo_lambda;
use labeler_local::provision::{provision, Names};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use worker::backend::Kind;

/// `[workspace.metadata.lambda.deploy]` of the root `Cargo.toml`.
fn workspace_deploy_metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["metadata"]["lambda"]["deploy"].clone()
}

/// The function name Terraform gives the default `name_prefix`.
fn infra_default_function_name() -> String {
    let variables: hcl::Body =
        hcl::from_str(&std::fs::read_to_string(repo_root().join("infra/variables.tf")).unwrap())
            .unwrap();
    let prefix = variables
        .blocks()
        .find(|b| b.identifier() == "variable" && b.labels()[0].as_str() == "name_prefix")
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .map(|a| a.expr().to_string())
        .expect("infra/variables.tf declares name_prefix with a default");
    format!("{}-dispatcher", prefix.trim_matches('"'))
}

fn run(mut cmd: Command, moto: &Moto) {
    let out = cmd
        .envs(moto.env())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("run cargo lambda deploy");
    assert!(
        out.status.success(),
        "cargo lambda deploy failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_workspace_names_the_function_terraform_creates_for_the_default_prefix() {
    let metadata = workspace_deploy_metadata();
    assert_eq!(metadata["name"], infra_default_function_name().as_str());
    assert_eq!(metadata["binary_name"], "dispatcher");
    assert!(metadata.get("role").is_none() && metadata.get("iam_role").is_none());
    assert!(metadata.get("env").is_none() && metadata.get("env_file").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_cargo_lambda_deploy_updates_the_deployed_function_and_keeps_its_role_and_environment(
) {
    let zip = repo_root().join("target/lambda/dispatcher/bootstrap.zip");
    assert!(
        zip.exists(),
        "{} is missing: run `make lambda`",
        zip.display()
    );
    let moto = Moto::start_for_tests();
    let sdk = moto.sdk_config().await;
    let names = Names::default();
    let stack = provision(&sdk, &names, Kind::default()).await.unwrap();
    let name = infra_default_function_name();
    let env = [
        format!("TABLE_NAME={}", names.table),
        format!("JOB_QUEUE={}", names.job_queue),
        format!("JOB_DEFINITION={}", names.job_definition),
    ];
    // As scripts/deploy.sh's step 4 does it.
    let mut first = cargo_lambda().unwrap();
    first
        .args(["deploy", &name, "--binary-name", "dispatcher"])
        .args(["--iam-role", &stack.dispatcher_role_arn])
        .args(["--env-var", &env.join(",")])
        .args(["--memory", "256", "--timeout", "120"]);
    run(first, &moto);
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let before = lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .unwrap();

    let mut bare = cargo_lambda().unwrap();
    bare.arg("deploy");
    run(bare, &moto);

    let functions = lambda.list_functions().send().await.unwrap();
    let names: Vec<&str> = functions
        .functions()
        .iter()
        .filter_map(|f| f.function_name())
        .collect();
    assert_eq!(names, [name.as_str()], "no stray function");
    let after = lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(after.role(), Some(stack.dispatcher_role_arn.as_str()));
    let vars = |c: &aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput| {
        c.environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default()
    };
    let kept: HashMap<String, String> = vars(&after);
    assert!(!kept.is_empty());
    assert_eq!(kept, vars(&before));
    assert_eq!(after.memory_size(), before.memory_size());
    let versions = lambda
        .list_versions_by_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let published = versions
        .versions()
        .iter()
        .filter(|v| v.version() != Some("$LATEST"))
        .count();
    assert_eq!(published, 2, "the bare deploy published new code");
}
