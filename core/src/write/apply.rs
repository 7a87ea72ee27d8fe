//! Sending a [`Write`]: the one place that turns a write into a DynamoDB
//! request, sends it, and explains a failed condition with
//! [`rule::conflict`].

use super::{Kind, Transaction, Write};
use crate::db::{self, Item, StoreError, WriteOutcome};
use crate::rule::{self, Stored, Writer};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

type HttpResponse = aws_sdk_dynamodb::config::http::HttpResponse;

/// Cancellation code DynamoDB reports for an action whose condition failed.
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";

/// The results table, as its writers reach it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'a> {
    client: &'a Client,
    name: &'a str,
}

/// What DynamoDB answered a put or an update.
enum Sent {
    /// Written; the record as written, when the write asked for it.
    Written(Option<Item>),
    /// The condition failed; the record DynamoDB returned with the failure.
    ConditionFailed(Option<Item>),
}

impl<'a> Table<'a> {
    /// The table `name`, reached through `client`.
    pub(crate) fn new(client: &'a Client, name: &'a str) -> Self {
        Self { client, name }
    }

    /// The client.
    pub(crate) fn client(self) -> &'a Client {
        self.client
    }

    /// The table's name.
    pub(crate) fn name(self) -> &'a str {
        self.name
    }

    /// Sends `write` and tells what it found: `Written`, or, when its
    /// condition failed, [`rule::conflict`]'s reading of the record for the
    /// write's writer. The record is the one DynamoDB returned with the
    /// failure (`ALL_OLD`), else a consistent read of it. A record that
    /// changed between the two ([`rule::Changed`]) is a transient
    /// [`StoreError`], which callers retry like an unavailable service.
    pub(crate) async fn apply(self, write: &Write<'_>) -> Result<WriteOutcome, StoreError> {
        self.apply_returning(write)
            .await
            .map(|(outcome, _record)| outcome)
    }

    /// [`Table::apply`], with the record: as written, for a write that asks
    /// for it (`ALL_NEW`); as found, for a failed condition.
    pub(crate) async fn apply_returning(
        self,
        write: &Write<'_>,
    ) -> Result<(WriteOutcome, Option<Item>), StoreError> {
        match self.send(write).await? {
            Sent::Written(record) => Ok((WriteOutcome::Written, record)),
            Sent::ConditionFailed(returned) => self.conflict(write, returned).await,
        }
    }

    /// Sends the labeling `transaction` in one `TransactWriteItems`; a failed
    /// condition of its record update is explained as in [`Table::apply`].
    pub(crate) async fn apply_transaction(
        self,
        transaction: &Transaction<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let record = transaction.record();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(transaction.items(self.name)))
            .send()
            .await;
        let operation = "TransactWriteItems";
        match result {
            Ok(_) => Ok(WriteOutcome::Written),
            Err(SdkError::ServiceError(se)) => match record_condition_failed(se.err()) {
                Some(returned) => self
                    .conflict(record, returned)
                    .await
                    .map(|(outcome, _record)| outcome),
                None => Err(StoreError::new(
                    operation,
                    record.pk(),
                    SdkError::ServiceError(se),
                )),
            },
            Err(e) => Err(StoreError::new(operation, record.pk(), e)),
        }
    }

    async fn send(self, write: &Write<'_>) -> Result<Sent, StoreError> {
        match &write.kind {
            Kind::Put(item) => {
                let result = write.put_item(self.client, self.name, item).send().await;
                sent(write, "PutItem", result.map(|_| None))
            }
            Kind::Update { .. } => {
                let result = write.update_item(self.client, self.name).send().await;
                sent(write, "UpdateItem", result.map(|out| out.attributes))
            }
        }
    }

    /// The outcome of `write` whose condition failed, from the record
    /// `returned` with the failure or read again.
    async fn conflict(
        self,
        write: &Write<'_>,
        returned: Option<Item>,
    ) -> Result<(WriteOutcome, Option<Item>), StoreError> {
        let record = match returned {
            Some(item) if !item.is_empty() => Some(item),
            _ if rereads(write.writer) => {
                db::get_record(self.client, self.name, write.key.clone()).await?
            }
            _ => None,
        };
        let stored = record.as_ref().map(Stored::from_item);
        let outcome =
            rule::conflict(write.writer, &write.revision, stored.as_ref()).map_err(|changed| {
                StoreError {
                    operation: "conditional write",
                    pk: write.pk(),
                    source: changed.into(),
                    transient: true,
                }
            })?;
        Ok((outcome, record))
    }
}

/// Whether a failed condition that came back without the record is
/// explained by a fresh read: for every writer but the version delete,
/// which decides from the returned record alone (none: the record is gone,
/// or is another version's).
fn rereads(writer: Writer<'_>) -> bool {
    !matches!(writer, Writer::VersionDelete { .. })
}

/// A put's or an update's answer: written, a failed condition, or an error.
fn sent<E: ConditionFailure>(
    write: &Write<'_>,
    operation: &'static str,
    result: Result<Option<Item>, SdkError<E, HttpResponse>>,
) -> Result<Sent, StoreError> {
    match result {
        Ok(record) => Ok(Sent::Written(record)),
        Err(SdkError::ServiceError(se)) if se.err().failed_condition().is_some() => {
            let returned = se.err().failed_condition().flatten().cloned();
            Ok(Sent::ConditionFailed(returned))
        }
        Err(e) => Err(StoreError::new(operation, write.pk(), e)),
    }
}

/// `Some(item)` when the transaction was cancelled by its first action's
/// (the record update's) condition.
fn record_condition_failed(err: &TransactWriteItemsError) -> Option<Option<Item>> {
    match err {
        TransactWriteItemsError::TransactionCanceledException(e) => e
            .cancellation_reasons()
            .first()
            .filter(|r| r.code() == Some(CONDITIONAL_CHECK_FAILED))
            .map(|r| r.item().cloned()),
        _ => None,
    }
}

/// A modeled DynamoDB error that may be a failed condition carrying the
/// item that failed it.
trait ConditionFailure:
    aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static
{
    /// `Some(item)` (possibly empty) when the error is a failed condition.
    fn failed_condition(&self) -> Option<Option<&Item>>;
}

impl ConditionFailure for PutItemError {
    fn failed_condition(&self) -> Option<Option<&Item>> {
        match self {
            PutItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

impl ConditionFailure for UpdateItemError {
    fn failed_condition(&self) -> Option<Option<&Item>> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

impl Write<'_> {
    /// Expression attribute names as the SDK takes them; `None` when the
    /// write names none (DynamoDB refuses an empty map).
    fn sdk_names(&self) -> Option<HashMap<String, String>> {
        let names = self.names();
        (!names.is_empty()).then(|| {
            names
                .into_iter()
                .map(|(placeholder, name)| (placeholder.to_owned(), name.to_owned()))
                .collect()
        })
    }

    /// Expression attribute values as the SDK takes them.
    fn sdk_values(&self) -> HashMap<String, AttributeValue> {
        self.values
            .iter()
            .map(|(placeholder, value)| ((*placeholder).to_owned(), value.clone()))
            .collect()
    }

    /// The PutItem request of a put; `None` for an update.
    pub(crate) fn put_request(&self, client: &Client, table: &str) -> Option<PutItemFluentBuilder> {
        match &self.kind {
            Kind::Put(item) => Some(self.put_item(client, table, item)),
            Kind::Update { .. } => None,
        }
    }

    fn put_item(&self, client: &Client, table: &str, item: &Item) -> PutItemFluentBuilder {
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item.clone()))
            .condition_expression(self.condition)
            .set_expression_attribute_names(self.sdk_names())
            .set_expression_attribute_values(Some(self.sdk_values()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    fn update_item(&self, client: &Client, table: &str) -> UpdateItemFluentBuilder {
        let request = client
            .update_item()
            .table_name(table)
            .set_key(Some(self.key.clone()))
            .set_update_expression(self.update_expression())
            .condition_expression(self.condition)
            .set_expression_attribute_names(self.sdk_names())
            .set_expression_attribute_values(Some(self.sdk_values()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if self.return_new {
            request.return_values(ReturnValue::AllNew)
        } else {
            request
        }
    }

    /// The update as one action of a transaction.
    fn transact_update(&self, table: &str) -> Update {
        Update::builder()
            .table_name(table)
            .set_key(Some(self.key.clone()))
            .set_update_expression(self.update_expression())
            .condition_expression(self.condition)
            .set_expression_attribute_names(self.sdk_names())
            .set_expression_attribute_values(Some(self.sdk_values()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("key, table and update expression are set")
    }
}

impl Transaction<'_> {
    /// The actions in `table`: the record update first, then the entries.
    pub(crate) fn items(&self, table: &str) -> Vec<TransactWriteItem> {
        let mut items = Vec::with_capacity(self.entries.len() + 1);
        let update = self.record.transact_update(table);
        items.push(TransactWriteItem::builder().update(update).build());
        for entry in &self.entries {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(entry.clone()))
                .build()
                .expect("table and item are set");
            items.push(TransactWriteItem::builder().put(put).build());
        }
        items
    }
}
