//! Harness for image-labeler's integration tests, built on the local stack's
//! own parts (`labeler-local`): moto on loopback and the same provisioning
//! the local stack uses. A test that needs moto starts it and fails loudly if
//! it cannot: nothing is skipped.

pub mod browser;
pub mod gateway;
pub mod seed;
pub mod served;

use aws_config::SdkConfig;
pub use labeler_local::moto::{free_port, repo_root, venv_bin, Moto};
use labeler_local::moto::{ACCOUNT, REGION};
use labeler_local::provision::Names;
pub use labeler_local::s3_client;
use worker::backend::Kind;

/// Names of the resources one test stack uses.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Images bucket.
    pub bucket: String,
    /// Results table.
    pub table: String,
    /// Batch job queue name.
    pub job_queue: String,
    /// Batch job definition name.
    pub job_definition: String,
    /// SQS queue receiving the bucket's notifications.
    pub events_queue_url: String,
    /// Its ARN.
    pub events_queue_arn: String,
}

impl Stack {
    /// Environment the dispatcher needs for this stack.
    pub fn dispatcher_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("JOB_QUEUE", self.job_queue.clone()),
            ("JOB_DEFINITION", self.job_definition.clone()),
            ("TABLE_NAME", self.table.clone()),
        ]
    }
}

impl From<&labeler_local::stack::Stack> for Stack {
    fn from(local: &labeler_local::stack::Stack) -> Self {
        let names = &local.provisioned.names;
        Stack {
            bucket: names.bucket.clone(),
            table: names.table.clone(),
            job_queue: names.job_queue.clone(),
            job_definition: names.job_definition.clone(),
            events_queue_url: local.provisioned.events_queue_url.clone(),
            events_queue_arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.events_queue),
        }
    }
}

/// What the dispatcher must have done with the committed fixture
/// `dispatcher/tests/fixtures/s3-put.json`, given its answer `summary`: one
/// job in the stack's queue and a QUEUED record under the decoded key.
pub async fn assert_dispatched_s3_put(
    config: &SdkConfig,
    stack: &Stack,
    summary: &serde_json::Value,
) {
    assert_eq!(summary["jobs_submitted"], 1, "{summary}");
    let jobs =
        labeler_local::executor::job_ids(&aws_sdk_batch::Client::new(config), &stack.job_queue)
            .await
            .unwrap();
    assert_eq!(jobs.len(), 1);
    let record = labeler_core::store::get_image(
        &aws_sdk_dynamodb::Client::new(config),
        &stack.table,
        "photos-bucket",
        "holiday/beach day+sun.jpg",
    )
    .await
    .unwrap()
    .expect("QUEUED record under the decoded key");
    assert_eq!(record["status"].as_s().unwrap(), "QUEUED");
}

/// Provisions moto exactly as the local stack does, its job definition
/// naming the Rekognition backend.
pub async fn provision(config: &SdkConfig) -> Stack {
    let names = Names::default();
    let p = labeler_local::provision::provision(config, &names, Kind::Rekognition)
        .await
        .unwrap_or_else(|e| panic!("provisioning moto failed: {e:#}"));
    Stack {
        bucket: names.bucket,
        table: names.table,
        job_queue: names.job_queue,
        job_definition: names.job_definition,
        events_queue_url: p.events_queue_url,
        events_queue_arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.events_queue),
    }
}

/// Receives every message currently on the queue (deleting them) and wraps
/// them in the SQS event shape Lambda delivers.
pub async fn drain_as_lambda_event(config: &SdkConfig, stack: &Stack) -> serde_json::Value {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut messages = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&stack.events_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive messages")
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        for m in &got {
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(&stack.events_queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete message");
            }
        }
        messages.extend(got);
    }
    labeler_local::pump::sqs_event(&messages, &stack.events_queue_arn)
}
