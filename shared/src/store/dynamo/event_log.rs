//! Template events on DynamoDB: one `event#<eventId>` item in the capacity table (`event`: the
//! event as JSON, TTL `expiresAt` a day on), which the table's stream delivers to the
//! publisher. The items carry no `itemType`, so the counters' index never lists them.

use super::tables::CAPACITY;
use super::{DynamoStore, n, s};
use crate::error::{Error, Result};
use crate::store::{EventLog, now};

/// The key prefix of event items.
pub const EVENT_PREFIX: &str = "event#";

#[async_trait::async_trait]
impl EventLog for DynamoStore {
    async fn append_event(&self, event: &serde_json::Value) -> Result<()> {
        let id = event["detail"]["eventId"].as_str().unwrap_or_default();
        self.client
            .put_item()
            .table_name(&self.capacity)
            .item(CAPACITY.key, s(&format!("{EVENT_PREFIX}{id}")))
            .item("event", s(&event.to_string()))
            .item("expiresAt", n(now() + 24 * 3600))
            .send()
            .await
            .map(drop)
            .map_err(|e| Error::aws(format!("recording event {id}"), e))
    }
}
