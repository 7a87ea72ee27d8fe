//! Content reuse: label every distinct picture once.
//!
//! Renaming or moving an object in S3 is a copy plus a delete; re-uploading
//! a file, syncing a folder twice or keeping a photo under two prefixes all
//! make new keys with the same bytes. The worker looks up a **content
//! entry** before it calls DetectLabels and, on a hit, copies its labels
//! into the record without a Rekognition call; after a paid call it stores
//! one.
//!
//! **Content identity** is the SHA-256 of the object's bytes with their
//! size ([`Content`], [`ContentKey::new`]), which the worker takes from S3's
//! full-object `ChecksumSHA256` when the object was uploaded with one (S3
//! verified it against the bytes) and otherwise computes while reading the
//! object. Not the ETag: a single-part ETag is an MD5, and two valid images
//! with the same MD5 can be constructed, so an uploader could give an image
//! another image's labels; a multipart ETag depends on the part size; an
//! SSE-KMS or SSE-C ETag is no digest at all. A digest is of the bytes the
//! worker read: the worker stores an entry only when DetectLabels read the
//! same bytes (a pinned version, or bytes sent with the request), or, for
//! an unversioned object Rekognition read by name, when the object still
//! has the ETag of the read that was hashed (`worker::source::unchanged`).
//!
//! The entry's key also holds the labeling options (`MaxLabels`,
//! `MinConfidence`): labels asked for with other options are not reused.
//! Entries carry the label model version that produced them, and one is
//! served only while that version is the **current label model**
//! ([`MODEL_PK`]: the version the latest paid answers came from, kept in the
//! table so the whole fleet shares it): after Rekognition moves to a new
//! model, the first copy of each content is labeled afresh and its entry
//! replaced. Entries also expire through the table's TTL
//! ([`crate::schema::attr::EXPIRES_AT`]) after [`DEFAULT_TTL_DAYS`]; an
//! entry past its expiry that DynamoDB has not deleted yet (TTL deletes lag)
//! is ignored.
//!
//! Entries are `pk = CONTENT#sha256=<hex>#<size>`, `sk = LABELS#<options>`: not
//! image records (`sk` is not `IMAGE`), without the label index's or the
//! status index's attributes, so no reader of records ever sees them.

use crate::db::{n, s, Clock, StoreError};
pub use crate::labeling::Reused;

use crate::labeling::{prepare_labels, Detected};
use crate::schema::{self, attr, PK, SK};
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

/// Partition key of the current label model's marker item.
pub const MODEL_PK: &str = "LABEL_MODEL";
/// Sort key of the current label model's marker item.
pub const MODEL_SK: &str = "CURRENT";

/// The identity of an object's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// How many bytes.
    pub size: u64,
}

/// Where a content entry lives: the bytes' identity and the labeling
/// options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentKey {
    pk: String,
    sk: String,
}

impl ContentKey {
    /// The key for bytes `content` labeled by Rekognition with `options`.
    pub fn new(content: &Content, options: &LabelOptions) -> Self {
        Self::scoped(content, options, None)
    }

    /// The key for bytes `content` labeled with `options` by the backend
    /// `scope` names (`None`: Rekognition): backends never share entries.
    pub fn scoped(content: &Content, options: &LabelOptions, scope: Option<&str>) -> Self {
        let hex: String = content.sha256.iter().map(|b| format!("{b:02x}")).collect();
        let scope = scope.map(|s| format!("{s}#")).unwrap_or_default();
        Self {
            pk: format!("{CONTENT_PK_PREFIX}sha256={hex}#{}", content.size),
            sk: format!(
                "{CONTENT_SK_PREFIX}{scope}max={}#min={}",
                options.max_labels, options.min_confidence
            ),
        }
    }

    /// The partition key.
    pub fn pk(&self) -> &str {
        &self.pk
    }

    fn item_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([(PK.to_owned(), s(&self.pk)), (SK.to_owned(), s(&self.sk))])
    }
}

/// Reads the content entry for `key`, if there is one that has not expired
/// at `now` and was produced by the `current` label model. An eventually
/// consistent read: an entry written a moment ago may be missed, which
/// costs one DetectLabels call, never a wrong label.
pub async fn lookup(
    client: &Client,
    table: &str,
    key: &ContentKey,
    current: &CurrentModel,
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
    Ok(item.and_then(|item| read_entry(&item, current, now)))
}

/// A stored entry as [`Reused`], unless it has expired at `now` or another
/// label model than the `current` one produced it.
pub fn read_entry(
    item: &HashMap<String, AttributeValue>,
    current: &CurrentModel,
    now: Clock,
) -> Option<Reused> {
    let expires_at: u64 = item.get(attr::EXPIRES_AT)?.as_n().ok()?.parse().ok()?;
    let model = item
        .get(attr::LABEL_MODEL_VERSION)
        .and_then(|v| v.as_s().ok());
    if expires_at <= now.unix_secs() || !current.is(model.map(String::as_str)) {
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
        model_version: model.cloned(),
        source: item.get(entry_attr::SOURCE)?.as_s().ok()?.clone(),
        conversion: item
            .get(attr::CONVERSION)
            .and_then(|v| v.as_s().ok())
            .cloned(),
    })
}

/// The content entry for what DetectLabels answered for `image`.
pub fn entry(
    key: &ContentKey,
    image: &ImageRef,
    detected: &Detected<'_>,
    now: Clock,
    ttl_days: u64,
) -> HashMap<String, AttributeValue> {
    let labels = prepare_labels(detected.labels.to_vec());
    let mut item = key.item_key();
    item.insert(
        attr::LABELS.to_owned(),
        AttributeValue::L(labels.iter().map(schema::label_to_attr).collect()),
    );
    if let Some(version) = detected.model_version {
        item.insert(attr::LABEL_MODEL_VERSION.to_owned(), s(version));
    }
    if let Some(note) = detected.conversion {
        item.insert(attr::CONVERSION.to_owned(), s(note));
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

/// Stores a content entry or the model marker, unconditionally: two images
/// with the same content write the same labels and the later one wins; the
/// marker names the model of the latest answer.
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

/// The label model whose entries are served: the version of the latest
/// paid answer this process saw, else the fleet's marker ([`MODEL_PK`]).
/// `Unknown` (no marker, or it could not be read) serves nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CurrentModel {
    /// Nothing is known: no entry is served.
    #[default]
    Unknown,
    /// Answers come from this version (`None`: answers name no version).
    Known(Option<String>),
}

impl CurrentModel {
    /// Whether an entry produced by `model` is this model's.
    pub fn is(&self, model: Option<&str>) -> bool {
        matches!(self, CurrentModel::Known(current) if current.as_deref() == model)
    }
}

/// The marker's sort key for the backend `scope` names (`None`:
/// Rekognition): each backend has its own current model.
fn marker_sk(scope: Option<&str>) -> String {
    match scope {
        None => MODEL_SK.to_owned(),
        Some(scope) => format!("{MODEL_SK}#{scope}"),
    }
}

/// The marker item saying Rekognition's answers now come from
/// `model_version`.
pub fn model_marker(model_version: Option<&str>, now: Clock) -> HashMap<String, AttributeValue> {
    scoped_model_marker(model_version, None, now)
}

/// The marker item saying the answers of the backend `scope` names now
/// come from `model_version`.
pub fn scoped_model_marker(
    model_version: Option<&str>,
    scope: Option<&str>,
    now: Clock,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PK.to_owned(), s(MODEL_PK)),
        (SK.to_owned(), s(marker_sk(scope))),
        (entry_attr::STORED_AT.to_owned(), s(now.rfc3339())),
    ]);
    if let Some(version) = model_version {
        item.insert(attr::LABEL_MODEL_VERSION.to_owned(), s(version));
    }
    item
}

/// The current label model as the marker item says.
pub fn read_marker(item: Option<&HashMap<String, AttributeValue>>) -> CurrentModel {
    match item {
        None => CurrentModel::Unknown,
        Some(item) => CurrentModel::Known(
            item.get(attr::LABEL_MODEL_VERSION)
                .and_then(|v| v.as_s().ok())
                .cloned(),
        ),
    }
}

/// Reads the fleet's current Rekognition label model (a consistent read:
/// it changes once per model release).
pub async fn current_model(client: &Client, table: &str) -> Result<CurrentModel, StoreError> {
    scoped_current_model(client, table, None).await
}

/// Reads the current label model of the backend `scope` names.
pub async fn scoped_current_model(
    client: &Client,
    table: &str,
    scope: Option<&str>,
) -> Result<CurrentModel, StoreError> {
    let item = client
        .get_item()
        .table_name(table)
        .key(PK, s(MODEL_PK))
        .key(SK, s(marker_sk(scope)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::new("GetItem", MODEL_PK.to_owned(), e))?
        .item;
    Ok(read_marker(item.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{BoundingBox, Instance, Label};
    use crate::Revision;

    fn image(key: &str) -> ImageRef {
        ImageRef {
            bucket: "photos".into(),
            key: key.into(),
            revision: Revision::from_sequencer("0A").unwrap(),
            version_id: None,
            etag: Some("9b2cf535f27731c974343645a3985328".into()),
            size: Some(1000),
        }
    }

    fn content(first_byte: u8, size: u64) -> Content {
        let mut sha256 = [7u8; 32];
        sha256[0] = first_byte;
        Content { sha256, size }
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

    fn current(version: &str) -> CurrentModel {
        CurrentModel::Known(Some(version.into()))
    }

    #[test]
    fn the_same_bytes_have_the_same_key_under_any_name() {
        let options = LabelOptions::default();
        let key = ContentKey::new(&content(1, 1000), &options);
        assert_eq!(key, ContentKey::new(&content(1, 1000), &options));
        assert_eq!(
            key.pk(),
            "CONTENT#sha256=0107070707070707070707070707070707070707070707070707070707070707#1000"
        );
    }

    #[test]
    fn other_bytes_sizes_or_options_have_other_keys() {
        let options = LabelOptions::default();
        let base = ContentKey::new(&content(1, 1000), &options);
        assert_ne!(base, ContentKey::new(&content(2, 1000), &options));
        assert_ne!(base, ContentKey::new(&content(1, 1001), &options));
        let stricter = LabelOptions {
            min_confidence: 90.0,
            ..options
        };
        assert_ne!(base, ContentKey::new(&content(1, 1000), &stricter));
        let local = ContentKey::scoped(&content(1, 1000), &options, Some("local:m@1"));
        assert_ne!(base, local);
        assert_eq!(local.pk(), base.pk());
        assert_ne!(
            local,
            ContentKey::scoped(&content(1, 1000), &options, Some("local:m@2"))
        );
    }

    #[test]
    fn an_entry_reads_back_until_it_expires() {
        let img = image("a.jpg");
        let key = ContentKey::new(&content(1, 10), &LabelOptions::default());
        let now = Clock {
            unix_millis: 1_700_000_000_000,
        };
        let labels = [dog()];
        let detected = Detected::as_is(&labels, Some("3.0"));
        let item = entry(&key, &img, &detected, now, 30);
        assert!(item[PK].as_s().unwrap().starts_with("CONTENT#sha256="));
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
        let reused = read_entry(&item, &current("3.0"), now.plus_secs(29 * 86_400)).unwrap();
        assert_eq!(reused.labels, vec![dog()]);
        assert_eq!(reused.model_version.as_deref(), Some("3.0"));
        assert_eq!(reused.source, "s3://photos/a.jpg");
        assert_eq!(reused.conversion, None);
        assert_eq!(
            read_entry(&item, &current("3.0"), now.plus_secs(30 * 86_400)),
            None
        );
    }

    #[test]
    fn an_entry_of_an_older_label_model_is_not_served() {
        let key = ContentKey::new(&content(1, 10), &LabelOptions::default());
        let now = Clock {
            unix_millis: 1_700_000_000_000,
        };
        let labels = [dog()];
        let item = entry(
            &key,
            &image("a.jpg"),
            &Detected::as_is(&labels, Some("3.0")),
            now,
            30,
        );
        assert!(read_entry(&item, &current("3.0"), now).is_some());
        assert_eq!(read_entry(&item, &current("3.1"), now), None);
        assert_eq!(read_entry(&item, &CurrentModel::Unknown, now), None);
        assert_eq!(read_entry(&item, &CurrentModel::Known(None), now), None);
    }

    #[test]
    fn an_entry_keeps_the_conversion_its_bytes_went_through() {
        let key = ContentKey::new(&content(1, 10), &LabelOptions::default());
        let now = Clock {
            unix_millis: 1_700_000_000_000,
        };
        let labels = [dog()];
        let detected = Detected {
            labels: &labels,
            model_version: Some("3.0"),
            conversion: Some("converted from HEIF, 4032×3024 → 3024×2268"),
            note: None,
        };
        let item = entry(&key, &image("a.heic"), &detected, now, 30);
        let reused = read_entry(&item, &current("3.0"), now).unwrap();
        assert_eq!(reused.conversion.as_deref(), detected.conversion);
    }

    #[test]
    fn the_marker_names_the_current_model_and_no_marker_serves_nothing() {
        let now = Clock {
            unix_millis: 1_700_000_000_000,
        };
        assert_eq!(read_marker(None), CurrentModel::Unknown);
        let marker = model_marker(Some("3.0"), now);
        assert_eq!(marker[PK].as_s().unwrap(), MODEL_PK);
        assert_ne!(marker[SK].as_s().unwrap(), schema::IMAGE_SK);
        assert_eq!(read_marker(Some(&marker)), current("3.0"));
        assert_eq!(
            read_marker(Some(&model_marker(None, now))),
            CurrentModel::Known(None)
        );
    }
}
