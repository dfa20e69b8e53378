//! getAvailableTemplates (spec §2.1): the merged templates of the caller's provider instance,
//! each with what its capacity counter leaves of `maxNumber`.

use std::collections::HashMap;

use super::cooldowns;
use crate::app::AppState;
use crate::cloud::{Pool, placement};
use crate::error::Result;
use crate::hostfactory::GetAvailableTemplatesResponse;
use crate::store::{Availability, Rest, capacity_key, now};
use crate::templates::Template;

/// Template keys getAvailableTemplates does not list: HostFactory does not use them and they often
/// hold bootstrap secrets. `GET /api/v1/templates/{id}` still shows them.
const NOT_LISTED: [&str; 1] = ["userData"];

/// The templates of `provider` with their `availableNumber`. Skipped files and entries are
/// listed under `warnings`; nothing usable at all is an error, never `[]`.
pub async fn available_templates(
    state: &AppState,
    provider: &str,
    force_refresh: bool,
) -> Result<GetAvailableTemplatesResponse> {
    let loaded = state.catalog.load(provider, force_refresh).await?;
    let keys: Vec<String> = loaded.templates.iter().map(|t| capacity_key(provider, &t.template_id)).collect();
    let found = state.store.capacity.availability_of(&keys).await?;
    let rests = still_resting(state, &loaded.templates, &keys, &found).await;
    let templates = loaded
        .templates
        .iter()
        .zip(&keys)
        .map(|(t, key)| {
            let availability = found.get(key).copied().unwrap_or_default();
            let used = i64::try_from(availability.in_use).unwrap_or(i64::MAX);
            let resting = rests.get(key.as_str());
            let available = if resting.is_some() { 0 } else { (t.effective_max_number() - used).max(0) };
            let mut info = t.to_info(Some(available));
            for key in NOT_LISTED {
                info.extra.remove(key);
            }
            if let Some(rest) = resting {
                info.extra.insert("message".into(), rest_message(state.config.template_failure_limit, rest.until).into());
            }
            info
        })
        .collect();
    let warnings: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    let message = match warnings.len() {
        0 => "Get available templates success.".to_owned(),
        n => format!("Get available templates success; {n} problem(s) skipped, see warnings."),
    };
    tracing::info!(provider = %provider, count = loaded.templates.len(), skipped = warnings.len(), "templates listed");
    Ok(GetAvailableTemplatesResponse { message, templates, warnings, resting: rests.len() as u64 })
}

/// The templates (by capacity key) resting now whose rest no pool ended: when some rest, one
/// more read of their pools' records tells whether a launch of any template found capacity in
/// one of them since the rest began ([`cooldowns::capacity_since`]). A failed read is logged
/// and the rests stand.
async fn still_resting<'a>(
    state: &AppState,
    templates: &[Template],
    keys: &'a [String],
    found: &HashMap<String, Availability>,
) -> HashMap<&'a str, Rest> {
    let now = now();
    let resting: Vec<(&Template, &str, Rest)> = templates
        .iter()
        .zip(keys)
        .filter_map(|(t, key)| Some((t, key.as_str(), found.get(key)?.health.resting(now)?)))
        .collect();
    if resting.is_empty() || state.config.pool_cooldown.is_zero() {
        return resting.into_iter().map(|(_, key, rest)| (key, rest)).collect();
    }
    let pools: Vec<Vec<String>> = resting.iter().map(|(t, _, _)| placement::pools(t).iter().map(Pool::key).collect()).collect();
    let mut all: Vec<String> = pools.concat();
    all.sort();
    all.dedup();
    let records = state.store.cooldowns.pools_remembered(&all, now).await.unwrap_or_else(|err| {
        tracing::warn!(pools = all.len(), error = %err, "resting templates' pools not read; their rests stand");
        Vec::new()
    });
    resting
        .into_iter()
        .zip(&pools)
        .filter(|((_, _, rest), pools)| !cooldowns::capacity_since(*rest, pools, &records))
        .map(|((_, key, rest), _)| (key, rest))
        .collect()
}

/// Why a resting template lists no machines, and until when.
fn rest_message(limit: u32, until: i64) -> String {
    let when = time::OffsetDateTime::from_unix_timestamp(until)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| until.to_string());
    format!(
        "Resting until {when}: its last {limit} requests launched nothing (no capacity in any of its pools, or EC2 \
         refused them); it is offered again then, or at once when a launch finds capacity in one of its pools."
    )
}
