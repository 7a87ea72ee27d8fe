//! Versions that come back: after the permanent delete of one version of a
//! key in a versioned bucket, an older version may be the key's object again
//! — a console "undelete" deletes the delete marker; deleting the current
//! version promotes the one before it. Neither event names the version that
//! is now current, so the dispatcher asks S3 (`HeadObject`) and, when its
//! record does not describe that version ([`answer`]), dispatches it
//! like an upload that carries the delete's revision: newer than the
//! tombstone it replaces, older than any later upload of the key.
//!
//! When the record already describes the version current after the delete,
//! the delete puts its revision under the record as a floor ([`Answer::Floor`]):
//! every version uploaded between the record's and the delete is gone, and
//! the late event of one of them must not replace the record.
//!
//! When no version is current after the delete (a delete marker is, or no
//! version is left), the key is gone as of the delete: the dispatcher
//! tombstones it under the delete's revision ([`Current::Nothing`]). Without
//! that, the late event of an upload whose version was deleted for good
//! before the event arrived found a record older than itself, claimed the
//! deleted version, and its job ended FAILED on a key S3 no longer has.
//!
//! A delete marker's event asks the same question *before* its tombstone:
//! handled after its own undelete (the console deleting the marker), it
//! finds a version current and writes nothing, or dispatches that version.

use crate::aws::Clients;
use crate::event::{Change, ObjectChange};
use labeler_core::rule::Stored;
use labeler_core::schema::Status;
use labeler_core::store;
use labeler_core::Revision;

/// What a version delete (or delete marker) of revision `delete` asks of
/// the record, given the version current in S3 after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Dispatch the current version: the record is older than the delete,
    /// and is a tombstone, another version's, or missing.
    Dispatch,
    /// The record, of this revision, describes the current version: put the
    /// delete's revision under it as a floor
    /// ([`labeler_core::rule::VERSIONS_GONE_CONDITION`]), so a late event of
    /// a version uploaded in between, gone since, cannot replace it.
    Floor(Revision),
    /// A change as new as the delete, or newer, is recorded: nothing to do.
    Nothing,
}

/// What the delete of revision `delete` asks of the record `stored`, when
/// the version `current` (by version id) is current in S3 after it.
pub fn answer(stored: Option<&Stored>, current: Option<&str>, delete: &Revision) -> Answer {
    let Some(stored) = stored else {
        return Answer::Dispatch;
    };
    if stored.known_through().is_some_and(|r| r >= delete) {
        return Answer::Nothing;
    }
    match &stored.revision {
        Some(seen)
            if stored.status != Some(Status::Deleted)
                && stored.version_id.as_deref() == current =>
        {
            Answer::Floor(seen.clone())
        }
        _ => Answer::Dispatch,
    }
}

/// What a version delete leaves current, and what the record must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    /// A version its record does not describe: dispatch it, as an object
    /// change carrying the delete's revision.
    Dispatch(ObjectChange),
    /// A version its record already describes (now with a floor under it),
    /// or a newer change recorded.
    Recorded,
    /// No version (a delete marker, or none left): tombstone the key under
    /// the delete's revision.
    Nothing,
}

/// What is current after the version delete or delete marker `deleted`
/// ([`Current`]); when it is the version the record describes, the floor
/// is written here ([`Answer::Floor`]).
pub async fn current_version(
    clients: &Clients,
    table: &str,
    deleted: &store::Deletion<'_>,
) -> Result<Current, String> {
    let (bucket, key) = (deleted.bucket, deleted.key);
    let head = clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => {
            return Ok(Current::Nothing)
        }
        Err(e) => {
            return Err(format!(
                "HeadObject s3://{bucket}/{key}: {}",
                crate::aws::describe(&e)
            ))
        }
    };
    let record = store::get_image(&clients.dynamodb, table, bucket, key)
        .await
        .map_err(|e| e.to_string())?;
    let stored = record.as_ref().map(Stored::from_item);
    match answer(stored.as_ref(), head.version_id(), deleted.revision) {
        Answer::Nothing => Ok(Current::Recorded),
        Answer::Floor(seen) => {
            store::record_versions_gone(&clients.dynamodb, table, deleted, &seen)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Current::Recorded)
        }
        Answer::Dispatch => Ok(Current::Dispatch(ObjectChange {
            change: Change::Created,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            revision: deleted.revision.clone(),
            version_id: head.version_id().map(str::to_owned),
            etag: head.e_tag().map(|t| t.trim_matches('"').to_owned()),
            size: head.content_length().and_then(|n| u64::try_from(n).ok()),
            delete_marker: false,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(seq: &str) -> Revision {
        Revision::from_sequencer(seq).unwrap()
    }

    fn stored(seq: &str, status: Status, version: Option<&str>) -> Stored {
        Stored {
            revision: Some(rev(seq)),
            status: Some(status),
            version_id: version.map(str::to_owned),
            ..Stored::default()
        }
    }

    #[test]
    fn the_current_version_is_dispatched_floored_or_left_by_what_its_record_says() {
        let delete = rev("0C");
        let floored = Stored {
            gone_before: Some(rev("0C")),
            ..stored("0B", Status::Labeled, Some("v1"))
        };
        let cases = [
            (
                "undeleted: the marker's tombstone",
                Some(stored("0B", Status::Deleted, None)),
                Answer::Dispatch,
            ),
            (
                "current version deleted: its tombstone",
                Some(stored("0B", Status::Deleted, Some("v2"))),
                Answer::Dispatch,
            ),
            (
                "another version recorded",
                Some(stored("0B", Status::Labeled, Some("v2"))),
                Answer::Dispatch,
            ),
            (
                "the current version recorded, older than the delete",
                Some(stored("0B", Status::Labeled, Some("v1"))),
                Answer::Floor(rev("0B")),
            ),
            (
                "the current version recorded, queued",
                Some(stored("0A", Status::Queued, Some("v1"))),
                Answer::Floor(rev("0A")),
            ),
            (
                "its floor already the delete's",
                Some(floored),
                Answer::Nothing,
            ),
            (
                "a newer upload recorded",
                Some(stored("0D", Status::Queued, Some("v3"))),
                Answer::Nothing,
            ),
            ("no record", None, Answer::Dispatch),
        ];
        for (name, s, expected) in cases {
            assert_eq!(answer(s.as_ref(), Some("v1"), &delete), expected, "{name}");
        }
    }
}
