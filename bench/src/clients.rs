//! AWS SDK clients pointed at a stand-in: built like the binaries build
//! theirs (same retry policy, path-style S3), with an explicit endpoint,
//! test credentials and region `us-east-1` instead of the environment.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Region the benchmarks claim to be in.
pub const REGION: &str = "us-east-1";

/// Shared SDK configuration for `endpoint` with `retry`.
pub async fn sdk_config(endpoint: &str, retry: RetryConfig) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "stand-in",
        ))
        .retry_config(retry)
        .load()
        .await
}

/// An S3 client with path-style addressing, as the binaries build it when
/// an endpoint URL is set.
pub fn s3(shared: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The dispatcher's clients, as `dispatcher::clients` builds them, against
/// `endpoint`.
pub async fn dispatcher(
    endpoint: &str,
    cfg: &dispatcher::config::Config,
) -> dispatcher::dispatch::Clients {
    let shared = sdk_config(endpoint, dispatcher::retry_policy(cfg.max_attempts)).await;
    dispatcher::dispatch::Clients {
        batch: aws_sdk_batch::Client::new(&shared),
        dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        s3: s3(&shared),
    }
}

/// The dispatcher's clients for one emulated Lambda execution environment:
/// like [`dispatcher`], with their own retry partition.
///
/// The SDK's standard retry strategy keeps its retry quota (a token bucket
/// that throttled retries draw from) per retry partition in a static, so
/// every client of one process shares it. Separate Lambda environments are
/// separate processes with a quota each; clients of many emulated
/// environments in one process need a partition each to behave like them.
pub async fn dispatcher_environment(
    endpoint: &str,
    cfg: &dispatcher::config::Config,
    environment: &str,
) -> dispatcher::dispatch::Clients {
    use aws_sdk_batch::config::retry::RetryPartition;
    let shared = sdk_config(endpoint, dispatcher::retry_policy(cfg.max_attempts)).await;
    let partition = |service: &str| RetryPartition::new(format!("{service}-{environment}"));
    let batch = aws_sdk_batch::config::Builder::from(&shared)
        .retry_partition(partition("batch"))
        .build();
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared)
        .retry_partition(partition("dynamodb"))
        .build();
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .retry_partition(partition("s3"))
        .build();
    dispatcher::dispatch::Clients {
        batch: aws_sdk_batch::Client::from_conf(batch),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
        s3: aws_sdk_s3::Client::from_conf(s3),
    }
}

/// Environment for a child process (the worker, the dispatcher binary) that
/// points the SDK's standard settings at `endpoint` and keeps it away from
/// the user's own AWS configuration.
pub fn child_env(endpoint: &str, scratch: &std::path::Path) -> Vec<(String, String)> {
    let none = scratch.join("no-aws-config").display().to_string();
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_CONFIG_FILE", none.clone()),
        ("AWS_SHARED_CREDENTIALS_FILE", none),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Environment variables a child must not inherit (they would override the
/// settings of [`child_env`]).
pub const CHILD_ENV_REMOVE: [&str; 4] = [
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
];
