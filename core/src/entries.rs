//! Label-index entries (`LABEL#<Name>` items): building them and deleting
//! the ones an older upload of the key left behind.
//!
//! Entries follow the image record in every transition: the worker's
//! labeling transaction writes them with the LABELED record, and every write
//! that makes a newer upload or a delete the record's owner deletes the
//! entries of older uploads:
//!
//! * the dispatcher's SKIPPED, tombstone and FAILED writes delete them
//!   *after* the record names the newer upload (`store::clear_older_entries`):
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
    remove_entries(client, table, bucket, key, revision, keep, false).await
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
    remove_entries(client, table, bucket, key, revision, &HashSet::new(), true).await
}

async fn remove_entries(
    client: &Client,
    table: &str,
    bucket: &str,
    key: &str,
    revision: &Revision,
    keep: &HashSet<String>,
    inclusive: bool,
) -> Result<usize, StoreError> {
    let condition = if inclusive {
        "revision <= :rev"
    } else {
        "revision < :rev"
    };
    let pk = schema::image_pk(bucket, key);
    let mut removed = 0;
    let mut start: Option<Item> = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(schema::LABEL_SK_PREFIX))
            .projection_expression("pk, sk, revision")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| StoreError::new("Query", &pk, e))?;
        for entry in page.items() {
            let Some(sk) = entry.get(SK).and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let older = entry
                .get(attr::REVISION)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|r| {
                    r.as_str() < revision.as_str() || (inclusive && r.as_str() == revision.as_str())
                });
            if !older || keep.contains(sk) {
                continue;
            }
            let entry_key = HashMap::from([(PK.to_owned(), s(&pk)), (SK.to_owned(), s(sk))]);
            let deleted = client
                .delete_item()
                .table_name(table)
                .set_key(Some(entry_key))
                .condition_expression(condition)
                .expression_attribute_values(":rev", s(revision.as_str()))
                .send()
                .await;
            match deleted {
                Ok(_) => removed += 1,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(StoreError::new("DeleteItem", &pk, e)),
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(removed)
}
