//! Template events on DynamoDB: one `event#<id>` item in the capacity table (`event`: the event
//! as JSON, TTL `expiresAt` a day on), which the table's stream delivers to the publisher once
//! the item holds an `event`. A write's intent is the same item before: `intent` and `itemType`
//! `intent` (listed by the counters' index under that value, never under the counters' own),
//! no `event`; committing it sets `event` and removes the two in one update.

use aws_sdk_dynamodb::error::SdkError;

use super::tables::{CAPACITY, COUNTER_INDEX};
use super::{DynamoStore, n, s};
use crate::error::{Error, Result};
use crate::store::{EventLog, now};

/// The key prefix of event items.
pub const EVENT_PREFIX: &str = "event#";
/// `itemType` of an intent not committed yet.
const INTENT: &str = "intent";
/// How long an event item is kept: its stream record is read long before.
const KEPT_SECS: i64 = 24 * 3600;

/// A conditional write refused: the intent is gone (already committed or forgotten).
fn refused<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

#[async_trait::async_trait]
impl EventLog for DynamoStore {
    async fn append_event(&self, event: &serde_json::Value) -> Result<()> {
        let id = event["detail"]["eventId"].as_str().unwrap_or_default();
        self.client
            .put_item()
            .table_name(&self.capacity)
            .item(CAPACITY.key, s(&format!("{EVENT_PREFIX}{id}")))
            .item("event", s(&event.to_string()))
            .item("expiresAt", n(now() + KEPT_SECS))
            .send()
            .await
            .map(drop)
            .map_err(|e| Error::aws(format!("recording event {id}"), e))
    }

    async fn intend(&self, id: &str, at: i64, intent: &serde_json::Value) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.capacity)
            .item(CAPACITY.key, s(&format!("{EVENT_PREFIX}{id}")))
            .item("intent", s(&intent.to_string()))
            .item("itemType", s(INTENT))
            .item("createdAt", n(at))
            .item("expiresAt", n(at + KEPT_SECS))
            .condition_expression("attribute_not_exists(templateKey)")
            .send()
            .await
            .map(drop)
            .map_err(|e| Error::aws(format!("recording the intent of template write {id}"), e))
    }

    async fn commit_intent(&self, id: &str, event: &serde_json::Value) -> Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(&format!("{EVENT_PREFIX}{id}")))
            .update_expression("SET event = :event REMOVE itemType, intent")
            .condition_expression("itemType = :intent")
            .expression_attribute_values(":event", s(&event.to_string()))
            .expression_attribute_values(":intent", s(INTENT));
        match update.send().await {
            Ok(_) => Ok(()),
            Err(err) if refused(&err) => Ok(()),
            Err(err) => Err(Error::aws(format!("recording the event of template write {id}"), err)),
        }
    }

    async fn forget_intent(&self, id: &str) -> Result<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(&format!("{EVENT_PREFIX}{id}")))
            .condition_expression("itemType = :intent")
            .expression_attribute_values(":intent", s(INTENT));
        match delete.send().await {
            Ok(_) => Ok(()),
            Err(err) if refused(&err) => Ok(()),
            Err(err) => Err(Error::aws(format!("forgetting the intent of template write {id}"), err)),
        }
    }

    async fn stale_intents(&self, before: i64) -> Result<Vec<serde_json::Value>> {
        let pages: Vec<_> = self
            .client
            .query()
            .table_name(&self.capacity)
            .index_name(COUNTER_INDEX)
            .key_condition_expression("itemType = :intent")
            .filter_expression("createdAt < :before")
            .expression_attribute_values(":intent", s(INTENT))
            .expression_attribute_values(":before", n(before))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::aws(format!("listing the template write intents of {}", self.capacity), e))?;
        let texts = pages.iter().flat_map(|page| page.items()).filter_map(|item| item.get("intent")?.as_s().ok());
        texts.map(|text| serde_json::from_str(text).map_err(|e| Error::store("reading a template write intent", e))).collect()
    }
}
