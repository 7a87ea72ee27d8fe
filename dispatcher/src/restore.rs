//! Versions that come back: after the permanent delete of one version of a
//! key in a versioned bucket, an older version may be the key's object again
//! — a console "undelete" deletes the delete marker; deleting the current
//! version promotes the one before it. Neither event names the version that
//! is now current, so the dispatcher asks S3 (`HeadObject`) and, when its
//! record does not describe that version ([`needs_dispatch`]), dispatches it
//! like an upload that carries the delete's revision: newer than the
//! tombstone it replaces, older than any later upload of the key.
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

/// A version delete: the key, and the delete's revision.
#[derive(Debug, Clone, Copy)]
pub struct Deleted<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
    /// Revision of the delete event.
    pub revision: &'a Revision,
}

impl<'a> Deleted<'a> {
    /// The key and revision of a tombstone.
    pub fn of(deletion: &store::Deletion<'a>) -> Self {
        Self {
            bucket: deletion.bucket,
            key: deletion.key,
            revision: deletion.revision,
        }
    }
}

/// Whether the key's current version (`current`, by version id) must be
/// dispatched after a version delete of revision `delete`, given its record.
///
/// Yes when the record is older than the delete and is a tombstone or
/// describes another version; no when it already describes the current
/// version, or when a newer upload or delete is recorded.
pub fn needs_dispatch(stored: Option<&Stored>, current: Option<&str>, delete: &Revision) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    if stored.revision.as_ref().is_some_and(|r| r >= delete) {
        return false;
    }
    stored.status == Some(Status::Deleted) || stored.version_id.as_deref() != current
}

/// What a version delete leaves current, and what the record must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    /// A version its record does not describe: dispatch it, as an object
    /// change carrying the delete's revision.
    Dispatch(ObjectChange),
    /// A version its record already describes, or a newer change recorded.
    Recorded,
    /// No version (a delete marker, or none left): tombstone the key under
    /// the delete's revision.
    Nothing,
}

/// What is current after the version delete `deleted` ([`Current`]).
pub async fn current_version(
    clients: &Clients,
    table: &str,
    deleted: Deleted<'_>,
) -> Result<Current, String> {
    let Deleted {
        bucket,
        key,
        revision,
    } = deleted;
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
    if !needs_dispatch(stored.as_ref(), head.version_id(), revision) {
        return Ok(Current::Recorded);
    }
    Ok(Current::Dispatch(ObjectChange {
        change: Change::Created,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        revision: revision.clone(),
        version_id: head.version_id().map(str::to_owned),
        etag: head.e_tag().map(|t| t.trim_matches('"').to_owned()),
        size: head.content_length().and_then(|n| u64::try_from(n).ok()),
        delete_marker: false,
    }))
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
    fn the_current_version_is_dispatched_unless_its_record_or_a_newer_one_is_there() {
        let delete = rev("0C");
        let cases = [
            (
                "undeleted: the marker's tombstone",
                Some(stored("0B", Status::Deleted, None)),
                true,
            ),
            (
                "current version deleted: its tombstone",
                Some(stored("0B", Status::Deleted, Some("v2"))),
                true,
            ),
            (
                "another version recorded",
                Some(stored("0B", Status::Labeled, Some("v2"))),
                true,
            ),
            (
                "the current version recorded",
                Some(stored("0B", Status::Labeled, Some("v1"))),
                false,
            ),
            (
                "a newer upload recorded",
                Some(stored("0D", Status::Queued, Some("v3"))),
                false,
            ),
            ("no record", None, true),
        ];
        for (name, s, expected) in cases {
            assert_eq!(
                needs_dispatch(s.as_ref(), Some("v1"), &delete),
                expected,
                "{name}"
            );
        }
    }
}
