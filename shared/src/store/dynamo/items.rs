//! The item boilerplate the requests and machines tables share: a record is an item of a table
//! of its own ([`Stored`]), read by key, written new or at its version (conditional puts that
//! recognise their own retried write by `writeId`), queried by index, deleted and paged.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;

use super::{DynamoStore, Item, decode, encode, n, s};
use crate::error::{Error, Result};
use crate::store::{Page, Table, Versioned, exists, stale};

/// A record kept as an item of a table of its own.
pub(super) trait Stored: Versioned {
    /// The table's key attribute.
    const KEY: &'static str;

    /// The table's name in `store`.
    fn table(store: &DynamoStore) -> &str;

    /// The item written: the record's attributes, plus whatever its indexes need.
    fn item(&self) -> Result<Item> {
        encode(self)
    }
}

/// The attribute a conditional put carries to recognise its own write: a fresh id per call,
/// the same on the SDK's retries of that call (it resends the request as built), different
/// for two writers of identical records (so both cannot win a versioned write).
const WRITE_ID: &str = "writeId";

fn with_write_id(mut item: Item) -> Item {
    item.insert(WRITE_ID.to_owned(), s(&uuid::Uuid::new_v4().to_string()));
    item
}

/// The condition of a put.
#[derive(Clone, Copy)]
enum Condition {
    /// No item with the key exists.
    New,
    /// The item is at this version.
    AtVersion(u64),
}

impl Condition {
    /// What a refused put answers, by whether the item exists.
    fn refused(self, what: &'static str, id: &str, found: bool) -> Error {
        match self {
            Condition::New => exists(what, id),
            Condition::AtVersion(expected) if found => stale(what, id, expected),
            Condition::AtVersion(_) => Error::not_found(what, id),
        }
    }

    /// The context of a put that failed otherwise.
    fn context(self, what: &str, id: &str, table: &str) -> String {
        match self {
            Condition::New => format!("writing {what} {id} to {table}"),
            Condition::AtVersion(_) => format!("updating {what} {id} in {table}"),
        }
    }
}

/// Whether a put was refused by its condition.
fn condition_failed(err: &SdkError<PutItemError>) -> bool {
    err.as_service_error().is_some_and(PutItemError::is_conditional_check_failed_exception)
}

impl DynamoStore {
    async fn get_item<T: DeserializeOwned>(&self, table: &str, key: &str, id: &str) -> Result<Option<T>> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(key, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws(format!("reading {id} from {table}"), e))?;
        output.item.map(decode).transpose()
    }

    /// Puts `item` (of the record `id`) on `condition`, carrying a fresh `writeId`.
    async fn put_conditional<R: Stored>(&self, id: &str, item: Item, condition: Condition) -> Result<()> {
        let table = R::table(self);
        let item = with_write_id(item);
        let put = self.client.put_item().table_name(table).set_item(Some(item.clone()));
        let put = match condition {
            Condition::New => {
                put.condition_expression("attribute_not_exists(#k)").expression_attribute_names("#k", R::KEY)
            }
            Condition::AtVersion(expected) => {
                put.condition_expression("version = :expected").expression_attribute_values(":expected", n(expected))
            }
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => self.unless_own::<R>(id, &item, condition).await,
            Err(err) => Err(Error::aws(condition.context(R::WHAT, id, table), err)),
        }
    }

    /// A conditional write failed: `Ok` when the stored item carries this call's `writeId`
    /// (the SDK retried a write whose answer was lost, and its first attempt was applied), else
    /// the refusal `condition` makes of whether the item exists.
    async fn unless_own<R: Stored>(&self, id: &str, written: &Item, condition: Condition) -> Result<()> {
        let table = R::table(self);
        let stored = self.get_item::<serde_json::Value>(table, R::KEY, id).await?;
        let ours = match written.get(WRITE_ID) {
            Some(AttributeValue::S(ours)) => Some(ours.as_str()),
            _ => None,
        };
        match stored {
            Some(stored) if ours.is_some() && stored.get(WRITE_ID).and_then(|v| v.as_str()) == ours => {
                tracing::info!(table, id, "conditional write found applied (the SDK retried a lost answer)");
                Ok(())
            }
            stored => Err(condition.refused(R::WHAT, id, stored.is_some())),
        }
    }

    /// A versioned write failed its condition: stale if the record exists, else not found.
    pub(super) async fn why_not_written<R: Stored>(&self, id: &str, expected: u64) -> Error {
        match self.get_item::<serde_json::Value>(R::table(self), R::KEY, id).await {
            Ok(Some(_)) => stale(R::WHAT, id, expected),
            Ok(None) => Error::not_found(R::WHAT, id),
            Err(err) => err,
        }
    }

    /// All records of a GSI partition, following LastEvaluatedKey.
    pub(super) async fn query_index<R: Stored>(&self, index: &str, attribute: &str, value: &str) -> Result<Vec<R>> {
        let table = R::table(self);
        let pages: Vec<_> = self
            .client
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", attribute)
            .expression_attribute_values(":v", s(value))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::aws(format!("querying {index} of {table} for {value}"), e))?;
        pages.into_iter().flat_map(|page| page.items.unwrap_or_default()).map(decode).collect()
    }
}

/// Both tables: reads by key strongly consistent, every write conditional.
#[async_trait]
impl<R: Stored> Table<R> for DynamoStore {
    async fn get(&self, id: &str) -> Result<Option<R>> {
        self.get_item(R::table(self), R::KEY, id).await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<R>> {
        self.batch_get_records(ids).await
    }

    /// A new item: fails with Conflict when the key exists (unless this call's retry wrote it).
    async fn put_if_absent(&self, record: &R) -> Result<()> {
        self.put_conditional::<R>(record.id(), record.item()?, Condition::New).await
    }

    async fn put_all_if_absent(&self, records: &[R]) -> Result<Vec<bool>> {
        self.put_new_records(records).await
    }

    /// Replaces the item if it is still at `record`'s version; returns what was written (the
    /// record at version + 1).
    async fn update(&self, record: &R) -> Result<R> {
        let next = record.next_version();
        self.put_conditional::<R>(record.id(), next.item()?, Condition::AtVersion(record.version())).await?;
        Ok(next)
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let table = R::table(self);
        self.client
            .delete_item()
            .table_name(table)
            .key(R::KEY, s(id))
            .send()
            .await
            .map(drop)
            .map_err(|e| Error::aws(format!("deleting {id} from {table}"), e))
    }

    async fn upsert_batch(&self, records: &[R]) -> Result<()> {
        self.upsert_records(records).await
    }

    /// Up to `limit` records after the key `after` (a Scan: migration only).
    async fn page(&self, after: Option<String>, limit: usize) -> Result<Page<R>> {
        let table = R::table(self);
        let output = self
            .client
            .scan()
            .table_name(table)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .set_exclusive_start_key(after.map(|id| HashMap::from([(R::KEY.to_owned(), s(&id))])))
            .send()
            .await
            .map_err(|e| Error::aws(format!("listing {table}"), e))?;
        let next = output.last_evaluated_key.and_then(|mut k| match k.remove(R::KEY) {
            Some(AttributeValue::S(id)) => Some(id),
            _ => None,
        });
        let items = output.items.unwrap_or_default().into_iter().map(decode).collect::<Result<_>>()?;
        Ok(Page { items, next })
    }
}
