//! DynamoDB backend (production): `{prefix}_requests`, `{prefix}_machines`, `{prefix}_templates`.
//!
//! Items are the records' camelCase attributes (`serde_dynamo`). Every write is conditional
//! (`attribute_not_exists` for new records, `version = :expected` for updates); reads by key are
//! strongly consistent; lists come from the GSIs (the sparse `active-index` for unfinished
//! requests): no Scan on any request path. Batches are split to the API limits (100 keys per
//! BatchGetItem, 25 puts per BatchWriteItem) and unprocessed parts retried with backoff.

mod capacity;
pub mod tables;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Describe, MachineRecord, MachineRepository, Page, RecordSource, RequestRecord, RequestRepository,
    check_transaction_size, exists, stale,
};
use crate::error::{Error, Result};
use tables::{
    ACTIVE, ACTIVE_INDEX, MACHINES, NAME_INDEX, RECLAIM_INDEX, REQUEST_INDEX, REQUESTS, RETURN_INDEX, TEMPLATE_INDEX,
    TEMPLATES,
};

pub use tables::create_tables;

type Item = HashMap<String, AttributeValue>;

/// BatchGetItem takes at most 100 keys.
const GET_BATCH: usize = 100;
/// BatchWriteItem takes at most 25 requests.
const WRITE_BATCH: usize = 25;
/// Batch calls in flight at once.
const PARALLEL_BATCHES: usize = 4;
/// Retries of unprocessed keys/items before giving up (backoff 50 ms doubling, capped at 2 s).
const BATCH_RETRIES: u32 = 8;

pub struct DynamoStore {
    client: Client,
    requests: String,
    machines: String,
    templates: String,
}

impl DynamoStore {
    pub fn new(client: Client, prefix: &str) -> Self {
        DynamoStore {
            client,
            requests: REQUESTS.name(prefix),
            machines: MACHINES.name(prefix),
            templates: TEMPLATES.name(prefix),
        }
    }

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

    /// Every item of `table` whose `key` is among `ids`: BatchGetItem per 100 distinct ids,
    /// a few batches in parallel, UnprocessedKeys retried with backoff.
    async fn batch_get_items<T: DeserializeOwned>(&self, table: &str, key: &str, ids: &[String]) -> Result<Vec<T>> {
        let distinct: Vec<String> = {
            let mut seen = HashSet::new();
            ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
        };
        // Owned chunks: the futures must not borrow from a closure argument (Send + 'async_trait).
        let chunks: Vec<Vec<String>> = distinct.chunks(GET_BATCH).map(<[String]>::to_vec).collect();
        let pages: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.batch_get_chunk(table, key, chunk))
            .buffer_unordered(PARALLEL_BATCHES)
            .try_collect()
            .await?;
        pages.into_iter().flatten().map(decode).collect()
    }

    async fn batch_get_chunk(&self, table: &str, key: &str, ids: Vec<String>) -> Result<Vec<Item>> {
        let keys: Vec<Item> = ids.iter().map(|id| HashMap::from([(key.to_owned(), s(id))])).collect();
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| Error::store("building a batch read", e))?;
        let mut found = Vec::with_capacity(ids.len());
        for attempt in 0.. {
            let output = self
                .client
                .batch_get_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| Error::aws(format!("batch reading {} items from {table}", ids.len()), e))?;
            if let Some(mut responses) = output.responses {
                found.extend(responses.remove(table).unwrap_or_default());
            }
            match output.unprocessed_keys.and_then(|mut u| u.remove(table)).filter(|k| !k.keys.is_empty()) {
                None => break,
                Some(rest) => {
                    unprocessed_backoff(attempt, rest.keys.len(), table).await?;
                    pending = rest;
                }
            }
        }
        Ok(found)
    }

    /// PutItem of every item, BatchWriteItem per 25 (duplicates collapse to the last), a few
    /// batches in parallel, UnprocessedItems retried with backoff.
    async fn batch_put_items(&self, table: &str, key: &str, items: Vec<Item>) -> Result<()> {
        let mut by_key: HashMap<String, Item> = HashMap::with_capacity(items.len());
        for item in items {
            let id = match item.get(key) {
                Some(AttributeValue::S(id)) => id.clone(),
                _ => return Err(Error::store(format!("writing to {table}"), format!("an item has no {key}"))),
            };
            by_key.insert(id, item);
        }
        let requests: Vec<WriteRequest> = by_key
            .into_values()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| Error::store("building a batch write", e))
            })
            .collect::<Result<_>>()?;
        stream::iter(requests.chunks(WRITE_BATCH).map(<[WriteRequest]>::to_vec))
            .map(|chunk| self.batch_put_chunk(table, chunk))
            .buffer_unordered(PARALLEL_BATCHES)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn batch_put_chunk(&self, table: &str, mut pending: Vec<WriteRequest>) -> Result<()> {
        for attempt in 0.. {
            let count = pending.len();
            let output = self
                .client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| Error::aws(format!("batch writing {count} items to {table}"), e))?;
            match output.unprocessed_items.and_then(|mut u| u.remove(table)).filter(|rest| !rest.is_empty()) {
                None => break,
                Some(rest) => {
                    unprocessed_backoff(attempt, rest.len(), table).await?;
                    pending = rest;
                }
            }
        }
        Ok(())
    }

    /// All items of a GSI partition, following LastEvaluatedKey.
    async fn query_index<T: DeserializeOwned>(
        &self,
        table: &str,
        index: &str,
        attribute: &str,
        value: &str,
    ) -> Result<Vec<T>> {
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

    /// A new item: fails with Conflict when the key exists (unless this call's retry wrote it).
    async fn put_new(&self, table: &str, key: &str, id: &str, what: &'static str, item: Item) -> Result<()> {
        let item = with_write_id(item);
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", key)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                self.unless_own(table, key, id, &item, |_| exists(what, id)).await
            }
            Err(err) => Err(Error::aws(format!("writing {what} {id} to {table}"), err)),
        }
    }

    /// Replaces an item at version `expected` (the item carries expected + 1).
    async fn put_versioned(
        &self,
        table: &str,
        key: &str,
        id: &str,
        what: &'static str,
        expected: u64,
        item: Item,
    ) -> Result<()> {
        let item = with_write_id(item);
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item.clone()))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                self.unless_own(table, key, id, &item, |found| {
                    if found { stale(what, id, expected) } else { Error::not_found(what, id) }
                })
                .await
            }
            Err(err) => Err(Error::aws(format!("updating {what} {id} in {table}"), err)),
        }
    }

    /// A conditional write failed: `Ok` when the stored item carries this call's `writeId`
    /// (the SDK retried a write whose answer was lost, and its first attempt was applied), else
    /// the error `refused` makes of whether the item exists.
    async fn unless_own(
        &self,
        table: &str,
        key: &str,
        id: &str,
        written: &Item,
        refused: impl FnOnce(bool) -> Error,
    ) -> Result<()> {
        let stored = self.get_item::<serde_json::Value>(table, key, id).await?;
        let ours = match written.get(WRITE_ID) {
            Some(AttributeValue::S(ours)) => Some(ours.as_str()),
            _ => None,
        };
        match stored {
            Some(stored) if ours.is_some() && stored.get(WRITE_ID).and_then(|v| v.as_str()) == ours => {
                tracing::info!(table, id, "conditional write found applied (the SDK retried a lost answer)");
                Ok(())
            }
            stored => Err(refused(stored.is_some())),
        }
    }

    /// A versioned write failed its condition: stale if the record exists, else not found.
    async fn why_not_written(&self, table: &str, key: &str, id: &str, what: &'static str, expected: u64) -> Error {
        match self.get_item::<serde_json::Value>(table, key, id).await {
            Ok(Some(_)) => stale(what, id, expected),
            Ok(None) => Error::not_found(what, id),
            Err(err) => err,
        }
    }

    async fn delete_item(&self, table: &str, key: &str, id: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(table)
            .key(key, s(id))
            .send()
            .await
            .map(drop)
            .map_err(|e| Error::aws(format!("deleting {id} from {table}"), e))
    }

    async fn scan_page<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Page<T>> {
        let output = self
            .client
            .scan()
            .table_name(table)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .set_exclusive_start_key(after.map(|id| HashMap::from([(key.to_owned(), s(&id))])))
            .send()
            .await
            .map_err(|e| Error::aws(format!("listing {table}"), e))?;
        let next = output.last_evaluated_key.and_then(|mut k| match k.remove(key) {
            Some(AttributeValue::S(id)) => Some(id),
            _ => None,
        });
        let items = output.items.unwrap_or_default().into_iter().map(decode).collect::<Result<_>>()?;
        Ok(Page { items, next })
    }
}

impl Describe for DynamoStore {
    fn describe(&self) -> String {
        format!("dynamodb:{}, {}, {}", self.requests, self.machines, self.templates)
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The attribute a conditional put carries to recognise its own write: a fresh id per call,
/// the same on the SDK's retries of that call (it resends the request as built), different
/// for two writers of identical records (so both cannot win a versioned write).
const WRITE_ID: &str = "writeId";

fn with_write_id(mut item: Item) -> Item {
    item.insert(WRITE_ID.to_owned(), s(&uuid::Uuid::new_v4().to_string()));
    item
}

fn encode<T: Serialize>(record: &T) -> Result<Item> {
    serde_dynamo::to_item(record).map_err(|e| Error::store("encoding a DynamoDB item", e))
}

fn decode<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| Error::store("decoding a DynamoDB item", e))
}

/// A request's item: its attributes plus `active` while the reconciler has work on it
/// ([`RequestRecord::is_active`], the sparse index key).
fn request_item(request: &RequestRecord) -> Result<Item> {
    let mut item = encode(request)?;
    if request.is_active() {
        item.insert("active".to_owned(), s(ACTIVE));
    }
    Ok(item)
}

/// Waits before retrying unprocessed batch parts; gives up (as throttling) after the last try.
async fn unprocessed_backoff(attempt: u32, left: usize, table: &str) -> Result<()> {
    if attempt >= BATCH_RETRIES {
        let message = format!("{left} items still unprocessed after {BATCH_RETRIES} retries");
        return Err(Error::Aws {
            context: format!("batch call on {table}"),
            message: message.clone(),
            throttled: true,
            source: message.into(),
        });
    }
    let delay = Duration::from_millis(50 << attempt.min(10)).min(Duration::from_secs(2));
    tracing::debug!(table, left, attempt, ?delay, "retrying unprocessed batch items");
    tokio::time::sleep(delay).await;
    Ok(())
}

#[async_trait]
impl RequestRepository for DynamoStore {
    async fn get(&self, request_id: &str) -> Result<Option<RequestRecord>> {
        self.get_item(&self.requests, REQUESTS.key, request_id).await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<RequestRecord>> {
        self.batch_get_items(&self.requests, REQUESTS.key, ids).await
    }

    async fn put_if_absent(&self, request: &RequestRecord) -> Result<()> {
        self.put_new(&self.requests, REQUESTS.key, &request.request_id, "request", request_item(request)?).await
    }

    async fn update(&self, request: &RequestRecord) -> Result<RequestRecord> {
        let expected = request.version;
        let next = RequestRecord { version: expected + 1, ..request.clone() };
        self.put_versioned(
            &self.requests,
            REQUESTS.key,
            &request.request_id,
            "request",
            expected,
            request_item(&next)?,
        )
        .await?;
        Ok(next)
    }

    async fn list_active(&self) -> Result<Vec<RequestRecord>> {
        // The index sorts by createdAt within the one `active` partition: oldest first.
        self.query_index(&self.requests, ACTIVE_INDEX, "active", ACTIVE).await
    }

    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>> {
        check_transaction_size(machines)?;
        let build = |e| Error::store("building a transaction", e);
        let mut actions = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.requests)
                        .set_item(Some(request_item(request)?))
                        .condition_expression("attribute_not_exists(#k)")
                        .expression_attribute_names("#k", REQUESTS.key)
                        .build()
                        .map_err(build)?,
                )
                .build(),
        ];
        let updated: Vec<MachineRecord> =
            machines.iter().map(|m| MachineRecord { version: m.version + 1, ..m.clone() }).collect();
        for (machine, next) in machines.iter().zip(&updated) {
            actions.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.machines)
                            .set_item(Some(encode(next)?))
                            .condition_expression("version = :expected")
                            .expression_attribute_values(":expected", n(machine.version))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
        }
        // The token makes an SDK retry of a call whose answer was lost a no-op on AWS (36 chars:
        // the request id's uuid).
        let token = &request.request_id[request.request_id.len().saturating_sub(36)..];
        let result =
            self.client.transact_write_items().client_request_token(token).set_transact_items(Some(actions)).send().await;
        let err = match result {
            Ok(_) => return Ok(updated),
            Err(err) => err,
        };
        // Which condition failed: reasons are in action order (request first, then machines).
        let reasons = err
            .as_service_error()
            .and_then(|e| match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                    c.cancellation_reasons.clone()
                }
                _ => None,
            })
            .unwrap_or_default();
        let failed = reasons.iter().position(|r| r.code.as_deref() == Some("ConditionalCheckFailed"));
        Err(match failed {
            Some(0) => exists("request", &request.request_id),
            Some(i) => {
                let machine = &machines[i - 1];
                self.why_not_written(&self.machines, MACHINES.key, &machine.machine_id, "machine", machine.version)
                    .await
            }
            None => Error::aws(format!("writing request {} with {} machines", request.request_id, machines.len()), err),
        })
    }

    async fn delete(&self, request_id: &str) -> Result<()> {
        self.delete_item(&self.requests, REQUESTS.key, request_id).await
    }

    async fn upsert_batch(&self, requests: &[RequestRecord]) -> Result<()> {
        let items = requests.iter().map(request_item).collect::<Result<_>>()?;
        self.batch_put_items(&self.requests, REQUESTS.key, items).await
    }
}

#[async_trait]
impl MachineRepository for DynamoStore {
    async fn get(&self, machine_id: &str) -> Result<Option<MachineRecord>> {
        self.get_item(&self.machines, MACHINES.key, machine_id).await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<MachineRecord>> {
        self.batch_get_items(&self.machines, MACHINES.key, ids).await
    }

    async fn put_if_absent(&self, machine: &MachineRecord) -> Result<()> {
        self.put_new(&self.machines, MACHINES.key, &machine.machine_id, "machine", encode(machine)?).await
    }

    async fn update(&self, machine: &MachineRecord) -> Result<MachineRecord> {
        let expected = machine.version;
        let next = MachineRecord { version: expected + 1, ..machine.clone() };
        self.put_versioned(&self.machines, MACHINES.key, &machine.machine_id, "machine", expected, encode(&next)?)
            .await?;
        Ok(next)
    }

    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>> {
        self.query_index(&self.machines, REQUEST_INDEX, "requestId", request_id).await
    }

    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>> {
        self.query_index(&self.machines, RETURN_INDEX, "returnRequestId", return_request_id).await
    }

    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>> {
        let distinct: HashSet<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
        let found: Vec<Vec<MachineRecord>> = stream::iter(distinct)
            .map(|name| async move { self.query_index(&self.machines, NAME_INDEX, "name", &name).await })
            .buffer_unordered(PARALLEL_BATCHES * 2)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>> {
        self.query_index(&self.machines, RECLAIM_INDEX, "provider", provider).await
    }

    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>> {
        let machines: Vec<MachineRecord> =
            self.query_index(&self.machines, TEMPLATE_INDEX, "templateId", template_id).await?;
        Ok(machines.into_iter().filter(|m| m.provider == provider).collect())
    }

    async fn upsert_batch(&self, machines: &[MachineRecord]) -> Result<()> {
        let items = machines.iter().map(encode).collect::<Result<_>>()?;
        self.batch_put_items(&self.machines, MACHINES.key, items).await
    }

    async fn delete(&self, machine_id: &str) -> Result<()> {
        self.delete_item(&self.machines, MACHINES.key, machine_id).await
    }
}

#[async_trait]
impl RecordSource for DynamoStore {
    async fn page_requests(&self, after: Option<String>, limit: usize) -> Result<Page<RequestRecord>> {
        self.scan_page(&self.requests, REQUESTS.key, after, limit).await
    }

    async fn page_machines(&self, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        self.scan_page(&self.machines, MACHINES.key, after, limit).await
    }
}
