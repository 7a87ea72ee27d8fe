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
//! hold a condition against its in-memory twin. The table at the top of
//! [`crate::rule`] names each builder beside the condition it sends. A
//! builder binds every expression attribute value through one method
//! ([`Write::value`]); the attribute names a write binds follow from its
//! expressions ([`Write::names`]).
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
enum Kind {
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

    /// A put of the same upload keeps the floor it read: the item carries
    /// it, and the condition requires it as read (`:floor`).
    fn carry_floor(mut self, floor: Option<&Revision>) -> Self {
        let Some(floor) = floor else { return self };
        match &mut self.kind {
            Kind::Put(item) => item.insert(attr::GONE_BEFORE.into(), s(floor.as_str())),
            Kind::Update { .. } => unreachable!("an update keeps the floor it finds"),
        };
        self.value(":floor", s(floor.as_str()))
    }

    /// `f(self, v)` when `value` is `Some(v)`: an optional clause.
    fn with<T>(self, value: Option<T>, f: impl FnOnce(Self, T) -> Self) -> Self {
        match value {
            Some(v) => f(self, v),
            None => self,
        }
    }

    /// The record's partition key, for errors.
    fn pk(&self) -> String {
        self.key
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    }

    /// The update expression, for an update: `SET …` then ` REMOVE …`.
    fn update_expression(&self) -> Option<String> {
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
    fn names(&self) -> BTreeMap<&'static str, &'static str> {
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
    fn record(&self) -> &Write<'a> {
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
    /// The floor of the FAILED record a retry read, carried into the claim
    /// ([`rule::retry_condition`]); `None` for new uploads.
    pub(crate) floor: Option<&'a Revision>,
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
        /// Why these labels are not what the backend normally gives, if
        /// so. Stored as [`attr::LABEL_NOTE`].
        note: Option<&'a str>,
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
/// [`rule::claim_would_win`]), under [`rule::retry_condition`] for an
/// operator's retry of a FAILED one, carrying the floor the retry read.
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
            let condition = rule::retry_condition(request.floor.is_some());
            Write::put(image, item, condition, writer)
                .value(":failed", s(Status::Failed.as_str()))
                .carry_floor(request.floor)
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

/// The floor a version delete or delete marker `deletion` puts under the
/// record it read (of revision `seen`), when S3 shows the version that
/// record describes current after it: an UpdateItem under
/// [`rule::VERSIONS_GONE_CONDITION`] setting [`attr::GONE_BEFORE`] to the
/// delete's revision. Nothing else changes: the record still names its
/// upload, for the worker's take and result.
pub(crate) fn versions_gone<'a>(deletion: &Deletion<'_>, seen: &'a Revision) -> Write<'a> {
    let writer = Writer::VersionsGone { seen };
    Write::update(&deletion.image(), rule::VERSIONS_GONE_CONDITION, writer)
        .set("gone_before = :rev")
        .value(":seen", s(seen.as_str()))
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
/// [`rule::redispatch_put_condition`], carrying the floor read. The upload's first dispatch stays its
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
    let floor = seen.gone_before.as_ref();
    let condition = rule::redispatch_put_condition(seen.owner.is_some(), floor.is_some());
    let writer = Writer::Update { claim: Some(claim) };
    Write::put(image, item, condition, writer)
        .value(":queued", s(Status::Queued.as_str()))
        .value(":seen_claim", s(seen.claim.clone().unwrap_or_default()))
        .with(seen.owner.as_deref(), |w, owner| {
            w.value(":seen_owner", s(owner))
        })
        .carry_floor(floor)
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
    let (write, conversion, note) = match labeling.provenance {
        Provenance::Detected { conversion, note } => {
            (write.remove(attr::REUSED_FROM), conversion, note)
        }
        Provenance::Reused { from, conversion } => (
            write.set("reused_from = :from").value(":from", s(from)),
            conversion,
            None,
        ),
    };
    let write = match conversion {
        Some(conversion) => write
            .set("conversion = :conversion")
            .value(":conversion", s(conversion)),
        None => write.remove(attr::CONVERSION),
    };
    let record = match note {
        Some(note) => write.set("label_note = :note").value(":note", s(note)),
        None => write.remove(attr::LABEL_NOTE),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Order;

    const NOW: Clock = Clock {
        unix_millis: 1_795_394_520_123,
    };
    const LEASE: u64 = 300;

    fn rev(seq: &str) -> Revision {
        Revision::from_sequencer(seq).unwrap()
    }

    fn image(seq: &str) -> ImageRef {
        ImageRef {
            bucket: "photos".into(),
            key: "cats/Tabby Cat.jpg".into(),
            revision: rev(seq),
            version_id: Some("v-1".into()),
            etag: Some("abc".into()),
            size: Some(2048),
        }
    }

    fn attempt() -> Attempt {
        Attempt {
            job_id: Some("a1b2c3".into()),
            owner: "a1b2c3:4".into(),
            attempt: 2,
        }
    }

    fn label(name: &str, confidence: f32) -> Label {
        Label {
            name: name.into(),
            confidence,
            parents: vec![],
            categories: vec![],
            instances: vec![],
        }
    }

    fn text<'w>(write: &'w Write<'_>, placeholder: &str) -> &'w str {
        write.values[placeholder].as_s().unwrap()
    }

    fn number<'w>(write: &'w Write<'_>, placeholder: &str) -> &'w str {
        write.values[placeholder].as_n().unwrap()
    }

    fn bound(write: &Write<'_>) -> Vec<&'static str> {
        write.values.keys().copied().collect()
    }

    fn named(write: &Write<'_>) -> Vec<&'static str> {
        write.names().into_keys().collect()
    }

    fn put_item<'w>(write: &'w Write<'_>) -> &'w Item {
        match &write.kind {
            Kind::Put(item) => item,
            Kind::Update { .. } => panic!("not a put"),
        }
    }

    fn stored(seq: &str, status: Status) -> Stored {
        Stored {
            revision: Some(rev(seq)),
            status: Some(status),
            ..Stored::default()
        }
    }

    fn claimed(seq: &str, claim: &str, at: u64) -> Stored {
        Stored {
            claim: Some(claim.into()),
            claimed_at: Some(at),
            ..stored(seq, Status::Queued)
        }
    }

    fn owned(seq: &str, owner: &str, status: Status) -> Stored {
        Stored {
            owner: Some(owner.into()),
            job_id: Some("a1b2c3".into()),
            ..stored(seq, status)
        }
    }

    /// Records of upload "0A"'s key as a write of "0A" may find them.
    fn examples() -> Vec<Option<Stored>> {
        let now = NOW.unix_secs();
        let with = |mut s: Stored, f: fn(&mut Stored)| {
            f(&mut s);
            Some(s)
        };
        vec![
            None,
            Some(stored("09", Status::Labeled)),
            Some(stored("09", Status::Deleted)),
            Some(stored("0B", Status::Deleted)),
            Some(stored("0B", Status::Queued)),
            Some(stored("0A", Status::Labeled)),
            Some(stored("0A", Status::Failed)),
            Some(stored("0A", Status::Skipped)),
            Some(stored("0B", Status::Failed)),
            Some(claimed("0A", "other", now - 10)),
            Some(claimed("0A", "me", now - 10)),
            Some(claimed("0A", "other", now - LEASE - 1)),
            Some(claimed("0A", "other", now - LEASE)),
            with(claimed("0A", "other", 1), |s| s.job_id = Some("j".into())),
            with(claimed("0A", "other", 1), |s| s.owner = Some("j:1".into())),
            Some(owned("0A", "a1b2c3:4", Status::Queued)),
            Some(owned("0A", "other:1", Status::Queued)),
            Some(owned("0A", "a1b2c3:4", Status::Labeled)),
            Some(owned("09", "a1b2c3:4", Status::Queued)),
            with(stored("09", Status::Labeled), |s| {
                s.gone_before = Some(rev("0A"))
            }),
            with(stored("09", Status::Labeled), |s| {
                s.gone_before = Some(rev("0B"))
            }),
            with(stored("08", Status::Queued), |s| {
                s.gone_before = Some(rev("09"))
            }),
            with(claimed("0A", "me", now - 10), |s| {
                s.gone_before = Some(rev("0B"))
            }),
            with(claimed("0A", "other", 1), |s| {
                s.gone_before = Some(rev("0B"))
            }),
            with(stored("0A", Status::Failed), |s| {
                s.gone_before = Some(rev("0B"))
            }),
        ]
    }

    /// A stored record as DynamoDB holds it.
    fn item_of(stored: &Stored) -> Item {
        let mut item = image_key("photos", "cats/Tabby Cat.jpg");
        let mut text = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                item.insert(name.into(), s(v));
            }
        };
        text(
            attr::REVISION,
            &stored.revision.as_ref().map(|r| r.to_string()),
        );
        text(attr::STATUS, &stored.status.map(|s| s.as_str().to_owned()));
        text(attr::CLAIM, &stored.claim);
        text(attr::JOB_ID, &stored.job_id);
        text(attr::OWNER, &stored.owner);
        text(attr::VERSION_ID, &stored.version_id);
        text(
            attr::GONE_BEFORE,
            &stored.gone_before.as_ref().map(|r| r.to_string()),
        );
        if let Some(at) = stored.claimed_at {
            item.insert(attr::CLAIMED_AT.into(), n(at));
        }
        item
    }

    /// A small evaluator of the condition grammar the rules use
    /// (`OR`, `AND`, parentheses, `attribute_not_exists`, `=`, `<`, `<=`),
    /// as DynamoDB evaluates it: a comparison with a missing attribute is
    /// false; strings compare by bytes, numbers by value. An unbound
    /// placeholder panics.
    struct Condition<'w> {
        tokens: Vec<String>,
        at: usize,
        write: &'w Write<'w>,
        item: Option<Item>,
    }

    impl Condition<'_> {
        fn next(&mut self) -> String {
            self.at += 1;
            self.tokens[self.at - 1].clone()
        }

        fn peek(&self) -> Option<&str> {
            self.tokens.get(self.at).map(String::as_str)
        }

        fn or(&mut self) -> bool {
            let mut holds = self.and();
            while self.peek() == Some("OR") {
                self.next();
                holds |= self.and();
            }
            holds
        }

        fn and(&mut self) -> bool {
            let mut holds = self.primary();
            while self.peek() == Some("AND") {
                self.next();
                holds &= self.primary();
            }
            holds
        }

        fn primary(&mut self) -> bool {
            let first = self.next();
            if first == "(" {
                let holds = self.or();
                assert_eq!(self.next(), ")");
                return holds;
            }
            if first == "attribute_not_exists" {
                assert_eq!(self.next(), "(");
                let path = self.next();
                assert_eq!(self.next(), ")");
                return self.operand(&path).is_none();
            }
            let op = self.next();
            let right = self.next();
            let (left, right) = (self.operand(&first), self.operand(&right));
            let ordering = match (left, right) {
                (Some(AttributeValue::S(a)), Some(AttributeValue::S(b))) => a.cmp(&b),
                (Some(AttributeValue::N(a)), Some(AttributeValue::N(b))) => {
                    let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                    a.total_cmp(&b)
                }
                _ => return false,
            };
            match op.as_str() {
                "=" => ordering.is_eq(),
                "<" => ordering.is_lt(),
                "<=" => ordering.is_le(),
                other => panic!("operator {other} is not in the grammar"),
            }
        }

        fn operand(&self, token: &str) -> Option<AttributeValue> {
            if token.starts_with(':') {
                let value = self.write.values.get(token);
                return Some(value.unwrap_or_else(|| panic!("{token} unbound")).clone());
            }
            let names = self.write.names();
            let name = match token.strip_prefix('#') {
                Some(_) => *names
                    .get(token)
                    .unwrap_or_else(|| panic!("{token} unnamed")),
                None => token,
            };
            self.item.as_ref()?.get(name).cloned()
        }
    }

    /// Whether `write`'s condition holds on `stored`.
    fn holds(write: &Write<'_>, stored: Option<&Stored>) -> bool {
        let spaced = write.condition.replace('(', " ( ").replace(')', " ) ");
        let mut condition = Condition {
            tokens: spaced.split_whitespace().map(str::to_owned).collect(),
            at: 0,
            write,
            item: stored.map(item_of),
        };
        let holds = condition.or();
        assert_eq!(condition.at, condition.tokens.len(), "{}", write.condition);
        holds
    }

    fn placeholders(text: &str, sigil: char) -> Vec<String> {
        let mut found: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == sigil))
            .filter(|t| t.starts_with(sigil))
            .map(str::to_owned)
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// One write of every builder, with every optional part present or
    /// absent.
    fn every_write<'a>(
        (attempt, bare): (&'a Attempt, &'a Attempt),
        seen: &Stored,
        floor: &'a Revision,
    ) -> Vec<Write<'a>> {
        let image = image("0A");
        let floored = Stored {
            gone_before: Some(floor.clone()),
            ..seen.clone()
        };
        let delete = rev("0B");
        let deletion = Deletion {
            bucket: "photos",
            key: "cats/Tabby Cat.jpg",
            revision: &delete,
            version: Some("v-1"),
            reason: "ObjectRemoved:Delete",
        };
        let request = |kind, floor| ClaimRequest {
            claim: "me",
            kind,
            lease_secs: LEASE,
            floor,
        };
        let submission = |array_index| Submission {
            job_id: "j",
            job_name: "n",
            array_index,
        };
        let labeling = |provenance, model_version| Labeling {
            labels: vec![label("Cat", 99.0)],
            model_version,
            provenance,
        };
        let detected = Provenance::Detected {
            conversion: None,
            note: None,
        };
        let reused = Provenance::Reused {
            from: "s3://photos/a.jpg",
            conversion: Some("converted from WebP"),
        };
        vec![
            claim(&image, &request(ClaimKind::New, None), NOW),
            claim(&image, &request(ClaimKind::RetryFailed, None), NOW),
            claim(&image, &request(ClaimKind::RetryFailed, Some(floor)), NOW),
            skip(&image, "too large", NOW),
            tombstone(&deletion, NOW, 60),
            version_delete(&deletion, "v-1", NOW, 60),
            versions_gone(&deletion, floor),
            submitted(&image, "me", submission(None), NOW),
            submitted(&image, "me", submission(Some(3)), NOW),
            release(&image, "me", "SubmitJob failed", NOW),
            fail_queued(&image, QueuedBy::Claim("me"), "r", NOW),
            fail_queued(
                &image,
                QueuedBy::Job {
                    job_id: "j",
                    dead: "j:1",
                },
                "r",
                NOW,
            ),
            fail_queued(
                &image,
                QueuedBy::Seen {
                    claim: "c",
                    owner: None,
                },
                "r",
                NOW,
            ),
            fail_queued(
                &image,
                QueuedBy::Seen {
                    claim: "c",
                    owner: Some("o"),
                },
                "r",
                NOW,
            ),
            redispatch(&image, &Stored::default(), "me", 2, NOW),
            redispatch(&image, seen, "me", 2, NOW),
            redispatch(&image, &floored, "me", 2, NOW),
            take(&image, attempt, NOW),
            take(&image, bare, NOW),
            labeled(&image, &labeling(detected, Some("3.0")), attempt, NOW).record,
            labeled(&image, &labeling(reused, None), bare, NOW).record,
            failed(&image, "DetectLabels refused", attempt, NOW),
            failed(&image, "DetectLabels refused", bare, NOW),
        ]
    }

    #[test]
    fn every_placeholder_a_write_mentions_is_bound_and_nothing_else_is() {
        let (attempt, bare) = (attempt(), Attempt::default());
        let seen = Stored {
            owner: Some("o".into()),
            ..claimed("0A", "c", 1)
        };
        let floor = rev("0C");
        for write in every_write((&attempt, &bare), &seen, &floor) {
            let text = format!(
                "{} {}",
                write.condition,
                write.update_expression().unwrap_or_default()
            );
            let values: Vec<String> = write.values.keys().map(|v| v.to_string()).collect();
            assert_eq!(placeholders(&text, ':'), values, "{text}");
            let names: Vec<String> = named(&write).iter().map(|v| v.to_string()).collect();
            assert_eq!(placeholders(&text, '#'), names, "{text}");
            assert_eq!(text_rev(&write), write.revision.as_str());
            assert_eq!(write.key, image_key("photos", "cats/Tabby Cat.jpg"));
        }
    }

    fn text_rev<'w>(write: &'w Write<'_>) -> &'w str {
        text(write, ":rev")
    }

    #[test]
    fn a_claim_of_a_new_upload_is_conditioned_on_the_stored_revision_being_older() {
        let request = ClaimRequest {
            claim: "me",
            kind: ClaimKind::New,
            lease_secs: LEASE,
            floor: None,
        };
        let write = claim(&image("0A"), &request, NOW);

        assert_eq!(write.condition, rule::CLAIM_CONDITION);
        assert_eq!(write.writer, Writer::Replace { claim: Some("me") });
        assert_eq!(
            bound(&write),
            [":claim", ":lease_cutoff", ":queued", ":rev"]
        );
        assert_eq!(named(&write), ["#owner", "#status"]);
        assert_eq!(text(&write, ":rev"), rev("0A").as_str());
        assert_eq!(text(&write, ":queued"), "QUEUED");
        assert_eq!(text(&write, ":claim"), "me");
        let cutoff = (NOW.unix_secs() - LEASE).to_string();
        assert_eq!(number(&write, ":lease_cutoff"), cutoff);
        let item = put_item(&write);
        assert_eq!(item[attr::STATUS].as_s().unwrap(), "QUEUED");
        assert_eq!(item[attr::CLAIM].as_s().unwrap(), "me");
        let secs = NOW.unix_secs().to_string();
        assert_eq!(item[attr::CLAIMED_AT].as_n().unwrap(), &secs);
        assert_eq!(item[attr::QUEUED_AT].as_s().unwrap(), &NOW.rfc3339());
        assert_eq!(item[attr::ATTEMPTS].as_n().unwrap(), "0");
        assert_eq!(item[attr::DISPATCHES].as_n().unwrap(), "1");
        assert_eq!(item[attr::VERSION_ID].as_s().unwrap(), "v-1");
        assert_eq!(item[attr::ETAG].as_s().unwrap(), "abc");
        assert_eq!(item[attr::SIZE].as_n().unwrap(), "2048");
        assert!(item[schema::STATUS_INDEX_PK]
            .as_s()
            .unwrap()
            .starts_with("QUEUED#"));
        assert!(!write.return_new);
    }

    #[test]
    fn a_retry_claim_is_conditioned_on_the_same_upload_being_failed_under_the_floor_it_read() {
        let floor = rev("0C");
        let request = |floor| ClaimRequest {
            claim: "me",
            kind: ClaimKind::RetryFailed,
            lease_secs: LEASE,
            floor,
        };
        let write = claim(&image("0A"), &request(None), NOW);

        assert_eq!(write.condition, rule::retry_condition(false));
        assert_eq!(write.writer, Writer::Update { claim: Some("me") });
        assert_eq!(bound(&write), [":failed", ":rev"]);
        assert_eq!(named(&write), ["#status"]);
        assert_eq!(text(&write, ":failed"), "FAILED");
        assert_eq!(put_item(&write)[attr::STATUS].as_s().unwrap(), "QUEUED");
        assert!(!put_item(&write).contains_key(attr::GONE_BEFORE));

        let floored = claim(&image("0A"), &request(Some(&floor)), NOW);
        assert_eq!(floored.condition, rule::retry_condition(true));
        assert_eq!(text(&floored, ":floor"), floor.as_str());
        let item = put_item(&floored);
        assert_eq!(item[attr::GONE_BEFORE].as_s().unwrap(), floor.as_str());
        let failed_under = |floor: Option<&str>| Stored {
            gone_before: floor.map(rev),
            ..stored("0A", Status::Failed)
        };
        assert!(holds(&floored, Some(&failed_under(Some("0C")))));
        assert!(!holds(&floored, Some(&failed_under(Some("0D")))));
        assert!(!holds(&floored, Some(&failed_under(None))));
        assert!(!holds(&write, Some(&failed_under(Some("0C")))));
    }

    #[test]
    fn both_claims_agree_with_their_in_memory_twin_on_every_example() {
        for kind in [ClaimKind::New, ClaimKind::RetryFailed] {
            for example in examples() {
                // A retry carries the floor it read; a new upload's claim none.
                let read = example.as_ref().and_then(|s| s.gone_before.as_ref());
                let request = ClaimRequest {
                    claim: "me",
                    kind,
                    lease_secs: LEASE,
                    floor: read.filter(|_| kind == ClaimKind::RetryFailed),
                };
                let write = claim(&image("0A"), &request, NOW);
                let twin = rule::claim_would_win(
                    example.as_ref(),
                    &rev("0A"),
                    "me",
                    kind,
                    NOW.unix_secs(),
                    LEASE,
                );
                assert_eq!(
                    holds(&write, example.as_ref()),
                    twin,
                    "{kind:?} {example:?}"
                );
            }
        }
    }

    #[test]
    fn a_skip_and_a_tombstone_replace_only_a_missing_or_older_record() {
        let delete = rev("0A");
        let deletion = Deletion {
            bucket: "photos",
            key: "cats/Tabby Cat.jpg",
            revision: &delete,
            version: None,
            reason: "ObjectRemoved:Delete",
        };
        let skipped = skip(&image("0A"), "not an image", NOW);
        let tombstone = tombstone(&deletion, NOW, 60);

        for write in [&skipped, &tombstone] {
            assert_eq!(write.condition, rule::NEWER_THAN_STORED);
            assert_eq!(write.writer, Writer::Replace { claim: None });
            assert_eq!(bound(write), [":rev"]);
            assert!(named(write).is_empty());
            for example in examples() {
                let newer = rule::order(example.as_ref(), &rev("0A")) == Order::IncomingNewer;
                assert_eq!(holds(write, example.as_ref()), newer, "{example:?}");
            }
        }
        let item = put_item(&skipped);
        assert_eq!(item[attr::STATUS].as_s().unwrap(), "SKIPPED");
        assert_eq!(item[attr::REASON].as_s().unwrap(), "not an image");
        assert!(item[schema::STATUS_INDEX_PK]
            .as_s()
            .unwrap()
            .starts_with("SKIPPED#"));
        let item = put_item(&tombstone);
        assert_eq!(item[attr::STATUS].as_s().unwrap(), "DELETED");
        assert_eq!(item[attr::REVISION].as_s().unwrap(), delete.as_str());
        assert_eq!(item[attr::REASON].as_s().unwrap(), "ObjectRemoved:Delete");
        let expires = (NOW.unix_secs() + 60).to_string();
        assert_eq!(item[attr::EXPIRES_AT].as_n().unwrap(), &expires);
        assert!(!item.contains_key(schema::STATUS_INDEX_PK));
        assert!(!item.contains_key(attr::VERSION_ID));
    }

    #[test]
    fn a_version_delete_marks_only_that_version_s_older_record_and_returns_it() {
        let delete = rev("0B");
        let deletion = Deletion {
            bucket: "photos",
            key: "cats/Tabby Cat.jpg",
            revision: &delete,
            version: Some("v-1"),
            reason: "ObjectRemoved:Delete",
        };
        let write = version_delete(&deletion, "v-1", NOW, 60);

        assert_eq!(write.condition, rule::VERSION_DELETE_CONDITION);
        assert_eq!(write.writer, Writer::VersionDelete { version: "v-1" });
        assert!(write.return_new);
        assert_eq!(
            write.update_expression().unwrap(),
            "SET #status = :deleted, reason = :reason, updated_at = :now, expires_at = :expires \
             REMOVE labels, status_key, status_at, #owner, claim, claimed_at"
        );
        let values = [
            ":deleted", ":expires", ":now", ":reason", ":rev", ":version",
        ];
        assert_eq!(bound(&write), values);
        assert_eq!(named(&write), ["#owner", "#status"]);
        assert_eq!(text(&write, ":rev"), delete.as_str());
        assert_eq!(text(&write, ":version"), "v-1");
        assert_eq!(text(&write, ":deleted"), "DELETED");
        let of_version = |seq: &str, version: &str| Stored {
            version_id: Some(version.into()),
            ..stored(seq, Status::Labeled)
        };
        assert!(holds(&write, Some(&of_version("0A", "v-1"))));
        assert!(!holds(&write, Some(&of_version("0A", "v-2"))));
        assert!(!holds(&write, Some(&of_version("0C", "v-1"))));
        assert!(!holds(&write, None));
    }

    #[test]
    fn a_submission_records_the_job_only_while_the_claim_is_this_dispatch_s() {
        let submission = Submission {
            job_id: "job-1",
            job_name: "labels-1",
            array_index: Some(7),
        };
        let write = submitted(&image("0A"), "me", submission, NOW);

        assert_eq!(write.condition, rule::SUBMITTED_CONDITION);
        assert_eq!(write.writer, Writer::Update { claim: None });
        assert_eq!(
            write.update_expression().unwrap(),
            "SET job_id = :job_id, job_name = :job_name, updated_at = :now, array_index = :index"
        );
        let values = [
            ":claim",
            ":index",
            ":job_id",
            ":job_name",
            ":now",
            ":queued",
            ":rev",
        ];
        assert_eq!(bound(&write), values);
        assert_eq!(named(&write), ["#status"]);
        assert_eq!(number(&write, ":index"), "7");
        assert!(holds(&write, Some(&claimed("0A", "me", 1))));
        assert!(!holds(&write, Some(&claimed("0A", "other", 1))));
        let unindexed = Submission {
            array_index: None,
            ..submission
        };
        let write = submitted(&image("0A"), "me", unindexed, NOW);
        assert!(!write.values.contains_key(":index"));
        assert!(!write.update_expression().unwrap().contains("array_index"));
    }

    #[test]
    fn a_release_expires_the_claim_only_while_no_job_or_worker_holds_it() {
        let write = release(&image("0A"), "me", "SubmitJob failed", NOW);

        assert_eq!(write.condition, rule::RELEASE_CONDITION);
        assert_eq!(write.writer, Writer::Update { claim: None });
        assert_eq!(
            write.update_expression().unwrap(),
            "SET claimed_at = :zero, reason = :reason, updated_at = :now"
        );
        assert_eq!(
            bound(&write),
            [":claim", ":now", ":reason", ":rev", ":zero"]
        );
        assert_eq!(named(&write), ["#owner"]);
        assert_eq!(number(&write, ":zero"), "0");
        assert_eq!(text(&write, ":reason"), "SubmitJob failed");
        assert!(holds(&write, Some(&claimed("0A", "me", 1))));
        let submitted = Stored {
            job_id: Some("j".into()),
            ..claimed("0A", "me", 1)
        };
        assert!(!holds(&write, Some(&submitted)));
    }

    #[test]
    fn a_dispatcher_failure_names_the_claim_the_dead_job_or_the_record_as_read() {
        let image = image("0A");
        let by_claim = fail_queued(&image, QueuedBy::Claim("me"), "refused", NOW);
        let dead = QueuedBy::Job {
            job_id: "j",
            dead: "j:1",
        };
        let by_job = fail_queued(&image, dead, "refused", NOW);
        let as_read = QueuedBy::Seen {
            claim: "c",
            owner: Some("o"),
        };
        let by_seen = fail_queued(&image, as_read, "gave up", NOW);

        assert_eq!(by_claim.condition, rule::FAIL_CLAIMED_CONDITION);
        assert_eq!(by_job.condition, rule::FAIL_IN_JOB_CONDITION);
        assert_eq!(by_seen.condition, rule::redispatch_condition(true));
        let common = [
            ":failed",
            ":now",
            ":queued",
            ":reason",
            ":rev",
            ":status_key",
        ];
        let with = |extra: &[&'static str]| {
            let mut all: Vec<_> = common.iter().chain(extra).copied().collect();
            all.sort();
            all
        };
        assert_eq!(bound(&by_claim), with(&[":claim"]));
        assert_eq!(bound(&by_job), with(&[":dead", ":job_id"]));
        assert_eq!(bound(&by_seen), with(&[":seen_claim", ":seen_owner"]));
        for write in [&by_claim, &by_job, &by_seen] {
            assert_eq!(write.writer, Writer::Update { claim: None });
            assert_eq!(named(write), ["#owner", "#status"]);
            assert_eq!(
                write.update_expression().unwrap(),
                "SET #status = :failed, reason = :reason, updated_at = :now, \
                 status_key = :status_key, status_at = :now"
            );
            assert!(text(write, ":status_key").starts_with("FAILED#"));
        }
        assert!(holds(&by_claim, Some(&claimed("0A", "me", 1))));
        assert!(!holds(&by_claim, Some(&owned("0A", "x:1", Status::Queued))));
        let in_job = |owner: Option<&str>| Stored {
            job_id: Some("j".into()),
            owner: owner.map(str::to_owned),
            ..stored("0A", Status::Queued)
        };
        assert!(holds(&by_job, Some(&in_job(None))));
        assert!(holds(&by_job, Some(&in_job(Some("j:1")))));
        assert!(!holds(&by_job, Some(&in_job(Some("j:2")))));
        let seen = Stored {
            owner: Some("o".into()),
            ..claimed("0A", "c", 1)
        };
        assert!(holds(&by_seen, Some(&seen)));
        assert!(!holds(&by_seen, Some(&claimed("0A", "c", 1))));
    }

    #[test]
    fn a_redispatch_keeps_the_first_queued_at_and_names_the_record_as_read_floor_included() {
        let first = 1_795_000_000_000;
        let seen = Stored {
            queued_at: Some(first),
            ..claimed("0A", "old", 1)
        };
        let write = redispatch(&image("0A"), &seen, "new", 3, NOW);

        assert_eq!(
            write.condition,
            rule::redispatch_put_condition(false, false)
        );
        assert_eq!(write.writer, Writer::Update { claim: Some("new") });
        assert_eq!(bound(&write), [":queued", ":rev", ":seen_claim"]);
        assert_eq!(named(&write), ["#owner", "#status"]);
        assert_eq!(text(&write, ":seen_claim"), "old");
        let item = put_item(&write);
        assert_eq!(item[attr::CLAIM].as_s().unwrap(), "new");
        assert_eq!(item[attr::DISPATCHES].as_n().unwrap(), "3");
        let queued_at = Clock { unix_millis: first }.rfc3339();
        assert_eq!(item[attr::QUEUED_AT].as_s().unwrap(), &queued_at);
        assert_eq!(
            item[attr::REASON].as_s().unwrap(),
            "re-dispatched by the reconciler; waiting for its job"
        );
        assert!(holds(&write, Some(&seen)));
        assert!(!holds(&write, Some(&claimed("0A", "other", 1))));
        let taken = Stored {
            owner: Some("j:1".into()),
            ..seen.clone()
        };
        assert!(!holds(&write, Some(&taken)));
        let write = redispatch(&image("0A"), &taken, "new", 3, NOW);
        assert_eq!(write.condition, rule::redispatch_put_condition(true, false));
        assert_eq!(text(&write, ":seen_owner"), "j:1");
        assert!(holds(&write, Some(&taken)));

        let floor = |at: &str| Stored {
            gone_before: Some(rev(at)),
            ..seen.clone()
        };
        assert!(!holds(
            &redispatch(&image("0A"), &seen, "new", 3, NOW),
            Some(&floor("0C"))
        ));
        let write = redispatch(&image("0A"), &floor("0C"), "new", 3, NOW);
        assert_eq!(write.condition, rule::redispatch_put_condition(false, true));
        assert_eq!(
            put_item(&write)[attr::GONE_BEFORE].as_s().unwrap(),
            rev("0C").as_str()
        );
        assert!(holds(&write, Some(&floor("0C"))));
        assert!(!holds(&write, Some(&floor("0D"))));
        assert!(!holds(&write, Some(&seen)));
    }

    #[test]
    fn a_floor_goes_under_the_record_only_as_it_was_read_and_only_upward() {
        let delete = rev("0C");
        let deletion = Deletion {
            bucket: "photos",
            key: "cats/Tabby Cat.jpg",
            revision: &delete,
            version: Some("v-2"),
            reason: "ObjectRemoved:Delete",
        };
        let seen = rev("0A");
        let write = versions_gone(&deletion, &seen);

        assert_eq!(write.condition, rule::VERSIONS_GONE_CONDITION);
        assert_eq!(write.writer, Writer::VersionsGone { seen: &seen });
        assert_eq!(write.update_expression().unwrap(), "SET gone_before = :rev");
        assert_eq!(bound(&write), [":rev", ":seen"]);
        assert_eq!(text(&write, ":rev"), delete.as_str());
        let floored = |at: Option<&str>| Stored {
            gone_before: at.map(rev),
            ..stored("0A", Status::Labeled)
        };
        let cases = [
            ("the record as read", Some(floored(None)), true),
            ("a lower floor", Some(floored(Some("0B"))), true),
            ("the same floor", Some(floored(Some("0C"))), false),
            ("a higher floor", Some(floored(Some("0D"))), false),
            ("another upload", Some(stored("0B", Status::Queued)), false),
            ("no record", None, false),
        ];
        for (name, example, expected) in cases {
            assert_eq!(holds(&write, example.as_ref()), expected, "{name}");
        }
    }

    #[test]
    fn a_take_sets_the_owner_and_agrees_with_its_in_memory_twin() {
        let attempt = attempt();
        let write = take(&image("0A"), &attempt, NOW);

        assert_eq!(write.condition, rule::TAKE_CONDITION);
        assert_eq!(write.writer, Writer::Take { owner: "a1b2c3:4" });
        assert_eq!(
            write.update_expression().unwrap(),
            "SET #owner = :owner, attempts = :attempts, updated_at = :now, job_id = :job_id"
        );
        let values = [":attempts", ":job_id", ":now", ":owner", ":queued", ":rev"];
        assert_eq!(bound(&write), values);
        assert_eq!(named(&write), ["#owner", "#status"]);
        assert_eq!(number(&write, ":attempts"), "2");
        for example in examples() {
            let twin = rule::take_would_win(example.as_ref(), &rev("0A"), "a1b2c3:4");
            assert_eq!(holds(&write, example.as_ref()), twin, "{example:?}");
        }
        let outside_batch = Attempt::default();
        let write = take(&image("0A"), &outside_batch, NOW);
        assert_eq!(
            write.update_expression().unwrap(),
            "SET #owner = :owner, attempts = :attempts, updated_at = :now"
        );
    }

    #[test]
    fn a_labeling_with_a_note_stores_it_and_one_without_clears_an_older_one() {
        let attempt = attempt();
        let with = |note| Labeling {
            labels: vec![label("Cat", 41.0)],
            model_version: Some("local:efficientnet-lite0@ebff25b4216a"),
            provenance: Provenance::Detected {
                conversion: None,
                note,
            },
        };
        let noted = labeled(&image("0A"), &with(Some("budget spent")), &attempt, NOW);
        let expression = noted.record.update_expression().unwrap();
        assert!(expression.contains("label_note = :note"), "{expression}");
        assert!(!expression
            .contains("REMOVE reason, status_key, status_at, reused_from, conversion, label_note"));
        assert_eq!(noted.record.values[":note"].as_s().unwrap(), "budget spent");
        let plain = labeled(&image("0A"), &with(None), &attempt, NOW);
        let expression = plain.record.update_expression().unwrap();
        assert!(expression.ends_with(", label_note"), "{expression}");
    }

    #[test]
    fn a_labeling_updates_the_owned_record_then_puts_one_entry_per_label() {
        let attempt = attempt();
        let labeling = Labeling {
            labels: vec![label("Cat", 99.0), label("Pet", 90.0)],
            model_version: Some("3.0"),
            provenance: Provenance::Reused {
                from: "s3://photos/a.jpg",
                conversion: Some("converted from WebP"),
            },
        };
        let transaction = labeled(&image("0A"), &labeling, &attempt, NOW);
        let write = &transaction.record;

        assert_eq!(write.condition, rule::OWNED_BY_JOB);
        let writer = Writer::Result {
            owner: "a1b2c3:4",
            wrote: Status::Labeled,
        };
        assert_eq!(write.writer, writer);
        assert_eq!(
            write.update_expression().unwrap(),
            "SET #status = :labeled, labels = :labels, attempts = :attempts, updated_at = :now, \
             label_model_version = :model, job_id = :job_id, reused_from = :from, \
             conversion = :conversion REMOVE reason, status_key, status_at, label_note"
        );
        let values = [
            ":attempts",
            ":conversion",
            ":from",
            ":job_id",
            ":labeled",
            ":labels",
            ":model",
            ":now",
            ":owner",
            ":queued",
            ":rev",
        ];
        assert_eq!(bound(write), values);
        assert_eq!(text(write, ":from"), "s3://photos/a.jpg");
        assert_eq!(write.values[":labels"].as_l().unwrap().len(), 2);
        assert_eq!(transaction.entries.len(), 2);
        let keys = transaction.entry_keys();
        assert_eq!(
            keys,
            HashSet::from(["LABEL#Cat".into(), "LABEL#Pet".into()])
        );
        assert!(holds(write, Some(&owned("0A", "a1b2c3:4", Status::Queued))));
        assert!(!holds(write, Some(&owned("0A", "other:1", Status::Queued))));
        assert!(!holds(write, Some(&stored("0A", Status::Queued))));
        assert!(!holds(
            write,
            Some(&owned("0A", "a1b2c3:4", Status::Labeled))
        ));
        assert!(!holds(
            write,
            Some(&owned("0B", "a1b2c3:4", Status::Queued))
        ));
    }

    #[test]
    fn a_failure_result_is_written_only_on_the_record_this_job_owns() {
        let attempt = attempt();
        let write = failed(&image("0A"), "DetectLabels refused", &attempt, NOW);

        assert_eq!(write.condition, rule::OWNED_BY_JOB);
        let writer = Writer::Result {
            owner: "a1b2c3:4",
            wrote: Status::Failed,
        };
        assert_eq!(write.writer, writer);
        assert_eq!(
            write.update_expression().unwrap(),
            "SET #status = :failed, reason = :reason, attempts = :attempts, updated_at = :now, \
             status_key = :status_key, status_at = :now, job_id = :job_id"
        );
        let values = [
            ":attempts",
            ":failed",
            ":job_id",
            ":now",
            ":owner",
            ":queued",
            ":reason",
            ":rev",
            ":status_key",
        ];
        assert_eq!(bound(&write), values);
        assert_eq!(named(&write), ["#owner", "#status"]);
        assert!(holds(
            &write,
            Some(&owned("0A", "a1b2c3:4", Status::Queued))
        ));
        assert!(!holds(
            &write,
            Some(&owned("0A", "other:1", Status::Queued))
        ));
        assert!(!holds(&write, None));
    }
}
