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
//!
//! Each function here is thin: it builds its write as a value with the
//! crate's `write` module (one pure builder per writer, e.g. `write::claim`,
//! `write::skip`) and sends it with `write::Table::apply`, the one place that
//! sends writes and reads conflicts. What is left here is the order of what
//! goes around a write: label entries of older uploads are deleted only
//! after the record names the newer upload ([`clear_older_entries`]).

pub use crate::db::{get_image, image_key, Clock, Item, StoreError, WriteOutcome};
pub use crate::rule::{
    ClaimKind, CLAIM_CONDITION, NEWER_THAN_STORED, VERSIONS_GONE_CONDITION,
    VERSION_DELETE_CONDITION,
};
pub use crate::write::{Deletion, QueuedBy, Submission};

use crate::entries::{remove_entries_through, remove_stale_entries};
use crate::job::ImageRef;
use crate::rule::{self, Stored};
use crate::write::{self, ClaimRequest, Table};
use crate::Revision;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::Client;
use std::collections::HashSet;

/// Builds the conditional PutItem that claims `image` for dispatch: the
/// request [`claim_as`] sends.
pub fn claim_request(
    client: &Client,
    table: &str,
    image: &ImageRef,
    claim: &str,
    kind: ClaimKind,
    now: Clock,
    lease_secs: u64,
) -> PutItemFluentBuilder {
    let request = ClaimRequest {
        claim,
        kind,
        lease_secs,
        floor: None,
    };
    write::claim(image, &request, now)
        .put_request(client, table)
        .expect("a claim is a PutItem")
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
    // A retry reads the FAILED record first, for the floor its claim must
    // carry (`rule::retry_condition`); a new upload's claim reads nothing.
    let floor = match kind {
        ClaimKind::New => None,
        ClaimKind::RetryFailed => get_image(client, table, &image.bucket, &image.key)
            .await?
            .and_then(|item| Stored::from_item(&item).gone_before),
    };
    let request = ClaimRequest {
        claim,
        kind,
        lease_secs,
        floor: floor.as_ref(),
    };
    let write = write::claim(image, &request, now);
    Table::new(client, table).apply(&write).await
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
    let table = Table::new(client, table);
    let written = table.apply(&write::skip(image, reason, now)).await?;
    clear_older_entries(table, image, written).await
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
    table: Table<'_>,
    image: &ImageRef,
    written: WriteOutcome,
) -> Result<WriteOutcome, StoreError> {
    if matches!(
        written,
        WriteOutcome::Written | WriteOutcome::Duplicate { .. }
    ) {
        let (bucket, key, revision) = (&image.bucket, &image.key, &image.revision);
        let none = HashSet::new();
        let (client, table) = (table.client(), table.name());
        remove_stale_entries(client, table, bucket, key, revision, &none).await?;
    }
    Ok(written)
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
    let write = write::submitted(image, claim, submission, now);
    Table::new(client, table).apply(&write).await
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
    let write = write::release(image, claim, reason, now);
    Table::new(client, table).apply(&write).await
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
    let table = Table::new(client, table);
    let write = write::fail_queued(image, by, reason, now);
    let written = table.apply(&write).await?;
    clear_older_entries(table, image, written).await
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
    let write = write::redispatch(image, seen, claim, dispatches, now);
    Table::new(client, table).apply(&write).await
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
/// Label entries of the deleted upload and older ones are removed after the
/// write: for a plain delete once the tombstone names the delete
/// ([`clear_older_entries`]); for a version delete only when the record was
/// that version's, because a newer version's record may stay.
pub async fn tombstone(
    client: &Client,
    table: &str,
    deletion: &Deletion<'_>,
    now: Clock,
    ttl_secs: u64,
) -> Result<WriteOutcome, StoreError> {
    let table = Table::new(client, table);
    if let Some(version) = deletion.version {
        return forget_version(table, deletion, version, now, ttl_secs).await;
    }
    let written = table
        .apply(&write::tombstone(deletion, now, ttl_secs))
        .await?;
    clear_older_entries(table, &deletion.image(), written).await
}

/// Puts a floor under the record read as `seen` after the version delete or
/// delete marker `deletion` found the version it describes current in S3:
/// a late event of an upload older than the delete then loses
/// ([`rule::VERSIONS_GONE_CONDITION`]). `Duplicate` when the floor is
/// already there, `Superseded` when a newer change is recorded; a record
/// that moved since it was read is a transient error, and the caller asks
/// S3 again.
pub async fn record_versions_gone(
    client: &Client,
    table: &str,
    deletion: &Deletion<'_>,
    seen: &Revision,
) -> Result<WriteOutcome, StoreError> {
    let write = write::versions_gone(deletion, seen);
    Table::new(client, table).apply(&write).await
}

/// The version-delete arm of [`tombstone`]: marks the record of `version`
/// DELETED in place, keeping its revision, then removes the label entries
/// of that revision and older ones, when the record is that version's
/// tombstone (written now, or by an earlier delivery of the delete).
async fn forget_version(
    table: Table<'_>,
    deletion: &Deletion<'_>,
    version: &str,
    now: Clock,
    ttl_secs: u64,
) -> Result<WriteOutcome, StoreError> {
    let write = write::version_delete(deletion, version, now, ttl_secs);
    let (written, record) = table.apply_returning(&write).await?;
    if let WriteOutcome::Superseded { .. } = written {
        return Ok(written);
    }
    let deleted = record.and_then(|item| Stored::from_item(&item).revision);
    if let Some(deleted) = deleted {
        let (client, name) = (table.client(), table.name());
        remove_entries_through(client, name, deletion.bucket, deletion.key, &deleted).await?;
    }
    Ok(written)
}
