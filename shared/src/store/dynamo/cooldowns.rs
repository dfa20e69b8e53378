//! Pool cooldowns on DynamoDB: one item per pool in the capacity table (`templateKey =
//! pool#<pool key>`, `until`, `reason`, `capacityAt`, TTL `expiresAt` = the record's
//! `kept_until`). TTL deletes lag, so a read checks `expiresAt` itself. The items carry no `itemType`, so the counters' index never lists them.
//! A template's health lives on its counter item (`failures`, `restedSince`, `restedUntil`), so the one read
//! of a launch gets both, and getAvailableTemplates' capacity read gets the health too.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};

use super::capacity::health_of;
use super::tables::CAPACITY;
use super::{DynamoStore, Item, n, s};
use crate::error::{Error, Result};
use crate::store::{Cooldown, CooldownRepository, Health, Rest};

fn item_key(pool: &str) -> String {
    format!("pool#{pool}")
}

fn cooldown_of(item: &Item) -> Option<Cooldown> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    };
    let pool = text(CAPACITY.key)?.strip_prefix("pool#")?.to_owned();
    let until = number("until")?;
    let kept_until = number("expiresAt").unwrap_or(until);
    Some(Cooldown { pool, until, reason: text("reason").unwrap_or_default(), capacity_at: number("capacityAt"), kept_until })
}

/// The pool records among `items` still kept at `now` (TTL deletes lag).
fn kept(items: &[Item], now: i64) -> Vec<Cooldown> {
    items.iter().filter_map(cooldown_of).filter(|c| c.kept_until > now).collect()
}

fn write(request: std::result::Result<WriteRequest, aws_sdk_dynamodb::error::BuildError>) -> Result<WriteRequest> {
    request.map_err(|e| Error::store("building a cooldown write", e))
}

#[async_trait::async_trait]
impl CooldownRepository for DynamoStore {
    async fn remembered(&self, pools: &[String], template: &str, now: i64) -> Result<(Vec<Cooldown>, Health)> {
        let mut keys: Vec<String> = pools.iter().map(|p| item_key(p)).collect();
        keys.push(template.to_owned());
        let items = self.batch_get_items(&self.capacity, CAPACITY.key, &keys).await?;
        let is_template = |item: &&Item| matches!(item.get(CAPACITY.key), Some(AttributeValue::S(k)) if k == template);
        let health = items.iter().find(is_template).map(health_of).transpose()?.unwrap_or_default();
        Ok((kept(&items, now), health))
    }

    async fn pools_remembered(&self, pools: &[String], now: i64) -> Result<Vec<Cooldown>> {
        let keys: Vec<String> = pools.iter().map(|p| item_key(p)).collect();
        Ok(kept(&self.batch_get_items(&self.capacity, CAPACITY.key, &keys).await?, now))
    }

    async fn remember(&self, records: &[Cooldown]) -> Result<()> {
        // A batch names each item once: the last record of a pool wins.
        let by_pool: std::collections::BTreeMap<&str, &Cooldown> = records.iter().map(|c| (c.pool.as_str(), c)).collect();
        let puts = by_pool.into_values().map(|c| {
            let mut item = Item::from([
                (CAPACITY.key.to_owned(), s(&item_key(&c.pool))),
                ("until".to_owned(), n(c.until)),
                ("expiresAt".to_owned(), n(c.kept_until)),
                ("reason".to_owned(), s(&c.reason)),
            ]);
            if let Some(at) = c.capacity_at {
                item.insert("capacityAt".to_owned(), n(at));
            }
            let put = PutRequest::builder().set_item(Some(item)).build();
            write(put.map(|p| WriteRequest::builder().put_request(p).build()))
        });
        self.batch_write(&self.capacity, puts.collect::<Result<_>>()?).await
    }

    async fn launch_failed(&self, template: &str, limit: u32, rest: Rest) -> Result<Health> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(template))
            .update_expression("SET failures = if_not_exists(failures, :zero) + :one")
            .condition_expression("attribute_exists(templateKey)")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| Error::aws(format!("counting a failed launch of {template}"), e))?;
        let health = health_of(counted.attributes().unwrap_or(&Item::new()))?;
        if limit == 0 || health.failures < limit {
            return Ok(health);
        }
        self.client
            .update_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(template))
            .update_expression("SET failures = :zero, restedSince = :since, restedUntil = :until")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":since", n(rest.since))
            .expression_attribute_values(":until", n(rest.until))
            .send()
            .await
            .map_err(|e| Error::aws(format!("resting template {template}"), e))?;
        Ok(Health { failures: 0, rest: Some(rest) })
    }

    async fn launch_succeeded(&self, template: &str) -> Result<()> {
        let cleared = self
            .client
            .update_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(template))
            .update_expression("REMOVE failures, restedSince, restedUntil")
            .condition_expression("attribute_exists(templateKey)")
            .send()
            .await;
        match cleared {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(Error::aws(format!("ending the failures of {template}"), err)),
        }
    }
}
