//! Conditional writes to the results table.
//!
//! Every write names the upload it is about by its [`Revision`], and DynamoDB
//! condition expressions enforce the two rules that at-least-once delivery and
//! out-of-order events would otherwise break:
//!
//! * **one labeling per upload** (invariant 2): a QUEUED claim is taken only if
//!   the stored revision is older, so a redelivered event finds its own
//!   revision already there and submits nothing;
//! * **newest upload wins** (invariant 3): every write requires the stored
//!   revision to be older than (claims, skips, deletes) or equal to (job
//!   results) its own, so an older upload never overwrites a newer one.
//!
//! A claim that was taken but never turned into a submitted job (the
//! dispatcher crashed, or SubmitJob failed and the claim was released) can be
//! taken again by a redelivery of the same event once its lease has expired.

use crate::job::ImageRef;
use crate::revision::Revision;
use crate::schema::{self, attr, Status, IMAGE_SK, PK, SK};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use std::collections::{HashMap, HashSet};

/// A DynamoDB call that failed for a reason other than its condition.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation} on {pk} failed: {source}")]
pub struct StoreError {
    /// The operation, e.g. `PutItem`.
    pub operation: &'static str,
    /// Partition key of the item.
    pub pk: String,
    /// The SDK error, with its retry classification already exhausted.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What a conditional write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write happened.
    Written,
    /// The same upload already has a record (a redelivery): nothing written.
    Duplicate {
        /// Status of the existing record.
        existing: Option<Status>,
    },
    /// A newer upload of the key owns the record: nothing written.
    Superseded {
        /// The newer revision.
        newer: Option<Revision>,
    },
}

/// "Now" as the store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix time in milliseconds.
    pub unix_millis: u64,
}

impl Clock {
    /// The system clock.
    pub fn now() -> Self {
        let unix_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self { unix_millis }
    }

    fn rfc3339(self) -> AttributeValue {
        AttributeValue::S(schema::rfc3339_millis(self.unix_millis))
    }

    fn unix_secs(self) -> u64 {
        self.unix_millis / 1000
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Key of the image record.
pub fn image_key(bucket: &str, key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), s(schema::image_pk(bucket, key))),
        (SK.to_owned(), s(IMAGE_SK)),
    ])
}

/// Attributes describing the upload, shared by every fresh record.
fn identity_attrs(image: &ImageRef, status: Status, now: Clock) -> HashMap<String, AttributeValue> {
    let mut item = image_key(&image.bucket, &image.key);
    item.insert(attr::BUCKET.into(), s(&image.bucket));
    item.insert(attr::KEY.into(), s(&image.key));
    item.insert(attr::REVISION.into(), s(image.revision.as_str()));
    item.insert(attr::STATUS.into(), s(status.as_str()));
    item.insert(attr::UPDATED_AT.into(), now.rfc3339());
    if let Some(v) = &image.version_id {
        item.insert(attr::VERSION_ID.into(), s(v));
    }
    if let Some(e) = &image.etag {
        item.insert(attr::ETAG.into(), s(e));
    }
    if let Some(size) = image.size {
        item.insert(attr::SIZE.into(), n(size));
    }
    item
}

/// Condition for replacing the record with a fresh one for `:rev`.
pub const NEWER_THAN_STORED: &str = "attribute_not_exists(pk) OR revision < :rev";

/// Condition for taking a QUEUED claim: a newer upload, or the same upload
/// whose earlier claim never produced a job and either has expired or is the
/// claimant's own (a resumed backfill retaking what it claimed before it was
/// interrupted; a Lambda invocation's claim token is never reused).
pub const CLAIM_CONDITION: &str = "attribute_not_exists(pk) OR revision < :rev OR \
     (revision = :rev AND #status = :queued AND attribute_not_exists(job_id) AND \
      (claimed_at < :lease_cutoff OR claim = :claim))";

/// Condition for claiming a FAILED upload again (an operator's retry).
pub const RETRY_CONDITION: &str = "revision = :rev AND #status = :failed";

/// Which stored records a claim may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimKind {
    /// New uploads (and abandoned claims of them): [`CLAIM_CONDITION`].
    #[default]
    New,
    /// The same upload, recorded FAILED: [`RETRY_CONDITION`].
    RetryFailed,
}

/// Builds the conditional PutItem that claims `image` for dispatch.
pub fn claim_request(
    client: &Client,
    table: &str,
    image: &ImageRef,
    claim: &str,
    kind: ClaimKind,
    now: Clock,
    lease_secs: u64,
) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    let mut item = identity_attrs(image, Status::Queued, now);
    item.insert(attr::CLAIM.into(), s(claim));
    item.insert(attr::CLAIMED_AT.into(), n(now.unix_secs()));
    item.insert(attr::QUEUED_AT.into(), now.rfc3339());
    item.insert(attr::ATTEMPTS.into(), n(0));
    let request = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    match kind {
        ClaimKind::New => request
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_values(":queued", s(Status::Queued.as_str()))
            .expression_attribute_values(":claim", s(claim))
            .expression_attribute_values(
                ":lease_cutoff",
                n(now.unix_secs().saturating_sub(lease_secs)),
            ),
        ClaimKind::RetryFailed => request
            .condition_expression(RETRY_CONDITION)
            .expression_attribute_values(":failed", s(Status::Failed.as_str())),
    }
}

/// Claims a new upload for dispatch by writing its QUEUED record.
///
/// `Written` means this invocation owns the image and must submit a job for
/// it (or release the claim); anything else means submit nothing.
pub async fn claim(
    client: &Client,
    table: &str,
    image: &ImageRef,
    claim: &str,
    now: Clock,
    lease_secs: u64,
) -> Result<WriteOutcome, StoreError> {
    claim_as(client, table, image, claim, ClaimKind::New, now, lease_secs).await
}

/// Claims `image` under the rule `kind`; see [`claim`].
pub async fn claim_as(
    client: &Client,
    table: &str,
    image: &ImageRef,
    claim: &str,
    kind: ClaimKind,
    now: Clock,
    lease_secs: u64,
) -> Result<WriteOutcome, StoreError> {
    let result = claim_request(client, table, image, claim, kind, now, lease_secs)
        .send()
        .await;
    outcome(client, table, image, "PutItem", result).await
}

/// [`NEWER_THAN_STORED`] evaluated in memory: no record, or an older upload's.
pub fn newer_than_stored(
    stored: Option<&HashMap<String, AttributeValue>>,
    image: &ImageRef,
) -> bool {
    stored.is_none_or(|item| stored_revision(item).is_some_and(|r| r < image.revision))
}

/// Whether a claim of `image` under `kind` would be written over `stored`:
/// [`CLAIM_CONDITION`] and [`RETRY_CONDITION`] evaluated in memory, for
/// previews (`labeler backfill --dry-run`). The conditional write decides.
pub fn claim_would_win(
    stored: Option<&HashMap<String, AttributeValue>>,
    image: &ImageRef,
    claim: &str,
    kind: ClaimKind,
    now: Clock,
    lease_secs: u64,
) -> bool {
    let Some(item) = stored else {
        return kind == ClaimKind::New;
    };
    let revision = stored_revision(item);
    let status = stored_status(item);
    let same = revision.as_ref() == Some(&image.revision);
    match kind {
        ClaimKind::RetryFailed => same && status == Some(Status::Failed),
        ClaimKind::New => {
            if newer_than_stored(stored, image) {
                return true;
            }
            let number = |name| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let own = item.get(attr::CLAIM).and_then(|v| v.as_s().ok()) == Some(&claim.to_owned());
            let expired = number(attr::CLAIMED_AT)
                .is_some_and(|at| at < now.unix_secs().saturating_sub(lease_secs));
            same && status == Some(Status::Queued)
                && !item.contains_key(attr::JOB_ID)
                && (expired || own)
        }
    }
}

/// Writes a SKIPPED record with `reason`, unless this or a newer upload
/// already has one.
pub async fn record_skipped(
    client: &Client,
    table: &str,
    image: &ImageRef,
    reason: &str,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let mut item = identity_attrs(image, Status::Skipped, now);
    item.insert(attr::REASON.into(), s(schema::capped_reason(reason)));
    let result = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(NEWER_THAN_STORED)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    outcome(client, table, image, "PutItem", result).await
}

/// The Batch job a claimed image was submitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submission<'a> {
    /// Job id (the parent's, for array jobs).
    pub job_id: &'a str,
    /// Job name.
    pub job_name: &'a str,
    /// Array child holding the image, for array jobs.
    pub array_index: Option<usize>,
}

/// Records the job that now holds a claimed image.
pub async fn record_submitted(
    client: &Client,
    table: &str,
    image: &ImageRef,
    claim: &str,
    submission: Submission<'_>,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let Submission {
        job_id,
        job_name,
        array_index,
    } = submission;
    let mut update = "SET job_id = :job_id, job_name = :job_name, updated_at = :now".to_owned();
    let mut request = client
        .update_item()
        .table_name(table)
        .set_key(Some(image_key(&image.bucket, &image.key)))
        .condition_expression("revision = :rev AND claim = :claim")
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":claim", s(claim))
        .expression_attribute_values(":job_id", s(job_id))
        .expression_attribute_values(":job_name", s(job_name))
        .expression_attribute_values(":now", now.rfc3339());
    if let Some(index) = array_index {
        update.push_str(", array_index = :index");
        request = request.expression_attribute_values(":index", n(index));
    }
    let result = request.update_expression(update).send().await;
    outcome(client, table, image, "UpdateItem", result).await
}

/// Gives a claim back after SubmitJob failed, so that a redelivery of the
/// event can claim the image again at once. The record stays QUEUED with a
/// reason saying a retry is pending.
pub async fn release_claim(
    client: &Client,
    table: &str,
    image: &ImageRef,
    claim: &str,
    reason: &str,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let result = client
        .update_item()
        .table_name(table)
        .set_key(Some(image_key(&image.bucket, &image.key)))
        .update_expression("SET claimed_at = :zero, reason = :reason, updated_at = :now")
        .condition_expression("revision = :rev AND claim = :claim AND attribute_not_exists(job_id)")
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":claim", s(claim))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":reason", s(schema::capped_reason(reason)))
        .expression_attribute_values(":now", now.rfc3339())
        .send()
        .await;
    outcome(client, table, image, "UpdateItem", result).await
}

/// Marks `image` FAILED with `reason` if it is still QUEUED in job `job_id`
/// (used when Batch reports the job dead). LABELED, SKIPPED or newer records
/// are left alone.
pub async fn fail_if_still_queued(
    client: &Client,
    table: &str,
    image: &ImageRef,
    job_id: &str,
    reason: &str,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let result = client
        .update_item()
        .table_name(table)
        .set_key(Some(image_key(&image.bucket, &image.key)))
        .update_expression("SET #status = :failed, reason = :reason, updated_at = :now")
        .condition_expression("revision = :rev AND #status = :queued AND job_id = :job_id")
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":queued", s(Status::Queued.as_str()))
        .expression_attribute_values(":failed", s(Status::Failed.as_str()))
        .expression_attribute_values(":job_id", s(job_id))
        .expression_attribute_values(":reason", s(schema::capped_reason(reason)))
        .expression_attribute_values(":now", now.rfc3339())
        .send()
        .await;
    outcome(client, table, image, "UpdateItem", result).await
}

/// Deletes the record of `bucket/key` and its label-index entries, unless a
/// newer upload than `revision` owns them (entries are removed only where
/// their own revision is older than the delete's).
pub async fn remove(
    client: &Client,
    table: &str,
    bucket: &str,
    key: &str,
    revision: &Revision,
) -> Result<WriteOutcome, StoreError> {
    let pk = schema::image_pk(bucket, key);
    let err = |operation, e: Box<dyn std::error::Error + Send + Sync>| StoreError {
        operation,
        pk: pk.clone(),
        source: e,
    };
    let deleted = client
        .delete_item()
        .table_name(table)
        .set_key(Some(image_key(bucket, key)))
        .condition_expression("attribute_not_exists(pk) OR revision <= :rev")
        .expression_attribute_values(":rev", s(revision.as_str()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    if let Err(e) = deleted {
        let service = e.as_service_error();
        if service.is_some_and(|se| se.is_conditional_check_failed_exception()) {
            let newer = service
                .and_then(|se| match se {
                    aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                })
                .and_then(stored_revision);
            return Ok(WriteOutcome::Superseded { newer });
        }
        return Err(err("DeleteItem", e.into()));
    }
    let image = ImageRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        revision: revision.clone(),
        version_id: None,
        etag: None,
        size: None,
    };
    crate::labeling::remove_stale_entries(client, table, &image, &HashSet::new()).await?;
    Ok(WriteOutcome::Written)
}

/// Reads the image record (strongly consistent).
pub async fn get_image(
    client: &Client,
    table: &str,
    bucket: &str,
    key: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    client
        .get_item()
        .table_name(table)
        .set_key(Some(image_key(bucket, key)))
        .consistent_read(true)
        .send()
        .await
        .map(|out| out.item)
        .map_err(|e| StoreError {
            operation: "GetItem",
            pk: schema::image_pk(bucket, key),
            source: e.into(),
        })
}

fn stored_revision(item: &HashMap<String, AttributeValue>) -> Option<Revision> {
    let raw = item.get(attr::REVISION)?.as_s().ok()?;
    Revision::try_from(raw.clone()).ok()
}

fn stored_status(item: &HashMap<String, AttributeValue>) -> Option<Status> {
    Status::parse(item.get(attr::STATUS)?.as_s().ok()?)
}

/// Tells a redelivery from a lost race with a newer upload, from the item
/// that made the condition fail (read back if the service did not return it).
async fn classify_conflict(
    client: &Client,
    table: &str,
    image: &ImageRef,
    returned: Option<&HashMap<String, AttributeValue>>,
) -> Result<WriteOutcome, StoreError> {
    let fetched;
    let item = match returned {
        Some(item) if !item.is_empty() => Some(item),
        _ => {
            fetched = get_image(client, table, &image.bucket, &image.key).await?;
            fetched.as_ref()
        }
    };
    let stored = item.and_then(stored_revision);
    Ok(match stored {
        Some(rev) if rev > image.revision => WriteOutcome::Superseded { newer: Some(rev) },
        Some(_) => WriteOutcome::Duplicate {
            existing: item.and_then(stored_status),
        },
        None => WriteOutcome::Duplicate { existing: None },
    })
}

/// A modeled DynamoDB error that may be a failed condition carrying the
/// item that failed it.
trait ConditionFailure:
    aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static
{
    /// `Some(item)` (possibly empty) when the error is a failed condition.
    fn failed_condition(&self) -> Option<Option<&HashMap<String, AttributeValue>>>;
}

impl ConditionFailure for PutItemError {
    fn failed_condition(&self) -> Option<Option<&HashMap<String, AttributeValue>>> {
        match self {
            PutItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

impl ConditionFailure for UpdateItemError {
    fn failed_condition(&self) -> Option<Option<&HashMap<String, AttributeValue>>> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

/// Turns a conditional write's result into a [`WriteOutcome`].
async fn outcome<O, E: ConditionFailure>(
    client: &Client,
    table: &str,
    image: &ImageRef,
    operation: &'static str,
    result: Result<O, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
) -> Result<WriteOutcome, StoreError> {
    match result {
        Ok(_) => Ok(WriteOutcome::Written),
        Err(SdkError::ServiceError(se)) if se.err().failed_condition().is_some() => {
            let returned = se.err().failed_condition().flatten();
            classify_conflict(client, table, image, returned).await
        }
        Err(e) => Err(StoreError {
            operation,
            pk: schema::image_pk(&image.bucket, &image.key),
            source: e.into(),
        }),
    }
}
