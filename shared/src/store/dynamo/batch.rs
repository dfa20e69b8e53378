//! Batch reads and writes of records: split to the API limits (100 keys per BatchGetItem, 25
//! puts per BatchWriteItem), a few batches in parallel, unprocessed parts retried with backoff.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt, stream};

use super::items::Stored;
use super::{DynamoStore, Item, decode, s};
use crate::error::{Error, Result};

/// BatchGetItem takes at most 100 keys.
const GET_BATCH: usize = 100;
/// BatchWriteItem takes at most 25 requests.
const WRITE_BATCH: usize = 25;
/// Batch calls in flight at once.
pub(super) const PARALLEL_BATCHES: usize = 4;
/// Retries of unprocessed keys/items before giving up (backoff 50 ms doubling, capped at 2 s).
const BATCH_RETRIES: u32 = 8;

impl DynamoStore {
    /// Every record whose key is among `ids`: see [`DynamoStore::batch_get_items`].
    pub(super) async fn batch_get_records<R: Stored>(&self, ids: &[String]) -> Result<Vec<R>> {
        self.batch_get_items(R::table(self), R::KEY, ids).await?.into_iter().map(decode).collect()
    }

    /// The items of `table` whose `key` is among `ids`: BatchGetItem per 100 distinct ids, a few
    /// batches in parallel, UnprocessedKeys retried with backoff.
    pub(super) async fn batch_get_items(&self, table: &str, key: &str, ids: &[String]) -> Result<Vec<Item>> {
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
        Ok(pages.into_iter().flatten().collect())
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

    /// PutItem of every record as it is, BatchWriteItem per 25 (duplicates collapse to the
    /// last), a few batches in parallel, UnprocessedItems retried with backoff.
    pub(super) async fn upsert_records<R: Stored>(&self, records: &[R]) -> Result<()> {
        let table = R::table(self);
        let items = records.iter().map(Stored::item).collect::<Result<Vec<_>>>()?;
        self.batch_write(table, put_requests(table, R::KEY, items)?).await
    }

    /// `requests` (puts and deletes of distinct items) in BatchWriteItem calls of 25, a few at
    /// a time, unprocessed parts retried.
    pub(super) async fn batch_write(&self, table: &str, requests: Vec<WriteRequest>) -> Result<()> {
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
}

/// One put request per distinct `key` (a batch may not name an item twice: the last wins).
fn put_requests(table: &str, key: &str, items: Vec<Item>) -> Result<Vec<WriteRequest>> {
    let mut by_key: HashMap<String, Item> = HashMap::with_capacity(items.len());
    for item in items {
        let id = match item.get(key) {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => return Err(Error::store(format!("writing to {table}"), format!("an item has no {key}"))),
        };
        by_key.insert(id, item);
    }
    by_key
        .into_values()
        .map(|item| {
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
                .map_err(|e| Error::store("building a batch write", e))
        })
        .collect()
}

/// Waits before retrying unprocessed batch parts; gives up (as throttling) after the last try.
async fn unprocessed_backoff(attempt: u32, left: usize, table: &str) -> Result<()> {
    if attempt >= BATCH_RETRIES {
        let message = format!("{left} items still unprocessed after {BATCH_RETRIES} retries");
        return Err(Error::Aws {
            context: format!("batch call on {table}"),
            message: message.clone(),
            code: None,
            throttled: true,
            refused: false,
            source: message.into(),
        });
    }
    let delay = Duration::from_millis(50 << attempt.min(10)).min(Duration::from_secs(2));
    tracing::debug!(table, left, attempt, ?delay, "retrying unprocessed batch items");
    tokio::time::sleep(delay).await;
    Ok(())
}
