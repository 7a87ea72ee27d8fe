//! Content reuse: label every distinct picture once.
//!
//! Renaming or moving an object in S3 is a copy plus a delete; re-uploading
//! a file, syncing a folder twice or keeping a photo under two prefixes all
//! make new keys with the same bytes. The worker looks up a **content
//! entry** before it calls DetectLabels and, on a hit, copies its labels
//! into the record without a Rekognition call; after a paid call it stores
//! one.
//!
//! **Content identity** is S3's ETag with the object's size
//! ([`ContentKey::of`]): an `S3Object` reference is all the worker gets, and
//! the ETag comes with every event and listing for free. For an object
//! uploaded in one part (and copies of it, which keep the ETag) it is the
//! MD5 of the bytes; for a multipart upload it depends on the part size too,
//! so the same bytes uploaded with another part size miss (they are labeled
//! again, never wrongly). ETags of SSE-C and SSE-KMS objects are not digests
//! of the content; turn reuse off (`LABELER_REUSE_LABELS=false`) for buckets
//! encrypted that way if their ETags could repeat across different content.
//! MD5 collisions between valid images can be constructed, so an uploader
//! can give an image another image's labels: turn reuse off where labels
//! gate something and uploaders are not trusted. The worker stores an entry
//! only after checking that the object still has the ETag its key names
//! (`worker::source::unchanged`).
//!
//! The entry's key also holds the labeling options (`MaxLabels`,
//! `MinConfidence`): labels asked for with other options are not reused.
//! Entries carry the label model version that produced them and expire
//! through the table's TTL ([`crate::schema::attr::EXPIRES_AT`]) after
//! [`DEFAULT_TTL_DAYS`], so a new label model is picked up; an entry past
//! its expiry that DynamoDB has not deleted yet (TTL deletes lag) is
//! ignored.
//!
//! Entries are `pk = CONTENT#<etag>#<size>`, `sk = LABELS#<options>`: not
//! image records (`sk` is not `IMAGE`), without the label index's or the
//! status index's attributes, so no reader of records ever sees them.

use crate::db::{n, s, Clock, StoreError};
pub use crate::labeling::Reused;

use crate::labeling::prepare_labels;
use crate::schema::{self, attr, Label, PK, SK};
use crate::{ImageRef, LabelOptions};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// Prefix of a content entry's partition key.
pub const CONTENT_PK_PREFIX: &str = "CONTENT#";
/// Prefix of a content entry's sort key.
pub const CONTENT_SK_PREFIX: &str = "LABELS#";
/// Days a content entry is reused before the image is labeled afresh.
pub const DEFAULT_TTL_DAYS: u64 = 30;

/// Attributes of a content entry besides the keys, labels, model version
/// and expiry (which it shares with records).
pub mod entry_attr {
    /// `s3://BUCKET/KEY` of the image whose DetectLabels call produced it.
    pub const SOURCE: &str = "source";
    /// When it was stored (RFC 3339).
    pub const STORED_AT: &str = "stored_at";
}

/// Where a content entry lives: the object's content identity and the
/// labeling options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentKey {
    pk: String,
    sk: String,
}

impl ContentKey {
    /// The key for `image` labeled with `options`, or `None` when the
    /// image's ETag or size is unknown (it is then labeled without reuse).
    pub fn of(image: &ImageRef, options: &LabelOptions) -> Option<Self> {
        let etag = normalise_etag(image.etag.as_deref()?)?;
        let size = image.size?;
        Some(Self {
            pk: format!("{CONTENT_PK_PREFIX}{etag}#{size}"),
            sk: format!(
                "{CONTENT_SK_PREFIX}max={}#min={}",
                options.max_labels, options.min_confidence
            ),
        })
    }

    /// The partition key.
    pub fn pk(&self) -> &str {
        &self.pk
    }

    fn item_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([(PK.to_owned(), s(&self.pk)), (SK.to_owned(), s(&self.sk))])
    }
}

/// An ETag without its quotes, in lower case; `None` when empty or not
/// hexadecimal (with a multipart `-N` suffix allowed).
fn normalise_etag(raw: &str) -> Option<String> {
    let etag = raw.trim().trim_matches('"').to_ascii_lowercase();
    let (digest, parts) = match etag.split_once('-') {
        Some((d, p)) => (d, Some(p)),
        None => (etag.as_str(), None),
    };
    let hex = !digest.is_empty() && digest.bytes().all(|b| b.is_ascii_hexdigit());
    let parts_ok = parts.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (hex && parts_ok).then_some(etag)
}

/// Reads the content entry for `key`, if there is one that has not expired
/// at `now`. An eventually consistent read: an entry written a moment ago
/// may be missed, which costs one DetectLabels call, never a wrong label.
pub async fn lookup(
    client: &Client,
    table: &str,
    key: &ContentKey,
    now: Clock,
) -> Result<Option<Reused>, StoreError> {
    let item = client
        .get_item()
        .table_name(table)
        .set_key(Some(key.item_key()))
        .send()
        .await
        .map_err(|e| StoreError::new("GetItem", key.pk.clone(), e))?
        .item;
    Ok(item.and_then(|item| read_entry(&item, now)))
}

/// A stored entry as [`Reused`], unless it has expired at `now`.
pub fn read_entry(item: &HashMap<String, AttributeValue>, now: Clock) -> Option<Reused> {
    let expires_at: u64 = item.get(attr::EXPIRES_AT)?.as_n().ok()?.parse().ok()?;
    if expires_at <= now.unix_secs() {
        return None;
    }
    let labels = item
        .get(attr::LABELS)?
        .as_l()
        .ok()?
        .iter()
        .filter_map(schema::label_from_attr)
        .collect();
    Some(Reused {
        labels,
        model_version: item
            .get(attr::LABEL_MODEL_VERSION)
            .and_then(|v| v.as_s().ok())
            .cloned(),
        source: item.get(entry_attr::SOURCE)?.as_s().ok()?.clone(),
        conversion: item
            .get(attr::CONVERSION)
            .and_then(|v| v.as_s().ok())
            .cloned(),
    })
}

/// The content entry for labels `image` was just given.
pub fn entry(
    key: &ContentKey,
    image: &ImageRef,
    labels: &[Label],
    model_version: Option<&str>,
    now: Clock,
    ttl_days: u64,
) -> HashMap<String, AttributeValue> {
    let labels = prepare_labels(labels.to_vec());
    let mut item = key.item_key();
    item.insert(
        attr::LABELS.to_owned(),
        AttributeValue::L(labels.iter().map(schema::label_to_attr).collect()),
    );
    if let Some(version) = model_version {
        item.insert(attr::LABEL_MODEL_VERSION.to_owned(), s(version));
    }
    item.insert(
        entry_attr::SOURCE.to_owned(),
        s(schema::image_pk(&image.bucket, &image.key)),
    );
    item.insert(entry_attr::STORED_AT.to_owned(), s(now.rfc3339()));
    item.insert(
        attr::EXPIRES_AT.to_owned(),
        n(now.plus_secs(ttl_days * 86_400).unix_secs()),
    );
    item
}

/// Stores the content entry (unconditionally: two images with the same
/// content write the same labels, and the later one wins).
pub async fn remember(
    client: &Client,
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<(), StoreError> {
    let pk = item
        .get(PK)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| StoreError::new("PutItem", pk, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{BoundingBox, Instance};
    use crate::Revision;

    fn image(key: &str, etag: Option<&str>, size: Option<u64>) -> ImageRef {
        ImageRef {
            bucket: "photos".into(),
            key: key.into(),
            revision: Revision::from_sequencer("0A").unwrap(),
            version_id: None,
            etag: etag.map(Into::into),
            size,
        }
    }

    fn dog() -> Label {
        Label {
            name: "Dog".into(),
            confidence: 98.5,
            parents: vec!["Animal".into()],
            categories: vec!["Animals and Pets".into()],
            instances: vec![Instance {
                confidence: 97.0,
                bounding_box: BoundingBox {
                    left: 0.1,
                    top: 0.2,
                    width: 0.3,
                    height: 0.4,
                },
            }],
        }
    }

    #[test]
    fn a_copy_under_another_key_has_the_same_content_key() {
        let options = LabelOptions::default();
        let original = ContentKey::of(
            &image(
                "a.jpg",
                Some("\"9B2CF535F27731C974343645A3985328\""),
                Some(1000),
            ),
            &options,
        );
        let copy = ContentKey::of(
            &image(
                "moved/a copy.jpg",
                Some("9b2cf535f27731c974343645a3985328"),
                Some(1000),
            ),
            &options,
        );
        assert!(original.is_some());
        assert_eq!(original, copy);
    }

    #[test]
    fn other_bytes_sizes_or_options_have_other_keys() {
        let options = LabelOptions::default();
        let key = |etag: &str, size: u64, options: &LabelOptions| {
            ContentKey::of(&image("a.jpg", Some(etag), Some(size)), options).unwrap()
        };
        let base = key("9b2cf535f27731c974343645a3985328", 1000, &options);
        assert_ne!(
            base,
            key("0b2cf535f27731c974343645a3985328", 1000, &options)
        );
        assert_ne!(
            base,
            key("9b2cf535f27731c974343645a3985328", 1001, &options)
        );
        let stricter = LabelOptions {
            min_confidence: 90.0,
            ..options
        };
        assert_ne!(
            base,
            key("9b2cf535f27731c974343645a3985328", 1000, &stricter)
        );
        // A multipart ETag is an identity too (of the bytes and the part size).
        assert!(ContentKey::of(
            &image(
                "a",
                Some("\"d41d8cd98f00b204e9800998ecf8427e-12\""),
                Some(5)
            ),
            &options
        )
        .is_some());
    }

    #[test]
    fn without_an_etag_or_a_size_there_is_no_reuse() {
        let options = LabelOptions::default();
        assert_eq!(ContentKey::of(&image("a", None, Some(1)), &options), None);
        assert_eq!(
            ContentKey::of(&image("a", Some("abc"), None), &options),
            None
        );
        assert_eq!(
            ContentKey::of(&image("a", Some("\"\""), Some(1)), &options),
            None
        );
        assert_eq!(
            ContentKey::of(&image("a", Some("not hex"), Some(1)), &options),
            None
        );
        assert_eq!(
            ContentKey::of(&image("a", Some("abc-"), Some(1)), &options),
            None
        );
    }

    #[test]
    fn an_entry_reads_back_until_it_expires() {
        let options = LabelOptions::default();
        let img = image("a.jpg", Some("9b2c"), Some(10));
        let key = ContentKey::of(&img, &options).unwrap();
        let now = Clock {
            unix_millis: 1_700_000_000_000,
        };
        let item = entry(&key, &img, &[dog()], Some("3.0"), now, 30);
        assert_eq!(item[PK].as_s().unwrap(), "CONTENT#9b2c#10");
        assert!(item[SK].as_s().unwrap().starts_with(CONTENT_SK_PREFIX));
        // Not a record, and in no index.
        assert_ne!(item[SK].as_s().unwrap(), schema::IMAGE_SK);
        for index_attr in [
            schema::LABEL_INDEX_PK,
            schema::STATUS_INDEX_PK,
            attr::STATUS,
        ] {
            assert!(!item.contains_key(index_attr), "{index_attr}");
        }
        let reused = read_entry(&item, now.plus_secs(29 * 86_400)).unwrap();
        assert_eq!(reused.labels, vec![dog()]);
        assert_eq!(reused.model_version.as_deref(), Some("3.0"));
        assert_eq!(reused.source, "s3://photos/a.jpg");
        assert_eq!(read_entry(&item, now.plus_secs(30 * 86_400)), None);
    }
}
