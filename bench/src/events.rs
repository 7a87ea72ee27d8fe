//! Invocation payloads shaped like the ones AWS delivers: SQS batches whose
//! bodies are S3 `ObjectCreated:Put` notifications (the shape of
//! `dispatcher/tests/fixtures/sqs-s3-batch.json`), one image per message.

use serde_json::{json, Value};

/// Bucket the benchmark's images are in.
pub const BUCKET: &str = "bench-photos";

/// Key of image `i` of run `run`.
pub fn key(run: &str, i: usize) -> String {
    format!("bench/{run}/img-{i:06}.jpg")
}

/// S3's `sequencer` of image `i`: hexadecimal, increasing.
pub fn sequencer(i: usize) -> String {
    format!("0062E99D11{:08X}", i)
}

/// One S3 notification record for image `i` of `run`.
pub fn s3_record(run: &str, i: usize) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.24"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "photos-upload-events",
            "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{BUCKET}")},
            "object": {"key": key(run, i), "size": 183_520, "eTag": format!("{:032x}", i), "sequencer": sequencer(i)}
        }
    })
}

/// One SQS message carrying the notification of image `i`.
pub fn sqs_message(run: &str, i: usize) -> Value {
    let body = json!({"Records": [s3_record(run, i)]});
    json!({
        "messageId": message_id(run, i),
        "receiptHandle": format!("AQEB{run}{i}"),
        "body": body.to_string(),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795394520000",
            "SenderId": "AIDAI32VHCD23ON2HJ2FY",
            "ApproximateFirstReceiveTimestamp": "1795394520037"
        },
        "messageAttributes": {},
        "md5OfBody": "27666920db74b75758a226d9f5f87c85",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:photos-events",
        "awsRegion": "us-east-1"
    })
}

/// The SQS message id of image `i` of `run`.
pub fn message_id(run: &str, i: usize) -> String {
    format!("{run}-msg-{i}")
}

/// An SQS batch of the notifications of `images` (indices) of `run`.
pub fn sqs_batch(run: &str, images: impl IntoIterator<Item = usize>) -> Value {
    let records: Vec<Value> = images.into_iter().map(|i| sqs_message(run, i)).collect();
    json!({ "Records": records })
}

/// Message ids listed in an SQS batch response's `batchItemFailures`.
pub fn failed_message_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
        .collect()
}
