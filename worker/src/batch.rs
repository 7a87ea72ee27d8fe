//! The Batch job definition, as `infra/job-definition.json` declares it,
//! and the two things Batch does with it that the worker depends on.
//!
//! `infra/job-definition.json` is the single source of the job definition:
//! one JSON object whose top-level keys are RegisterJobDefinition's own
//! (`type`, `platformCapabilities`, `containerProperties`, `retryStrategy`,
//! `timeout`, `propagateTags`). Values that come from the deployment are
//! Terraform `templatefile()` placeholders (`${image}`, `${region}`, … see
//! [`TEMPLATE_VARIABLES`]), always inside JSON strings, so the template is
//! valid JSON before and after rendering. Terraform renders it and passes
//! `jsonencode(...containerProperties)`, `retryStrategy` and `timeout` to
//! `aws_batch_job_definition`; the local stack renders it with
//! [`render_template`] and registers it the same way.
//!
//! What Batch does with it:
//! * **command resolution** ([`resolve_command`]): every argv element that
//!   is exactly `Ref::<name>` becomes the value of job parameter `<name>`
//!   (submitted parameters override the definition's defaults). The value is
//!   one argv element however many spaces or quotes it holds; no shell is
//!   involved.
//! * **retry decision** ([`RetryStrategy::action`]): the first
//!   `evaluateOnExit` rule whose every condition matches decides RETRY or
//!   EXIT; when none matches, Batch retries.

use crate::error::WorkerError;
use serde::Deserialize;
use std::collections::HashMap;

/// Every placeholder the template may use; Terraform passes exactly these.
pub const TEMPLATE_VARIABLES: [&str; 16] = [
    "image",
    "execution_role_arn",
    "job_role_arn",
    "log_group",
    "region",
    "vcpu",
    "memory",
    "table_name",
    "reuse_labels",
    "reuse_ttl_days",
    "fleet_rate",
    "fleet_size",
    "label_backend",
    "cascade_below",
    "rekognition_budget",
    "rekognition_budget_period",
];

/// Replaces `${name}` placeholders as Terraform's `templatefile()` does for
/// plain variables (`$${` is a literal `${`). A placeholder without a value
/// is an error, as it is in Terraform.
pub fn render_template(template: &str, vars: &HashMap<&str, &str>) -> Result<String, WorkerError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| WorkerError::JobDefinition("unterminated ${ placeholder".into()))?;
        let name = after[..end].trim();
        let value = vars
            .get(name)
            .ok_or_else(|| WorkerError::JobDefinition(format!("no value for ${{{name}}}")))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves `Ref::<name>` argv elements against job parameters, as Batch
/// does when it starts the container. Elements naming an unknown parameter
/// stay as they are.
pub fn resolve_command(command: &[String], parameters: &HashMap<String, String>) -> Vec<String> {
    command
        .iter()
        .map(|arg| {
            arg.strip_prefix("Ref::")
                .and_then(|name| parameters.get(name))
                .unwrap_or(arg)
                .clone()
        })
        .collect()
}

/// The parts of a rendered job definition the worker and the local stack
/// rely on. Other keys are accepted and ignored here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDefinition {
    /// `container`.
    #[serde(rename = "type")]
    pub kind: String,
    /// e.g. `["FARGATE"]`.
    pub platform_capabilities: Vec<String>,
    /// Default parameter values.
    #[serde(default)]
    pub parameters: HashMap<String, String>,
    /// The container.
    pub container_properties: ContainerProperties,
    /// Retries.
    pub retry_strategy: RetryStrategy,
    /// Per-attempt time limit.
    pub timeout: Timeout,
}

/// The container part of a job definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProperties {
    /// Container image.
    pub image: String,
    /// Arguments after the image's entrypoint, with `Ref::` placeholders.
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub environment: Vec<NameValue>,
    /// vCPU and memory.
    #[serde(default)]
    pub resource_requirements: Vec<ResourceRequirement>,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NameValue {
    /// Variable name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// One resource requirement (`VCPU`, `MEMORY`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceRequirement {
    /// `VCPU` or `MEMORY`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Amount, as a string.
    pub value: String,
}

/// `timeout` of a job definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeout {
    /// Seconds an attempt may run before Batch stops it.
    pub attempt_duration_seconds: u64,
}

/// `retryStrategy` of a job definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// Attempts in all (1 to 10).
    pub attempts: u32,
    /// Rules deciding whether a failed attempt is retried.
    #[serde(default)]
    pub evaluate_on_exit: Vec<EvaluateOnExit>,
}

/// One `evaluateOnExit` rule: all of its conditions must match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateOnExit {
    /// `RETRY` or `EXIT` (any case).
    pub action: String,
    /// Glob on the decimal exit code.
    #[serde(default)]
    pub on_exit_code: Option<String>,
    /// Glob on the container's reason.
    #[serde(default)]
    pub on_reason: Option<String>,
    /// Glob on the job's status reason.
    #[serde(default)]
    pub on_status_reason: Option<String>,
}

/// What Batch does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Run another attempt (while attempts remain).
    Retry,
    /// Fail the job now.
    Exit,
}

/// Batch's glob: exact, or a prefix when the pattern ends with `*`. An
/// absent value is matched as the empty string.
fn glob_matches(pattern: &str, value: Option<&str>) -> bool {
    let value = value.unwrap_or("");
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

impl EvaluateOnExit {
    /// True when every condition of the rule matches the attempt.
    pub fn matches(
        &self,
        exit_code: Option<i32>,
        reason: Option<&str>,
        status_reason: Option<&str>,
    ) -> bool {
        let code = exit_code.map(|c| c.to_string());
        self.on_exit_code
            .as_deref()
            .is_none_or(|p| glob_matches(p, code.as_deref()))
            && self
                .on_reason
                .as_deref()
                .is_none_or(|p| glob_matches(p, reason))
            && self
                .on_status_reason
                .as_deref()
                .is_none_or(|p| glob_matches(p, status_reason))
    }
}

impl RetryStrategy {
    /// What Batch does after an attempt that ended with `exit_code` (none
    /// when the container never ran or was reclaimed), container `reason`
    /// and job `status_reason`: the first matching rule's action, or RETRY
    /// when no rule matches.
    pub fn action(
        &self,
        exit_code: Option<i32>,
        reason: Option<&str>,
        status_reason: Option<&str>,
    ) -> RetryAction {
        self.evaluate_on_exit
            .iter()
            .find(|rule| rule.matches(exit_code, reason, status_reason))
            .map_or(RetryAction::Retry, |rule| {
                if rule.action.eq_ignore_ascii_case("retry") {
                    RetryAction::Retry
                } else {
                    RetryAction::Exit
                }
            })
    }
}

impl JobDefinition {
    /// Renders `template` with `vars` and parses the result.
    pub fn from_template(template: &str, vars: &HashMap<&str, &str>) -> Result<Self, WorkerError> {
        let rendered = render_template(template, vars)?;
        serde_json::from_str(&rendered).map_err(|e| WorkerError::JobDefinition(e.to_string()))
    }

    /// The worker's argv (after the entrypoint) for a job submitted with
    /// `parameters`, resolved as Batch does.
    pub fn argv(&self, parameters: &HashMap<String, String>) -> Vec<String> {
        let mut merged = self.parameters.clone();
        merged.extend(parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        resolve_command(&self.container_properties.command, &merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_escapes_kept_literal() {
        let vars = HashMap::from([("region", "eu-west-1"), ("vcpu", "1")]);

        let out = render_template(
            r#"{"r":"${region}","v":"${vcpu}","lit":"$${region}"}"#,
            &vars,
        )
        .unwrap();

        assert_eq!(out, r#"{"r":"eu-west-1","v":"1","lit":"${region}"}"#);
    }

    #[test]
    fn a_placeholder_without_a_value_is_an_error() {
        let err = render_template("${nope}", &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("${nope}"), "{err}");
        assert!(render_template("${open", &HashMap::new()).is_err());
    }

    #[test]
    fn ref_elements_take_the_parameter_value_whole() {
        let command: Vec<String> = ["--job", "Ref::job", "--x", "Ref::missing", "pre Ref::job"]
            .map(String::from)
            .into();
        let params = HashMap::from([("job".to_owned(), r#"{"a": "b c"}"#.to_owned())]);

        let argv = resolve_command(&command, &params);

        assert_eq!(
            argv,
            [
                "--job",
                r#"{"a": "b c"}"#,
                "--x",
                "Ref::missing",
                "pre Ref::job"
            ]
        );
    }

    #[test]
    fn the_first_matching_rule_decides_and_no_match_means_retry() {
        let rule = |action: &str, code: Option<&str>, reason: Option<&str>| EvaluateOnExit {
            action: action.into(),
            on_exit_code: code.map(String::from),
            on_reason: reason.map(String::from),
            on_status_reason: None,
        };
        let strategy = RetryStrategy {
            attempts: 3,
            evaluate_on_exit: vec![
                rule("retry", Some("3"), None),
                rule("EXIT", Some("1*"), None),
            ],
        };

        assert_eq!(strategy.action(Some(3), None, None), RetryAction::Retry);
        assert_eq!(strategy.action(Some(137), None, None), RetryAction::Exit);
        assert_eq!(strategy.action(Some(4), None, None), RetryAction::Retry);
        assert_eq!(strategy.action(None, Some("x"), None), RetryAction::Retry);
    }
}
