//! DynamoDB backend (production): `{prefix}_requests`, `{prefix}_machines` and the capacity table
//! (named `{prefix}_templates` for compatibility with deployed stacks, see [`tables::CAPACITY`]).
//!
//! Items are the records' camelCase attributes (`serde_dynamo`). Every write is conditional
//! (`attribute_not_exists` for new records, `version = :expected` for updates); reads by key are
//! strongly consistent; lists come from the GSIs (the sparse `active-index` for unfinished
//! requests): no Scan on any request path. Batches are split to the API limits (100 keys per
//! BatchGetItem, 25 puts per BatchWriteItem) and unprocessed parts retried with backoff.

mod batch;
mod capacity;
mod cooldowns;
pub mod event_log;
mod items;
mod listing;
mod repositories;
pub mod tables;
mod transact;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Describe;
use crate::error::{Error, Result};
use tables::{MACHINES, REQUESTS, CAPACITY};

pub use tables::create_tables;

type Item = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    requests: String,
    machines: String,
    /// The capacity counters' table (`{prefix}_templates`).
    capacity: String,
}

impl DynamoStore {
    pub fn new(client: Client, prefix: &str) -> Self {
        DynamoStore {
            client,
            requests: REQUESTS.name(prefix),
            machines: MACHINES.name(prefix),
            capacity: CAPACITY.name(prefix),
        }
    }
}

impl Describe for DynamoStore {
    fn describe(&self) -> String {
        format!("dynamodb:{}, {}, {}", self.requests, self.machines, self.capacity)
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn encode<T: Serialize>(record: &T) -> Result<Item> {
    serde_dynamo::to_item(record).map_err(|e| Error::store("encoding a DynamoDB item", e))
}

fn decode<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| Error::store("decoding a DynamoDB item", e))
}
