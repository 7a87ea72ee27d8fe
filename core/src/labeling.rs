//! The worker's conditional writes: the LABELED or FAILED outcome of one
//! upload, and the label-index entries that go with it.
//!
//! Both outcomes are written only while the image record still describes the
//! worker's upload (`revision = :rev`) and is not LABELED yet, so a Batch
//! retry, a duplicate job or a job for an older upload can never overwrite a
//! newer upload's record or label an image twice (invariants 2 and 3).
//!
//! # How one labeling is written
//!
//! 1. **Stale entries go first.** Label-index entries of older uploads of the
//!    key are found with a consistent Query of the item collection (the
//!    dispatcher's QUEUED claim replaces the whole image record, so the
//!    record no longer lists the labels of the upload it replaced) and each
//!    one that the new labeling does not overwrite is deleted with the
//!    condition `revision < :rev`. Those entries are stale whatever happens
//!    next, so deleting them before the transaction is always safe.
//! 2. **One transaction for the rest.** A single `TransactWriteItems` updates
//!    the image record (status, labels, model version, job, attempts) under
//!    the condition above and puts one entry per label. Readers therefore see
//!    either the QUEUED record or the LABELED record with exactly its entries.
//!
//! `TransactWriteItems` takes at most [`MAX_TRANSACT_ITEMS`] actions: the
//! record update plus one put per label. That is why the stale-entry deletes
//! are not in the transaction and why a record keeps at most
//! [`MAX_LABELS_PER_RECORD`] labels (one less than [`schema::LIMITS`]): one
//! atomic write is worth more than a hundredth label of lowest confidence.
//! Splitting the entries into several batches ahead of the record would have
//! left entries of a labeling that lost its race to a newer upload behind.

use crate::job::ImageRef;
use crate::revision::Revision;
use crate::schema::{self, attr, Label, Status, PK, SK};
use crate::store::{self, Clock, StoreError, WriteOutcome};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use std::collections::{HashMap, HashSet};

/// Most actions one `TransactWriteItems` call accepts.
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// Most labels stored per image: one transaction holds the record update and
/// one index entry per label.
pub const MAX_LABELS_PER_RECORD: usize = MAX_TRANSACT_ITEMS - 1;

/// Condition of every worker write to the image record: the record is still
/// this upload's and nobody has labeled it yet.
pub const OWN_UNLABELED_RECORD: &str = "revision = :rev AND #status <> :labeled";

/// Cancellation code DynamoDB reports for an action whose condition failed.
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";

/// The Batch job attempt that produced a result, recorded on the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Batch job id (the parent id for array children), when run by Batch.
    pub job_id: Option<String>,
    /// Batch attempt number, starting at 1.
    pub attempt: u32,
}

/// Labels as they will be stored: [`schema::cap_labels`], then at most
/// [`MAX_LABELS_PER_RECORD`] of them (the most confident).
pub fn prepare_labels(labels: Vec<Label>) -> Vec<Label> {
    let mut labels = schema::cap_labels(labels);
    labels.truncate(MAX_LABELS_PER_RECORD);
    labels
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn timestamp(now: Clock) -> AttributeValue {
    s(schema::rfc3339_millis(now.unix_millis))
}

/// The index entry of one label of `image`.
pub fn label_entry(image: &ImageRef, label: &Label) -> HashMap<String, AttributeValue> {
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

/// The actions of the labeling transaction: the conditional record update
/// first, then one put per label. `labels` are passed through
/// [`prepare_labels`], so the transaction never exceeds
/// [`MAX_TRANSACT_ITEMS`] actions.
pub fn labeled_transaction(
    table: &str,
    image: &ImageRef,
    labels: &[Label],
    model_version: Option<&str>,
    attempt: &Attempt,
    now: Clock,
) -> Vec<TransactWriteItem> {
    let labels = prepare_labels(labels.to_vec());
    let mut set = vec![
        "#status = :labeled",
        "labels = :labels",
        "attempts = :attempts",
        "updated_at = :now",
    ];
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(store::image_key(&image.bucket, &image.key)))
        .condition_expression(OWN_UNLABELED_RECORD)
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":labeled", s(Status::Labeled.as_str()))
        .expression_attribute_values(
            ":labels",
            AttributeValue::L(labels.iter().map(schema::label_to_attr).collect()),
        )
        .expression_attribute_values(":attempts", n(attempt.attempt))
        .expression_attribute_values(":now", timestamp(now))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if let Some(version) = model_version {
        set.push("label_model_version = :model");
        update = update.expression_attribute_values(":model", s(version));
    }
    if let Some(job_id) = &attempt.job_id {
        set.push("job_id = :job_id");
        update = update.expression_attribute_values(":job_id", s(job_id));
    }
    let update = update
        .update_expression(format!("SET {} REMOVE reason", set.join(", ")))
        .build()
        .expect("key, table and update expression are set");
    let mut items = Vec::with_capacity(labels.len() + 1);
    items.push(TransactWriteItem::builder().update(update).build());
    for label in &labels {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(label_entry(image, label)))
            .build()
            .expect("table and item are set");
        items.push(TransactWriteItem::builder().put(put).build());
    }
    items
}

/// Stores `labels` as the LABELED outcome of `image`, with their index
/// entries, and deletes index entries of older uploads that the new labels
/// do not replace. See the module documentation for the write protocol.
///
/// `Written` means this call labeled the image; `Duplicate` that the record
/// was already LABELED for this upload; `Superseded` that a newer upload (or
/// a delete) owns the record. Only the latter two are conflicts, never errors.
pub async fn record_labeled(
    client: &Client,
    table: &str,
    image: &ImageRef,
    labels: &[Label],
    model_version: Option<&str>,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let items = labeled_transaction(table, image, labels, model_version, attempt, now);
    let keep: HashSet<String> = items
        .iter()
        .filter_map(|i| i.put()?.item().get(SK)?.as_s().ok().cloned())
        .collect();
    remove_stale_entries(client, table, image, &keep).await?;
    let result = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await;
    match result {
        Ok(_) => Ok(WriteOutcome::Written),
        Err(SdkError::ServiceError(se)) => {
            let record_condition_failed = match se.err() {
                TransactWriteItemsError::TransactionCanceledException(e) => e
                    .cancellation_reasons()
                    .first()
                    .filter(|r| r.code() == Some(CONDITIONAL_CHECK_FAILED))
                    .map(|r| r.item()),
                _ => None,
            };
            match record_condition_failed {
                Some(returned) => classify_conflict(client, table, image, returned).await,
                None => Err(store_error(
                    "TransactWriteItems",
                    image,
                    SdkError::ServiceError(se),
                )),
            }
        }
        Err(e) => Err(store_error("TransactWriteItems", image, e)),
    }
}

/// Marks `image` FAILED with `reason` (capped with [`schema::capped_reason`])
/// unless the record belongs to another upload or is already LABELED, and
/// deletes the index entries older uploads left behind.
pub async fn record_failed(
    client: &Client,
    table: &str,
    image: &ImageRef,
    reason: &str,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    remove_stale_entries(client, table, image, &HashSet::new()).await?;
    let mut set = vec![
        "#status = :failed",
        "reason = :reason",
        "attempts = :attempts",
        "updated_at = :now",
    ];
    let mut request = client
        .update_item()
        .table_name(table)
        .set_key(Some(store::image_key(&image.bucket, &image.key)))
        .condition_expression(OWN_UNLABELED_RECORD)
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_values(":rev", s(image.revision.as_str()))
        .expression_attribute_values(":labeled", s(Status::Labeled.as_str()))
        .expression_attribute_values(":failed", s(Status::Failed.as_str()))
        .expression_attribute_values(":reason", s(schema::capped_reason(reason)))
        .expression_attribute_values(":attempts", n(attempt.attempt))
        .expression_attribute_values(":now", timestamp(now))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if let Some(job_id) = &attempt.job_id {
        set.push("job_id = :job_id");
        request = request.expression_attribute_values(":job_id", s(job_id));
    }
    let result = request
        .update_expression(format!("SET {}", set.join(", ")))
        .send()
        .await;
    match result {
        Ok(_) => Ok(WriteOutcome::Written),
        Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
            let returned = match se.err() {
                UpdateItemError::ConditionalCheckFailedException(c) => c.item(),
                _ => None,
            };
            classify_conflict(client, table, image, returned).await
        }
        Err(e) => Err(store_error("UpdateItem", image, e)),
    }
}

/// Deletes the label-index entries of `image`'s key that belong to an older
/// upload and whose sort key is not in `keep`; returns how many were deleted.
///
/// Each delete is conditional on `revision < :rev`, so entries written for
/// this or a newer upload are never touched, whatever raced with the Query.
pub async fn remove_stale_entries(
    client: &Client,
    table: &str,
    image: &ImageRef,
    keep: &HashSet<String>,
) -> Result<usize, StoreError> {
    let pk = schema::image_pk(&image.bucket, &image.key);
    let mut removed = 0;
    let mut start: Option<HashMap<String, AttributeValue>> = None;
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
            .map_err(|e| store_error("Query", image, e))?;
        for entry in page.items() {
            let Some(sk) = entry.get(SK).and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let older = entry
                .get(attr::REVISION)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|r| r.as_str() < image.revision.as_str());
            if !older || keep.contains(sk) {
                continue;
            }
            let key = HashMap::from([(PK.to_owned(), s(&pk)), (SK.to_owned(), s(sk))]);
            let deleted = client
                .delete_item()
                .table_name(table)
                .set_key(Some(key))
                .condition_expression("revision < :rev")
                .expression_attribute_values(":rev", s(image.revision.as_str()))
                .send()
                .await;
            match deleted {
                Ok(_) => removed += 1,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(store_error("DeleteItem", image, e)),
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(removed)
}

fn store_error<E>(operation: &'static str, image: &ImageRef, e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError {
        operation,
        pk: schema::image_pk(&image.bucket, &image.key),
        source: Box::new(e),
    }
}

/// Tells "already LABELED for this upload" from "a newer upload owns the
/// record", from the item the failed condition returned or, if DynamoDB did
/// not return one, from a fresh read.
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
            fetched = store::get_image(client, table, &image.bucket, &image.key).await?;
            fetched.as_ref()
        }
    };
    Ok(conflict_outcome(image, item))
}

/// The outcome of a failed condition, given the record as it is now:
/// `Duplicate` when it describes this upload, `Superseded` otherwise (with
/// `newer: None` when the record is gone or describes no newer upload, e.g.
/// after the object was deleted).
pub fn conflict_outcome(
    image: &ImageRef,
    record: Option<&HashMap<String, AttributeValue>>,
) -> WriteOutcome {
    let stored = record
        .and_then(|r| r.get(attr::REVISION)?.as_s().ok().cloned())
        .and_then(|r| Revision::try_from(r).ok());
    match stored {
        Some(rev) if rev == image.revision => WriteOutcome::Duplicate {
            existing: record
                .and_then(|r| r.get(attr::STATUS)?.as_s().ok())
                .and_then(|st| Status::parse(st)),
        },
        Some(rev) if rev > image.revision => WriteOutcome::Superseded { newer: Some(rev) },
        _ => WriteOutcome::Superseded { newer: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{BoundingBox, Instance};

    fn image() -> ImageRef {
        ImageRef {
            bucket: "photos".into(),
            key: "cats/Tabby Cat.jpg".into(),
            revision: Revision::from_sequencer("0062E99A88DC407460").unwrap(),
            version_id: None,
            etag: None,
            size: None,
        }
    }

    fn label(name: &str, confidence: f32) -> Label {
        Label {
            name: name.into(),
            confidence,
            parents: vec!["Animal".into()],
            categories: vec!["Animals and Pets".into()],
            instances: vec![Instance {
                confidence,
                bounding_box: BoundingBox {
                    left: 0.1,
                    top: 0.2,
                    width: 0.3,
                    height: 0.4,
                },
            }],
        }
    }

    fn attempt() -> Attempt {
        Attempt {
            job_id: Some("a1b2c3".into()),
            attempt: 2,
        }
    }

    const NOW: Clock = Clock {
        unix_millis: 1_795_394_520_123,
    };

    #[test]
    fn the_transaction_never_exceeds_dynamodb_s_action_limit() {
        let labels: Vec<_> = (0..500)
            .map(|i| label(&format!("L{i}"), i as f32 / 5.0))
            .collect();

        let items = labeled_transaction("labels", &image(), &labels, Some("3.0"), &attempt(), NOW);

        assert_eq!(items.len(), MAX_TRANSACT_ITEMS);
        assert!(items[0].update().is_some());
        assert!(items[1..].iter().all(|i| i.put().is_some()));
        let first = items[1].put().unwrap().item();
        assert_eq!(first[SK].as_s().unwrap(), "LABEL#L499");
    }

    #[test]
    fn the_record_update_is_conditional_on_this_upload_and_not_yet_labeled() {
        let items = labeled_transaction(
            "labels",
            &image(),
            &[label("Cat", 99.0)],
            Some("3.0"),
            &attempt(),
            NOW,
        );

        let update = items[0].update().unwrap();
        assert_eq!(update.condition_expression(), Some(OWN_UNLABELED_RECORD));
        assert_eq!(
            update.key(),
            &store::image_key("photos", "cats/Tabby Cat.jpg")
        );
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":rev"].as_s().unwrap(), image().revision.as_str());
        assert_eq!(values[":labeled"].as_s().unwrap(), "LABELED");
        assert_eq!(values[":job_id"].as_s().unwrap(), "a1b2c3");
        assert_eq!(values[":attempts"].as_n().unwrap(), "2");
        assert_eq!(values[":model"].as_s().unwrap(), "3.0");
        assert_eq!(values[":now"].as_s().unwrap(), "2026-11-23T00:42:00.123Z");
        let stored = values[":labels"].as_l().unwrap();
        assert_eq!(
            schema::label_from_attr(&stored[0]),
            Some(label("Cat", 99.0))
        );
        assert_eq!(
            update.update_expression(),
            "SET #status = :labeled, labels = :labels, attempts = :attempts, updated_at = :now, \
             label_model_version = :model, job_id = :job_id REMOVE reason"
        );
        assert_eq!(
            update.return_values_on_condition_check_failure(),
            Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        );
    }

    #[test]
    fn index_entries_carry_the_gsi_keys_and_the_upload() {
        let entry = label_entry(&image(), &label("Tabby Cat", 97.5));

        assert_eq!(entry[PK].as_s().unwrap(), "s3://photos/cats/Tabby Cat.jpg");
        assert_eq!(entry[SK].as_s().unwrap(), "LABEL#Tabby Cat");
        assert_eq!(entry[schema::LABEL_INDEX_PK].as_s().unwrap(), "tabby cat");
        assert_eq!(entry[schema::LABEL_INDEX_SK].as_n().unwrap(), "97.5");
        assert_eq!(entry[attr::NAME].as_s().unwrap(), "Tabby Cat");
        assert_eq!(
            entry[attr::REVISION].as_s().unwrap(),
            image().revision.as_str()
        );
        assert_eq!(entry[attr::KEY].as_s().unwrap(), "cats/Tabby Cat.jpg");
    }

    #[test]
    fn a_run_outside_batch_records_no_job_id_or_model_version() {
        let items = labeled_transaction("labels", &image(), &[], None, &Attempt::default(), NOW);

        let update = items[0].update().unwrap();
        assert_eq!(items.len(), 1);
        assert!(!update.update_expression().contains("job_id"));
        assert!(!update.update_expression().contains("label_model_version"));
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":labels"].as_l().unwrap().len(), 0);
    }

    #[test]
    fn prepared_labels_are_capped_unique_and_most_confident_first() {
        let mut labels: Vec<_> = (0..120)
            .map(|i| label(&format!("L{i}"), i as f32 / 2.0))
            .collect();
        labels.push(label("L119", 100.0));

        let prepared = prepare_labels(labels);

        assert_eq!(prepared.len(), MAX_LABELS_PER_RECORD);
        assert_eq!(prepared[0].name, "L119");
        assert_eq!(prepared[0].confidence, 100.0);
        assert!(prepared
            .windows(2)
            .all(|w| w[0].confidence >= w[1].confidence));
    }

    #[test]
    fn a_conflict_tells_a_duplicate_from_a_newer_upload() {
        let record = |seq: &str, status: Status| {
            HashMap::from([
                (
                    attr::REVISION.to_owned(),
                    s(Revision::from_sequencer(seq).unwrap().as_str()),
                ),
                (attr::STATUS.to_owned(), s(status.as_str())),
            ])
        };
        let same = record("0062E99A88DC407460", Status::Labeled);
        let newer = record("0062E99A88DC407470", Status::Queued);

        assert_eq!(
            conflict_outcome(&image(), Some(&same)),
            WriteOutcome::Duplicate {
                existing: Some(Status::Labeled)
            }
        );
        assert_eq!(
            conflict_outcome(&image(), Some(&newer)),
            WriteOutcome::Superseded {
                newer: Some(Revision::from_sequencer("0062E99A88DC407470").unwrap())
            }
        );
        assert_eq!(
            conflict_outcome(&image(), None),
            WriteOutcome::Superseded { newer: None }
        );
    }
}
