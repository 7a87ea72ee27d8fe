//! The dispatcher's settings for commands that dispatch (backfill, retry).
//!
//! They must be the deployed dispatcher's own — the same suffixes, prefixes,
//! size cap, chunking and manifest location — or a backfill would label what
//! the pipeline skips. So they are read, in order of precedence, from:
//! 1. flags (`--table`, `--job-queue`, `--job-definition`);
//! 2. the environment of the deployed function named by `--function`
//!    (`lambda:GetFunctionConfiguration`);
//! 3. this process's environment, under the dispatcher's variable names
//!    (`JOB_QUEUE`, `IMAGE_SUFFIXES`, … as in `dispatcher::config`).

use crate::args::DispatchSettings;
use crate::aws::{describe, is_not_found};
use anyhow::{anyhow, Context};
use aws_config::SdkConfig;
use dispatcher::config::Config;
use std::collections::HashMap;

/// Resolves the dispatcher's [`Config`].
pub async fn resolve(
    sdk: &SdkConfig,
    table: Option<&str>,
    args: &DispatchSettings,
) -> anyhow::Result<Config> {
    let function_env = match &args.function {
        Some(name) => function_environment(sdk, name).await?,
        None => HashMap::new(),
    };
    let overrides: HashMap<&str, &str> = [
        ("TABLE_NAME", table),
        ("JOB_QUEUE", args.job_queue.as_deref()),
        ("JOB_DEFINITION", args.job_definition.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let lookup = |name: &str| {
        overrides
            .get(name)
            .map(|v| (*v).to_owned())
            .or_else(|| function_env.get(name).cloned())
            .or_else(|| std::env::var(name).ok())
    };
    Config::from_lookup(lookup).map_err(|e| {
        let hint = match e {
            dispatcher::config::ConfigError::Missing(_) => {
                " (pass --function with the dispatcher's name, or --table, --job-queue and --job-definition)"
            }
            _ => "",
        };
        anyhow!("dispatcher settings: {e}{hint}")
    })
}

/// The environment variables of a deployed Lambda function.
async fn function_environment(
    sdk: &SdkConfig,
    name: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let out = lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(|e| {
            if is_not_found(&e) {
                anyhow!("Lambda function {name:?} does not exist in this account and region")
            } else {
                anyhow!("reading Lambda function {name:?}: {}", describe(&e))
            }
        })?;
    let vars = out
        .environment
        .and_then(|env| env.variables)
        .context("the function has no environment; is it the dispatcher?")?;
    Ok(vars)
}
