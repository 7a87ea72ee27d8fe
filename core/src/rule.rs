//! The one rule for "stored record vs incoming write", in both of its forms:
//! the DynamoDB condition expressions every writer sends, and their
//! in-memory twins that tests, previews and conflict handling evaluate.
//!
//! Every write names the upload it is about by its [`Revision`]; the stored
//! record names one too. [`order`] compares them, and everything else here is
//! a documented arm over that comparison. Each write is built, as a value,
//! by one pure function of the crate's `write` module (named in the last
//! column), which sends exactly this condition:
//!
//! | writer | writes when the stored record is … | condition | built by |
//! |---|---|---|---|
//! | dispatcher claim | missing, older, or the same upload's abandoned claim | [`CLAIM_CONDITION`] / [`claim_would_win`] | `write::claim` ([`ClaimKind::New`]) |
//! | operator retry | the same upload, FAILED | [`retry_condition`] | `write::claim` ([`ClaimKind::RetryFailed`]) |
//! | reconciler re-dispatch | exactly as the reconciler read it, floor included | [`redispatch_put_condition`] | `write::redispatch` |
//! | skip, tombstone | missing or older | [`NEWER_THAN_STORED`] | `write::skip`, `write::tombstone` |
//! | version delete | older and of that version | [`VERSION_DELETE_CONDITION`] | `write::version_delete` |
//! | versions gone | exactly as read, its floor older | [`VERSIONS_GONE_CONDITION`] | `write::versions_gone` |
//! | job submitted | the same upload, QUEUED under this claim | [`SUBMITTED_CONDITION`] | `write::submitted` |
//! | claim released | the same upload under this claim, no job, no owner | [`RELEASE_CONDITION`] | `write::release` |
//! | dispatcher failure | the same upload, QUEUED under this claim, in this dead job, or as read | [`FAIL_CLAIMED_CONDITION`], [`FAIL_IN_JOB_CONDITION`], [`redispatch_condition`] | `write::fail_queued` |
//! | worker take | the same upload, QUEUED, not owned by another job | [`TAKE_CONDITION`] / [`take_would_win`] | `write::take` |
//! | worker result | the same upload, QUEUED, owned by this job | [`OWNED_BY_JOB`] | `write::labeled`, `write::failed` |
//!
//! When a condition fails, [`conflict`] reads the stored record to tell a
//! redelivery from a lost race, with one explicit arm per writer where they
//! differ. The one place that sends a write and calls [`conflict`] with the
//! record is the crate's `write::Table::apply`.

use crate::schema::{attr, Status};
use crate::Revision;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// A stored item, as the SDK returns it.
pub type Item = HashMap<String, AttributeValue>;

/// What a conditional write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write happened (or had already happened: a retried call whose
    /// first response was lost finds its own write).
    Written,
    /// The same upload already has a record (a redelivery): nothing written.
    Duplicate {
        /// Status of the existing record.
        existing: Option<Status>,
    },
    /// A newer upload, a delete, or another job owns the record: nothing
    /// written.
    Superseded {
        /// The newer revision, when that is the reason.
        newer: Option<Revision>,
    },
}

/// Condition for replacing the record with a fresh one for `:rev`: no
/// record, or an older upload's (tombstones included), whose floor
/// ([`attr::GONE_BEFORE`], see [`VERSIONS_GONE_CONDITION`]) is older too.
/// In memory: [`order`] answering [`Order::IncomingNewer`].
pub const NEWER_THAN_STORED: &str = "(attribute_not_exists(pk) OR revision < :rev) AND \
     (attribute_not_exists(gone_before) OR gone_before < :rev)";

/// Condition for taking a QUEUED claim: a newer upload (as in
/// [`NEWER_THAN_STORED`]), or the same upload whose earlier claim never
/// produced a job (no job id, no owner) and either has expired or is the
/// claimant's own (a resumed backfill retaking what it claimed before it
/// was interrupted; a Lambda invocation's claim token is never reused).
///
/// The same upload's claim is a PutItem that knows no floor, so it requires
/// none ([`VERSIONS_GONE_CONDITION`]): a floored claim is left to the
/// reconciler, whose re-dispatch reads the floor and carries it
/// ([`redispatch_put_condition`]); a claimant finding its own claim still
/// goes on ([`conflict`]). In memory: [`claim_would_win`].
pub const CLAIM_CONDITION: &str = "((attribute_not_exists(pk) OR revision < :rev) AND \
      (attribute_not_exists(gone_before) OR gone_before < :rev)) OR \
     (revision = :rev AND #status = :queued AND attribute_not_exists(job_id) AND \
      attribute_not_exists(#owner) AND (claimed_at < :lease_cutoff OR claim = :claim) AND \
      attribute_not_exists(gone_before))";

/// Condition of a permanent delete of one version in a versioned bucket:
/// only the recorded version's delete changes the record.
pub const VERSION_DELETE_CONDITION: &str = "revision < :rev AND version_id = :version";

/// Condition of recording a floor on the record, after a version delete
/// or a delete marker of revision `:rev` found the version the record
/// describes current in S3: the record is still the one read (`:seen`),
/// and its floor, if any, is older.
///
/// Why a floor is true: S3's current version is the newest one that
/// exists. The record describes version *v* as of revision *r* ≥ *v*'s
/// upload; if *v* is current after the delete, every version uploaded
/// after *r* and before the delete is gone for good (or is a delete marker
/// that was itself deleted). An upload or marker event older than the
/// floor, arriving late, names such a version: replacing the record for it
/// ([`NEWER_THAN_STORED`], [`CLAIM_CONDITION`]) would claim a version S3
/// no longer has, and its job would end FAILED on a readable key. The
/// floor sits beside the record's revision rather than replacing it: the
/// worker's take and result still name the recorded upload.
pub const VERSIONS_GONE_CONDITION: &str =
    "revision = :seen AND (attribute_not_exists(gone_before) OR gone_before < :rev)";

/// Condition of the worker's take: the record is this upload's, still
/// QUEUED, and no other job owns it (the same Batch job id across Batch
/// retries keeps it). In memory: [`take_would_win`].
pub const TAKE_CONDITION: &str =
    "revision = :rev AND #status = :queued AND (attribute_not_exists(#owner) OR #owner = :owner)";

/// Condition of the worker's LABELED and FAILED writes: this upload, still
/// QUEUED, taken by this job.
pub const OWNED_BY_JOB: &str = "revision = :rev AND #status = :queued AND #owner = :owner";

/// Condition of recording the job that holds a claim: the claim is still
/// this dispatch's and still QUEUED (a late recording must not rewrite the
/// job of a record its job already finished).
pub const SUBMITTED_CONDITION: &str = "revision = :rev AND claim = :claim AND #status = :queued";

/// Condition of giving a claim back after SubmitJob failed.
pub const RELEASE_CONDITION: &str =
    "revision = :rev AND claim = :claim AND attribute_not_exists(job_id) AND attribute_not_exists(#owner)";

/// Condition of failing a claimed image whose job can never be submitted.
pub const FAIL_CLAIMED_CONDITION: &str = "revision = :rev AND claim = :claim AND \
     #status = :queued AND attribute_not_exists(#owner)";

/// Condition of failing the images a dead Batch job still holds: recorded
/// in that job and taken by no other (`:dead` is the dead job, or array
/// child, as Batch names it).
pub const FAIL_IN_JOB_CONDITION: &str =
    "revision = :rev AND #status = :queued AND job_id = :job_id AND (attribute_not_exists(#owner) OR #owner = :dead)";

/// The start of [`redispatch_condition`]: the same upload, QUEUED, under
/// the claim token read.
macro_rules! as_read {
    () => {
        "revision = :rev AND #status = :queued AND claim = :seen_claim AND "
    };
}

/// The floor as a same-upload rewrite read it: none, or the one it carries
/// (`:floor`) into the record it puts.
macro_rules! floor_as_read {
    (none) => {
        " AND attribute_not_exists(gone_before)"
    };
    (carried) => {
        " AND gone_before = :floor"
    };
}

/// The reconciler's re-dispatch condition: the record is still exactly the
/// QUEUED claim it read (same upload, same claim token, same owner or none),
/// so a worker or dispatcher that moved it meanwhile wins.
pub fn redispatch_condition(seen_owner: bool) -> &'static str {
    match seen_owner {
        true => concat!(as_read!(), "#owner = :seen_owner"),
        false => concat!(as_read!(), "attribute_not_exists(#owner)"),
    }
}

/// The re-dispatch's PutItem condition: [`redispatch_condition`], and the
/// floor ([`VERSIONS_GONE_CONDITION`]) as read, which the new record
/// carries: a put replaces the whole record, and a floor written after the
/// read must not be lost with it.
pub fn redispatch_put_condition(seen_owner: bool, seen_floor: bool) -> &'static str {
    match (seen_owner, seen_floor) {
        (true, false) => concat!(as_read!(), "#owner = :seen_owner", floor_as_read!(none)),
        (true, true) => concat!(as_read!(), "#owner = :seen_owner", floor_as_read!(carried)),
        (false, false) => concat!(
            as_read!(),
            "attribute_not_exists(#owner)",
            floor_as_read!(none)
        ),
        (false, true) => concat!(
            as_read!(),
            "attribute_not_exists(#owner)",
            floor_as_read!(carried)
        ),
    }
}

/// An operator's retry of a FAILED upload, with its floor as read (the
/// retry reads the record first, and the claim it puts carries the floor).
pub fn retry_condition(floored: bool) -> &'static str {
    match floored {
        false => concat!(
            "revision = :rev AND #status = :failed",
            floor_as_read!(none)
        ),
        true => concat!(
            "revision = :rev AND #status = :failed",
            floor_as_read!(carried)
        ),
    }
}

/// The parts of a stored image record that the rules read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The upload it describes.
    pub revision: Option<Revision>,
    /// Its status.
    pub status: Option<Status>,
    /// Claim token of the dispatch that queued it.
    pub claim: Option<String>,
    /// When that claim was taken (Unix seconds).
    pub claimed_at: Option<u64>,
    /// Batch job id recorded for it.
    pub job_id: Option<String>,
    /// Job that took it for labeling.
    pub owner: Option<String>,
    /// S3 version id.
    pub version_id: Option<String>,
    /// When this upload was first queued (Unix milliseconds); re-dispatches
    /// keep it.
    pub queued_at: Option<u64>,
    /// The floor: every other version uploaded before it is gone
    /// ([`VERSIONS_GONE_CONDITION`]).
    pub gone_before: Option<Revision>,
}

impl Stored {
    /// Reads the rule-relevant attributes of an item.
    pub fn from_item(item: &Item) -> Self {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Self {
            revision: text(attr::REVISION).and_then(|r| Revision::try_from(r).ok()),
            status: text(attr::STATUS).and_then(|s| Status::parse(&s)),
            claim: text(attr::CLAIM),
            claimed_at: item
                .get(attr::CLAIMED_AT)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok()),
            job_id: text(attr::JOB_ID),
            owner: text(attr::OWNER),
            version_id: text(attr::VERSION_ID),
            queued_at: text(attr::QUEUED_AT)
                .as_deref()
                .and_then(crate::schema::parse_rfc3339_millis),
            gone_before: text(attr::GONE_BEFORE).and_then(|r| Revision::try_from(r).ok()),
        }
    }

    /// The newest change the record accounts for: its upload's revision, or
    /// its floor when that is newer.
    pub fn known_through(&self) -> Option<&Revision> {
        self.revision.as_ref().max(self.gone_before.as_ref())
    }
}

/// How an incoming upload compares with the stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// No record, or one of an older upload (or an unreadable revision)
    /// with an older floor or none.
    IncomingNewer,
    /// The record describes the incoming upload.
    Same,
    /// The record describes a newer upload or delete, or its floor is the
    /// incoming revision or newer (the incoming upload is gone).
    StoredNewer(Revision),
}

/// Compares the stored record's upload, and its floor, with the incoming
/// upload.
pub fn order(stored: Option<&Stored>, incoming: &Revision) -> Order {
    match stored.and_then(|s| s.revision.as_ref()) {
        Some(rev) if rev == incoming => Order::Same,
        _ => match stored.and_then(Stored::known_through) {
            Some(newer) if newer >= incoming => Order::StoredNewer(newer.clone()),
            _ => Order::IncomingNewer,
        },
    }
}

/// Which rule a claim is taken under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimKind {
    /// New uploads (and abandoned claims of them): [`CLAIM_CONDITION`].
    #[default]
    New,
    /// The same upload, recorded FAILED: [`retry_condition`].
    RetryFailed,
}

/// [`CLAIM_CONDITION`] and [`retry_condition`] evaluated in memory: whether a
/// claim of `incoming` by `claim` under `kind` would be written over `stored`
/// at `now_secs` with a lease of `lease_secs`.
pub fn claim_would_win(
    stored: Option<&Stored>,
    incoming: &Revision,
    claim: &str,
    kind: ClaimKind,
    now_secs: u64,
    lease_secs: u64,
) -> bool {
    match (kind, order(stored, incoming), stored) {
        (ClaimKind::RetryFailed, Order::Same, Some(s)) => s.status == Some(Status::Failed),
        (ClaimKind::RetryFailed, _, _) => false,
        (ClaimKind::New, Order::IncomingNewer, _) => true,
        (ClaimKind::New, Order::StoredNewer(_), _) => false,
        (ClaimKind::New, Order::Same, None) => true,
        (ClaimKind::New, Order::Same, Some(s)) => {
            let expired = s
                .claimed_at
                .is_some_and(|at| at < now_secs.saturating_sub(lease_secs));
            s.status == Some(Status::Queued)
                && s.job_id.is_none()
                && s.owner.is_none()
                && (expired || s.claim.as_deref() == Some(claim))
                && s.gone_before.is_none()
        }
    }
}

/// [`TAKE_CONDITION`] evaluated in memory.
pub fn take_would_win(stored: Option<&Stored>, incoming: &Revision, owner: &str) -> bool {
    match (order(stored, incoming), stored) {
        (Order::Same, Some(s)) => {
            s.status == Some(Status::Queued) && s.owner.as_deref().is_none_or(|o| o == owner)
        }
        _ => false,
    }
}

/// Who wrote, for telling a lost race from a redelivery in [`conflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer<'a> {
    /// A dispatcher write that replaces a missing or older record: claims
    /// of new uploads ([`CLAIM_CONDITION`]), skips and tombstones
    /// ([`NEWER_THAN_STORED`]).
    Replace {
        /// The writer's claim token, for claims.
        claim: Option<&'a str>,
    },
    /// A dispatcher write to the record of its own upload: retry claims,
    /// re-dispatches, submissions, releases, failures.
    Update {
        /// The writer's claim token, for retry claims and re-dispatches.
        claim: Option<&'a str>,
    },
    /// A worker taking the image for its job ([`TAKE_CONDITION`]).
    Take {
        /// The taking job.
        owner: &'a str,
    },
    /// A worker writing its result ([`OWNED_BY_JOB`]).
    Result {
        /// The job that took the image.
        owner: &'a str,
        /// The status it wrote (LABELED or FAILED).
        wrote: Status,
    },
    /// The permanent delete of one version in a versioned bucket
    /// ([`VERSION_DELETE_CONDITION`]).
    VersionDelete {
        /// The deleted version.
        version: &'a str,
    },
    /// A floor under the record as read ([`VERSIONS_GONE_CONDITION`]).
    VersionsGone {
        /// The revision of the record as read.
        seen: &'a Revision,
    },
}

/// The record changed between a failed condition and the read that
/// explains it; the caller retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record of upload {incoming} changed while it was written; retry")]
pub struct Changed {
    /// The incoming revision.
    pub incoming: String,
}

/// The outcome of a write whose condition failed, given the record as it is
/// now. One arm per case, explicit where writers differ:
///
/// * a newer upload or delete stored: [`WriteOutcome::Superseded`], for all.
/// * the same upload:
///   - a dispatcher finding its own claim (token) still unsubmitted is
///     looking at its own earlier write whose response was lost: `Written`;
///     otherwise a redelivery: `Duplicate`;
///   - a take finding the record QUEUED and owned by itself: `Written` (a
///     Batch retry, or a lost response); owned by another job: `Superseded`;
///     terminal: `Duplicate` — never a second DetectLabels call;
///   - a result write finding a record owned by itself with the status it
///     wrote: `Written` (its own write, response lost); finding it still
///     QUEUED and its own: [`Changed`] (retry); another job's and QUEUED:
///     `Superseded`; terminal otherwise (another job's, or FAILED by the
///     dispatcher while this job held it): `Duplicate` — never `Written`
///     for a record that does not say what it wrote.
/// * no record, or an older upload's: for writers that need the record of
///   their own upload (updates, takes, results), that upload is no longer
///   recorded (deleted, expired, never claimed): `Superseded` with no newer
///   revision. For a replacing write, whose condition accepts exactly that,
///   the record moved between the write and the read: [`Changed`].
/// * a version delete, first of all: finding that version's tombstone is a
///   redelivery (`Duplicate`); anything else, another version's record or
///   none, is `Superseded`, naming the stored revision when it is newer.
/// * a floor ([`Writer::VersionsGone`]), first of all: finding the record
///   it read, whose floor is then already as high, is a redelivery
///   (`Duplicate`); a newer record or floor is `Superseded`; any other
///   record, or none, moved since it was read: [`Changed`], and the caller
///   asks S3 again.
pub fn conflict(
    writer: Writer<'_>,
    incoming: &Revision,
    stored: Option<&Stored>,
) -> Result<WriteOutcome, Changed> {
    let changed = || Changed {
        incoming: incoming.as_str().to_owned(),
    };
    let status = stored.and_then(|s| s.status);
    let owner = stored.and_then(|s| s.owner.as_deref());
    let queued = status == Some(Status::Queued);
    let own_claim = |claim: Option<&str>| {
        queued
            && claim.is_some()
            && stored.is_some_and(|s| s.claim.as_deref() == claim && s.job_id.is_none())
    };
    Ok(match (order(stored, incoming), writer) {
        (ordered, Writer::VersionDelete { version }) => {
            version_delete_found(version, ordered, stored)
        }
        (ordered, Writer::VersionsGone { seen }) => {
            floor_found(seen, ordered, stored).ok_or_else(changed)?
        }
        (Order::StoredNewer(newer), _) => WriteOutcome::Superseded { newer: Some(newer) },
        (Order::Same, Writer::Replace { claim } | Writer::Update { claim }) => {
            if own_claim(claim) {
                WriteOutcome::Written
            } else {
                WriteOutcome::Duplicate { existing: status }
            }
        }
        (Order::Same, Writer::Take { owner: me }) => match owner {
            _ if !queued => WriteOutcome::Duplicate { existing: status },
            Some(o) if o == me => WriteOutcome::Written,
            _ => WriteOutcome::Superseded { newer: None },
        },
        (Order::Same, Writer::Result { owner: me, wrote }) => match owner {
            Some(o) if o == me && queued => return Err(changed()),
            Some(o) if o == me && status == Some(wrote) => WriteOutcome::Written,
            _ if queued => WriteOutcome::Superseded { newer: None },
            _ => WriteOutcome::Duplicate { existing: status },
        },
        (Order::IncomingNewer, Writer::Replace { .. }) => return Err(changed()),
        (
            Order::IncomingNewer,
            Writer::Update { .. } | Writer::Take { .. } | Writer::Result { .. },
        ) => WriteOutcome::Superseded { newer: None },
    })
}

/// [`conflict`] for a version delete: its own tombstone is a redelivery;
/// anything else is `Superseded`, naming the stored revision when newer.
fn version_delete_found(version: &str, ordered: Order, stored: Option<&Stored>) -> WriteOutcome {
    match stored {
        Some(s)
            if s.status == Some(Status::Deleted) && s.version_id.as_deref() == Some(version) =>
        {
            WriteOutcome::Duplicate { existing: s.status }
        }
        _ => WriteOutcome::Superseded {
            newer: match ordered {
                Order::StoredNewer(newer) => Some(newer),
                Order::Same | Order::IncomingNewer => None,
            },
        },
    }
}

/// [`conflict`] for a floor: the record it read is a redelivery, a newer
/// change `Superseded`; `None` when the record moved since it was read.
fn floor_found(seen: &Revision, ordered: Order, stored: Option<&Stored>) -> Option<WriteOutcome> {
    match (stored, ordered) {
        (Some(s), _) if s.revision.as_ref() == Some(seen) => {
            Some(WriteOutcome::Duplicate { existing: s.status })
        }
        (_, Order::StoredNewer(newer)) => Some(WriteOutcome::Superseded { newer: Some(newer) }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(seq: &str) -> Revision {
        Revision::from_sequencer(seq).unwrap()
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

    const NOW: u64 = 10_000;
    const LEASE: u64 = 300;

    #[test]
    fn claims_follow_the_documented_table() {
        let with = |f: fn(&mut Stored)| {
            let mut s = claimed("0A", "other", NOW - 10);
            f(&mut s);
            s
        };
        let cases: Vec<(&str, Option<Stored>, &str, ClaimKind, bool)> = vec![
            ("no record", None, "0A", ClaimKind::New, true),
            (
                "older labeled upload",
                Some(stored("09", Status::Labeled)),
                "0A",
                ClaimKind::New,
                true,
            ),
            (
                "older tombstone",
                Some(stored("09", Status::Deleted)),
                "0A",
                ClaimKind::New,
                true,
            ),
            (
                "newer tombstone",
                Some(stored("0B", Status::Deleted)),
                "0A",
                ClaimKind::New,
                false,
            ),
            (
                "newer upload",
                Some(stored("0B", Status::Queued)),
                "0A",
                ClaimKind::New,
                false,
            ),
            (
                "same upload labeled",
                Some(stored("0A", Status::Labeled)),
                "0A",
                ClaimKind::New,
                false,
            ),
            (
                "same upload, live claim of another",
                Some(claimed("0A", "other", NOW - 10)),
                "0A",
                ClaimKind::New,
                false,
            ),
            (
                "same upload, own claim",
                Some(claimed("0A", "me", NOW - 10)),
                "0A",
                ClaimKind::New,
                true,
            ),
            (
                "same upload, expired claim",
                Some(claimed("0A", "other", NOW - LEASE - 1)),
                "0A",
                ClaimKind::New,
                true,
            ),
            (
                "expired claim with a job",
                Some(with(|s| {
                    s.claimed_at = Some(1);
                    s.job_id = Some("j".into())
                })),
                "0A",
                ClaimKind::New,
                false,
            ),
            (
                "expired claim taken by a worker",
                Some(with(|s| {
                    s.claimed_at = Some(1);
                    s.owner = Some("j:1".into())
                })),
                "0A",
                ClaimKind::New,
                false,
            ),
            (
                "retry of a failed upload",
                Some(stored("0A", Status::Failed)),
                "0A",
                ClaimKind::RetryFailed,
                true,
            ),
            (
                "retry of a labeled upload",
                Some(stored("0A", Status::Labeled)),
                "0A",
                ClaimKind::RetryFailed,
                false,
            ),
            (
                "retry under a newer failed upload",
                Some(stored("0B", Status::Failed)),
                "0A",
                ClaimKind::RetryFailed,
                false,
            ),
            (
                "retry without a record",
                None,
                "0A",
                ClaimKind::RetryFailed,
                false,
            ),
        ];
        for (name, s, incoming, kind, expected) in cases {
            assert_eq!(
                claim_would_win(s.as_ref(), &rev(incoming), "me", kind, NOW, LEASE),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_take_wins_only_on_an_unowned_or_own_queued_record_of_the_upload() {
        let owned = |o: &str| Stored {
            owner: Some(o.into()),
            ..stored("0A", Status::Queued)
        };
        assert!(take_would_win(
            Some(&stored("0A", Status::Queued)),
            &rev("0A"),
            "job:1"
        ));
        assert!(take_would_win(Some(&owned("job:1")), &rev("0A"), "job:1"));
        assert!(!take_would_win(Some(&owned("job:2")), &rev("0A"), "job:1"));
        assert!(!take_would_win(
            Some(&stored("0A", Status::Labeled)),
            &rev("0A"),
            "job:1"
        ));
        assert!(!take_would_win(
            Some(&stored("0B", Status::Queued)),
            &rev("0A"),
            "job:1"
        ));
        assert!(!take_would_win(None, &rev("0A"), "job:1"));
    }

    #[test]
    fn conflicts_tell_lost_responses_redeliveries_and_races_apart() {
        let me = Writer::Replace { claim: Some("me") };
        let update = Writer::Update { claim: None };
        let take = Writer::Take { owner: "job:1" };
        let result = Writer::Result {
            owner: "job:1",
            wrote: Status::Labeled,
        };
        let owned = |o: &str, status: Status| Stored {
            owner: Some(o.into()),
            ..stored("0A", status)
        };
        let dup = |status| {
            Ok(WriteOutcome::Duplicate {
                existing: Some(status),
            })
        };
        let lost = Ok(WriteOutcome::Superseded { newer: None });
        type Case<'a> = (
            &'a str,
            Writer<'a>,
            Option<Stored>,
            Result<WriteOutcome, ()>,
        );
        let cases: Vec<Case> = vec![
            (
                "own claim whose response was lost",
                me,
                Some(claimed("0A", "me", NOW)),
                Ok(WriteOutcome::Written),
            ),
            (
                "another invocation's live claim",
                me,
                Some(claimed("0A", "other", NOW)),
                dup(Status::Queued),
            ),
            (
                "same upload already labeled",
                me,
                Some(stored("0A", Status::Labeled)),
                dup(Status::Labeled),
            ),
            (
                "newer upload, dispatcher",
                me,
                Some(stored("0B", Status::Labeled)),
                Ok(WriteOutcome::Superseded {
                    newer: Some(rev("0B")),
                }),
            ),
            (
                "newer delete, take",
                take,
                Some(stored("0B", Status::Deleted)),
                Ok(WriteOutcome::Superseded {
                    newer: Some(rev("0B")),
                }),
            ),
            ("record vanished, dispatcher", me, None, Err(())),
            (
                "record vanished, retry or submission",
                update,
                None,
                lost.clone(),
            ),
            (
                "older record, submission",
                update,
                Some(stored("09", Status::Labeled)),
                lost.clone(),
            ),
            (
                "older record, dispatcher",
                me,
                Some(stored("09", Status::Labeled)),
                Err(()),
            ),
            ("record vanished, take", take, None, lost.clone()),
            (
                "older record, result",
                result,
                Some(stored("09", Status::Labeled)),
                lost.clone(),
            ),
            (
                "own take whose response was lost",
                take,
                Some(owned("job:1", Status::Queued)),
                Ok(WriteOutcome::Written),
            ),
            (
                "taken by another job",
                take,
                Some(owned("job:2", Status::Queued)),
                lost.clone(),
            ),
            (
                "own result already written, take again",
                take,
                Some(owned("job:1", Status::Labeled)),
                dup(Status::Labeled),
            ),
            (
                "own result whose response was lost",
                result,
                Some(owned("job:1", Status::Labeled)),
                Ok(WriteOutcome::Written),
            ),
            (
                "own record still queued after a result write",
                result,
                Some(owned("job:1", Status::Queued)),
                Err(()),
            ),
            (
                "result after another job took it",
                result,
                Some(owned("job:2", Status::Queued)),
                lost,
            ),
            (
                "own labels after the dispatcher failed the record it held",
                result,
                Some(owned("job:1", Status::Failed)),
                dup(Status::Failed),
            ),
            (
                "result after the reconciler failed it",
                result,
                Some(stored("0A", Status::Failed)),
                dup(Status::Failed),
            ),
        ];
        for (name, writer, s, expected) in cases {
            let got = conflict(writer, &rev("0A"), s.as_ref()).map_err(|_| ());
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_version_delete_is_a_redelivery_only_when_it_finds_its_own_tombstone() {
        let writer = Writer::VersionDelete { version: "v-1" };
        let of_version = |seq: &str, version: &str, status: Status| Stored {
            version_id: Some(version.into()),
            ..stored(seq, status)
        };
        let cases: Vec<(&str, Option<Stored>, WriteOutcome)> = vec![
            (
                "its own tombstone",
                Some(of_version("09", "v-1", Status::Deleted)),
                WriteOutcome::Duplicate {
                    existing: Some(Status::Deleted),
                },
            ),
            (
                "another version's record",
                Some(of_version("09", "v-2", Status::Labeled)),
                WriteOutcome::Superseded { newer: None },
            ),
            (
                "a newer version's record",
                Some(of_version("0B", "v-2", Status::Labeled)),
                WriteOutcome::Superseded {
                    newer: Some(rev("0B")),
                },
            ),
            ("no record", None, WriteOutcome::Superseded { newer: None }),
        ];
        for (name, s, expected) in cases {
            assert_eq!(
                conflict(writer, &rev("0A"), s.as_ref()),
                Ok(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn order_puts_any_sequencer_above_a_missing_record() {
        assert_eq!(order(None, &rev("01")), Order::IncomingNewer);
        assert_eq!(
            order(Some(&stored("01", Status::Queued)), &rev("01")),
            Order::Same
        );
        assert_eq!(
            order(Some(&stored("02", Status::Queued)), &rev("01")),
            Order::StoredNewer(rev("02"))
        );
    }

    #[test]
    fn a_floor_puts_the_uploads_below_it_behind_the_record_but_not_the_record_s_own() {
        let floored = Stored {
            gone_before: Some(rev("05")),
            ..stored("02", Status::Labeled)
        };
        let cases = [
            ("the recorded upload", "02", Order::Same),
            (
                "an upload gone under the floor",
                "03",
                Order::StoredNewer(rev("05")),
            ),
            (
                "the floor's own delete",
                "05",
                Order::StoredNewer(rev("05")),
            ),
            ("an upload above the floor", "06", Order::IncomingNewer),
        ];
        for (name, incoming, expected) in cases {
            assert_eq!(order(Some(&floored), &rev(incoming)), expected, "{name}");
        }
        let claim = |incoming: &str| {
            claim_would_win(
                Some(&floored),
                &rev(incoming),
                "me",
                ClaimKind::New,
                NOW,
                LEASE,
            )
        };
        assert!(!claim("03"), "a late event of a gone version");
        assert!(claim("06"), "a newer upload");
    }

    #[test]
    fn a_floor_is_a_redelivery_on_the_record_it_read_and_a_retry_on_any_other() {
        let seen = rev("02");
        let writer = Writer::VersionsGone { seen: &seen };
        let floored = |at: &str| Stored {
            gone_before: Some(rev(at)),
            ..stored("02", Status::Labeled)
        };
        let cases: Vec<(&str, Option<Stored>, Result<WriteOutcome, ()>)> = vec![
            (
                "its own floor, written before",
                Some(floored("05")),
                Ok(WriteOutcome::Duplicate {
                    existing: Some(Status::Labeled),
                }),
            ),
            (
                "a newer upload recorded",
                Some(stored("06", Status::Queued)),
                Ok(WriteOutcome::Superseded {
                    newer: Some(rev("06")),
                }),
            ),
            (
                "another older upload claimed since",
                Some(stored("03", Status::Queued)),
                Err(()),
            ),
            ("no record", None, Err(())),
        ];
        for (name, s, expected) in cases {
            let got = conflict(writer, &rev("05"), s.as_ref()).map_err(|_| ());
            assert_eq!(got, expected, "{name}");
        }
    }
}
