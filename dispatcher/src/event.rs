//! Recognising what invoked the dispatcher, by the shape of the payload.
//!
//! | shape | recognised by |
//! |---|---|
//! | S3 notification | `Records[].eventSource == "aws:s3"` |
//! | SQS batch | `Records[].eventSource == "aws:sqs"`; each body is parsed again |
//! | EventBridge S3 | `source == "aws.s3"`, `detail-type` `Object Created` / `Object Deleted` |
//! | Batch job state | `source == "aws.batch"`, `detail-type` `Batch Job State Change` |
//! | S3 test event | `Event == "s3:TestEvent"` |
//!
//! S3 notification records are read with our own lenient structs rather than
//! `aws_lambda_events::s3::S3Event`, which requires `userIdentity` and
//! `requestParameters`; S3 emulators (moto among them) omit both.
//! Keys in notifications are form-URL-encoded and are decoded exactly;
//! EventBridge delivers keys as they are and they are taken verbatim.

use aws_lambda_events::event::sqs::SqsEvent;
use labeler_core::key::{decode_event_key, validate_key};
use labeler_core::revision::Revision;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Whether an object appeared or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `ObjectCreated:*` / `Object Created`.
    Created,
    /// `ObjectRemoved:*` / `Object Deleted`.
    Removed,
}

/// One object change, with its key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// Created or removed.
    pub change: Change,
    /// Bucket name.
    pub bucket: String,
    /// Exact key.
    pub key: String,
    /// Order among uploads of this key.
    pub revision: Revision,
    /// S3 version id.
    pub version_id: Option<String>,
    /// ETag.
    pub etag: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
}

/// A Batch job of ours that reached a final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnded {
    /// Job id as Batch reports it (`parent:index` for array children).
    pub job_id: String,
    /// Job name.
    pub job_name: String,
    /// Queue the job ran in (name or ARN).
    pub job_queue: String,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// Batch's `statusReason`, plus the container's reason and exit code.
    pub reason: String,
    /// Job parameters (ours carry the job spec).
    pub parameters: HashMap<String, String>,
    /// Array index, for array children.
    pub array_index: Option<usize>,
    /// Array size, for array parents.
    pub array_size: Option<usize>,
}

/// Something the dispatcher was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An object was created or removed.
    Object(ObjectChange),
    /// A Batch job ended.
    JobEnded(JobEnded),
    /// `s3:TestEvent`: acknowledged, nothing to do.
    TestEvent,
    /// Understood but not for us (another event type); the reason is logged.
    Ignored(String),
}

/// A unit that succeeds or fails as a whole: one SQS message, or the whole
/// payload of any other invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SQS message id; `None` outside SQS.
    pub message_id: Option<String>,
    /// What it said, or why it could not be read.
    pub notices: Result<Vec<Notice>, String>,
}

/// An invocation's payload, split into deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// True for SQS batches (answered with `batchItemFailures`).
    pub from_sqs: bool,
    /// The deliveries, in order.
    pub deliveries: Vec<Delivery>,
}

/// Splits a payload into deliveries and reads each.
pub fn recognise(payload: &Value) -> Invocation {
    if first_record_source(payload) == Some("aws:sqs") {
        let deliveries = match serde_json::from_value::<SqsEvent>(payload.clone()) {
            Ok(sqs) => sqs
                .records
                .into_iter()
                .enumerate()
                .map(|(i, m)| Delivery {
                    message_id: Some(m.message_id.unwrap_or_else(|| format!("#{i}"))),
                    notices: match m.body.as_deref().map(serde_json::from_str::<Value>) {
                        Some(Ok(body)) => parse_notices(&body),
                        Some(Err(e)) => Err(format!("message body is not JSON: {e}")),
                        None => Err("message has no body".into()),
                    },
                })
                .collect(),
            Err(e) => vec![Delivery {
                message_id: None,
                notices: Err(format!("not a valid SQS event: {e}")),
            }],
        };
        return Invocation {
            from_sqs: true,
            deliveries,
        };
    }
    Invocation {
        from_sqs: false,
        deliveries: vec![Delivery {
            message_id: None,
            notices: parse_notices(payload),
        }],
    }
}

fn first_record_source(payload: &Value) -> Option<&str> {
    payload
        .get("Records")?
        .as_array()?
        .first()?
        .get("eventSource")?
        .as_str()
}

/// Reads one non-SQS payload (also an SQS message body).
pub fn parse_notices(payload: &Value) -> Result<Vec<Notice>, String> {
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(vec![Notice::TestEvent]);
    }
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        return records.iter().map(parse_s3_record).collect();
    }
    match (
        payload.get("source").and_then(Value::as_str),
        payload.get("detail-type").and_then(Value::as_str),
    ) {
        (Some("aws.s3"), Some(kind @ ("Object Created" | "Object Deleted"))) => {
            let change = if kind == "Object Created" {
                Change::Created
            } else {
                Change::Removed
            };
            parse_eventbridge_s3(payload, change).map(|c| vec![Notice::Object(c)])
        }
        (Some("aws.s3"), Some(other)) => Ok(vec![Notice::Ignored(format!(
            "EventBridge S3 event {other:?} is not handled"
        ))]),
        (Some("aws.batch"), Some("Batch Job State Change")) => parse_batch(payload),
        (Some(source), Some(kind)) => Ok(vec![Notice::Ignored(format!(
            "EventBridge event {kind:?} from {source} is not handled"
        ))]),
        _ => Err("payload is not an S3, SQS, EventBridge or Batch event".into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_source: Option<String>,
    event_name: Option<String>,
    event_time: Option<String>,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn parse_s3_record(record: &Value) -> Result<Notice, String> {
    let record: S3Record =
        serde_json::from_value(record.clone()).map_err(|e| format!("malformed S3 record: {e}"))?;
    if record.event_source.as_deref() != Some("aws:s3") {
        return Ok(Notice::Ignored(format!(
            "record from {:?} is not an S3 notification",
            record.event_source
        )));
    }
    let name = record.event_name.unwrap_or_default();
    let change = if name.starts_with("ObjectCreated:") {
        Change::Created
    } else if name.starts_with("ObjectRemoved:") {
        Change::Removed
    } else {
        return Ok(Notice::Ignored(format!("S3 event {name:?} is not handled")));
    };
    let s3 = record.s3.ok_or("S3 record has no s3 entity")?;
    let key = decode_event_key(&s3.object.key).map_err(|e| e.to_string())?;
    let revision = Revision::from_event(
        s3.object.sequencer.as_deref(),
        record.event_time.as_deref().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(Notice::Object(ObjectChange {
        change,
        bucket: s3.bucket.name,
        key,
        revision,
        version_id: s3.object.version_id.filter(|v| !v.is_empty()),
        etag: s3.object.e_tag.filter(|v| !v.is_empty()),
        size: s3.object.size,
    }))
}

#[derive(Deserialize)]
struct EventBridgeS3 {
    time: Option<String>,
    detail: EventBridgeS3Detail,
}

#[derive(Deserialize)]
struct EventBridgeS3Detail {
    bucket: S3Bucket,
    object: EventBridgeS3Object,
}

#[derive(Deserialize)]
struct EventBridgeS3Object {
    key: String,
    size: Option<u64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn parse_eventbridge_s3(payload: &Value, change: Change) -> Result<ObjectChange, String> {
    let event: EventBridgeS3 = serde_json::from_value(payload.clone())
        .map_err(|e| format!("malformed EventBridge S3 event: {e}"))?;
    let object = event.detail.object;
    validate_key(&object.key).map_err(|e| e.to_string())?;
    let revision = Revision::from_event(
        object.sequencer.as_deref(),
        event.time.as_deref().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(ObjectChange {
        change,
        bucket: event.detail.bucket.name,
        key: object.key,
        revision,
        version_id: object.version_id.filter(|v| !v.is_empty()),
        etag: object.etag.filter(|v| !v.is_empty()),
        size: object.size,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchDetail {
    job_id: String,
    job_name: String,
    job_queue: String,
    status: String,
    status_reason: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, String>,
    array_properties: Option<BatchArrayProperties>,
    container: Option<BatchContainer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchArrayProperties {
    index: Option<usize>,
    size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchContainer {
    exit_code: Option<i64>,
    reason: Option<String>,
}

fn parse_batch(payload: &Value) -> Result<Vec<Notice>, String> {
    let detail = payload.get("detail").ok_or("Batch event has no detail")?;
    let d: BatchDetail = serde_json::from_value(detail.clone())
        .map_err(|e| format!("malformed Batch job state event: {e}"))?;
    if d.status != "FAILED" && d.status != "SUCCEEDED" {
        return Ok(vec![Notice::Ignored(format!(
            "Batch job {} is {}, not final",
            d.job_id, d.status
        ))]);
    }
    let mut reason = d
        .status_reason
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "no reason given".into());
    if let Some(c) = &d.container {
        if let Some(r) = c.reason.as_deref().filter(|r| !r.is_empty()) {
            reason.push_str(&format!("; container: {r}"));
        }
        if let Some(code) = c.exit_code {
            reason.push_str(&format!("; exit code {code}"));
        }
    }
    let (array_index, array_size) = match d.array_properties {
        Some(a) => (a.index, a.size.filter(|_| a.index.is_none())),
        None => (None, None),
    };
    Ok(vec![Notice::JobEnded(JobEnded {
        job_id: d.job_id,
        job_name: d.job_name,
        job_queue: d.job_queue,
        status: d.status,
        reason,
        parameters: d.parameters,
        array_index,
        array_size,
    })])
}
