//! Pool cooldowns on DynamoDB: one item per pool in the capacity table (`templateKey =
//! pool#<pool key>`, `until`, `reason`, TTL `expiresAt` = `until`). TTL deletes lag, so a read
//! checks `until` itself. The items carry no `itemType`, so the counters' index never lists them.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

use super::tables::CAPACITY;
use super::{DynamoStore, Item, n, s};
use crate::error::{Error, Result};
use crate::store::{Cooldown, CooldownRepository};

fn item_key(pool: &str) -> String {
    format!("pool#{pool}")
}

fn cooldown_of(item: &Item) -> Option<Cooldown> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let until = match item.get("until") {
        Some(AttributeValue::N(value)) => value.parse().ok()?,
        _ => return None,
    };
    let pool = text(CAPACITY.key)?.strip_prefix("pool#")?.to_owned();
    Some(Cooldown { pool, until, reason: text("reason").unwrap_or_default() })
}

fn write(request: std::result::Result<WriteRequest, aws_sdk_dynamodb::error::BuildError>) -> Result<WriteRequest> {
    request.map_err(|e| Error::store("building a cooldown write", e))
}

#[async_trait::async_trait]
impl CooldownRepository for DynamoStore {
    async fn cooling(&self, pools: &[String], now: i64) -> Result<Vec<Cooldown>> {
        let keys: Vec<String> = pools.iter().map(|p| item_key(p)).collect();
        let items = self.batch_get_items(&self.capacity, CAPACITY.key, &keys).await?;
        Ok(items.iter().filter_map(cooldown_of).filter(|c| c.until > now).collect())
    }

    async fn cool(&self, cooldowns: &[Cooldown]) -> Result<()> {
        // A batch names each item once: the last cooldown of a pool wins.
        let by_pool: std::collections::BTreeMap<&str, &Cooldown> = cooldowns.iter().map(|c| (c.pool.as_str(), c)).collect();
        let puts = by_pool.into_values().map(|c| {
            let put = PutRequest::builder()
                .item(CAPACITY.key, s(&item_key(&c.pool)))
                .item("until", n(c.until))
                .item("expiresAt", n(c.until))
                .item("reason", s(&c.reason))
                .build();
            write(put.map(|p| WriteRequest::builder().put_request(p).build()))
        });
        self.batch_write(&self.capacity, puts.collect::<Result<_>>()?).await
    }
}
