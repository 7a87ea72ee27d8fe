//! Label-index entries (`LABEL#<Name>` items): building them and deleting
//! the ones an older upload of the key left behind.
//!
//! Entries follow the image record in every transition: the worker's
//! labeling transaction writes them with the LABELED record, and every write
//! that makes a newer upload or a delete the record's owner deletes the
//! entries of older uploads:
//!
//! * the dispatcher's SKIPPED, tombstone and FAILED writes delete them
//!   *after* the record names the newer upload (`store::clear_older_entries`;
//!   a version delete through [`remove_entries_through`] once the record is
//!   that version's tombstone):
//!   before that, an older upload's worker could still commit entries in the
//!   gap, and they would stay forever;
//! * the worker's LABELED and FAILED writes delete them *before* the record:
//!   the record is already the worker's own upload's QUEUED record, so no
//!   older upload's worker can commit any more, and deleting first keeps a
//!   reader from ever seeing the new labels beside old ones.

use crate::db::{n, s, Item, StoreError};
use crate::job::ImageRef;
use crate::schema::{self, attr, Label, PK, SK};
use crate::Revision;
use aws_sdk_dynamodb::Client;
use std::collections::{HashMap, HashSet};

/// The index entry of one label of `image`.
pub fn label_entry(image: &ImageRef, label: &Label) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            s(schema::image_pk(&image.bucket, &image.key)),
        ),
        (SK.to_owned(), s(schema::label_sk(&label.name))),
        (
            schema::LABEL_INDEX_PK.to_owned(),
            s(schema::label_index_value(&label.name)),
        ),
        (schema::LABEL_INDEX_SK.to_owned(), n(label.confidence)),
        (attr::NAME.to_owned(), s(&label.name)),
        (attr::BUCKET.to_owned(), s(&image.bucket)),
        (attr::KEY.to_owned(), s(&image.key)),
        (attr::REVISION.to_owned(), s(image.revision.as_str())),
    ])
}

/// Deletes the label-index entries of `bucket/key` that belong to an upload
/// older than `revision` and whose sort key is not in `keep`; returns how
/// many were deleted.
///
/// Each delete is conditional on `revision < :rev`, so entries written for
/// this or a newer upload are never touched, whatever raced with the Query.
pub async fn remove_stale_entries(
    client: &Client,
    table: &str,
    bucket: &str,
    key: &str,
    revision: &Revision,
    keep: &HashSet<String>,
) -> Result<usize, StoreError> {
    let older = Older {
        than: revision,
        inclusive: false,
        keep,
    };
    remove_entries(client, table, &schema::image_pk(bucket, key), &older).await
}

/// Deletes every label-index entry of `bucket/key` of upload `revision` or
/// older (a deleted version's own entries included).
pub async fn remove_entries_through(
    client: &Client,
    table: &str,
    bucket: &str,
    key: &str,
    revision: &Revision,
) -> Result<usize, StoreError> {
    let older = Older {
        than: revision,
        inclusive: true,
        keep: &HashSet::new(),
    };
    remove_entries(client, table, &schema::image_pk(bucket, key), &older).await
}

/// Which label entries of a key a removal deletes.
struct Older<'a> {
    /// The upload they are older than.
    than: &'a Revision,
    /// Whether that upload's own entries go too.
    inclusive: bool,
    /// Sort keys kept whatever their upload (the ones about to be written).
    keep: &'a HashSet<String>,
}

impl Older<'_> {
    /// The condition each delete is sent with.
    fn condition(&self) -> &'static str {
        if self.inclusive {
            "revision <= :rev"
        } else {
            "revision < :rev"
        }
    }

    /// Whether the entry `sk` of upload `revision` (as the Query read it) is
    /// one to delete.
    fn covers(&self, sk: &str, revision: Option<&str>) -> bool {
        let than = self.than.as_str();
        let older = revision.is_some_and(|r| r < than || (self.inclusive && r == than));
        older && !self.keep.contains(sk)
    }
}

/// Deletes the entries of the item collection `pk` that `older` covers, page
/// by page of a consistent Query.
async fn remove_entries(
    client: &Client,
    table: &str,
    pk: &str,
    older: &Older<'_>,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut start: Option<Item> = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(schema::LABEL_SK_PREFIX))
            .projection_expression("pk, sk, revision")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| StoreError::new("Query", pk, e))?;
        for entry in page.items() {
            let Some(sk) = entry.get(SK).and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let revision = entry.get(attr::REVISION).and_then(|v| v.as_s().ok());
            if older.covers(sk, revision.map(String::as_str))
                && delete_entry(client, table, (pk, sk), older).await?
            {
                removed += 1;
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(removed)
}

/// Deletes the entry `(pk, sk)` under `older`'s condition; `false` when the
/// condition failed (the entry is this or a newer upload's by now).
async fn delete_entry(
    client: &Client,
    table: &str,
    (pk, sk): (&str, &str),
    older: &Older<'_>,
) -> Result<bool, StoreError> {
    let entry_key = HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))]);
    let deleted = client
        .delete_item()
        .table_name(table)
        .set_key(Some(entry_key))
        .condition_expression(older.condition())
        .expression_attribute_values(":rev", s(older.than.as_str()))
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(StoreError::new("DeleteItem", pk, e)),
    }
}
