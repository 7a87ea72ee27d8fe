//! The worker's conditional writes: the LABELED or FAILED outcome of one
//! upload, and the label-index entries that go with it.
//!
//! Before it calls DetectLabels, the worker **takes** the image for its job
//! ([`take`], [`TAKE_CONDITION`]): the record must be this upload's,
//! QUEUED, and not owned by another job. Both outcomes are then written only
//! while the record is still this upload's, QUEUED and owned by this job
//! ([`OWNED_BY_JOB`]), so a Batch retry (same job id) carries on, while
//! a duplicate job, a job for an older upload or a job the reconciler gave up
//! on can never label an image a second time or overwrite a newer upload's
//! record (invariants 2 and 3).
//!
//! # How one labeling is written
//!
//! 1. **Stale entries go first.** Label-index entries of older uploads of the
//!    key are found with a consistent Query of the item collection (the
//!    dispatcher's QUEUED claim replaces the whole image record, so the
//!    record no longer lists the labels of the upload it replaced) and each
//!    one that the new labeling does not overwrite is deleted with the
//!    condition `revision < :rev`. Those entries are stale whatever happens
//!    next, and no older upload's worker can add any once this job has
//!    taken the record, so deleting them before the transaction is safe.
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
//!
//! Each write is a value built by the crate's `write` module (`write::take`,
//! `write::labeled`, `write::failed`) and sent by its `Table`, the one place
//! that sends writes and reads conflicts; the functions here order the
//! stale-entry deletes before it.
//!
//! [`TAKE_CONDITION`]: crate::rule::TAKE_CONDITION
//! [`OWNED_BY_JOB`]: crate::rule::OWNED_BY_JOB

pub use crate::write::{Attempt, Provenance};

use crate::db::{Clock, StoreError, WriteOutcome};
use crate::entries::remove_stale_entries;
use crate::job::ImageRef;
use crate::schema::{self, Label};
use crate::write::{self, Labeling, Table};
use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;
use std::collections::HashSet;

/// Most actions one `TransactWriteItems` call accepts.
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// Most labels stored per image: one transaction holds the record update and
/// one index entry per label.
pub const MAX_LABELS_PER_RECORD: usize = MAX_TRANSACT_ITEMS - 1;

/// An owner token for a worker run outside Batch (no `AWS_BATCH_JOB_ID`):
/// unique per process, so two local runs never share a take.
pub fn process_owner() -> String {
    format!(
        "local-{}-{:016x}",
        std::process::id(),
        Clock::now().unix_millis ^ u64::from(std::process::id()).rotate_left(32)
    )
}

/// Labels as they will be stored: [`schema::cap_labels`], then at most
/// [`MAX_LABELS_PER_RECORD`] of them (the most confident).
pub fn prepare_labels(labels: Vec<Label>) -> Vec<Label> {
    let mut labels = schema::cap_labels(labels);
    labels.truncate(MAX_LABELS_PER_RECORD);
    labels
}

/// A LABELED result of `labels`, passed through [`prepare_labels`], so that
/// its transaction never exceeds [`MAX_TRANSACT_ITEMS`] actions.
fn labeling<'a>(
    labels: &[Label],
    model_version: Option<&'a str>,
    provenance: Provenance<'a>,
) -> Labeling<'a> {
    Labeling {
        labels: prepare_labels(labels.to_vec()),
        model_version,
        provenance,
    }
}

/// Takes `image` for this job before DetectLabels is called: sets the
/// record's owner (and job id) under [`rule::TAKE_CONDITION`].
///
/// `Written` means this job may call DetectLabels (it took the image now or
/// in an earlier Batch attempt); `Duplicate` that the upload already has a
/// terminal record; `Superseded` that another job owns it, or a newer upload
/// or a delete does. Only `Written` leads to a Rekognition call.
///
/// [`rule::TAKE_CONDITION`]: crate::rule::TAKE_CONDITION
pub async fn take(
    client: &Client,
    table: &str,
    image: &ImageRef,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let write = write::take(image, attempt, now);
    Table::new(client, table).apply(&write).await
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
    provenance: Provenance<'_>,
    attempt: &Attempt,
    now: Clock,
) -> Vec<TransactWriteItem> {
    let labeling = labeling(labels, model_version, provenance);
    write::labeled(image, &labeling, attempt, now).items(table)
}

/// Stores `labels` as the LABELED outcome of `image`, with their index
/// entries, and deletes index entries of older uploads that the new labels
/// do not replace. See the module documentation for the write protocol.
///
/// `Written` means this call labeled the image (or an earlier call whose
/// response was lost did); `Duplicate` that the record already has a
/// terminal status for this upload; `Superseded` that a newer upload, a
/// delete or another job owns the record. Conflicts are never errors.
pub async fn record_labeled(
    client: &Client,
    table: &str,
    image: &ImageRef,
    detected: &Detected<'_>,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let provenance = Provenance::Detected {
        conversion: detected.conversion,
        note: detected.note,
    };
    let labeling = labeling(detected.labels, detected.model_version, provenance);
    write_labeled(Table::new(client, table), image, &labeling, attempt, now).await
}

/// Stores labels found for the same content ([`crate::reuse`]) as the
/// LABELED outcome of `image`, naming the image they were detected for:
/// the same write as [`record_labeled`], without a DetectLabels call.
pub async fn record_reused(
    client: &Client,
    table: &str,
    image: &ImageRef,
    reused: &Reused,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let provenance = Provenance::Reused {
        from: &reused.source,
        conversion: reused.conversion.as_deref(),
    };
    let labeling = labeling(&reused.labels, reused.model_version.as_deref(), provenance);
    write_labeled(Table::new(client, table), image, &labeling, attempt, now).await
}

/// What DetectLabels answered for an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected<'a> {
    /// The labels.
    pub labels: &'a [Label],
    /// Rekognition's label model version.
    pub model_version: Option<&'a str>,
    /// What the worker did to the image before the call (e.g. "converted
    /// from WebP, 4032×3024 → 3024×2268"); `None` when Rekognition read the
    /// object as it is. Stored as [`attr::CONVERSION`].
    ///
    /// [`attr::CONVERSION`]: crate::schema::attr::CONVERSION
    pub conversion: Option<&'a str>,
    /// Why the labels are not what the backend normally gives (e.g. a
    /// cascade past its Rekognition budget). Stored as [`attr::LABEL_NOTE`].
    ///
    /// [`attr::LABEL_NOTE`]: crate::schema::attr::LABEL_NOTE
    pub note: Option<&'a str>,
}

impl<'a> Detected<'a> {
    /// Labels of the object as it is, without a conversion.
    pub fn as_is(labels: &'a [Label], model_version: Option<&'a str>) -> Self {
        Self {
            labels,
            model_version,
            conversion: None,
            note: None,
        }
    }
}

/// Labels found for the same content ([`crate::reuse::lookup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Reused {
    /// The labels, as stored for the image that paid for them.
    pub labels: Vec<Label>,
    /// The label model version that produced them.
    pub model_version: Option<String>,
    /// `s3://BUCKET/KEY` of that image.
    pub source: String,
    /// What the worker did to that image before DetectLabels read it (the
    /// same bytes need the same conversion): kept on the reusing record.
    pub conversion: Option<String>,
}

/// Steps 1 and 2 of the module documentation: deletes the stale entries the
/// transaction does not overwrite, then sends the transaction.
async fn write_labeled(
    table: Table<'_>,
    image: &ImageRef,
    labeling: &Labeling<'_>,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let transaction = write::labeled(image, labeling, attempt, now);
    let keep = transaction.entry_keys();
    let (client, name) = (table.client(), table.name());
    let (bucket, key, revision) = (&image.bucket, &image.key, &image.revision);
    remove_stale_entries(client, name, bucket, key, revision, &keep).await?;
    table.apply_transaction(&transaction).await
}

/// Marks `image` FAILED with `reason` (capped with [`schema::capped_reason`])
/// while this job owns it, after deleting the index entries older uploads
/// left behind.
pub async fn record_failed(
    client: &Client,
    table: &str,
    image: &ImageRef,
    reason: &str,
    attempt: &Attempt,
    now: Clock,
) -> Result<WriteOutcome, StoreError> {
    let (bucket, key, revision) = (&image.bucket, &image.key, &image.revision);
    remove_stale_entries(client, table, bucket, key, revision, &HashSet::new()).await?;
    let write = write::failed(image, reason, attempt, now);
    Table::new(client, table).apply(&write).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::label_entry;
    use crate::rule;
    use crate::schema::{attr, BoundingBox, Instance, PK, SK};
    use crate::{store, Revision};
    use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

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
            owner: "a1b2c3:4".into(),
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

        let items = labeled_transaction(
            "labels",
            &image(),
            &labels,
            Some("3.0"),
            Provenance::Detected {
                conversion: None,
                note: None,
            },
            &attempt(),
            NOW,
        );

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
            Provenance::Detected {
                conversion: None,
                note: None,
            },
            &attempt(),
            NOW,
        );

        let update = items[0].update().unwrap();
        assert_eq!(update.condition_expression(), Some(rule::OWNED_BY_JOB));
        assert_eq!(
            update.key(),
            &store::image_key("photos", "cats/Tabby Cat.jpg")
        );
        let values = update.expression_attribute_values().unwrap();
        assert_eq!(values[":rev"].as_s().unwrap(), image().revision.as_str());
        assert_eq!(values[":labeled"].as_s().unwrap(), "LABELED");
        assert_eq!(values[":job_id"].as_s().unwrap(), "a1b2c3");
        assert_eq!(values[":owner"].as_s().unwrap(), "a1b2c3:4");
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
             label_model_version = :model, job_id = :job_id REMOVE reason, status_key, status_at, reused_from, conversion, label_note"
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
        let items = labeled_transaction(
            "labels",
            &image(),
            &[],
            None,
            Provenance::Detected {
                conversion: None,
                note: None,
            },
            &Attempt::default(),
            NOW,
        );

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
}
