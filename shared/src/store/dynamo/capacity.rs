//! Capacity counters on DynamoDB, exactly once per operation.
//!
//! Every change is one TransactWriteItems of two actions: a Put of the operation's marker
//! (`templateKey = op#<op id>`, condition `attribute_not_exists`, TTL `expiresAt` a day on)
//! and the Update of the counter (with its own condition: room under `maxNumber` for a
//! reservation, enough in use for a release). A retry of a change whose first attempt was
//! applied (the SDK retries when an answer is lost) fails only on the marker's condition, and
//! is answered as applied; a counter condition that fails means insufficient (reserve) or
//! underflow (release). The cancellation reasons come in action order, so they tell the two
//! apart. This needs no ClientRequestToken (whose 10-minute window would not cover the
//! pending changes a request carries, and moto ignores it).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::tables::{COUNTER, COUNTER_INDEX, CAPACITY};
use super::transact::cancellation_codes;
use super::{DynamoStore, Item, n, s};
use crate::error::{Error, Result};
use crate::store::{
    Availability, CapacityChange, CapacityRepository, Counter, Direction, Health, OP_MARKER_TTL, RequestRecord, Reservation, Rest, Versioned, exists,
    expiry, limit, now, op_marker, underflow,
};

/// What became of one counter change.
enum Applied {
    Now,
    /// Its marker exists: an earlier attempt of the same operation was applied.
    Before,
    /// The counter's condition failed (no room, or less in use than released).
    Refused,
    /// The record written with the change exists already (its condition failed).
    Taken,
}

/// The counter attributes every change sets, besides `inUse`.
const BOOKKEEPING: &str = "version = if_not_exists(version, :zero) + :one, updatedAt = :now, itemType = :counter";

/// A reservation's counter update and its condition when there is no limit to hold.
const ADD: &str = "inUse = if_not_exists(inUse, :zero) + :n";
const UNLIMITED: (&str, Option<u64>) = ("attribute_not_exists(inUse) OR inUse >= :zero", None);
/// A release's, never below zero.
const SUBTRACT: &str = "inUse = inUse - :n";
const HELD: (&str, Option<u64>) = ("inUse >= :n", None);

/// One change of a counter: `units` on `key` as operation `op_id`, by the update `expression` on
/// `condition` (with its `:limit`, when it has one).
#[derive(Clone, Copy)]
struct Step<'a> {
    key: &'a str,
    op_id: &'a str,
    units: u32,
    expression: &'static str,
    condition: (&'static str, Option<u64>),
}

/// TransactWriteItems takes 100 actions.
const TRANSACT_LIMIT: usize = 100;

impl DynamoStore {
    /// The counter update of `step` with its operation's marker, and the action `with` when
    /// given, in one transaction.
    async fn change(&self, step: Step<'_>, with: Option<TransactWriteItem>) -> Result<Applied> {
        let Step { key, op_id, units, .. } = step;
        let mut actions = self.change_actions(&step)?.to_vec();
        actions.extend(with);
        let err = match self.client.transact_write_items().set_transact_items(Some(actions)).send().await {
            Ok(_) => return Ok(Applied::Now),
            Err(err) => err,
        };
        let reasons = cancellation_codes(&err);
        let failed = |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
        if failed(0) {
            tracing::info!(key, op_id, "capacity change already applied (a retry of a lost answer)");
            Ok(Applied::Before)
        } else if failed(1) {
            Ok(Applied::Refused)
        } else if failed(2) {
            Ok(Applied::Taken)
        } else {
            Err(Error::aws(format!("changing capacity of {key} by {units} ({op_id}) in {}", self.capacity), err))
        }
    }

    /// The two actions of `step`: the put of its operation's marker (on its absence) and the
    /// counter update.
    fn change_actions(&self, step: &Step<'_>) -> Result<[TransactWriteItem; 2]> {
        let Step { key, op_id, units, expression, condition } = *step;
        let build = |e| Error::store("building a capacity transaction", e);
        let now = now();
        let marker = Put::builder()
            .table_name(&self.capacity)
            .item(CAPACITY.key, s(&op_marker(op_id)))
            .item("counterKey", s(key))
            .item("units", n(units))
            .item("expiresAt", n(expiry(now, OP_MARKER_TTL)))
            .condition_expression("attribute_not_exists(templateKey)")
            .build()
            .map_err(build)?;
        let mut counter = Update::builder()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(key))
            .update_expression(format!("SET {expression}, {BOOKKEEPING}"))
            .condition_expression(condition.0)
            .expression_attribute_values(":n", n(units))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":counter", s(COUNTER));
        if let Some(limit) = condition.1 {
            counter = counter.expression_attribute_values(":limit", n(limit));
        }
        Ok([
            TransactWriteItem::builder().put(marker).build(),
            TransactWriteItem::builder().update(counter.build().map_err(build)?).build(),
        ])
    }

    /// Adds `count` to `key` unless that would exceed `max`, with the new request `with` (its
    /// put, conditional on its absence, and its id) in the same transaction. A retry of an
    /// applied change is `Reserved` (the request was written with it); a request id found to
    /// exist is a conflict.
    async fn reserve_with(
        &self,
        key: &str,
        op_id: &str,
        count: u32,
        max: i64,
        with: Option<(TransactWriteItem, &str)>,
    ) -> Result<Reservation> {
        // DynamoDB conditions cannot add, so `inUse + n <= max` becomes `inUse <= max - n`.
        let condition = match limit(max) {
            None => UNLIMITED,
            Some(bound) if u64::from(count) > bound => {
                return Ok(Self::available(max, self.in_use(key).await?));
            }
            Some(bound) => ("attribute_not_exists(inUse) OR inUse <= :limit", Some(bound - u64::from(count))),
        };
        let (put, request_id) = with.unzip();
        let step = Step { key, op_id, units: count, expression: ADD, condition };
        match self.change(step, put).await? {
            Applied::Now | Applied::Before => Ok(Reservation::Reserved),
            Applied::Refused => Ok(Self::available(max, self.in_use(key).await?)),
            Applied::Taken => Err(exists("request", request_id.unwrap_or(op_id))),
        }
    }

    fn available(max: i64, in_use: u64) -> Reservation {
        let available = limit(max).unwrap_or(u64::MAX).saturating_sub(in_use);
        Reservation::Insufficient { available: u32::try_from(available).unwrap_or(u32::MAX) }
    }
}

fn number(item: &Item, attribute: &str) -> Result<Option<i64>> {
    match item.get(attribute) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse::<i64>()
            .map(Some)
            .map_err(|e| Error::store(format!("capacity attribute {attribute} is not a number"), e)),
        Some(other) => Err(Error::store("reading capacity", format!("{attribute} is {other:?}"))),
    }
}

/// The [`Health`] attributes of a counter item (`failures`, `restedSince`, `restedUntil`; a
/// rest written before `restedSince` existed counts from its end: no pool restores it early).
pub(super) fn health_of(item: &Item) -> Result<Health> {
    let failures = u32::try_from(number(item, "failures")?.unwrap_or(0).max(0)).unwrap_or(u32::MAX);
    let rest = match number(item, "restedUntil")? {
        Some(until) => Some(Rest { since: number(item, "restedSince")?.unwrap_or(until), until }),
        None => None,
    };
    Ok(Health { failures, rest })
}

fn counter_of(item: &Item) -> Result<Counter> {
    let key = match item.get(CAPACITY.key) {
        Some(AttributeValue::S(key)) => key.clone(),
        _ => {
            return Err(Error::store("reading capacity", "a counter has no templateKey"));
        }
    };
    let in_use = number(item, "inUse")?.unwrap_or(0).max(0) as u64;
    let version = number(item, "version")?.unwrap_or(0).max(0) as u64;
    Ok(Counter { key, in_use, version, updated_at: number(item, "updatedAt")?.unwrap_or(0) })
}

#[async_trait::async_trait]
impl CapacityRepository for DynamoStore {
    async fn reserve(&self, key: &str, op_id: &str, count: u32, max: i64) -> Result<Reservation> {
        self.reserve_with(key, op_id, count, max, None).await
    }

    async fn reserve_for(&self, request: &RequestRecord, key: &str, op_id: &str, max: i64) -> Result<Reservation> {
        let put = self.new_put(request)?;
        self.reserve_with(key, op_id, request.machine_count, max, Some((put, &request.request_id))).await
    }

    async fn release(&self, key: &str, op_id: &str, count: u32) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let step = Step { key, op_id, units: count, expression: SUBTRACT, condition: HELD };
        match self.change(step, None).await? {
            Applied::Now | Applied::Before => Ok(()),
            Applied::Refused | Applied::Taken => Err(underflow(key, self.in_use(key).await?, count)),
        }
    }

    async fn apply_with(&self, request: &RequestRecord, changes: &[CapacityChange]) -> Result<Option<RequestRecord>> {
        // One action per item: two changes of one counter, or more than fit, go one by one.
        let keys: std::collections::HashSet<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        if keys.len() < changes.len() || 2 * changes.len() + 1 > TRANSACT_LIMIT {
            return Ok(None);
        }
        let mut actions = Vec::with_capacity(2 * changes.len() + 1);
        for change in changes {
            let (expression, condition) = match change.direction {
                Direction::Reserve => (ADD, UNLIMITED),
                Direction::Release => (SUBTRACT, HELD),
            };
            let step = Step { key: &change.key, op_id: &change.op_id, units: change.units, expression, condition };
            actions.extend(self.change_actions(&step)?);
        }
        actions.push(self.versioned_put(request)?);
        // An SDK retry of a send whose answer was lost is a no-op on AWS with the same token.
        let token = uuid::Uuid::new_v4().to_string();
        let sent = self.client.transact_write_items().client_request_token(token).set_transact_items(Some(actions));
        match sent.send().await {
            Ok(_) => Ok(Some(request.next_version())),
            Err(err) if !cancellation_codes(&err).is_empty() => Ok(None),
            Err(err) => {
                let context = format!("applying {} capacity changes of request {}", changes.len(), request.request_id);
                Err(Error::aws(context, err))
            }
        }
    }

    async fn availability_of(&self, keys: &[String]) -> Result<HashMap<String, Availability>> {
        let items = self.batch_get_items(&self.capacity, CAPACITY.key, keys).await?;
        let mut found: HashMap<String, Availability> = keys.iter().map(|k| (k.clone(), Availability::default())).collect();
        for item in &items {
            let counter = counter_of(item)?;
            found.insert(counter.key, Availability { in_use: counter.in_use, health: health_of(item)? });
        }
        Ok(found)
    }

    async fn counters(&self) -> Result<Vec<Counter>> {
        let pages: Vec<_> = self
            .client
            .query()
            .table_name(&self.capacity)
            .index_name(COUNTER_INDEX)
            .key_condition_expression("itemType = :counter")
            .expression_attribute_values(":counter", s(COUNTER))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::aws(format!("listing the counters of {}", self.capacity), e))?;
        pages.iter().flat_map(|page| page.items()).map(counter_of).collect()
    }

    async fn correct(&self, counter: &Counter, in_use: u64) -> Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.capacity)
            .key(CAPACITY.key, s(&counter.key))
            .update_expression("SET inUse = :in_use, version = :next, updatedAt = :now, itemType = :counter")
            .expression_attribute_values(":in_use", n(in_use))
            .expression_attribute_values(":next", n(counter.version + 1))
            .expression_attribute_values(":now", n(now()))
            .expression_attribute_values(":counter", s(COUNTER));
        let update = if counter.version == 0 {
            update.condition_expression("attribute_exists(templateKey) AND attribute_not_exists(version)")
        } else {
            update
                .condition_expression("version = :version")
                .expression_attribute_values(":version", n(counter.version))
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => Err(Error::aws(format!("correcting capacity of {} in {}", counter.key, self.capacity), err)),
        }
    }
}
