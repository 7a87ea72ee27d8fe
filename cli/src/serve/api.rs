//! The JSON API behind the pages: DynamoDB reads, one view per endpoint, and
//! presigned S3 URLs for the image bytes (the server never proxies them).
//!
//! | endpoint | reads |
//! |---|---|
//! | `/api/images` | Scan pages of at most [`SCAN_PAGE`] items until a page of image records is full (never the whole table) |
//! | `/api/labels/{name}` | one Query on `by-label`, `limit` items |
//! | `/api/images/{uri}` | one strongly consistent GetItem |
//! | `/api/status` | COUNT Queries and `limit`-item Queries on the 16 shards of `by-status` per status; `scan=true` adds a projected Scan of the whole table |

use super::route::Page;
use crate::aws::{describe, table_error, ImageScan};
use crate::record::{Hit, Item, Record};
use crate::s3uri::S3Uri;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_s3::presigning::PresigningConfig;
use labeler_core::schema::{
    self, attr, label_index_value, status_keys, Status, LABEL_INDEX, LABEL_INDEX_PK,
    LABEL_INDEX_SK, STATUS_INDEX, STATUS_INDEX_PK, STATUS_INDEX_SK,
};
use labeler_core::store::image_key;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Items one gallery Scan request evaluates: image records and their label
/// entries share the table, so a page of 50 images takes a few of these.
pub(crate) const SCAN_PAGE: i32 = 200;

/// Labels a gallery card shows.
const CARD_LABELS: usize = 5;

/// Why an API call has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The client sent a cursor this server did not make (400).
    #[error("cursor is not one this server returned")]
    BadCursor,
    /// DynamoDB or S3 failed (502).
    #[error(transparent)]
    Upstream(#[from] anyhow::Error),
}

/// What the handlers read through.
pub(crate) struct Api {
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) table: String,
    pub(crate) url_expiry: Duration,
}

/// A label as a card shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LabelBrief {
    name: String,
    confidence: f32,
}

/// One image in the gallery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Card {
    uri: String,
    bucket: String,
    key: String,
    status: String,
    reason: Option<String>,
    /// The most confident labels.
    labels: Vec<LabelBrief>,
    /// Presigned GET of the image.
    url: String,
}

/// `/api/images`.
#[derive(Debug, Serialize)]
pub(crate) struct Images {
    images: Vec<Card>,
    /// Cursor of the next page; `null` on the last.
    next: Option<String>,
}

/// One hit of a label search.
#[derive(Debug, Serialize)]
pub(crate) struct LabelHit {
    #[serde(flatten)]
    hit: Hit,
    url: String,
}

/// `/api/labels/{name}`.
#[derive(Debug, Serialize)]
pub(crate) struct Hits {
    label: String,
    min_confidence: f64,
    hits: Vec<LabelHit>,
    next: Option<String>,
}

/// `/api/images/{uri}`.
#[derive(Debug, Serialize)]
pub(crate) struct Detail {
    #[serde(flatten)]
    record: Record,
    url: String,
}

/// An image listed on the status page.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    uri: String,
    reason: Option<String>,
    /// When it entered its status.
    since: Option<String>,
}

/// `/api/status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    table: String,
    /// QUEUED, FAILED and SKIPPED, counted on the status index.
    counts: BTreeMap<String, u64>,
    /// Every status, counted by a Scan (`scan=true` only).
    scanned: Option<BTreeMap<String, u64>>,
    oldest_queued: Option<Listed>,
    /// Newest first.
    failed: Vec<Listed>,
    /// Newest first.
    skipped: Vec<Listed>,
}

impl Api {
    /// A page of image records (tombstones left out), in table order.
    pub(crate) async fn images(&self, page: &Page) -> Result<Images, ApiError> {
        let mut start = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = page.limit as usize;
        let mut records: Vec<Record> = Vec::new();
        let next = loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :image AND #status <> :deleted")
                .expression_attribute_names("#sk", schema::SK)
                .expression_attribute_names("#status", attr::STATUS)
                .expression_attribute_values(":image", AttributeValue::S(schema::IMAGE_SK.into()))
                .expression_attribute_values(
                    ":deleted",
                    AttributeValue::S(Status::Deleted.as_str().into()),
                )
                .limit(SCAN_PAGE)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| table_error(&self.table, e))?;
            let items = out.items.unwrap_or_default();
            let room = limit - records.len();
            let more_in_page = items.len() > room;
            records.extend(items.iter().take(room).filter_map(Record::from_item));
            let ended = out
                .last_evaluated_key
                .as_ref()
                .is_none_or(HashMap::is_empty);
            if records.len() == limit {
                // Resume right after the last record shown: a Scan starts
                // after any primary key, not only a page's last.
                break (more_in_page || !ended).then(|| {
                    let last = records.last().expect("a full page");
                    encode_cursor(&image_key(&last.bucket, &last.key))
                });
            }
            if ended {
                break None;
            }
            start = out.last_evaluated_key;
        };
        let mut images = Vec::with_capacity(records.len());
        for r in records {
            let url = self.url(&r.bucket, &r.key, r.version_id.as_deref()).await?;
            images.push(Card {
                labels: r
                    .labels
                    .iter()
                    .take(CARD_LABELS)
                    .map(|l| LabelBrief {
                        name: l.name.clone(),
                        confidence: l.confidence,
                    })
                    .collect(),
                uri: r.uri,
                bucket: r.bucket,
                key: r.key,
                status: r.status,
                reason: r.reason,
                url,
            });
        }
        Ok(Images { images, next })
    }

    /// Images carrying `name` with at least `min_confidence`, most confident first.
    pub(crate) async fn label(
        &self,
        name: &str,
        min_confidence: f64,
        page: &Page,
    ) -> Result<Hits, ApiError> {
        let start = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let out = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .index_name(LABEL_INDEX)
            .key_condition_expression("#label = :label AND #confidence >= :min")
            .expression_attribute_names("#label", LABEL_INDEX_PK)
            .expression_attribute_names("#confidence", LABEL_INDEX_SK)
            .expression_attribute_values(":label", AttributeValue::S(label_index_value(name)))
            .expression_attribute_values(":min", AttributeValue::N(min_confidence.to_string()))
            .scan_index_forward(false)
            .limit(page.limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| table_error(&self.table, e))?;
        let mut hits = Vec::new();
        for hit in out.items().iter().filter_map(Hit::from_item) {
            let url = self.url(&hit.bucket, &hit.key, None).await?;
            hits.push(LabelHit { hit, url });
        }
        Ok(Hits {
            label: name.to_owned(),
            min_confidence,
            hits,
            next: out
                .last_evaluated_key
                .filter(|k| !k.is_empty())
                .map(|k| encode_cursor(&k)),
        })
    }

    /// One record in full, or `None` when there is none (or only a tombstone).
    pub(crate) async fn image(&self, uri: &S3Uri) -> Result<Option<Detail>, ApiError> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(image_key(&uri.bucket, &uri.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| table_error(&self.table, e))?
            .item;
        let Some(record) = item.as_ref().and_then(Record::from_item) else {
            return Ok(None);
        };
        if record.status == Status::Deleted.as_str() {
            return Ok(None);
        }
        let url = self
            .url(&record.bucket, &record.key, record.version_id.as_deref())
            .await?;
        Ok(Some(Detail { record, url }))
    }

    /// Counts from the status index, the newest failures and skips, and
    /// with `scan` every status counted over the whole table.
    pub(crate) async fn status(&self, scan: bool, limit: u32) -> Result<StatusView, ApiError> {
        let mut counts = BTreeMap::new();
        for status in [Status::Queued, Status::Failed, Status::Skipped] {
            counts.insert(status.as_str().to_owned(), self.count(status).await?);
        }
        let failed = self.newest(Status::Failed, limit, false).await?;
        let skipped = self.newest(Status::Skipped, limit, false).await?;
        let oldest_queued = self
            .newest(Status::Queued, 1, true)
            .await?
            .into_iter()
            .next();
        let scanned = if scan {
            let scan = ImageScan {
                table: &self.table,
                projection: &[attr::STATUS],
                page_size: None,
            };
            let statuses = scan
                .collect(&self.dynamodb, 4, |item| {
                    item.get(attr::STATUS)?.as_s().ok().cloned()
                })
                .await?;
            let mut all: BTreeMap<String, u64> = Status::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect();
            for s in statuses {
                *all.entry(s).or_default() += 1;
            }
            Some(all)
        } else {
            None
        };
        Ok(StatusView {
            table: self.table.clone(),
            counts,
            scanned,
            oldest_queued,
            failed,
            skipped,
        })
    }

    /// Records in `status`, counted shard by shard.
    async fn count(&self, status: Status) -> Result<u64, ApiError> {
        let mut total = 0u64;
        for shard in status_keys(status) {
            let mut start: Option<Item> = None;
            loop {
                let out = self
                    .status_query(&shard)
                    .select(Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| self.index_error(e))?;
                total += out.count as u64;
                match out.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
        }
        Ok(total)
    }

    /// The `limit` newest (or oldest) records in `status`: the first
    /// `limit` of every shard, merged.
    async fn newest(
        &self,
        status: Status,
        limit: u32,
        oldest: bool,
    ) -> Result<Vec<Listed>, ApiError> {
        let mut items = Vec::new();
        for shard in status_keys(status) {
            let out = self
                .status_query(&shard)
                .scan_index_forward(oldest)
                .limit(limit as i32)
                .send()
                .await
                .map_err(|e| self.index_error(e))?;
            items.extend(out.items.unwrap_or_default());
        }
        let since = |item: &Item| {
            item.get(STATUS_INDEX_SK)
                .and_then(|v| v.as_s().ok())
                .cloned()
        };
        let mut listed: Vec<Listed> = items
            .iter()
            .filter_map(|item| {
                let r = Record::from_item(item)?;
                Some(Listed {
                    uri: r.uri,
                    reason: r.reason,
                    since: since(item),
                })
            })
            .collect();
        // RFC 3339 timestamps in UTC with a fixed width sort as strings.
        listed.sort_by(|a, b| a.since.cmp(&b.since).then(a.uri.cmp(&b.uri)));
        if !oldest {
            listed.reverse();
        }
        listed.truncate(limit as usize);
        Ok(listed)
    }

    fn status_query(
        &self,
        shard: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.dynamodb
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", STATUS_INDEX_PK)
            .expression_attribute_values(":k", AttributeValue::S(shard.to_owned()))
    }

    fn index_error<E, R>(&self, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> ApiError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        ApiError::Upstream(anyhow::anyhow!(
            "querying {STATUS_INDEX} of {}: {}",
            self.table,
            describe(&e)
        ))
    }

    /// A presigned GET of the object (of `version` when the record names one).
    async fn url(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<String, ApiError> {
        let config = PresigningConfig::expires_in(self.url_expiry)
            .map_err(|e| anyhow::anyhow!("presigning: {e}"))?;
        let request = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .presigned(config)
            .await
            .map_err(|e| anyhow::anyhow!("presigning s3://{bucket}/{key}: {}", describe(&e)))?;
        Ok(request.uri().to_owned())
    }
}

/// A DynamoDB key as an opaque, URL-safe cursor.
fn encode_cursor(key: &Item) -> String {
    let map: BTreeMap<&str, (&str, &str)> = key
        .iter()
        .filter_map(|(name, value)| match value {
            AttributeValue::S(s) => Some((name.as_str(), ("S", s.as_str()))),
            AttributeValue::N(n) => Some((name.as_str(), ("N", n.as_str()))),
            _ => None,
        })
        .collect();
    hex::encode(serde_json::to_vec(&map).expect("strings serialize"))
}

/// The key a cursor names, if this server could have made it: only the
/// key attributes of the table and its label index, as strings or numbers.
fn decode_cursor(cursor: &str) -> Result<Item, ApiError> {
    const KEY_ATTRIBUTES: [&str; 4] = [schema::PK, schema::SK, LABEL_INDEX_PK, LABEL_INDEX_SK];
    let bytes = hex::decode(cursor).map_err(|_| ApiError::BadCursor)?;
    let map: BTreeMap<String, (String, String)> =
        serde_json::from_slice(&bytes).map_err(|_| ApiError::BadCursor)?;
    if map.is_empty() {
        return Err(ApiError::BadCursor);
    }
    map.into_iter()
        .map(|(name, (kind, value))| {
            if !KEY_ATTRIBUTES.contains(&name.as_str()) {
                return Err(ApiError::BadCursor);
            }
            let value = match kind.as_str() {
                "S" => AttributeValue::S(value),
                "N" if value.parse::<f64>().is_ok() => AttributeValue::N(value),
                _ => return Err(ApiError::BadCursor),
            };
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_any_key() {
        let key: Item = HashMap::from([
            (
                "pk".into(),
                AttributeValue::S("s3://b/café/λ+1 50%.jpg".into()),
            ),
            ("sk".into(), AttributeValue::S("LABEL#Dog".into())),
            ("label".into(), AttributeValue::S("dog".into())),
            ("confidence".into(), AttributeValue::N("97.25".into())),
        ]);
        let cursor = encode_cursor(&key);
        assert!(cursor.bytes().all(|b| b.is_ascii_hexdigit()), "{cursor}");
        assert_eq!(decode_cursor(&cursor).unwrap(), key);
    }

    #[test]
    fn a_cursor_the_server_did_not_make_is_refused() {
        let forged = |json: &str| decode_cursor(&hex::encode(json));
        assert!(matches!(decode_cursor("zz"), Err(ApiError::BadCursor)));
        assert!(matches!(forged("[]"), Err(ApiError::BadCursor)));
        assert!(matches!(forged("{}"), Err(ApiError::BadCursor)));
        assert!(matches!(
            forged(r#"{"status":["S","FAILED"]}"#),
            Err(ApiError::BadCursor)
        ));
        assert!(matches!(
            forged(r#"{"confidence":["N","lots"]}"#),
            Err(ApiError::BadCursor)
        ));
        assert!(forged(r#"{"pk":["S","s3://b/k"],"sk":["S","IMAGE"]}"#).is_ok());
    }
}
