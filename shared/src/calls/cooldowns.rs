//! The shared memory of pools without capacity: a pool (an instance type in a subnet) that
//! answered a capacity error is skipped by every RunInstances launch of every function for
//! `HOSTFACTORY_POOL_COOLDOWN_SECS`, kept in the store so every Lambda instance and process
//! sees it. Neither a failed read nor a failed write fails a launch: it only costs a call to a
//! pool that may still be full.

use crate::app::AppState;
use crate::cloud::placement;
use crate::cloud::{Cooling, Launched, Pool};
use crate::store::{Cooldown, now};
use crate::templates::{ProviderApi, Template};

/// The template's pools cooling down now (RunInstances only: the fleets choose their own).
pub(crate) async fn cooling(state: &AppState, template: &Template) -> Cooling {
    if state.config.pool_cooldown.is_zero() || template.provider_api() != ProviderApi::RunInstances {
        return Cooling::new();
    }
    let keys: Vec<String> = placement::pools(template).iter().map(Pool::key).collect();
    match state.store.cooldowns.cooling(&keys, now()).await {
        Ok(found) => found.into_iter().map(|c| (c.pool, c.reason)).collect(),
        Err(err) => {
            tracing::warn!(template_id = %template.template_id, error = %err, "pool cooldowns not read; every pool is tried");
            Cooling::new()
        }
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
