//! The shared memory of pools without capacity: a pool (an instance type in a subnet) that
//! answered a capacity error is skipped by every RunInstances launch of every function for
//! `HOSTFACTORY_POOL_COOLDOWN_SECS`, kept in the store so every Lambda instance and process
//! sees it; and each template's health: `HOSTFACTORY_TEMPLATE_FAILURE_LIMIT` requests in a row
//! that launched nothing rest it for `HOSTFACTORY_TEMPLATE_REST_SECS` (getAvailableTemplates
//! answers availableNumber 0), until the rest ends or a launch of it succeeds. Neither a failed
//! read nor a failed write fails a launch: it only costs a call to a pool that may still be full.

use crate::app::AppState;
use crate::cloud::placement;
use crate::cloud::{Cooling, Launched, Pool};
use crate::store::{Cooldown, Health, now};
use crate::templates::{ProviderApi, Template};

/// What a launch reads first: the template's pools cooling down (RunInstances only: the fleets
/// choose their own) and its health.
pub(crate) struct Before {
    pub cooling: Cooling,
    pub health: Health,
}

/// The one read before a launch of `template` (capacity key `key`). A failed read is logged:
/// every pool is tried and the health taken as good.
pub(crate) async fn before_launch(state: &AppState, template: &Template, key: &str) -> Before {
    let cooled = !state.config.pool_cooldown.is_zero() && template.provider_api() == ProviderApi::RunInstances;
    if !cooled && state.config.template_failure_limit == 0 {
        return Before { cooling: Cooling::new(), health: Health::default() };
    }
    let pools: Vec<String> = if cooled { placement::pools(template).iter().map(Pool::key).collect() } else { Vec::new() };
    match state.store.cooldowns.cooling(&pools, key, now()).await {
        Ok((found, health)) => Before { cooling: found.into_iter().map(|c| (c.pool, c.reason)).collect(), health },
        Err(err) => {
            tracing::warn!(template_id = %template.template_id, error = %err, "pool cooldowns not read; every pool is tried");
            Before { cooling: Cooling::new(), health: Health::default() }
        }
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
        let until = now().saturating_add(i64::try_from(state.config.template_rest.as_secs()).unwrap_or(i64::MAX));
        match state.store.cooldowns.launch_failed(key, limit, until).await {
            Ok(health) if health.rested_until == Some(until) => {
                tracing::warn!(template = key, rested_until = until, "template rests: {limit} requests in a row launched nothing");
                Ok(())
            }
            other => other.map(drop),
        }
    } else if health.failures > 0 || health.rested_until.is_some() {
        state.store.cooldowns.launch_succeeded(key).await
    } else {
        Ok(())
    };
    if let Err(err) = written {
        tracing::warn!(template = key, started, error = %err, "template health not recorded");
    }
}

/// Cools down every pool the launch found without capacity.
pub(crate) async fn remember(state: &AppState, launched: &Launched) {
    if state.config.pool_cooldown.is_zero() || launched.refused.is_empty() {
        return;
    }
    let until = now().saturating_add(i64::try_from(state.config.pool_cooldown.as_secs()).unwrap_or(i64::MAX));
    let cooldowns: Vec<Cooldown> = launched
        .refused
        .iter()
        .map(|(pool, code)| Cooldown { pool: pool.key(), until, reason: code.clone() })
        .collect();
    if let Err(err) = state.store.cooldowns.cool(&cooldowns).await {
        tracing::warn!(pools = cooldowns.len(), error = %err, "pools without capacity not remembered");
    }
}

/// The pools the launch could not use, each with why: `<pool>: <code>` for a capacity error
/// now, `<pool>: cooling down after <code>` for one skipped.
pub(crate) fn unused_pools(launched: &Launched) -> Vec<String> {
    let refused = launched.refused.iter().map(|(pool, code)| format!("{pool}: {code}"));
    let skipped = launched.skipped.iter().map(|(pool, code)| format!("{pool}: cooling down after {code}"));
    refused.chain(skipped).collect()
}
