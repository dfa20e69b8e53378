//! getRequestStatus for requests whose fleet or Auto Scaling group fills after the launch call:
//! adopt the instances it launched, decide when it has given up, and for `heterogeneous`
//! templates launch the On-Demand remainder once the Spot part has had its time.

use std::collections::HashMap;

use futures::future::join_all;

use crate::app::AppState;
use crate::cloud::pools::split_capacity;
use crate::cloud::{Found, Observed, Owner, tags};
use crate::error::{Error, Result};
use crate::hostfactory::MachineResult;
use crate::store::{
    InstanceState, Lifecycle, MachineRecord, RequestKind, RequestRecord, RequestStatus, now, unless_stale,
};
use crate::templates::{PriceType, Template};

use super::discover::{discover, templates};
use super::request::machine_record;

/// Minutes a fleet may take to fill when its template is gone (the spec's default expiry).
const DEFAULT_EXPIRY_MINUTES: i64 = 30;

/// Where a fleet or group stands.
pub struct FleetProgress {
    pub found: Found,
    /// It will fill no further: AWS gave up on it, or `spotFleetRequestExpiry` (plus the
    /// fallback margin) has passed.
    pub given_up: bool,
    /// The request as this call rewrote it (when it launched the On-Demand remainder).
    pub claimed: Option<RequestRecord>,
}

impl FleetProgress {
    /// Units filled: the fleet's active instances, plus machines it no longer lists that still
    /// count (the On-Demand remainder, and machines HostFactory already returned).
    pub fn units(&self, machines: &[MachineRecord]) -> u32 {
        let outside = machines
            .iter()
            .filter(|m| !self.found.instances.iter().any(|(id, _)| *id == m.machine_id))
            .filter(|m| {
                m.return_request_id.is_some() || (m.lifecycle == Lifecycle::Ondemand && m.result != MachineResult::Fail)
            })
            .map(|m| m.units)
            .sum::<u32>();
        self.found.units() + outside
    }
}

/// Discovers the instances of every unfinished fleet or group among `records`, records the new
/// ones into `machines` (one batch write), and launches due On-Demand remainders.
pub async fn refresh_fleets(
    state: &AppState,
    provider: &str,
    records: &HashMap<String, RequestRecord>,
    machines: &mut HashMap<String, Vec<MachineRecord>>,
) -> Result<HashMap<String, FleetProgress>> {
    let candidates: Vec<&RequestRecord> = records
        .values()
        .filter(|r| r.kind == RequestKind::Provision && r.status == RequestStatus::InProgress)
        .filter(|r| r.fleet_id.is_some() || r.asg_name.is_some())
        .collect();
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let loaded = templates(state, provider).await;
    let deferred: Vec<(&RequestRecord, Owner, Option<&Template>)> = candidates
        .into_iter()
        .filter_map(|r| {
            let template = loaded.as_ref().and_then(|l| l.template(&r.template_id));
            Some((r, r.owner(template), template)).filter(|(_, owner, _)| owner.fills_later())
        })
        .collect();
    if deferred.is_empty() {
        return Ok(HashMap::new());
    }
    let mut found = discover(state, &deferred).await?;

    let now = now();
    let margin = i64::try_from(state.config.spot_fallback_margin.as_secs()).unwrap_or(i64::MAX);
    let mut progress = HashMap::new();
    let mut adopted: Vec<MachineRecord> = Vec::new();
    for (request, owner, template) in deferred {
        let found = found.remove(&request.request_id).unwrap_or_default();
        let expiry = template.map_or(DEFAULT_EXPIRY_MINUTES, |t| t.spot_fleet_request_expiry.max(1));
        let deadline = request.created_at.saturating_add(expiry.saturating_mul(60)).saturating_add(margin);
        let list = machines.entry(request.request_id.clone()).or_default();
        let new: Vec<MachineRecord> = found
            .instances
            .iter()
            .filter(|(id, _)| !list.iter().any(|m| m.machine_id == *id))
            .map(|(id, units)| {
                let mut machine = machine_record(&Observed::launching(id), request);
                machine.units = *units;
                if matches!(owner, Owner::SpotFleet { .. }) {
                    machine.lifecycle = Lifecycle::Spot;
                }
                machine
            })
            .collect();
        let mut fleet = FleetProgress { given_up: found.gone || now >= deadline, found, claimed: None };
        list.extend(new.iter().cloned());
        adopted.extend(new);
        // Once per request: On-Demand machines beyond the `percentOnDemand` share launched
        // with the request mean the remainder was launched already.
        if let Some(template) = template.filter(|t| t.price_type == PriceType::Heterogeneous)
            && fleet.given_up
            && list.iter().filter(|m| m.lifecycle == Lifecycle::Ondemand).count()
                <= split_capacity(template, request.machine_count).0 as usize
        {
            let remainder = request.machine_count.saturating_sub(fleet.units(list));
            if remainder > 0
                && let Some(claimed) = claim_remainder(state, request, remainder, now).await?
            {
                let launched = on_demand_remainder(state, template, request, remainder).await;
                state.store.machines.upsert_batch(&launched).await?;
                list.extend(launched);
                fleet.claimed = Some(claimed);
            }
        }
        let filled = fleet.units(list);
        if fleet.given_up
            && !fleet.found.gone
            && filled < request.machine_count
            && let Err(err) = state.cloud.stop_filling(&owner, filled).await
        {
            // The request still ends; the reconciler finds what the owner launches later by its tags.
            tracing::warn!(request_id = %request.request_id, error = %err, "owner not stopped short of target");
        }
        progress.insert(request.request_id.clone(), fleet);
    }
    // A concurrent caller may adopt the same instance: the first write wins, nothing is replaced.
    for outcome in join_all(adopted.iter().map(|m| state.store.machines.put_if_absent(m))).await {
        match outcome {
            Ok(()) | Err(Error::Conflict(_)) => {}
            Err(err) => return Err(err),
        }
    }
    if !adopted.is_empty() {
        tracing::info!(machines = adopted.len(), "fleet instances adopted");
    }
    Ok(progress)
}

/// Takes the On-Demand remainder of `request` on for this caller: the request's version moves
/// on, so of two concurrent status calls only one launches it. The request as written, or
/// `None` when another caller got there first.
async fn claim_remainder(
    state: &AppState,
    request: &RequestRecord,
    remainder: u32,
    now: i64,
) -> Result<Option<RequestRecord>> {
    let mut claim = request.clone();
    claim.message = format!("Spot fell short: launching {remainder} unit(s) On-Demand.");
    claim.updated_at = now;
    unless_stale(state.store.requests.update(&claim).await)
}

/// Launches what the Spot part of a `heterogeneous` request did not fill, On-Demand with
/// RunInstances. A failure is logged:
/// the request then ends short of target, giving the unfilled capacity back.
async fn on_demand_remainder(
    state: &AppState,
    template: &Template,
    request: &RequestRecord,
    remainder: u32,
) -> Vec<MachineRecord> {
    let request_id = request.request_id.as_str();
    let launched = match state.cloud.launch_on_demand(template, &request.provider, request_id, remainder).await {
        Ok(launched) => launched,
        Err(err) => {
            tracing::warn!(request_id, error = %err, "On-Demand remainder not launched");
            return Vec::new();
        }
    };
    if let Some(err) = &launched.error {
        tracing::warn!(request_id, remainder, launched = launched.instances.len(), error = %err, "On-Demand remainder short");
    }
    tracing::info!(
        request_id,
        remainder,
        launched = launched.instances.len(),
        "Spot fell short: On-Demand remainder launched"
    );
    launched.instances.iter().map(|instance| machine_record(instance, request)).collect()
}

/// Adds the request id to instances a fleet or group launched without it (`request`/`maintain`
/// EC2 Fleets tag instances from the shared launch template only): one CreateTags per request.
/// A failure is logged, not fatal: the instances are recorded, and the tag is retried next call.
pub async fn tag_adopted(
    state: &AppState,
    fleets: &HashMap<String, FleetProgress>,
    machines: &HashMap<String, Vec<MachineRecord>>,
    observed: &HashMap<String, Observed>,
) {
    for request_id in fleets.keys() {
        let untagged: Vec<String> = machines
            .get(request_id)
            .into_iter()
            .flatten()
            .filter_map(|m| observed.get(&m.machine_id))
            .filter(|o| o.state != InstanceState::Terminated && !o.tags.contains_key(tags::REQUEST_ID))
            .map(|o| o.instance_id.clone())
            .collect();
        if untagged.is_empty() {
            continue;
        }
        match state.cloud.tag_request_id(&untagged, request_id).await {
            Ok(()) => tracing::info!(request_id, instances = untagged.len(), "request id tagged"),
            Err(err) => tracing::warn!(request_id, error = %err, "request id not tagged"),
        }
    }
}
