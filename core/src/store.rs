//! The dispatcher's conditional writes to the results table: claims, skips,
//! submissions, releases, failures and tombstones.
//!
//! Every write names the upload it is about by its [`Revision`] and sends
//! one of the conditions of [`crate::rule`], where each is documented beside
//! its in-memory twin:
//!
//! * **one labeling per upload** (invariant 2): a QUEUED claim is taken only
//!   if the stored revision is older, so a redelivered event finds its own
//!   revision already there and submits nothing;
//! * **newest upload wins, deletes included** (invariant 3): claims, skips
//!   and tombstones require the stored revision to be older; a delete leaves
//!   a tombstone ([`tombstone`]) so a late, older create cannot bring the key
//!   back.
//!
//! A claim that was taken but never turned into a submitted job (the
//! dispatcher died, or SubmitJob failed and the claim was released) can be
//! taken again once its lease has expired, by a redelivery or by the
//! reconciler.

pub use crate::db::{get_image, image_key, Clock, Item, StoreError, WriteOutcome};
pub use crate::rule::{
    ClaimKind, CLAIM_CONDITION, NEWER_THAN_STORED, RETRY_CONDITION, VERSION_DELETE_CONDITION,
};

use crate::db::{n, resolve_conflict, s};
use crate::entries::{remove_entries_through, remove_stale_entries};
use crate::job::ImageRef;
use crate::revision::Revision;
use crate::rule::{self, Stored, Writer};
use crate::schema::{self, attr, Status};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use std::collections::{HashMap, HashSet};

/// Attributes describing the upload, shared by every fresh record, with the
/// status index keys its status calls for.
fn identity_attrs(image: &ImageRef, status: Status, now: Clock) -> Item {
    let mut item = image_key(&image.bucket, &image.key);
    item.insert(attr::BUCKET.into(), s(&image.bucket));
    item.insert(attr::KEY.into(), s(&image.key));
    item.insert(attr::REVISION.into(), s(image.revision.as_str()));
    item.insert(attr::STATUS.into(), s(status.as_str()));
    item.insert(attr::UPDATED_AT.into(), s(now.rfc3339()));
    let pk = schema::image_pk(&image.bucket, &image.key);
    if let Some(key) = schema::status_key(&pk, status) {
        item.insert(schema::STATUS_INDEX_PK.into(), s(key));
        item.insert(schema::STATUS_INDEX_SK.into(), s(now.rfc3339()));
    }
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

/// A fresh QUEUED record of `image` under `claim`, dispatched `dispatches` times.
fn queued_item(image: &ImageRef, claim: &str, dispatches: u32, now: Clock) -> Item {
    let mut item = identity_attrs(image, Status::Queued, now);
    item.insert(attr::CLAIM.into(), s(claim));
    item.insert(attr::CLAIMED_AT.into(), n(now.unix_secs()));
    item.insert(attr::QUEUED_AT.into(), s(now.rfc3339()));
    item.insert(attr::ATTEMPTS.into(), n(0));
    item.insert(attr::DISPATCHES.into(), n(dispatches));
    item
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
    let request = client
        .put_item()
        .table_name(table)
        .set_item(Some(queued_item(image, claim, 1, now)))
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    match kind {
        ClaimKind::New => request
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_names("#owner", attr::OWNER)
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
    let writer = match kind {
        ClaimKind::New => Writer::Replace { claim: Some(claim) },
        ClaimKind::RetryFailed => Writer::Update { claim: Some(claim) },
    };
    outcome(client, table, image, writer, "PutItem", result).await
}

/// [`NEWER_THAN_STORED`] evaluated in memory: no record, or an older upload's.
pub fn newer_than_stored(stored: Option<&Item>, image: &ImageRef) -> bool {
    let stored = stored.map(Stored::from_item);
    rule::order(stored.as_ref(), &image.revision) == rule::Order::IncomingNewer
}

/// Whether a claim of `image` under `kind` would be written over `stored`:
/// [`rule::claim_would_win`] on a stored item, for previews (`labeler
/// backfill --dry-run`). The conditional write decides.
pub fn claim_would_win(
    stored: Option<&Item>,
    image: &ImageRef,
    claim: &str,
    kind: ClaimKind,
    now: Clock,
    lease_secs: u64,
) -> bool {
    let stored = stored.map(Stored::from_item);
    rule::claim_would_win(
        stored.as_ref(),
        &image.revision,
        claim,
        kind,
        now.unix_secs(),
        lease_secs,
    )
}

/// Writes a SKIPPED record with `reason`, unless this or a newer upload
/// already has one; label entries of older uploads go after
/// ([`clear_older_entries`]).
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
    let writer = Writer::Replace { claim: None };
    let written = outcome(client, table, image, writer, "PutItem", result).await?;
    clear_older_entries(client, table, image, written).await
}

/// Deletes the label entries older uploads of `image`'s key left behind,
/// once `written` says the record names `image`'s upload (written now, or
/// found written by an earlier delivery); returns `written`.
///
/// *After* the record, never before: from the moment the record names a
/// newer upload, no worker of an older one can commit its labels (its
/// condition names its own revision), so nothing slips in behind the
/// cleanup. Deleting first left a gap in which an older upload's worker
/// committed entries that then stayed forever (`tests/tests/races.rs`). A
/// process that dies between the two leaves the cleanup to the redelivery,
/// which finds its own record (`Duplicate`) and clears again.
async fn clear_older_entries(
    client: &Client,
    table: &str,
    image: &ImageRef,
    written: WriteOutcome,
) -> Result<WriteOutcome, StoreError> {
    if matches!(
        written,
        WriteOutcome::Written | WriteOutcome::Duplicate { .. }
    ) {
        let (bucket, key, revision) = (&image.bucket, &image.key, &image.revision);
        let none = HashSet::new();
        remove_stale_entries(client, table, bucket, key, revision, &none).await?;
    }
    Ok(written)
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
        .condition_expression(rule::SUBMITTED_CONDITION)
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":queued", s(Status::Queued.as_str()))
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":claim", s(claim))
        .expression_attribute_values(":job_id", s(job_id))
        .expression_attribute_values(":job_name", s(job_name))
        .expression_attribute_values(":now", s(now.rfc3339()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if let Some(index) = array_index {
        update.push_str(", array_index = :index");
        request = request.expression_attribute_values(":index", n(index));
    }
    let result = request.update_expression(update).send().await;
    let writer = Writer::Update { claim: None };
    outcome(client, table, image, writer, "UpdateItem", result).await
}

/// Gives a claim back after SubmitJob failed, so that a redelivery of the
/// event (or the reconciler) can claim the image again at once. The record
/// stays QUEUED with a reason saying a retry is pending.
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
        .condition_expression(rule::RELEASE_CONDITION)
        .expression_attribute_names("#owner", attr::OWNER)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":claim", s(claim))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":reason", s(schema::capped_reason(reason)))
        .expression_attribute_values(":now", s(now.rfc3339()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    let writer = Writer::Update { claim: None };
    outcome(client, table, image, writer, "UpdateItem", result).await
}

/// Which QUEUED record a failure may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedBy<'a> {
    /// Claimed under this token and not taken by a worker (a job that can
    /// never be submitted): [`rule::FAIL_CLAIMED_CONDITION`].
    Claim(&'a str),
    /// Recorded in this Batch job and not taken by any other, when `dead`
    /// died: [`rule::FAIL_IN_JOB_CONDITION`].
    Job {
        /// The recorded job id (the parent's, for array jobs).
        job_id: &'a str,
        /// The job that died, as Batch names it (`parent:index` for an
        /// array child): the only owner whose images it may fail.
        dead: &'a str,
    },
    /// Exactly as the reconciler read it: [`rule::redispatch_condition`].
    Seen {
        /// The claim token read.
        claim: &'a str,
        /// The owner read, if any.
        owner: Option<&'a str>,
    },
}

/// Marks `image` FAILED with `reason` if it is still QUEUED as `by` says,
/// then removes label entries of older uploads ([`clear_older_entries`]).
/// LABELED, SKIPPED or newer records are left alone.
pub async fn fail_queued(
    client: &Client,
    table: &str,
    image: &ImageRef,
    by: QueuedBy<'_>,
    reason: &str,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let pk = schema::image_pk(&image.bucket, &image.key);
    let status_key = schema::status_key(&pk, Status::Failed).expect("FAILED is indexed");
    let request = client
        .update_item()
        .table_name(table)
        .set_key(Some(image_key(&image.bucket, &image.key)))
        .update_expression(
            "SET #status = :failed, reason = :reason, updated_at = :now, \
             status_key = :status_key, status_at = :now",
        )
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":queued", s(Status::Queued.as_str()))
        .expression_attribute_values(":failed", s(Status::Failed.as_str()))
        .expression_attribute_values(":reason", s(schema::capped_reason(reason)))
        .expression_attribute_values(":now", s(now.rfc3339()))
        .expression_attribute_values(":status_key", s(status_key))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    let request = match by {
        QueuedBy::Claim(claim) => request
            .condition_expression(rule::FAIL_CLAIMED_CONDITION)
            .expression_attribute_names("#owner", attr::OWNER)
            .expression_attribute_values(":claim", s(claim)),
        QueuedBy::Job { job_id, dead } => request
            .condition_expression(rule::FAIL_IN_JOB_CONDITION)
            .expression_attribute_names("#owner", attr::OWNER)
            .expression_attribute_values(":job_id", s(job_id))
            .expression_attribute_values(":dead", s(dead)),
        QueuedBy::Seen { claim, owner } => {
            let request = request
                .condition_expression(rule::redispatch_condition(owner.is_some()))
                .expression_attribute_names("#owner", attr::OWNER)
                .expression_attribute_values(":seen_claim", s(claim));
            match owner {
                Some(owner) => request.expression_attribute_values(":seen_owner", s(owner)),
                None => request,
            }
        }
    };
    let result = request.send().await;
    let writer = Writer::Update { claim: None };
    let written = outcome(client, table, image, writer, "UpdateItem", result).await?;
    clear_older_entries(client, table, image, written).await
}

/// Replaces a QUEUED record the reconciler read (`seen`) by a fresh claim
/// under `claim`, dispatched `dispatches` times: the job or claim it named
/// is dead or lost. Loses to any writer that moved the record meanwhile.
pub async fn redispatch(
    client: &Client,
    table: &str,
    image: &ImageRef,
    seen: &Stored,
    claim: &str,
    dispatches: u32,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let mut item = queued_item(image, claim, dispatches, now);
    // The upload's first dispatch stays its `queued_at`: the reconciler
    // gives up on elapsed time since then, never on a count.
    if let Some(first) = seen.queued_at {
        let first = Clock { unix_millis: first };
        item.insert(attr::QUEUED_AT.into(), s(first.rfc3339()));
    }
    let seen_claim = seen.claim.clone().unwrap_or_default();
    let mut request = client
        .put_item()
        .table_name(table)
        .condition_expression(rule::redispatch_condition(seen.owner.is_some()))
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_names("#owner", attr::OWNER)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":queued", s(Status::Queued.as_str()))
        .expression_attribute_values(":seen_claim", s(seen_claim))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if let Some(owner) = &seen.owner {
        request = request.expression_attribute_values(":seen_owner", s(owner));
    }
    item.insert(
        attr::REASON.into(),
        s("re-dispatched by the reconciler; waiting for its job"),
    );
    let result = request.set_item(Some(item)).send().await;
    let writer = Writer::Update { claim: Some(claim) };
    outcome(client, table, image, writer, "PutItem", result).await
}

/// A deleted object: which record a delete may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
    /// Revision of the delete (its sequencer).
    pub revision: &'a Revision,
    /// `Some(v)` for the permanent delete of version `v` in a versioned
    /// bucket: only the record of that version becomes a tombstone. `None`
    /// for a delete in an unversioned bucket, a delete marker or a
    /// lifecycle expiration: the key is gone.
    pub version: Option<&'a str>,
    /// Why, for the tombstone's reason.
    pub reason: &'a str,
}

/// Records a delete as a tombstone: a DELETED record without labels that
/// DynamoDB's TTL removes `ttl_secs` after `now`.
///
/// * A plain delete, a delete marker or a lifecycle expiration
///   (`version: None`) replaces any older record by a tombstone carrying the
///   delete's revision: an older create arriving later loses to it under
///   [`CLAIM_CONDITION`]; a newer upload replaces it.
/// * The permanent delete of one version (`version: Some(v)`) changes the
///   record only if it is that version's ([`VERSION_DELETE_CONDITION`]), and
///   then keeps that version's revision: the delete says nothing about other
///   versions, so a newer version's create, even one delivered later, still
///   wins, while a redelivered create of the deleted version does not.
///
/// Label entries of the deleted upload and older ones are removed (for a
/// plain delete before the write, which is safe whatever it finds; for a
/// version delete after it, because a newer version's record may stay).
pub async fn tombstone(
    client: &Client,
    table: &str,
    deletion: &Deletion<'_>,
    now: Clock,
    ttl_secs: u64,
) -> Result<WriteOutcome, StoreError> {
    let image = ImageRef {
        bucket: deletion.bucket.to_owned(),
        key: deletion.key.to_owned(),
        revision: deletion.revision.clone(),
        version_id: deletion.version.map(str::to_owned),
        etag: None,
        size: None,
    };
    if let Some(version) = deletion.version {
        return forget_version(
            client,
            table,
            &image,
            version,
            deletion.reason,
            now,
            ttl_secs,
        )
        .await;
    }
    let mut item = identity_attrs(&image, Status::Deleted, now);
    item.insert(
        attr::REASON.into(),
        s(schema::capped_reason(deletion.reason)),
    );
    item.insert(attr::EXPIRES_AT.into(), n(now.unix_secs() + ttl_secs));
    let result = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(NEWER_THAN_STORED)
        .expression_attribute_values(":rev", s(deletion.revision.as_str()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    let writer = Writer::Replace { claim: None };
    let written = outcome(client, table, &image, writer, "PutItem", result).await?;
    clear_older_entries(client, table, &image, written).await
}

/// The version-delete arm of [`tombstone`]: marks the record of `version`
/// DELETED in place, keeping its revision.
async fn forget_version(
    client: &Client,
    table: &str,
    delete: &ImageRef,
    version: &str,
    reason: &str,
    now: Clock,
    ttl_secs: u64,
) -> Result<WriteOutcome, StoreError> {
    let result = client
        .update_item()
        .table_name(table)
        .set_key(Some(image_key(&delete.bucket, &delete.key)))
        .update_expression(
            "SET #status = :deleted, reason = :reason, updated_at = :now, expires_at = :expires \
             REMOVE labels, status_key, status_at, #owner, claim, claimed_at",
        )
        .condition_expression(VERSION_DELETE_CONDITION)
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_names("#owner", attr::OWNER)
        .expression_attribute_values(":rev", s(delete.revision.as_str()))
        .expression_attribute_values(":version", s(version))
        .expression_attribute_values(":deleted", s(Status::Deleted.as_str()))
        .expression_attribute_values(":reason", s(schema::capped_reason(reason)))
        .expression_attribute_values(":now", s(now.rfc3339()))
        .expression_attribute_values(":expires", n(now.unix_secs() + ttl_secs))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    let (written, stored) = match result {
        Ok(out) => (
            WriteOutcome::Written,
            out.attributes.map(|a| Stored::from_item(&a)),
        ),
        Err(SdkError::ServiceError(se)) if se.err().failed_condition().is_some() => {
            // The record is another version's, newer, or gone: nothing to do,
            // unless it is this version's tombstone already (a redelivery,
            // whose entries may still need removing).
            let returned = se.err().failed_condition().flatten().map(Stored::from_item);
            match returned {
                Some(st)
                    if st.status == Some(Status::Deleted)
                        && st.version_id.as_deref() == Some(version) =>
                {
                    let existing = Some(Status::Deleted);
                    (WriteOutcome::Duplicate { existing }, Some(st))
                }
                other => {
                    let newer = other
                        .and_then(|st| st.revision)
                        .filter(|r| *r > delete.revision);
                    return Ok(WriteOutcome::Superseded { newer });
                }
            }
        }
        Err(e) => {
            return Err(StoreError::new(
                "UpdateItem",
                schema::image_pk(&delete.bucket, &delete.key),
                e,
            ))
        }
    };
    if let Some(deleted) = stored.and_then(|st| st.revision) {
        remove_entries_through(client, table, &delete.bucket, &delete.key, &deleted).await?;
    }
    Ok(written)
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
    writer: Writer<'_>,
    operation: &'static str,
    result: Result<O, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
) -> Result<WriteOutcome, StoreError> {
    match result {
        Ok(_) => Ok(WriteOutcome::Written),
        Err(SdkError::ServiceError(se)) if se.err().failed_condition().is_some() => {
            let returned = se.err().failed_condition().flatten();
            resolve_conflict(
                client,
                table,
                &image.bucket,
                &image.key,
                &image.revision,
                writer,
                returned,
            )
            .await
        }
        Err(e) => Err(StoreError::new(
            operation,
            schema::image_pk(&image.bucket, &image.key),
            e,
        )),
    }
}
