//! Creating, in moto, the resources `infra/` defines for AWS — from the same
//! single-source definitions: the results table from `labeler_core::table`
//! and the Batch job definition from `infra/job-definition.json`, rendered
//! with the same `${…}` placeholders Terraform's `templatefile()` fills.

use crate::moto::{repo_root, ACCOUNT, REGION};
use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_batch::types::{
    CeState, CeType, ComputeEnvironmentOrder, ContainerProperties, EvaluateOnExit,
    JobDefinitionType, JobTimeout, JqState, KeyValuePair, ResourceRequirement, ResourceType,
    RetryAction, RetryStrategy,
};
use serde_json::Value;
use std::collections::HashMap;
use worker::backend::Kind;

/// Names of the local resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Images bucket.
    pub bucket: String,
    /// Results table.
    pub table: String,
    /// Batch job queue.
    pub job_queue: String,
    /// Batch job definition.
    pub job_definition: String,
    /// SQS queue receiving the bucket's notifications.
    pub events_queue: String,
}

impl Default for Names {
    fn default() -> Self {
        Self {
            bucket: "image-labeler-images".into(),
            table: "image-labeler-results".into(),
            job_queue: "image-labeler".into(),
            job_definition: "image-labeler-worker".into(),
            events_queue: "image-labeler-events".into(),
        }
    }
}

/// What provisioning created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The names used.
    pub names: Names,
    /// URL of the events queue.
    pub events_queue_url: String,
    /// ARN of the dispatcher's role.
    pub dispatcher_role_arn: String,
}

/// Path of the job definition template.
pub fn job_definition_template() -> std::path::PathBuf {
    repo_root().join("infra/job-definition.json")
}

/// Renders the shared template with the local stack's values, with the
/// worker's implementation of Terraform's `templatefile()` substitution.
pub fn render(template: &str, names: &Names, backend: Kind) -> anyhow::Result<String> {
    let owned = local_template_vars(names, backend);
    let vars: HashMap<&str, &str> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(worker::batch::render_template(template, &vars)?)
}

/// Values of the template's placeholders on the local stack, whose workers
/// label with `backend`.
pub fn local_template_vars(names: &Names, backend: Kind) -> HashMap<&'static str, String> {
    HashMap::from([
        ("image", "image-labeler-worker:local".to_owned()),
        (
            "execution_role_arn",
            format!("arn:aws:iam::{ACCOUNT}:role/image-labeler-execution"),
        ),
        (
            "job_role_arn",
            format!("arn:aws:iam::{ACCOUNT}:role/image-labeler-job"),
        ),
        ("region", REGION.to_owned()),
        ("table_name", names.table.clone()),
        ("vcpu", "1".to_owned()),
        ("memory", "2048".to_owned()),
        ("log_group", "/aws/batch/image-labeler".to_owned()),
        ("reuse_labels", "true".to_owned()),
        (
            "reuse_ttl_days",
            labeler_core::reuse::DEFAULT_TTL_DAYS.to_string(),
        ),
        // What Terraform renders for us-east-1: the documented default
        // DetectLabels quota, shared by the containers the executor runs.
        ("fleet_rate", "50".to_owned()),
        ("fleet_size", crate::executor::DEFAULT_PARALLEL.to_string()),
        ("label_backend", backend.as_str().to_owned()),
        // Terraform's defaults.
        ("cascade_below", "60".to_owned()),
        ("rekognition_budget", "none".to_owned()),
        ("rekognition_budget_period", "month".to_owned()),
    ])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The container properties, retry strategy and timeout of a rendered
/// template, as the SDK types RegisterJobDefinition takes.
pub fn job_definition_parts(
    def: &Value,
) -> anyhow::Result<(
    ContainerProperties,
    Option<RetryStrategy>,
    Option<JobTimeout>,
)> {
    let c = def
        .get("containerProperties")
        .context("template has no containerProperties")?;
    let mut props = ContainerProperties::builder()
        .image(c["image"].as_str().context("containerProperties.image")?)
        .set_command(Some(strings(&c["command"])))
        .set_execution_role_arn(c["executionRoleArn"].as_str().map(str::to_owned))
        .set_job_role_arn(c["jobRoleArn"].as_str().map(str::to_owned));
    for e in c["environment"].as_array().into_iter().flatten() {
        props = props.environment(
            KeyValuePair::builder()
                .name(e["name"].as_str().unwrap_or_default())
                .value(e["value"].as_str().unwrap_or_default())
                .build(),
        );
    }
    for r in c["resourceRequirements"].as_array().into_iter().flatten() {
        props = props.resource_requirements(
            ResourceRequirement::builder()
                .r#type(ResourceType::from(r["type"].as_str().unwrap_or_default()))
                .value(r["value"].as_str().unwrap_or_default())
                .build(),
        );
    }
    let retry = def.get("retryStrategy").map(|r| {
        let mut b = RetryStrategy::builder().set_attempts(r["attempts"].as_i64().map(|a| a as i32));
        for rule in r["evaluateOnExit"].as_array().into_iter().flatten() {
            b = b.evaluate_on_exit(
                EvaluateOnExit::builder()
                    .set_on_status_reason(rule["onStatusReason"].as_str().map(str::to_owned))
                    .set_on_reason(rule["onReason"].as_str().map(str::to_owned))
                    .set_on_exit_code(rule["onExitCode"].as_str().map(str::to_owned))
                    .action(RetryAction::from(
                        rule["action"]
                            .as_str()
                            .unwrap_or("EXIT")
                            .to_ascii_uppercase()
                            .as_str(),
                    ))
                    .build(),
            );
        }
        b.build()
    });
    let timeout = def["timeout"]["attemptDurationSeconds"].as_i64().map(|s| {
        JobTimeout::builder()
            .attempt_duration_seconds(s as i32)
            .build()
    });
    Ok((props.build(), retry, timeout))
}

/// Creates every local resource.
pub async fn provision(
    sdk: &SdkConfig,
    names: &Names,
    backend: Kind,
) -> anyhow::Result<Provisioned> {
    let s3 = crate::s3_client(sdk);
    s3.create_bucket()
        .bucket(&names.bucket)
        .send()
        .await
        .context("create bucket")?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let events_queue_url = sqs
        .create_queue()
        .queue_name(&names.events_queue)
        .send()
        .await
        .context("create events queue")?
        .queue_url
        .context("queue url")?;
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket(&names.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(format!(
                            "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
                            names.events_queue
                        ))
                        .events(Event::from("s3:ObjectCreated:*"))
                        .events(Event::from("s3:ObjectRemoved:*"))
                        .build()
                        .context("queue configuration")?,
                )
                .build(),
        )
        .send()
        .await
        .context("bucket notification")?;

    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    labeler_core::table::create_table_request(&dynamodb, &names.table)
        .send()
        .await
        .context("create table")?;
    labeler_core::table::enable_ttl_request(&dynamodb, &names.table)
        .send()
        .await
        .context("enable the table's TTL")?;

    let iam = aws_sdk_iam::Client::new(sdk);
    let mut role_arns = HashMap::new();
    for (role, service) in [
        ("image-labeler-batch-service", "batch.amazonaws.com"),
        ("image-labeler-dispatcher", "lambda.amazonaws.com"),
    ] {
        let arn = iam
            .create_role()
            .role_name(role)
            .assume_role_policy_document(format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{service}"}},"Action":"sts:AssumeRole"}}]}}"#
            ))
            .send()
            .await
            .with_context(|| format!("create role {role}"))?
            .role
            .context("role")?
            .arn;
        role_arns.insert(role, arn);
    }

    let batch = aws_sdk_batch::Client::new(sdk);
    let ce = batch
        .create_compute_environment()
        .compute_environment_name("image-labeler-local")
        .r#type(CeType::Unmanaged)
        .state(CeState::Enabled)
        .service_role(&role_arns["image-labeler-batch-service"])
        .send()
        .await
        .context("create compute environment")?
        .compute_environment_arn
        .context("compute environment arn")?;
    batch
        .create_job_queue()
        .job_queue_name(&names.job_queue)
        .state(JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            ComputeEnvironmentOrder::builder()
                .order(1)
                .compute_environment(ce)
                .build(),
        )
        .send()
        .await
        .context("create job queue")?;
    let template = std::fs::read_to_string(job_definition_template())
        .context("read infra/job-definition.json")?;
    let rendered = render(&template, names, backend)?;
    let def: Value = serde_json::from_str(&rendered).context("job definition template is JSON")?;
    let (props, retry, timeout) = job_definition_parts(&def)?;
    batch
        .register_job_definition()
        .job_definition_name(&names.job_definition)
        .r#type(JobDefinitionType::Container)
        .container_properties(props)
        .set_retry_strategy(retry)
        .set_timeout(timeout)
        .send()
        .await
        .context("register job definition")?;
    Ok(Provisioned {
        names: names.clone(),
        events_queue_url,
        dispatcher_role_arn: role_arns["image-labeler-dispatcher"].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_values_cover_every_template_variable() {
        let vars = local_template_vars(&Names::default(), Kind::Local);
        for name in worker::batch::TEMPLATE_VARIABLES {
            assert!(vars.contains_key(name), "{name} has no local value");
        }
    }

    #[test]
    fn the_shared_template_renders_into_a_job_definition() {
        let text = std::fs::read_to_string(job_definition_template()).unwrap();
        let rendered = render(&text, &Names::default(), Kind::Cascade).unwrap();
        let def: Value = serde_json::from_str(&rendered).unwrap();
        let (props, retry, timeout) = job_definition_parts(&def).unwrap();
        assert_eq!(props.command(), ["--job", "Ref::job"]);
        assert!(props
            .environment()
            .iter()
            .any(|e| e.value() == Some("image-labeler-results")));
        assert!(props
            .environment()
            .iter()
            .any(|e| e.name() == Some("LABELER_BACKEND") && e.value() == Some("cascade")));
        let retry = retry.expect("the template has a retry strategy");
        assert!(retry.attempts().unwrap_or(1) > 1);
        assert!(!retry.evaluate_on_exit().is_empty());
        assert!(timeout.is_some());
    }
}
