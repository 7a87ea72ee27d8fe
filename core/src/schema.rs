//! The results table in DynamoDB.
//!
//! One table, two kinds of item under the partition key `pk = s3://BUCKET/KEY`:
//!
//! | `sk`            | item                                                        |
//! |-----------------|-------------------------------------------------------------|
//! | `IMAGE`         | the image record: status, reason, job, timestamps, labels   |
//! | `LABEL#<Name>`  | one label-index entry per label of the current labeling     |
//!
//! Label-index entries carry `label` (the label name in lower case) and
//! `confidence` (a number), the keys of the global secondary index
//! [`LABEL_INDEX`]: "images with label X at confidence ≥ c" is one Query
//! (`label = :x AND confidence >= :c`), never a Scan.
//!
//! Items stay under DynamoDB's 400 KB limit by construction: labels, their
//! instances, parents, categories and every free-text field are capped (see
//! [`Limits`]) before an item is built, and a test builds the largest possible
//! record and measures it with DynamoDB's documented size rules.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Partition key attribute: `s3://BUCKET/KEY`.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Sort key of the image record.
pub const IMAGE_SK: &str = "IMAGE";
/// Prefix of the sort key of label-index entries.
pub const LABEL_SK_PREFIX: &str = "LABEL#";
/// Name of the global secondary index over labels.
pub const LABEL_INDEX: &str = "by-label";
/// Partition key of [`LABEL_INDEX`]: lower-cased label name.
pub const LABEL_INDEX_PK: &str = "label";
/// Sort key of [`LABEL_INDEX`]: confidence, a number in percent.
pub const LABEL_INDEX_SK: &str = "confidence";
/// DynamoDB's maximum item size, in bytes.
pub const DYNAMODB_MAX_ITEM_BYTES: usize = 400 * 1024;

/// Attribute names of the image record (and, where shared, of index entries).
pub mod attr {
    /// Bucket name.
    pub const BUCKET: &str = "bucket";
    /// Exact object key.
    pub const KEY: &str = "key";
    /// [`super::Status`] as a string.
    pub const STATUS: &str = "status";
    /// Human-readable reason for SKIPPED / FAILED (and QUEUED notes).
    pub const REASON: &str = "reason";
    /// Comparable revision of the upload this record describes.
    pub const REVISION: &str = "revision";
    /// S3 version id.
    pub const VERSION_ID: &str = "version_id";
    /// S3 ETag.
    pub const ETAG: &str = "etag";
    /// Object size in bytes.
    pub const SIZE: &str = "size";
    /// Batch job id (the parent id for array jobs).
    pub const JOB_ID: &str = "job_id";
    /// Batch job name.
    pub const JOB_NAME: &str = "job_name";
    /// Array child index holding this image, for array jobs.
    pub const ARRAY_INDEX: &str = "array_index";
    /// Number of labeling attempts made by workers.
    pub const ATTEMPTS: &str = "attempts";
    /// Token of the dispatcher invocation that claimed the record.
    pub const CLAIM: &str = "claim";
    /// When the claim was taken, in Unix seconds.
    pub const CLAIMED_AT: &str = "claimed_at";
    /// When the record was first queued for this revision (RFC 3339).
    pub const QUEUED_AT: &str = "queued_at";
    /// A revision below which every version of the key other than the one
    /// the record describes is gone from S3 (see
    /// [`crate::rule::VERSIONS_GONE_CONDITION`]): a late event older than
    /// it cannot replace the record.
    pub const GONE_BEFORE: &str = "gone_before";
    /// Last change (RFC 3339).
    pub const UPDATED_AT: &str = "updated_at";
    /// List of label maps.
    pub const LABELS: &str = "labels";
    /// Rekognition's label model version.
    pub const LABEL_MODEL_VERSION: &str = "label_model_version";
    /// Label name as Rekognition spells it (index entries).
    pub const NAME: &str = "name";
    /// Batch job id (`parent:index` for array children) that took the image
    /// for labeling; only that job calls DetectLabels for this upload.
    pub const OWNER: &str = "owner";
    /// How many times the image was dispatched for its upload (the first
    /// dispatch is 1); the reconciler waits longer after each one.
    pub const DISPATCHES: &str = "dispatches";
    /// Unix seconds after which DynamoDB's TTL deletes the item (tombstones,
    /// content entries).
    pub const EXPIRES_AT: &str = "expires_at";
    /// `s3://BUCKET/KEY` of the image whose labels a LABELED record reuses
    /// (same content); absent when DetectLabels ran for this image.
    pub const REUSED_FROM: &str = "reused_from";
    /// What the worker did to an image before DetectLabels (format
    /// conversion, downscaling), on LABELED records; absent when
    /// Rekognition read the object as it is.
    pub const CONVERSION: &str = "conversion";
    /// Why a LABELED record's labels are not the ones its backend would
    /// normally give (a cascade that kept the local model's labels because
    /// the Rekognition budget was spent); absent otherwise.
    pub const LABEL_NOTE: &str = "label_note";
}

/// Name of the sparse global secondary index over records that need
/// attention: QUEUED, FAILED and SKIPPED records carry its keys, LABELED
/// records and tombstones do not. The reconciler finds old QUEUED records
/// with one Query per shard, `labeler retry` and `labeler status` find
/// FAILED ones the same way: never a Scan.
pub const STATUS_INDEX: &str = "by-status";
/// Partition key of [`STATUS_INDEX`]: `<STATUS>#<shard>`, see [`status_key`].
pub const STATUS_INDEX_PK: &str = "status_key";
/// Sort key of [`STATUS_INDEX`]: when the record entered its status (RFC 3339).
pub const STATUS_INDEX_SK: &str = "status_at";
/// Shards per status in [`STATUS_INDEX`]: spreads the index's writes over
/// partitions (every image passes through QUEUED) at the cost of one Query
/// per shard when reading.
pub const STATUS_SHARDS: u32 = 16;

/// The [`STATUS_INDEX`] partition of `pk` in `status`, or `None` for the
/// statuses the index leaves out (LABELED, DELETED).
pub fn status_key(pk: &str, status: Status) -> Option<String> {
    if !status.is_indexed() {
        return None;
    }
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let hash = pk.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(format!(
        "{}#{:02}",
        status.as_str(),
        hash % u64::from(STATUS_SHARDS)
    ))
}

/// Every [`STATUS_INDEX`] partition of `status`, for readers.
pub fn status_keys(status: Status) -> Vec<String> {
    (0..STATUS_SHARDS)
        .map(|shard| format!("{}#{shard:02}", status.as_str()))
        .collect()
}

/// Life cycle of an image record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Accepted; a job will label it.
    Queued,
    /// Labels stored.
    Labeled,
    /// Could not be labeled; `reason` says why.
    Failed,
    /// Deliberately not labeled; `reason` says why.
    Skipped,
    /// A tombstone: the object was deleted. It remembers the delete's
    /// revision so that a late, older upload event cannot bring the key
    /// back, and expires through DynamoDB's TTL ([`attr::EXPIRES_AT`]).
    Deleted,
}

impl Status {
    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Labeled => "LABELED",
            Status::Failed => "FAILED",
            Status::Skipped => "SKIPPED",
            Status::Deleted => "DELETED",
        }
    }

    /// Parses the stored string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => Status::Queued,
            "LABELED" => Status::Labeled,
            "FAILED" => Status::Failed,
            "SKIPPED" => Status::Skipped,
            "DELETED" => Status::Deleted,
            _ => return None,
        })
    }

    /// LABELED, FAILED, SKIPPED and DELETED end an image's life cycle.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued)
    }

    /// Whether records in this status are in [`STATUS_INDEX`].
    pub fn is_indexed(self) -> bool {
        matches!(self, Status::Queued | Status::Failed | Status::Skipped)
    }

    /// Every status, in life-cycle order.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Labeled,
        Status::Failed,
        Status::Skipped,
        Status::Deleted,
    ];
}

/// Partition key of an image: `s3://BUCKET/KEY`.
pub fn image_pk(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// Sort key of the label-index entry for `name`.
pub fn label_sk(name: &str) -> String {
    format!("{LABEL_SK_PREFIX}{name}")
}

/// Partition value of [`LABEL_INDEX`] for a label name: lower case, so
/// `labeler find dog` and `Dog` find the same images.
pub fn label_index_value(name: &str) -> String {
    name.to_lowercase()
}

/// An axis-aligned box, as ratios of the image's width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge.
    pub left: f32,
    /// Top edge.
    pub top: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

/// One detected instance of a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Confidence of this instance, in percent.
    pub confidence: f32,
    /// Where it is.
    pub bounding_box: BoundingBox,
}

/// One label of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Label name, e.g. `Dog`.
    pub name: String,
    /// Confidence, in percent.
    pub confidence: f32,
    /// Parent labels, e.g. `Animal`, `Pet`.
    pub parents: Vec<String>,
    /// Categories, e.g. `Animals and Pets`.
    pub categories: Vec<String>,
    /// Instances with bounding boxes.
    pub instances: Vec<Instance>,
}

/// Caps that keep every item under [`DYNAMODB_MAX_ITEM_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Labels stored per image (the highest-confidence ones are kept).
    pub labels: usize,
    /// Instances stored per label.
    pub instances: usize,
    /// Parents stored per label.
    pub parents: usize,
    /// Categories stored per label.
    pub categories: usize,
    /// Bytes of any name (label, parent, category).
    pub name_bytes: usize,
    /// Bytes of a reason.
    pub reason_bytes: usize,
}

/// The caps in force.
pub const LIMITS: Limits = Limits {
    labels: 100,
    instances: 25,
    parents: 8,
    categories: 4,
    name_bytes: 64,
    reason_bytes: 1024,
};

/// Truncates `s` to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A reason, capped to [`Limits::reason_bytes`].
pub fn capped_reason(reason: &str) -> String {
    truncate_utf8(reason, LIMITS.reason_bytes).to_owned()
}

/// Applies [`LIMITS`]: keeps the most confident labels and instances, caps
/// every list and name. Label names stay unique (the first wins).
pub fn cap_labels(mut labels: Vec<Label>) -> Vec<Label> {
    labels.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut seen = std::collections::HashSet::new();
    labels
        .into_iter()
        .filter_map(|mut l| {
            l.name = truncate_utf8(&l.name, LIMITS.name_bytes).to_owned();
            if l.name.is_empty() || !seen.insert(l.name.clone()) {
                return None;
            }
            l.parents.truncate(LIMITS.parents);
            l.categories.truncate(LIMITS.categories);
            for s in l.parents.iter_mut().chain(l.categories.iter_mut()) {
                *s = truncate_utf8(s, LIMITS.name_bytes).to_owned();
            }
            l.instances
                .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            l.instances.truncate(LIMITS.instances);
            Some(l)
        })
        .take(LIMITS.labels)
        .collect()
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn string_list(items: &[String]) -> AttributeValue {
    AttributeValue::L(items.iter().map(|i| s(i.clone())).collect())
}

/// A label as a DynamoDB map.
pub fn label_to_attr(label: &Label) -> AttributeValue {
    let instances = label
        .instances
        .iter()
        .map(|i| {
            let b = &i.bounding_box;
            AttributeValue::M(HashMap::from([
                ("confidence".to_owned(), n(i.confidence)),
                (
                    "bounding_box".to_owned(),
                    AttributeValue::M(HashMap::from([
                        ("left".to_owned(), n(b.left)),
                        ("top".to_owned(), n(b.top)),
                        ("width".to_owned(), n(b.width)),
                        ("height".to_owned(), n(b.height)),
                    ])),
                ),
            ]))
        })
        .collect();
    AttributeValue::M(HashMap::from([
        ("name".to_owned(), s(label.name.clone())),
        ("confidence".to_owned(), n(label.confidence)),
        ("parents".to_owned(), string_list(&label.parents)),
        ("categories".to_owned(), string_list(&label.categories)),
        ("instances".to_owned(), AttributeValue::L(instances)),
    ]))
}

/// Reads a label back from its DynamoDB map; `None` if the shape is wrong.
pub fn label_from_attr(value: &AttributeValue) -> Option<Label> {
    let m = value.as_m().ok()?;
    let num = |m: &HashMap<String, AttributeValue>, k: &str| -> Option<f32> {
        m.get(k)?.as_n().ok()?.parse().ok()
    };
    let strings = |k: &str| -> Vec<String> {
        m.get(k)
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default()
    };
    let instances = m
        .get("instances")
        .and_then(|v| v.as_l().ok())
        .map(|l| {
            l.iter()
                .filter_map(|v| {
                    let im = v.as_m().ok()?;
                    let bm = im.get("bounding_box")?.as_m().ok()?;
                    Some(Instance {
                        confidence: num(im, "confidence")?,
                        bounding_box: BoundingBox {
                            left: num(bm, "left")?,
                            top: num(bm, "top")?,
                            width: num(bm, "width")?,
                            height: num(bm, "height")?,
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Label {
        name: m.get("name")?.as_s().ok()?.clone(),
        confidence: num(m, "confidence")?,
        parents: strings("parents"),
        categories: strings("categories"),
        instances,
    })
}

/// Size of an item as DynamoDB counts it: attribute names plus values, with
/// numbers at up to 21 bytes and 3 bytes plus one per element of overhead
/// for lists and maps (documented "Item sizes and formats"; upper bounds).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
        AttributeValue::Ns(l) => l.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(l) => l.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_millis(unix_millis: u64) -> String {
    let secs = unix_millis / 1000;
    let millis = unix_millis % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
/// Reads the timestamps [`rfc3339_millis`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`)
/// back as Unix milliseconds; `None` for any other shape.
pub fn parse_rfc3339_millis(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 24 || &text[23..] != "Z" || [b[4], b[7], b[10], b[13], b[16], b[19]] != *b"--T::."
    {
        return None;
    }
    let n = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = &text[range];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm, the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst_case_label(i: usize) -> Label {
        let name = |p: &str, j: usize| format!("{p}{j:03}{}", "é".repeat(200));
        Label {
            name: name("label", i),
            confidence: 100.0 / 3.0,
            parents: (0..1000).map(|j| name("parent", j)).collect(),
            categories: (0..1000).map(|j| name("category", j)).collect(),
            instances: (0..1000)
                .map(|j| Instance {
                    confidence: 100.0 / 7.0 + j as f32 / 1000.0,
                    bounding_box: BoundingBox {
                        left: 1.0 / 7.0,
                        top: 5.0 / 7.0,
                        width: 1.0 / 3.0,
                        height: 2.0 / 3.0,
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn largest_possible_image_record_fits_in_a_dynamodb_item() {
        let labels = cap_labels((0..5000).map(worst_case_label).collect());
        assert_eq!(labels.len(), LIMITS.labels);
        let long = "x".repeat(2048);
        let mut item = HashMap::from([
            (
                PK.to_owned(),
                s(image_pk(&"b".repeat(63), &"k".repeat(1024))),
            ),
            (SK.to_owned(), s(IMAGE_SK)),
            (attr::BUCKET.to_owned(), s("b".repeat(63))),
            (attr::KEY.to_owned(), s("k".repeat(1024))),
            (attr::STATUS.to_owned(), s("LABELED")),
            (attr::REASON.to_owned(), s(capped_reason(&long))),
            (
                attr::REVISION.to_owned(),
                s("2.".to_owned() + &"F".repeat(40)),
            ),
            (attr::VERSION_ID.to_owned(), s("v".repeat(1024))),
            (attr::ETAG.to_owned(), s("e".repeat(64))),
            (attr::SIZE.to_owned(), n(u64::MAX)),
            (attr::JOB_ID.to_owned(), s("j".repeat(64))),
            (attr::JOB_NAME.to_owned(), s("n".repeat(128))),
            (attr::ARRAY_INDEX.to_owned(), n(9999)),
            (attr::ATTEMPTS.to_owned(), n(10)),
            (attr::CLAIM.to_owned(), s("c".repeat(64))),
            (attr::CLAIMED_AT.to_owned(), n(u64::MAX)),
            (attr::QUEUED_AT.to_owned(), s(rfc3339_millis(0))),
            (attr::UPDATED_AT.to_owned(), s(rfc3339_millis(0))),
            (attr::LABEL_MODEL_VERSION.to_owned(), s("3.0")),
        ]);
        item.insert(
            attr::LABELS.to_owned(),
            AttributeValue::L(labels.iter().map(label_to_attr).collect()),
        );
        let size = item_size(&item);
        eprintln!("worst-case record: {size} bytes");
        assert!(
            size < DYNAMODB_MAX_ITEM_BYTES,
            "worst-case record is {size} bytes"
        );
    }

    #[test]
    fn capping_keeps_the_most_confident_labels_and_unique_names() {
        let mk = |name: &str, c: f32| Label {
            name: name.into(),
            confidence: c,
            parents: vec![],
            categories: vec![],
            instances: vec![],
        };
        let mut labels: Vec<_> = (0..150)
            .map(|i| mk(&format!("L{i}"), i as f32 / 2.0))
            .collect();
        labels.push(mk("L149", 0.0));
        let capped = cap_labels(labels);
        assert_eq!(capped.len(), 100);
        assert_eq!(capped[0].name, "L149");
        assert_eq!(capped[0].confidence, 74.5);
        assert!(capped.iter().all(|l| l.confidence >= 25.0));
    }

    #[test]
    fn labels_round_trip_through_dynamodb_maps() {
        let label = Label {
            name: "Dog".into(),
            confidence: 98.5,
            parents: vec!["Animal".into(), "Pet".into()],
            categories: vec!["Animals and Pets".into()],
            instances: vec![Instance {
                confidence: 97.25,
                bounding_box: BoundingBox {
                    left: 0.1,
                    top: 0.2,
                    width: 0.3,
                    height: 0.4,
                },
            }],
        };
        assert_eq!(label_from_attr(&label_to_attr(&label)), Some(label));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_utf8("ééé", 3), "é");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }

    #[test]
    fn formats_unix_millis_as_rfc3339() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_394_520_123),
            "2026-11-23T00:42:00.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn timestamps_read_back_as_the_millis_they_were_written_from() {
        for millis in [0, 951_782_400_000, 1_795_394_520_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(millis)), Some(millis));
        }
        for bad in [
            "",
            "2026-11-23T00:42:00Z",
            "2026-11-23 00:42:00.123Z",
            "2026-13-23T00:42:00.123Z",
            "2026-11-23T00:42:00.12xZ",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip_and_know_which_are_terminal() {
        for st in [
            Status::Queued,
            Status::Labeled,
            Status::Failed,
            Status::Skipped,
        ] {
            assert_eq!(Status::parse(st.as_str()), Some(st));
        }
        assert!(!Status::Queued.is_terminal());
        assert!(Status::Skipped.is_terminal());
    }

    #[test]
    fn only_records_needing_attention_are_in_the_status_index_spread_over_stable_shards() {
        let pk = "s3://photos/holiday/beach day.jpg";

        let queued = status_key(pk, Status::Queued).unwrap();

        assert!(queued.starts_with("QUEUED#"), "{queued}");
        assert_eq!(status_key(pk, Status::Queued).unwrap(), queued);
        assert_eq!(
            status_key(pk, Status::Failed).unwrap()["FAILED#".len()..],
            queued["QUEUED#".len()..]
        );
        assert_eq!(status_key(pk, Status::Labeled), None);
        assert_eq!(status_key(pk, Status::Deleted), None);
        assert!(status_keys(Status::Queued).contains(&queued));
        let shards: std::collections::BTreeSet<String> = (0..1000)
            .filter_map(|i| status_key(&format!("s3://b/{i}.jpg"), Status::Skipped))
            .collect();
        assert_eq!(shards.len(), STATUS_SHARDS as usize);
        assert_eq!(shards, status_keys(Status::Skipped).into_iter().collect());
    }
}
