//! The shared memory of pools without capacity: a pool (an instance type in a subnet) that
//! answered a capacity error is skipped by every RunInstances launch of every function for
//! `HOSTFACTORY_POOL_COOLDOWN_SECS`, kept in the store so every Lambda instance and process
//! sees it, until then or until a launch (an instant fleet's) finds capacity in it; and each
//! template's health: `HOSTFACTORY_TEMPLATE_FAILURE_LIMIT` requests in a row that launched
//! nothing rest it for `HOSTFACTORY_TEMPLATE_REST_SECS` (getAvailableTemplates answers
//! availableNumber 0), until the rest ends, a launch of it succeeds, or a launch of any template
//! finds capacity in one of its pools. Neither a failed read nor a failed write fails a launch:
//! it only costs a call to a pool that may still be full.

use crate::app::AppState;
use crate::cloud::placement;
use crate::cloud::{Cooling, Launched, Pool};
use crate::store::{Cooldown, Health, Rest, now};
use crate::templates::{FleetType, ProviderApi, Template};

/// What a launch reads first: the template's pools the store remembers (cooling down, or kept
/// after) and its health.
pub(crate) struct Before {
    pub remembered: Vec<Cooldown>,
    pub health: Health,
}

impl Before {
    /// The pools cooling down at `now` (RunInstances skips them; the fleets choose their own).
    pub fn cooling(&self, now: i64) -> Cooling {
        self.remembered.iter().filter(|c| c.cooling(now)).map(|c| (c.pool.clone(), c.reason.clone())).collect()
    }
}

/// The one read before a launch of `template` (capacity key `key`). A failed read is logged:
/// every pool is tried and the health taken as good.
pub(crate) async fn before_launch(state: &AppState, template: &Template, key: &str) -> Before {
    let pooled = !state.config.pool_cooldown.is_zero() && places_itself(template);
    if !pooled && state.config.template_failure_limit == 0 {
        return Before { remembered: Vec::new(), health: Health::default() };
    }
    let pools: Vec<String> = if pooled { placement::pools(template).iter().map(Pool::key).collect() } else { Vec::new() };
    match state.store.cooldowns.remembered(&pools, key, now()).await {
        Ok((remembered, health)) => Before { remembered, health },
        Err(err) => {
            tracing::warn!(template_id = %template.template_id, error = %err, "pool cooldowns not read; every pool is tried");
            Before { remembered: Vec::new(), health: Health::default() }
        }
    }
}

/// Whether the launch call itself tells which pools started instances ([`Launched::succeeded`]):
/// RunInstances and an instant EC2 Fleet.
fn places_itself(template: &Template) -> bool {
    match template.provider_api() {
        ProviderApi::RunInstances => true,
        ProviderApi::Ec2Fleet => template.fleet_type() == Some(FleetType::Instant),
        _ => false,
    }
}

/// Counts the launch in the template's health: one that surely started nothing adds to its
/// failures (resting it at `HOSTFACTORY_TEMPLATE_FAILURE_LIMIT` in a row); one that started
/// something ends a streak or a rest (a write only then). A fleet still filling, or a launch
/// whose outcome is unknown, counts neither way.
pub(crate) async fn count_launch(state: &AppState, key: &str, health: Health, launched: &Launched) {
    let limit = state.config.template_failure_limit;
    let started = !launched.instances.is_empty();
    let unknown = launched.error.as_ref().map_or(launched.deferred, crate::error::Error::may_have_applied);
    if limit == 0 || (!started && unknown) {
        return;
    }
    let written = if !started {
        let since = now();
        let rest = Rest { since, until: since.saturating_add(secs(state.config.template_rest)) };
        match state.store.cooldowns.launch_failed(key, limit, rest).await {
            Ok(health) if health.rest == Some(rest) => {
                tracing::warn!(template = key, rested_until = rest.until, "template rests: {limit} requests in a row launched nothing");
                Ok(())
            }
            other => other.map(drop),
        }
    } else if health.failures > 0 || health.rest.is_some() {
        state.store.cooldowns.launch_succeeded(key).await
    } else {
        Ok(())
    };
    if let Err(err) = written {
        tracing::warn!(template = key, started, error = %err, "template health not recorded");
    }
}

fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Writes what the launch taught about its pools ([`records_after`]), when anything.
pub(crate) async fn remember(state: &AppState, before: &Before, launched: &Launched) {
    if state.config.pool_cooldown.is_zero() {
        return;
    }
    let (cooldown, keep) = (secs(state.config.pool_cooldown), secs(state.config.template_rest));
    let records = records_after(launched, &before.remembered, Times { now: now(), cooldown, keep });
    if records.is_empty() {
        return;
    }
    if let Err(err) = state.store.cooldowns.remember(&records).await {
        tracing::warn!(pools = records.len(), error = %err, "pools' capacity not remembered");
    }
}

/// When [`records_after`] writes, and for how long (seconds).
#[derive(Clone, Copy)]
struct Times {
    now: i64,
    cooldown: i64,
    /// How long a record is kept after it is over: as long as a template may rest.
    keep: i64,
}

/// The pool records a launch leaves: a cooldown for each pool that refused; and for each pool
/// that started instances while the store remembered a cooldown of it, the end of that
/// cooldown ("capacity seen"), so a template resting since learns of it. A pool already seen
/// with capacity is not written again.
fn records_after(launched: &Launched, remembered: &[Cooldown], t: Times) -> Vec<Cooldown> {
    let until = t.now.saturating_add(t.cooldown);
    let cooled = launched.refused.iter().map(|(pool, code)| Cooldown {
        pool: pool.key(),
        until,
        reason: code.clone(),
        capacity_at: None,
        kept_until: until.saturating_add(t.keep),
    });
    let cooling_before = |key: &str| remembered.iter().any(|c| c.pool == key && c.capacity_at.is_none());
    let seen = launched
        .succeeded
        .iter()
        .map(Pool::key)
        .filter(|key| cooling_before(key))
        .map(|key| Cooldown::capacity_seen(&key, t.now, t.now.saturating_add(t.keep)));
    cooled.chain(seen).collect()
}

/// Whether a template resting since `rest.since` is offered again: a launch found capacity in
/// one of its `pools` since then.
pub(crate) fn capacity_since(rest: Rest, pools: &[String], records: &[Cooldown]) -> bool {
    records.iter().any(|c| pools.contains(&c.pool) && c.capacity_at.is_some_and(|at| at >= rest.since))
}

/// The pools the launch could not use, each with why: `<pool>: <code>` for a capacity error
/// now, `<pool>: cooling down after <code>` for one skipped.
pub(crate) fn unused_pools(launched: &Launched) -> Vec<String> {
    let refused = launched.refused.iter().map(|(pool, code)| format!("{pool}: {code}"));
    let skipped = launched.skipped.iter().map(|(pool, code)| format!("{pool}: cooling down after {code}"));
    refused.chain(skipped).collect()
}

#[cfg(test)]
mod tests;
