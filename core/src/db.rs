//! DynamoDB primitives shared by every writer of the results table: the
//! clock, the error, the outcome of a conditional write, the record's key
//! and a consistent read. The label-index upkeep ([`crate::entries`]), the
//! writes as values and their sending (`write`) and the dispatcher's
//! and worker's writes ([`crate::store`], [`crate::labeling`]) build on this
//! module; it depends on none of them, only on the pure rule
//! ([`crate::rule`]), whose outcome type it re-exports.

pub use crate::rule::{Item, WriteOutcome};

use crate::schema::{self, IMAGE_SK, PK, SK};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// A DynamoDB call that failed for a reason other than its condition.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation} on {pk} failed: {source}")]
pub struct StoreError {
    /// The operation, e.g. `PutItem`.
    pub operation: &'static str,
    /// Partition key of the item.
    pub pk: String,
    /// The SDK error, with its retry classification already exhausted.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
    /// Whether the same call may succeed later: the network, the service
    /// or its capacity failed (5xx, throttling, a timeout), not the request.
    pub transient: bool,
}

/// Error codes DynamoDB answers when it cannot take the request now.
const BUSY: [&str; 5] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
];

impl StoreError {
    /// Wraps an SDK error, telling an unavailable service from a refused
    /// request.
    pub(crate) fn new<E>(
        operation: &'static str,
        pk: impl Into<String>,
        e: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        use aws_sdk_dynamodb::error::SdkError;
        let transient = match &e {
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(se) => {
                se.raw().status().is_server_error()
                    || se.err().code().is_some_and(|c| BUSY.contains(&c))
            }
            _ => false,
        };
        Self {
            operation,
            pk: pk.into(),
            source: e.into(),
            transient,
        }
    }
}

/// "Now" as the store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix time in milliseconds.
    pub unix_millis: u64,
}

impl Clock {
    /// The system clock.
    pub fn now() -> Self {
        let unix_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self { unix_millis }
    }

    /// This clock `secs` seconds later.
    pub fn plus_secs(self, secs: u64) -> Self {
        Self {
            unix_millis: self.unix_millis + secs * 1000,
        }
    }

    /// RFC 3339 with milliseconds, as stored.
    pub fn rfc3339(self) -> String {
        schema::rfc3339_millis(self.unix_millis)
    }

    /// Unix seconds.
    pub fn unix_secs(self) -> u64 {
        self.unix_millis / 1000
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Key of the image record.
pub fn image_key(bucket: &str, key: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), s(schema::image_pk(bucket, key))),
        (SK.to_owned(), s(IMAGE_SK)),
    ])
}

/// Reads the image record (strongly consistent).
pub async fn get_image(
    client: &Client,
    table: &str,
    bucket: &str,
    key: &str,
) -> Result<Option<Item>, StoreError> {
    get_record(client, table, image_key(bucket, key)).await
}

/// Reads the item under `key` (strongly consistent).
pub(crate) async fn get_record(
    client: &Client,
    table: &str,
    key: Item,
) -> Result<Option<Item>, StoreError> {
    let pk = key
        .get(PK)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map(|out| out.item)
        .map_err(|e| StoreError::new("GetItem", pk, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::SdkError;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::{
        InternalServerError, ProvisionedThroughputExceededException,
    };
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn answered(status: u16, err: PutItemError) -> StoreError {
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        StoreError::new("PutItem", "pk", SdkError::service_error(err, raw))
    }

    #[test]
    fn an_unavailable_or_busy_service_is_transient_and_a_refused_request_is_not() {
        let busy = ProvisionedThroughputExceededException::builder()
            .message("slow down")
            .meta(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("ProvisionedThroughputExceededException")
                    .build(),
            )
            .build();
        let down = InternalServerError::builder().message("oops").build();
        let refused = PutItemError::generic(
            aws_sdk_dynamodb::error::ErrorMetadata::builder()
                .code("ValidationException")
                .message("Item size has exceeded the maximum allowed size")
                .build(),
        );
        assert!(
            answered(
                400,
                PutItemError::ProvisionedThroughputExceededException(busy)
            )
            .transient
        );
        assert!(answered(500, PutItemError::InternalServerError(down)).transient);
        assert!(!answered(400, refused).transient);
    }
}
