//! Pool cooldowns on DynamoDB: one item per pool in the capacity table (`templateKey =
//! pool#<pool key>`, `until`, `reason`, TTL `expiresAt` = `until`). TTL deletes lag, so a read
//! checks `until` itself. The items carry no `itemType`, so the counters' index never lists them.
//! A template's health lives on its counter item (`failures`, `restedUntil`), so the one read
//! of a launch gets both, and getAvailableTemplates' capacity read gets the health too.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};

use super::capacity::health_of;
use super::tables::CAPACITY;
use super::{DynamoStore, Item, n, s};
use crate::error::{Error, Result};
use crate::store::{Cooldown, CooldownRepository, Health};

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
    async fn cooling(&self, pools: &[String], template: &str, now: i64) -> Result<(Vec<Cooldown>, Health)> {
        let mut keys: Vec<String> = pools.iter().map(|p| item_key(p)).collect();
        keys.push(template.to_owned());
        let items = self.batch_get_items(&self.capacity, CAPACITY.key, &keys).await?;
        let is_template = |item: &&Item| matches!(item.get(CAPACITY.key), Some(AttributeValue::S(k)) if k == template);
        let health = items.iter().find(is_template).map(health_of).transpose()?.unwrap_or_default();
        Ok((items.iter().filter_map(cooldown_of).filter(|c| c.until > now).collect(), health))
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

    async fn launch_failed(&self, template: &str, limit: u32, until: i64) -> Result<Health> {
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
            .update_expression("SET failures = :zero, restedUntil = :until")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":until", n(until))
            .send()
            .await
            .map_err(|e| Error::aws(format!("resting template {template}"), e))?;
        Ok(Health { failures: 0, rested_until: Some(until) })
    }

    async fn launch_succeeded(&self, template: &str) -> Result<()> {
        let cleared = self
            .client
            .update_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(template))
            .update_expression("REMOVE failures, restedUntil")
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
