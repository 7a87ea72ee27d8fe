//! The SQS event source mapping, locally: S3 notifications that moto puts on
//! the events queue are batched (up to `batch_size` messages or one empty
//! poll, like Lambda's batching window) and delivered to the dispatcher as
//! an SQS event. Messages listed in `batchItemFailures` stay on the queue and
//! come back after their visibility timeout; the rest are deleted — the same
//! contract as `ReportBatchItemFailures` on AWS.

use crate::lambda::Invoker;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use tracing::{info, warn};

/// Moves messages from `queue_url` to the dispatcher until `stop` changes.
pub async fn run(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    invoker: Invoker,
    batch_size: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match deliver_once(&sqs, &queue_url, &queue_arn, invoker, batch_size).await {
            Ok(0) => {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %format!("{e:#}"), "delivery to the dispatcher failed; messages will be redelivered");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One batch: receive, invoke, delete what succeeded. Returns the number of
/// messages delivered.
pub async fn deliver_once(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    invoker: Invoker,
    batch_size: usize,
) -> anyhow::Result<usize> {
    let mut messages = Vec::new();
    while messages.len() < batch_size {
        let want = (batch_size - messages.len()).min(10) as i32;
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(want)
            .wait_time_seconds(if messages.is_empty() { 1 } else { 0 })
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        messages.extend(got);
    }
    if messages.is_empty() {
        return Ok(0);
    }
    let event = sqs_event(&messages, queue_arn);
    let answer = invoker.invoke(event).await?;
    let failed: HashSet<String> = answer["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
        .collect();
    for m in &messages {
        let id = m.message_id().unwrap_or_default();
        if failed.contains(id) {
            continue;
        }
        if let Some(handle) = m.receipt_handle() {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await?;
        }
    }
    info!(
        messages = messages.len(),
        failed = failed.len(),
        "batch delivered to the dispatcher"
    );
    Ok(messages.len())
}

/// The SQS event Lambda builds from received messages.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": crate::moto::REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}
