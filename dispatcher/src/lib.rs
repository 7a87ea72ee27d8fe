//! The dispatcher Lambda: turns S3 uploads into AWS Batch labeling jobs.
//!
//! It accepts, by shape, direct S3 notifications, SQS batches of them,
//! EventBridge S3 events, Batch "Job State Change" events and S3 test events
//! ([`event`]); decides per object what to do ([`plan`]); and claims, skips,
//! removes and submits with conditional writes that make redelivery and
//! reordering harmless ([`dispatch`]); a scheduled pass of the same function
//! converges whatever events, responses or processes were lost
//! ([`reconcile`]). Settings: [`config`]. Metrics: [`telemetry`] (one
//! embedded-metric-format line per invocation).

pub mod aws;
pub mod config;
pub mod dispatch;
pub mod event;
pub mod failure;
pub mod plan;
pub mod reconcile;
pub mod restore;
pub mod telemetry;

use aws_config::retry::RetryConfig;
use std::time::Duration;

/// The retry policy of every AWS client of the dispatcher: the SDK's standard
/// strategy (throttling and transient errors retried with exponential backoff
/// and full jitter) with `max_attempts` attempts.
pub fn retry_policy(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}

/// Builds the AWS clients from the standard SDK environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials chain).
pub async fn clients(cfg: &config::Config) -> dispatch::Clients {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry_policy(cfg.max_attempts))
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(shared.endpoint_url().is_some())
        .build();
    dispatch::Clients {
        batch: aws_sdk_batch::Client::new(&shared),
        dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        s3: aws_sdk_s3::Client::from_conf(s3),
    }
}
