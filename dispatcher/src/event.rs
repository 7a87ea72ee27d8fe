//! Recognising what invoked the dispatcher, by the shape of the payload.
//!
//! | shape | recognised by |
//! |---|---|
//! | S3 notification | `Records[].eventSource == "aws:s3"` (`ObjectCreated:*`, `ObjectRemoved:*`, `LifecycleExpiration:*`) |
//! | SNS (S3 → SNS → Lambda) | `Records[].EventSource == "aws:sns"`; each `Sns.Message` is parsed again |
//! | SQS batch | `Records[].eventSource == "aws:sqs"`; each body is parsed again, SNS envelopes (S3 → SNS → SQS) unwrapped |
//! | EventBridge S3 | `source == "aws.s3"`, `detail-type` `Object Created` / `Object Deleted` |
//! | Batch job state | `source == "aws.batch"`, `detail-type` `Batch Job State Change` |
//! | S3 test event | `Event == "s3:TestEvent"` |
//! | reconciler pass | `{"reconcile": {…}}`, or an EventBridge `Scheduled Event` |
//!
//! A message that cannot be read (empty body, not JSON, JSON that is none of
//! these) is answered once with a logged reason: it is permanently
//! unreadable, so retrying it would only delay it to the dead-letter queue.
//!
//! S3 notification records are read with our own lenient structs rather than
//! `aws_lambda_events::s3::S3Event`, which requires `userIdentity` and
//! `requestParameters`; S3 emulators (moto among them) omit both.
//! Keys in notifications are form-URL-encoded and are decoded exactly;
//! EventBridge delivers keys as they are and they are taken verbatim.

use crate::failure::JobFailure;
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
    /// For removals: a delete marker was created (`ObjectRemoved:DeleteMarkerCreated`,
    /// `LifecycleExpiration:DeleteMarkerCreated`), so the key has no current
    /// version whatever `version_id` says.
    pub delete_marker: bool,
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
    /// Batch's account of the failure.
    pub failure: JobFailure,
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
    /// A reconciler pass was asked for (the schedule, or an operator).
    Reconcile,
    /// Understood but not for us (another event type); the reason is logged.
    Ignored(String),
}

/// A unit that succeeds or fails as a whole: one SQS message, or the whole
/// payload of any other invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SQS message id; `None` outside SQS.
    pub message_id: Option<String>,
    /// What it said, or why it can never be read.
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

/// Reads one non-SQS payload (also an SQS message body or an SNS message).
pub fn parse_notices(payload: &Value) -> Result<Vec<Notice>, String> {
    parse_nested(payload, 0)
}

/// SNS and SQS wrap each other at most a couple of times (S3 → SNS → SQS);
/// anything deeper is not an AWS delivery.
const MAX_WRAPPING: usize = 3;

fn parse_nested(payload: &Value, depth: usize) -> Result<Vec<Notice>, String> {
    if depth > MAX_WRAPPING {
        return Err("message is wrapped more deeply than any AWS delivery".into());
    }
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(vec![Notice::TestEvent]);
    }
    if payload.get("reconcile").is_some_and(Value::is_object) {
        return Ok(vec![Notice::Reconcile]);
    }
    if payload.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = payload
            .get("Message")
            .and_then(Value::as_str)
            .ok_or("SNS notification has no Message")?;
        return parse_sns_message(message, depth);
    }
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let mut notices = Vec::with_capacity(records.len());
        for record in records {
            if record.get("EventSource").and_then(Value::as_str) == Some("aws:sns") {
                let message = record
                    .pointer("/Sns/Message")
                    .and_then(Value::as_str)
                    .ok_or("SNS record has no Sns.Message")?;
                notices.extend(parse_sns_message(message, depth)?);
            } else {
                notices.push(parse_s3_record(record)?);
            }
        }
        return Ok(notices);
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
        (Some("aws.events"), Some("Scheduled Event")) => Ok(vec![Notice::Reconcile]),
        (Some(source), Some(kind)) => Ok(vec![Notice::Ignored(format!(
            "EventBridge event {kind:?} from {source} is not handled"
        ))]),
        _ => Err("payload is not an S3, SQS, EventBridge or Batch event".into()),
    }
}

/// S3 reports objects of unversioned (or suspended) buckets with no version
/// id or the literal `null`.
fn is_version_id(v: &str) -> bool {
    !v.is_empty() && v != "null"
}

fn parse_sns_message(message: &str, depth: usize) -> Result<Vec<Notice>, String> {
    let inner: Value =
        serde_json::from_str(message).map_err(|e| format!("SNS message is not JSON: {e}"))?;
    parse_nested(&inner, depth + 1)
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
    } else if name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:") {
        Change::Removed
    } else {
        return Ok(Notice::Ignored(format!("S3 event {name:?} is not handled")));
    };
    let delete_marker = name.ends_with(":DeleteMarkerCreated");
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
        version_id: s3.object.version_id.filter(|v| is_version_id(v)),
        etag: s3.object.e_tag.filter(|v| !v.is_empty()),
        size: s3.object.size,
        delete_marker,
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
    #[serde(rename = "deletion-type")]
    deletion_type: Option<String>,
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
    let delete_marker = event.detail.deletion_type.as_deref() == Some("Delete Marker Created");
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
        version_id: object.version_id.filter(|v| is_version_id(v)),
        etag: object.etag.filter(|v| !v.is_empty()),
        size: object.size,
        delete_marker,
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
    let failure = JobFailure {
        status_reason: d.status_reason,
        container_reason: d.container.as_ref().and_then(|c| c.reason.clone()),
        exit_code: d.container.as_ref().and_then(|c| c.exit_code),
    };
    let (array_index, array_size) = match d.array_properties {
        Some(a) => (a.index, a.size.filter(|_| a.index.is_none())),
        None => (None, None),
    };
    Ok(vec![Notice::JobEnded(JobEnded {
        job_id: d.job_id,
        job_name: d.job_name,
        job_queue: d.job_queue,
        status: d.status,
        failure,
        parameters: d.parameters,
        array_index,
        array_size,
    })])
}
