//! Every conditional write to the results table, as a value.
//!
//! A write is a [`Write`]: the record's key, what it does to the record (a
//! put item, or `SET`/`REMOVE` clauses), one condition of [`crate::rule`],
//! the expression attribute values that condition and update read, the
//! [`Writer`] it speaks for and the upload it names. The labeling is a
//! [`Transaction`]: a record update and the label entries put with it.
//!
//! The functions below build them, one per writer, and are pure: no client,
//! no I/O, so a unit test reads exactly what DynamoDB will be asked and can
//! hold a condition against its in-memory twin. [`crate::rule`]'s table names
//! them beside the conditions they send.
//!
//! | writer | builder | condition |
//! |---|---|---|
//! | dispatcher claim, operator retry | [`claim`] | [`rule::CLAIM_CONDITION`], [`rule::RETRY_CONDITION`] |
//! | skip | [`skip`] | [`rule::NEWER_THAN_STORED`] |
//! | tombstone | [`tombstone`] | [`rule::NEWER_THAN_STORED`] |
//! | version delete | [`version_delete`] | [`rule::VERSION_DELETE_CONDITION`] |
//! | job submitted | [`submitted`] | [`rule::SUBMITTED_CONDITION`] |
//! | claim released | [`release`] | [`rule::RELEASE_CONDITION`] |
//! | QUEUED record failed | [`fail_queued`] | by [`QueuedBy`] |
//! | reconciler re-dispatch | [`redispatch`] | [`rule::redispatch_condition`] |
//! | worker take | [`take`] | [`rule::TAKE_CONDITION`] |
//! | worker LABELED | [`labeled`] | [`rule::OWNED_BY_JOB`] |
//! | worker FAILED | [`failed`] | [`rule::OWNED_BY_JOB`] |
//!
//! [`Table::apply`] (and [`Table::apply_transaction`] for the labeling) is
//! the only place that sends a write and reads the record when its condition
//! fails; [`crate::store`] and [`crate::labeling`] build, apply, and order
//! what goes around the write (label-entry cleanups).

mod apply;

pub(crate) use apply::Table;

use crate::db::{image_key, n, s, Clock, Item};
use crate::entries::label_entry;
use crate::job::ImageRef;
use crate::rule::{self, ClaimKind, Stored, Writer};
use crate::schema::{self, attr, Label, Status, PK, SK};
use crate::Revision;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashSet};

/// What a write does to the record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A PutItem: the record becomes this item.
    Put(Item),
    /// An UpdateItem: these `SET` clauses, then these attributes removed.
    Update {
        /// `SET` clauses, in order (`attr = :value`).
        set: Vec<&'static str>,
        /// Attributes `REMOVE`d, in order.
        remove: Vec<&'static str>,
    },
}

/// Attribute-name placeholders for the reserved words the expressions use:
/// a write binds exactly those its condition or update mentions.
const NAMES: [(&str, &str); 2] = [("#status", attr::STATUS), ("#owner", attr::OWNER)];

/// One conditional write of the image record, before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write<'a> {
    /// Key of the image record (`pk`, `sk`).
    key: Item,
    /// Put or update.
    kind: Kind,
    /// The condition, one of [`crate::rule`]'s.
    condition: &'static str,
    /// Expression attribute values, by placeholder.
    values: BTreeMap<&'static str, AttributeValue>,
    /// Who writes, for [`rule::conflict`] when the condition fails.
    writer: Writer<'a>,
    /// The upload (or delete) the write is about; bound as `:rev`.
    revision: Revision,
    /// Whether DynamoDB returns the record as written (`ALL_NEW`).
    return_new: bool,
}

impl<'a> Write<'a> {
    /// A write of `image`'s record under `condition`, `:rev` bound to its
    /// revision.
    fn new(image: &ImageRef, kind: Kind, condition: &'static str, writer: Writer<'a>) -> Self {
        Self {
            key: image_key(&image.bucket, &image.key),
            kind,
            condition,
            values: BTreeMap::new(),
            writer,
            revision: image.revision.clone(),
            return_new: false,
        }
        .value(":rev", s(image.revision.as_str()))
    }

    /// A PutItem of `item` as `image`'s record.
    fn put(image: &ImageRef, item: Item, condition: &'static str, writer: Writer<'a>) -> Self {
        Self::new(image, Kind::Put(item), condition, writer)
    }

    /// An UpdateItem of `image`'s record, its clauses to be added.
    fn update(image: &ImageRef, condition: &'static str, writer: Writer<'a>) -> Self {
        let kind = Kind::Update {
            set: Vec::new(),
            remove: Vec::new(),
        };
        Self::new(image, kind, condition, writer)
    }

    /// Binds `placeholder` to `value`.
    fn value(mut self, placeholder: &'static str, value: AttributeValue) -> Self {
        self.values.insert(placeholder, value);
        self
    }

    /// Adds a `SET` clause (updates only).
    fn set(mut self, clause: &'static str) -> Self {
        match &mut self.kind {
            Kind::Update { set, .. } => set.push(clause),
            Kind::Put(_) => unreachable!("a put has no SET clause"),
        }
        self
    }

    /// Adds an attribute to `REMOVE` (updates only).
    fn remove(mut self, attribute: &'static str) -> Self {
        match &mut self.kind {
            Kind::Update { remove, .. } => remove.push(attribute),
            Kind::Put(_) => unreachable!("a put removes nothing"),
        }
        self
    }

    /// `f(self, v)` when `value` is `Some(v)`: an optional clause.
    fn with<T>(self, value: Option<T>, f: impl FnOnce(Self, T) -> Self) -> Self {
        match value {
            Some(v) => f(self, v),
            None => self,
        }
    }

    /// The record's partition key, for errors.
    pub(crate) fn pk(&self) -> String {
        self.key
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    }

    /// The update expression, for an update: `SET …` then ` REMOVE …`.
    pub(crate) fn update_expression(&self) -> Option<String> {
        let Kind::Update { set, remove } = &self.kind else {
            return None;
        };
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(" REMOVE ");
            expression.push_str(&remove.join(", "));
        }
        Some(expression)
    }

    /// Expression attribute names: exactly the placeholders of [`NAMES`]
    /// that the condition or the update mentions (DynamoDB refuses unused
    /// ones).
    pub(crate) fn names(&self) -> BTreeMap<&'static str, &'static str> {
        let update = self.update_expression().unwrap_or_default();
        NAMES
            .into_iter()
            .filter(|(placeholder, _)| {
                self.condition.contains(placeholder) || update.contains(placeholder)
            })
            .collect()
    }
}

/// The labeling: the record update (first, the action whose condition can
/// fail) and one label entry put per label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transaction<'a> {
    /// The conditional record update.
    record: Write<'a>,
    /// Label entries put beside it, unconditionally.
    entries: Vec<Item>,
}

impl<'a> Transaction<'a> {
    /// The record update.
    pub(crate) fn record(&self) -> &Write<'a> {
        &self.record
    }

    /// Sort keys of the label entries it puts: stale-entry removal keeps
    /// these, which the transaction overwrites.
    pub(crate) fn entry_keys(&self) -> HashSet<String> {
        self.entries
            .iter()
            .filter_map(|e| e.get(SK)?.as_s().ok().cloned())
            .collect()
    }
}

/// A claim: the dispatch token, the rule it is taken under and the lease
/// after which an unsubmitted claim may be taken again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimRequest<'a> {
    /// The claiming dispatch's token.
    pub(crate) claim: &'a str,
    /// Which rule.
    pub(crate) kind: ClaimKind,
    /// Lease of an unsubmitted claim, in seconds.
    pub(crate) lease_secs: u64,
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

impl Deletion<'_> {
    /// The deleted upload, as the image its tombstone describes.
    pub(crate) fn image(&self) -> ImageRef {
        ImageRef {
            bucket: self.bucket.to_owned(),
            key: self.key.to_owned(),
            revision: self.revision.clone(),
            version_id: self.version.map(str::to_owned),
            etag: None,
            size: None,
        }
    }
}

/// The Batch job attempt that produces a result, recorded on the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Batch job id (the parent id for array children), when run by Batch.
    pub job_id: Option<String>,
    /// Who takes images: the Batch job id as Batch gives it to the
    /// container (`parent:index` for array children), the same across Batch
    /// retries; a per-process token outside Batch.
    pub owner: String,
    /// Batch attempt number, starting at 1.
    pub attempt: u32,
}

/// Where a LABELED record's labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance<'a> {
    /// A DetectLabels call for this image, on the object as it is or on a
    /// conversion of it.
    Detected {
        /// What was done to the image first, if anything.
        conversion: Option<&'a str>,
    },
    /// A content entry: the labels of `from` (`s3://BUCKET/KEY`), an image
    /// with the same bytes. Stored as [`attr::REUSED_FROM`].
    Reused {
        /// The image that paid for the labels.
        from: &'a str,
        /// The conversion those bytes went through, if any.
        conversion: Option<&'a str>,
    },
}

/// A LABELED result: the labels as stored (already through
/// [`crate::labeling::prepare_labels`], so that the transaction fits one
/// call), their model and where they come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Labeling<'a> {
    /// The labels, as stored.
    pub(crate) labels: Vec<Label>,
    /// Rekognition's label model version.
    pub(crate) model_version: Option<&'a str>,
    /// DetectLabels, or another image's labels.
    pub(crate) provenance: Provenance<'a>,
}

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

/// The [`schema::STATUS_INDEX`] partition of `image`'s FAILED record.
fn failed_status_key(image: &ImageRef) -> String {
    let pk = schema::image_pk(&image.bucket, &image.key);
    schema::status_key(&pk, Status::Failed).expect("FAILED is indexed")
}

/// The QUEUED claim of `image` for dispatch, a PutItem: under
/// [`rule::CLAIM_CONDITION`] for a new upload (in memory:
/// [`rule::claim_would_win`]), under [`rule::RETRY_CONDITION`] for an
/// operator's retry of a FAILED one.
pub(crate) fn claim<'a>(image: &ImageRef, request: &ClaimRequest<'a>, now: Clock) -> Write<'a> {
    let item = queued_item(image, request.claim, 1, now);
    match request.kind {
        ClaimKind::New => {
            let writer = Writer::Replace {
                claim: Some(request.claim),
            };
            let cutoff = now.unix_secs().saturating_sub(request.lease_secs);
            Write::put(image, item, rule::CLAIM_CONDITION, writer)
                .value(":queued", s(Status::Queued.as_str()))
                .value(":claim", s(request.claim))
                .value(":lease_cutoff", n(cutoff))
        }
        ClaimKind::RetryFailed => {
            let writer = Writer::Update {
                claim: Some(request.claim),
            };
            Write::put(image, item, rule::RETRY_CONDITION, writer)
                .value(":failed", s(Status::Failed.as_str()))
        }
    }
}

/// A SKIPPED record of `image` with `reason`, a PutItem under
/// [`rule::NEWER_THAN_STORED`].
pub(crate) fn skip(image: &ImageRef, reason: &str, now: Clock) -> Write<'static> {
    let mut item = identity_attrs(image, Status::Skipped, now);
    item.insert(attr::REASON.into(), s(schema::capped_reason(reason)));
    let writer = Writer::Replace { claim: None };
    Write::put(image, item, rule::NEWER_THAN_STORED, writer)
}

/// The tombstone of a plain delete (`deletion.version` is `None`), a
/// PutItem under [`rule::NEWER_THAN_STORED`]: a DELETED record carrying the
/// delete's revision, which DynamoDB's TTL removes `ttl_secs` after `now`.
pub(crate) fn tombstone(deletion: &Deletion<'_>, now: Clock, ttl_secs: u64) -> Write<'static> {
    let image = deletion.image();
    let mut item = identity_attrs(&image, Status::Deleted, now);
    let reason = schema::capped_reason(deletion.reason);
    item.insert(attr::REASON.into(), s(reason));
    item.insert(attr::EXPIRES_AT.into(), n(now.unix_secs() + ttl_secs));
    let writer = Writer::Replace { claim: None };
    Write::put(&image, item, rule::NEWER_THAN_STORED, writer)
}

/// The permanent delete of `version`, an UpdateItem under
/// [`rule::VERSION_DELETE_CONDITION`]: marks that version's record DELETED
/// in place, keeping its revision, and returns the record as written (its
/// revision bounds the label entries to remove).
pub(crate) fn version_delete<'a>(
    deletion: &Deletion<'_>,
    version: &'a str,
    now: Clock,
    ttl_secs: u64,
) -> Write<'a> {
    let writer = Writer::VersionDelete { version };
    let reason = schema::capped_reason(deletion.reason);
    let mut write = Write::update(&deletion.image(), rule::VERSION_DELETE_CONDITION, writer)
        .set("#status = :deleted")
        .set("reason = :reason")
        .set("updated_at = :now")
        .set("expires_at = :expires")
        .remove(attr::LABELS)
        .remove(schema::STATUS_INDEX_PK)
        .remove(schema::STATUS_INDEX_SK)
        .remove("#owner")
        .remove(attr::CLAIM)
        .remove(attr::CLAIMED_AT)
        .value(":version", s(version))
        .value(":deleted", s(Status::Deleted.as_str()))
        .value(":reason", s(reason))
        .value(":now", s(now.rfc3339()))
        .value(":expires", n(now.unix_secs() + ttl_secs));
    write.return_new = true;
    write
}

/// Records the job that holds `image`'s claim, an UpdateItem under
/// [`rule::SUBMITTED_CONDITION`].
pub(crate) fn submitted(
    image: &ImageRef,
    claim: &str,
    submission: Submission<'_>,
    now: Clock,
) -> Write<'static> {
    let writer = Writer::Update { claim: None };
    Write::update(image, rule::SUBMITTED_CONDITION, writer)
        .set("job_id = :job_id")
        .set("job_name = :job_name")
        .set("updated_at = :now")
        .value(":queued", s(Status::Queued.as_str()))
        .value(":claim", s(claim))
        .value(":job_id", s(submission.job_id))
        .value(":job_name", s(submission.job_name))
        .value(":now", s(now.rfc3339()))
        .with(submission.array_index, |w, index| {
            w.set("array_index = :index").value(":index", n(index))
        })
}

/// Gives `image`'s claim back after SubmitJob failed, an UpdateItem under
/// [`rule::RELEASE_CONDITION`]: the claim's time goes to zero (expired) and
/// the reason says a retry is pending.
pub(crate) fn release(image: &ImageRef, claim: &str, reason: &str, now: Clock) -> Write<'static> {
    let writer = Writer::Update { claim: None };
    Write::update(image, rule::RELEASE_CONDITION, writer)
        .set("claimed_at = :zero")
        .set("reason = :reason")
        .set("updated_at = :now")
        .value(":claim", s(claim))
        .value(":zero", n(0))
        .value(":reason", s(schema::capped_reason(reason)))
        .value(":now", s(now.rfc3339()))
}

/// Marks `image` FAILED with `reason` while it is QUEUED as `by` says, an
/// UpdateItem under the condition `by` names.
pub(crate) fn fail_queued(
    image: &ImageRef,
    by: QueuedBy<'_>,
    reason: &str,
    now: Clock,
) -> Write<'static> {
    let condition = match by {
        QueuedBy::Claim(_) => rule::FAIL_CLAIMED_CONDITION,
        QueuedBy::Job { .. } => rule::FAIL_IN_JOB_CONDITION,
        QueuedBy::Seen { owner, .. } => rule::redispatch_condition(owner.is_some()),
    };
    let writer = Writer::Update { claim: None };
    let write = Write::update(image, condition, writer)
        .set("#status = :failed")
        .set("reason = :reason")
        .set("updated_at = :now")
        .set("status_key = :status_key")
        .set("status_at = :now")
        .value(":queued", s(Status::Queued.as_str()))
        .value(":failed", s(Status::Failed.as_str()))
        .value(":reason", s(schema::capped_reason(reason)))
        .value(":now", s(now.rfc3339()))
        .value(":status_key", s(failed_status_key(image)));
    match by {
        QueuedBy::Claim(claim) => write.value(":claim", s(claim)),
        QueuedBy::Job { job_id, dead } => write.value(":job_id", s(job_id)).value(":dead", s(dead)),
        QueuedBy::Seen { claim, owner } => write
            .value(":seen_claim", s(claim))
            .with(owner, |w, owner| w.value(":seen_owner", s(owner))),
    }
}

/// Replaces the QUEUED record the reconciler read (`seen`) by a fresh claim
/// under `claim`, dispatched `dispatches` times, a PutItem under
/// [`rule::redispatch_condition`]. The upload's first dispatch stays its
/// `queued_at`: the reconciler gives up on elapsed time since then, never on
/// a count.
pub(crate) fn redispatch<'a>(
    image: &ImageRef,
    seen: &Stored,
    claim: &'a str,
    dispatches: u32,
    now: Clock,
) -> Write<'a> {
    let mut item = queued_item(image, claim, dispatches, now);
    if let Some(first) = seen.queued_at {
        let first = Clock { unix_millis: first };
        item.insert(attr::QUEUED_AT.into(), s(first.rfc3339()));
    }
    item.insert(
        attr::REASON.into(),
        s("re-dispatched by the reconciler; waiting for its job"),
    );
    let condition = rule::redispatch_condition(seen.owner.is_some());
    let writer = Writer::Update { claim: Some(claim) };
    Write::put(image, item, condition, writer)
        .value(":queued", s(Status::Queued.as_str()))
        .value(":seen_claim", s(seen.claim.clone().unwrap_or_default()))
        .with(seen.owner.as_deref(), |w, owner| {
            w.value(":seen_owner", s(owner))
        })
}

/// The worker's take of `image` for `attempt`'s job, an UpdateItem under
/// [`rule::TAKE_CONDITION`] (in memory: [`rule::take_would_win`]): sets the
/// owner, the attempt and the job id.
pub(crate) fn take<'a>(image: &ImageRef, attempt: &'a Attempt, now: Clock) -> Write<'a> {
    let writer = Writer::Take {
        owner: &attempt.owner,
    };
    Write::update(image, rule::TAKE_CONDITION, writer)
        .set("#owner = :owner")
        .set("attempts = :attempts")
        .set("updated_at = :now")
        .value(":queued", s(Status::Queued.as_str()))
        .value(":owner", s(&attempt.owner))
        .value(":attempts", n(attempt.attempt))
        .value(":now", s(now.rfc3339()))
        .with(attempt.job_id.as_deref(), |w, job_id| {
            w.set("job_id = :job_id").value(":job_id", s(job_id))
        })
}

/// The LABELED result of `image`, a transaction: the record update under
/// [`rule::OWNED_BY_JOB`] first, then one label entry per label. Detected
/// labels clear `reused_from`; reused ones name their source; a missing
/// conversion clears the note of an earlier one.
pub(crate) fn labeled<'a>(
    image: &ImageRef,
    labeling: &Labeling<'_>,
    attempt: &'a Attempt,
    now: Clock,
) -> Transaction<'a> {
    let writer = Writer::Result {
        owner: &attempt.owner,
        wrote: Status::Labeled,
    };
    let labels = labeling.labels.iter().map(schema::label_to_attr).collect();
    let write = Write::update(image, rule::OWNED_BY_JOB, writer)
        .set("#status = :labeled")
        .set("labels = :labels")
        .set("attempts = :attempts")
        .set("updated_at = :now")
        .remove("reason")
        .remove(schema::STATUS_INDEX_PK)
        .remove(schema::STATUS_INDEX_SK)
        .value(":queued", s(Status::Queued.as_str()))
        .value(":owner", s(&attempt.owner))
        .value(":labeled", s(Status::Labeled.as_str()))
        .value(":labels", AttributeValue::L(labels))
        .value(":attempts", n(attempt.attempt))
        .value(":now", s(now.rfc3339()))
        .with(labeling.model_version, |w, version| {
            w.set("label_model_version = :model")
                .value(":model", s(version))
        })
        .with(attempt.job_id.as_deref(), |w, job_id| {
            w.set("job_id = :job_id").value(":job_id", s(job_id))
        });
    let (write, conversion) = match labeling.provenance {
        Provenance::Detected { conversion } => (write.remove(attr::REUSED_FROM), conversion),
        Provenance::Reused { from, conversion } => (
            write.set("reused_from = :from").value(":from", s(from)),
            conversion,
        ),
    };
    let record = match conversion {
        Some(note) => write
            .set("conversion = :conversion")
            .value(":conversion", s(note)),
        None => write.remove(attr::CONVERSION),
    };
    let entries = labeling
        .labels
        .iter()
        .map(|label| label_entry(image, label))
        .collect();
    Transaction { record, entries }
}

/// The FAILED result of `image` with `reason`, an UpdateItem under
/// [`rule::OWNED_BY_JOB`].
pub(crate) fn failed<'a>(
    image: &ImageRef,
    reason: &str,
    attempt: &'a Attempt,
    now: Clock,
) -> Write<'a> {
    let writer = Writer::Result {
        owner: &attempt.owner,
        wrote: Status::Failed,
    };
    Write::update(image, rule::OWNED_BY_JOB, writer)
        .set("#status = :failed")
        .set("reason = :reason")
        .set("attempts = :attempts")
        .set("updated_at = :now")
        .set("status_key = :status_key")
        .set("status_at = :now")
        .value(":queued", s(Status::Queued.as_str()))
        .value(":owner", s(&attempt.owner))
        .value(":failed", s(Status::Failed.as_str()))
        .value(":reason", s(schema::capped_reason(reason)))
        .value(":attempts", n(attempt.attempt))
        .value(":now", s(now.rfc3339()))
        .value(":status_key", s(failed_status_key(image)))
        .with(attempt.job_id.as_deref(), |w, job_id| {
            w.set("job_id = :job_id").value(":job_id", s(job_id))
        })
}
