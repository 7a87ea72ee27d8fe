//! Image records and label-index entries as the CLI shows them.

use aws_sdk_dynamodb::types::AttributeValue;
use labeler_core::schema::{self, attr, Label};
use serde::Serialize;
use std::collections::HashMap;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// One image record (`sk = IMAGE`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// `s3://BUCKET/KEY`.
    pub uri: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// QUEUED, LABELED, FAILED or SKIPPED.
    pub status: String,
    /// Why it was skipped or failed (or a note while queued).
    pub reason: Option<String>,
    /// Labels, most confident first.
    pub labels: Vec<Label>,
    /// Rekognition's label model version.
    pub label_model_version: Option<String>,
    /// The image whose labels were reused (same content), when DetectLabels
    /// did not run for this one.
    pub reused_from: Option<String>,
    /// What the worker did to the image before DetectLabels (a format
    /// conversion, a downscale), when it did anything.
    pub conversion: Option<String>,
    /// Why the labels are not what the backend normally gives (a cascade
    /// past its Rekognition budget).
    pub label_note: Option<String>,
    /// Batch job id (the parent's for array jobs).
    pub job_id: Option<String>,
    /// Batch job name.
    pub job_name: Option<String>,
    /// Array child that holds the image.
    pub array_index: Option<u64>,
    /// Labeling attempts made by workers.
    pub attempts: Option<u64>,
    /// When this upload was queued.
    pub queued_at: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
    /// Which upload of the key the record describes.
    pub revision: Option<String>,
    /// S3 version id.
    pub version_id: Option<String>,
    /// S3 ETag.
    pub etag: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
}

impl Record {
    /// Reads an image record; `None` for items that are not one.
    pub fn from_item(item: &Item) -> Option<Self> {
        if string(item, schema::SK)? != schema::IMAGE_SK {
            return None;
        }
        let pk = string(item, schema::PK)?;
        let (bucket, key) = match (string(item, attr::BUCKET), string(item, attr::KEY)) {
            (Some(b), Some(k)) => (b, k),
            _ => {
                let rest = pk.strip_prefix("s3://")?;
                let (b, k) = rest.split_once('/')?;
                (b.to_owned(), k.to_owned())
            }
        };
        let mut labels: Vec<Label> = item
            .get(attr::LABELS)
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(schema::label_from_attr).collect())
            .unwrap_or_default();
        labels.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Some(Self {
            uri: pk,
            bucket,
            key,
            status: string(item, attr::STATUS).unwrap_or_else(|| "UNKNOWN".into()),
            reason: string(item, attr::REASON),
            labels,
            label_model_version: string(item, attr::LABEL_MODEL_VERSION),
            reused_from: string(item, attr::REUSED_FROM),
            conversion: string(item, attr::CONVERSION),
            label_note: string(item, attr::LABEL_NOTE),
            job_id: string(item, attr::JOB_ID),
            job_name: string(item, attr::JOB_NAME),
            array_index: number(item, attr::ARRAY_INDEX),
            attempts: number(item, attr::ATTEMPTS),
            queued_at: string(item, attr::QUEUED_AT),
            updated_at: string(item, attr::UPDATED_AT),
            revision: string(item, attr::REVISION),
            version_id: string(item, attr::VERSION_ID),
            etag: string(item, attr::ETAG),
            size: number(item, attr::SIZE),
        })
    }

    /// Labels as `Name:confidence` joined by `;` (for CSV).
    pub fn labels_compact(&self) -> String {
        self.labels
            .iter()
            .map(|l| format!("{}:{:.1}", l.name, l.confidence))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The CSV columns of [`Record::csv_row`].
    pub const CSV_HEADER: [&'static str; 15] = [
        "uri",
        "bucket",
        "key",
        "status",
        "reason",
        "labels",
        "label_model_version",
        "job_id",
        "job_name",
        "attempts",
        "queued_at",
        "updated_at",
        "version_id",
        "etag",
        "size",
    ];

    /// One CSV row.
    pub fn csv_row(&self) -> [String; 15] {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let on = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        [
            self.uri.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.status.clone(),
            o(&self.reason),
            self.labels_compact(),
            o(&self.label_model_version),
            o(&self.job_id),
            o(&self.job_name),
            on(self.attempts),
            o(&self.queued_at),
            o(&self.updated_at),
            o(&self.version_id),
            o(&self.etag),
            on(self.size),
        ]
    }
}

/// One hit of `labeler find`: a label-index entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// `s3://BUCKET/KEY`.
    pub uri: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Label name as Rekognition spells it.
    pub label: String,
    /// Confidence, in percent.
    pub confidence: f64,
}

impl Hit {
    /// Reads a label-index entry.
    pub fn from_item(item: &Item) -> Option<Self> {
        let bucket = string(item, attr::BUCKET)?;
        let key = string(item, attr::KEY)?;
        Some(Self {
            uri: schema::image_pk(&bucket, &key),
            label: string(item, attr::NAME)
                .or_else(|| string(item, schema::LABEL_INDEX_PK))
                .unwrap_or_default(),
            confidence: number(item, schema::LABEL_INDEX_SK)?,
            bucket,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labeler_core::schema::{label_to_attr, BoundingBox, Instance};

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn label(name: &str, confidence: f32) -> Label {
        Label {
            name: name.into(),
            confidence,
            parents: vec!["Nature".into()],
            categories: vec![],
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

    #[test]
    fn reads_an_image_record_with_labels_most_confident_first() {
        let item: Item = HashMap::from([
            ("pk".into(), s("s3://photos/a b.jpg")),
            ("sk".into(), s("IMAGE")),
            ("bucket".into(), s("photos")),
            ("key".into(), s("a b.jpg")),
            ("status".into(), s("LABELED")),
            ("attempts".into(), AttributeValue::N("1".into())),
            (
                "labels".into(),
                AttributeValue::L(vec![
                    label_to_attr(&label("Sky", 80.5)),
                    label_to_attr(&label("Beach", 99.0)),
                ]),
            ),
        ]);
        let r = Record::from_item(&item).unwrap();
        assert_eq!(r.uri, "s3://photos/a b.jpg");
        assert_eq!(r.status, "LABELED");
        assert_eq!(r.attempts, Some(1));
        let names: Vec<_> = r.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Beach", "Sky"]);
        assert_eq!(r.labels_compact(), "Beach:99.0;Sky:80.5");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["labels"][0]["name"], "Beach");
        assert_eq!(json["labels"][0]["confidence"], 99.0);
        assert!(json["reason"].is_null());
    }

    #[test]
    fn label_entries_are_not_image_records() {
        let item: Item = HashMap::from([
            ("pk".into(), s("s3://photos/a.jpg")),
            ("sk".into(), s("LABEL#Beach")),
        ]);
        assert_eq!(Record::from_item(&item), None);
    }
}
