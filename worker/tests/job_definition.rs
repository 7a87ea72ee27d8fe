//! Contract tests between `infra/job-definition.json` and the worker: the
//! command Batch builds from the template is one the worker's CLI accepts
//! and understands as the submitted job, and the retry rules encode the
//! worker's exit codes.

use clap::Parser;
use labeler_core::job::{plan_job, LabelOptions, ManifestLocation, JOB_PARAMETER};
use labeler_core::{ImageRef, JobSpec, Revision};
use proptest::prelude::*;
use std::collections::HashMap;
use worker::batch::{JobDefinition, RetryAction, TEMPLATE_VARIABLES};
use worker::cli::Cli;
use worker::ExitCode;

fn template() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/job-definition.json");
    std::fs::read_to_string(path).expect("infra/job-definition.json is readable")
}

fn vars() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        (
            "image",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/image-labeler-worker:1.0.0",
        ),
        (
            "execution_role_arn",
            "arn:aws:iam::123456789012:role/labeler-exec",
        ),
        (
            "job_role_arn",
            "arn:aws:iam::123456789012:role/labeler-worker",
        ),
        ("log_group", "/aws/batch/image-labeler"),
        ("region", "eu-west-1"),
        ("vcpu", "1"),
        ("memory", "2048"),
        ("table_name", "image-labels"),
        ("reuse_labels", "true"),
        ("reuse_ttl_days", "30"),
        ("fleet_rate", "50"),
        ("fleet_size", "32"),
        ("label_backend", "cascade"),
        ("cascade_below", "60"),
        ("rekognition_budget", "none"),
        ("rekognition_budget_period", "month"),
    ])
}

fn definition() -> JobDefinition {
    JobDefinition::from_template(&template(), &vars()).expect("the template renders and parses")
}

fn awkward_spec() -> JobSpec {
    let image = |key: &str, seq: &str| ImageRef {
        bucket: "photos-bucket".into(),
        key: key.into(),
        revision: Revision::from_sequencer(seq).unwrap(),
        version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
        etag: Some("\"d41d8cd98f00b204e9800998ecf8427e\"".into()),
        size: Some(1234),
    };
    plan_job(
        "image-labels",
        LabelOptions {
            max_labels: 25,
            min_confidence: 82.5,
        },
        vec![
            vec![image("holiday photos/beach day.jpg", "01")],
            vec![image(
                "фото/a+b=c%20 'quoted' \"double\" $HOME `x`.png",
                "02",
            )],
        ],
        &ManifestLocation {
            bucket: None,
            prefix: "labeler-manifests/".into(),
        },
    )
    .unwrap()
    .spec
}

#[test]
fn the_batch_command_hands_the_worker_exactly_the_submitted_job() {
    let spec = awkward_spec();
    let parameters = HashMap::from([(JOB_PARAMETER.to_owned(), spec.to_parameter())]);

    let argv = definition().argv(&parameters);
    let cli = Cli::try_parse_from(std::iter::once("worker".to_owned()).chain(argv))
        .expect("the worker accepts the command Batch builds");

    assert_eq!(JobSpec::from_parameter(&cli.job).unwrap(), spec);
    assert_eq!(cli.job_request().job, spec.to_parameter());
}

#[test]
fn retry_rules_retry_exactly_the_retryable_exit_code() {
    let strategy = definition().retry_strategy;

    for code in ExitCode::ALL {
        let action = strategy.action(
            Some(i32::from(code.code())),
            None,
            Some("Essential container in task exited"),
        );
        let expected = if code.is_retryable() {
            RetryAction::Retry
        } else {
            RetryAction::Exit
        };
        assert_eq!(action, expected, "exit code {code:?}");
    }
}

#[test]
fn spot_reclamation_is_retried_and_crashes_are_not() {
    let strategy = definition().retry_strategy;

    assert_eq!(
        strategy.action(
            None,
            None,
            Some("Host EC2 (instance i-0123456789abcdef0) terminated.")
        ),
        RetryAction::Retry
    );
    assert_eq!(
        strategy.action(None, None, Some("Your Spot Task was interrupted.")),
        RetryAction::Retry,
        "a Fargate Spot task reclaimed before or while its container ran"
    );
    assert_eq!(
        strategy.action(
            None,
            Some("ResourceInitializationError: unable to pull secrets or registry auth"),
            Some("Task failed to start")
        ),
        RetryAction::Exit,
        "a task that cannot start for a reason of its own fails instead of looping"
    );
    assert_eq!(
        strategy.action(
            None,
            Some("CannotPullContainerError: pull rate exceeded"),
            None
        ),
        RetryAction::Retry
    );
    assert_eq!(strategy.action(Some(101), None, None), RetryAction::Exit);
    assert_eq!(
        strategy.action(
            Some(137),
            Some("OutOfMemoryError: Container killed due to memory usage"),
            None
        ),
        RetryAction::Exit
    );
}

#[test]
fn retry_strategy_allows_three_attempts_within_batch_limits() {
    let definition = definition();

    assert_eq!(definition.retry_strategy.attempts, 3);
    assert!(definition.retry_strategy.evaluate_on_exit.len() <= 5);
    assert!(definition.timeout.attempt_duration_seconds >= 60);
    assert!(definition
        .retry_strategy
        .evaluate_on_exit
        .iter()
        .all(|rule| ["RETRY", "EXIT"].contains(&rule.action.to_uppercase().as_str())));
}

#[test]
fn the_template_uses_every_terraform_variable_and_no_other() {
    let template = template();

    for name in TEMPLATE_VARIABLES {
        assert!(
            template.contains(&format!("${{{name}}}")),
            "${{{name}}} is not used"
        );
    }
    assert!(JobDefinition::from_template(&template, &vars()).is_ok());
    let mut missing_one = vars();
    missing_one.remove("table_name");
    assert!(JobDefinition::from_template(&template, &missing_one).is_err());
    serde_json::from_str::<serde_json::Value>(&template).expect("the raw template is valid JSON");
}

#[test]
fn the_container_runs_the_worker_on_arm64_fargate_with_awslogs() {
    let rendered = worker::batch::render_template(&template(), &vars()).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    let container = &raw["containerProperties"];
    let definition = definition();
    let env: HashMap<&str, &str> = definition
        .container_properties
        .environment
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();

    assert_eq!(definition.kind, "container");
    assert_eq!(definition.platform_capabilities, ["FARGATE"]);
    assert_eq!(
        definition.container_properties.command,
        ["--job", "Ref::job"]
    );
    assert_eq!(container["runtimePlatform"]["cpuArchitecture"], "ARM64");
    assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(
        container["logConfiguration"]["options"]["awslogs-group"],
        "/aws/batch/image-labeler"
    );
    assert!(container["fargatePlatformConfiguration"]["platformVersion"].is_string());
    assert!(container["networkConfiguration"]["assignPublicIp"].is_string());
    assert_eq!(env.get("LABELER_TABLE"), Some(&"image-labels"));
    assert!(env.contains_key("RUST_LOG"));
    let resources: Vec<(&str, &str)> = definition
        .container_properties
        .resource_requirements
        .iter()
        .map(|r| (r.kind.as_str(), r.value.as_str()))
        .collect();
    assert_eq!(resources, [("VCPU", "1"), ("MEMORY", "2048")]);
}

fn environment(definition: &JobDefinition) -> HashMap<&str, &str> {
    definition
        .container_properties
        .environment
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect()
}

#[test]
fn the_workers_share_the_fleet_rate_terraform_renders() {
    let definition = definition();
    let env = environment(&definition);

    assert_eq!(env.get("LABELER_FLEET_RATE"), Some(&"50"));
    assert_eq!(env.get("LABELER_FLEET_SIZE"), Some(&"32"));
}

#[test]
fn throttled_calls_are_retried_only_until_the_drain_can_still_end_before_the_attempt_timeout() {
    let definition = definition();
    let env = environment(&definition);
    let seconds = |name: &str| -> u64 {
        env.get(name)
            .unwrap_or_else(|| panic!("the job definition sets no {name}"))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a whole number of seconds"))
    };

    let budget = seconds("LABELER_TIME_BUDGET_SECONDS");
    let drain = seconds("LABELER_DRAIN_SECONDS");

    assert!(
        budget + drain < definition.timeout.attempt_duration_seconds,
        "time budget {budget} s + drain {drain} s must end before Batch stops the attempt at {} s",
        definition.timeout.attempt_duration_seconds
    );
}

#[test]
fn the_environment_the_definition_sets_is_accepted_by_the_worker() {
    let definition = definition();
    let argv = definition.argv(&HashMap::from([(
        JOB_PARAMETER.to_owned(),
        awkward_spec().to_parameter(),
    )]));
    let mut command = <Cli as clap::CommandFactory>::command();

    for var in &definition.container_properties.environment {
        if !var.name.starts_with("LABELER_") {
            continue;
        }
        let flag = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var.name.as_str()))
            .and_then(|a| a.get_long())
            .unwrap_or_else(|| panic!("{} is not a worker flag", var.name));
        let with_value = ["worker", "--job", "{}", &format!("--{flag}"), &var.value];
        if let Err(e) = command.try_get_matches_from_mut(with_value) {
            panic!("{}={:?} is refused by the worker: {e}", var.name, var.value);
        }
    }
    let matches = command
        .try_get_matches_from_mut(std::iter::once("worker".to_owned()).chain(argv))
        .unwrap();
    assert!(matches.contains_id("job"));
}

proptest! {
    #[test]
    fn any_key_reaches_the_worker_unchanged_through_the_batch_command(
        key in "\\PC{1,300}",
        version in proptest::option::of("[A-Za-z0-9._+-]{1,64}"),
    ) {
        let spec = JobSpec {
            images: labeler_core::job::ImageSource::Inline(vec![vec![ImageRef {
                bucket: "photos-bucket".into(),
                key,
                revision: Revision::from_sequencer("0062E99A88DC407460").unwrap(),
                version_id: version,
                etag: None,
                size: None,
            }]]),
            ..awkward_spec()
        };
        let parameters = HashMap::from([(JOB_PARAMETER.to_owned(), spec.to_parameter())]);

        let argv = definition().argv(&parameters);
        let cli = Cli::try_parse_from(std::iter::once("worker".to_owned()).chain(argv)).unwrap();

        prop_assert_eq!(JobSpec::from_parameter(&cli.job).unwrap(), spec);
    }
}
