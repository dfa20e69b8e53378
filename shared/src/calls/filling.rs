//! getRequestStatus for requests whose fleet or Auto Scaling group fills after the launch call:
//! adopt the instances it launched, decide when it has given up, and for `heterogeneous`
//! templates launch the On-Demand remainder once the Spot part has had its time.

use std::collections::HashMap;

use crate::app::AppState;
use crate::cloud::pools::split_capacity;
use crate::cloud::{Found, Observed, Owner, tags};
use crate::error::Result;
use crate::hostfactory::MachineResult;
use crate::store::{
    InstanceState, Lifecycle, MachineRecord, RequestKind, RequestRecord, RequestPhase, now, unless_stale,
};
use crate::templates::{Loaded, PriceType, Template};

use super::discover::{discover, templates};
use super::request_machines::machine_record;

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
        .filter(|r| r.kind == RequestKind::Provision && r.status == RequestPhase::InProgress)
        .filter(|r| r.fleet_id.is_some() || r.asg_name.is_some())
        .collect();
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let loaded = templates(state, provider).await;
    let deferred = filling_later(candidates, loaded.as_deref());
    if deferred.is_empty() {
        return Ok(HashMap::new());
    }
    let mut found = discover(state.cloud.as_ref(), &deferred).await?;

    let now = now();
    let margin = i64::try_from(state.config.spot_fallback_margin.as_secs()).unwrap_or(i64::MAX);
    let mut progress = HashMap::new();
    let mut adopted: Vec<MachineRecord> = Vec::new();
    for (request, owner, template) in deferred {
        let found = found.remove(&request.request_id).unwrap_or_default();
        let list = machines.entry(request.request_id.clone()).or_default();
        let new = adoptions(&found, list, request, &owner);
        let given_up = found.gone || now >= deadline(request, template, margin);
        let mut fleet = FleetProgress { given_up, found, claimed: None };
        list.extend(new.iter().cloned());
        adopted.extend(new);
        if let Some(template) = template
            && let remainder = remainder_due(template, request, list, &fleet)
            && remainder > 0
            && let Some(claimed) = claim_remainder(state, request, remainder, now).await?
        {
            let launched = on_demand_remainder(state, template, request, remainder).await;
            state.store.machines.upsert_batch(&launched).await?;
            list.extend(launched);
            fleet.claimed = Some(claimed);
        }
        let filled = fleet.units(list);
        if stops_short(&fleet, filled, request.machine_count)
            && let Err(err) = state.cloud.stop_filling(&owner, filled).await
        {
            // The request still ends; the reconciler finds what the owner launches later by its tags.
            tracing::warn!(request_id = %request.request_id, error = %err, "owner not stopped short of target");
        }
        progress.insert(request.request_id.clone(), fleet);
    }
    record_adopted(state, &adopted).await?;
    Ok(progress)
}

/// The requests whose owner fills after the call, with their owner and template.
fn filling_later<'a>(
    candidates: Vec<&'a RequestRecord>,
    loaded: Option<&'a Loaded>,
) -> Vec<(&'a RequestRecord, Owner, Option<&'a Template>)> {
    candidates
        .into_iter()
        .filter_map(|r| {
            let template = loaded.and_then(|l| l.template(&r.template_id));
            Some((r, r.owner(template), template)).filter(|(_, owner, _)| owner.fills_later())
        })
        .collect()
}

/// Records the adopted instances in one batched write. A concurrent caller may adopt the same
/// instance: the first write wins, nothing is replaced.
async fn record_adopted(state: &AppState, adopted: &[MachineRecord]) -> Result<()> {
    if adopted.is_empty() {
        return Ok(());
    }
    let written = state.store.machines.put_all_if_absent(adopted).await?;
    let new = written.iter().filter(|w| **w).count();
    tracing::info!(machines = new, already = adopted.len() - new, "fleet instances adopted");
    Ok(())
}

/// When the request gives up on its fleet or group: `spotFleetRequestExpiry` minutes (the spec's
/// default when the template is gone) plus the fallback margin after it was made.
fn deadline(request: &RequestRecord, template: Option<&Template>, margin: i64) -> i64 {
    let expiry = template.map_or(DEFAULT_EXPIRY_MINUTES, |t| t.spot_fleet_request_expiry.max(1));
    request.created_at.saturating_add(expiry.saturating_mul(60)).saturating_add(margin)
}

/// Records for the instances `found` holds that `list` does not know yet, with their units
/// (a Spot Fleet's are Spot).
fn adoptions(found: &Found, list: &[MachineRecord], request: &RequestRecord, owner: &Owner) -> Vec<MachineRecord> {
    found
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
        .collect()
}

/// The On-Demand units a `heterogeneous` request launches once its Spot part gave up short, 0
/// when none are due. Once per request: On-Demand machines beyond the `percentOnDemand` share
/// launched with the request mean the remainder was launched already.
fn remainder_due(template: &Template, request: &RequestRecord, list: &[MachineRecord], fleet: &FleetProgress) -> u32 {
    let on_demand = list.iter().filter(|m| m.lifecycle == Lifecycle::Ondemand).count();
    if template.price_type != PriceType::Heterogeneous
        || !fleet.given_up
        || on_demand > split_capacity(template, request.machine_count).0 as usize
    {
        return 0;
    }
    request.machine_count.saturating_sub(fleet.units(list))
}

/// An owner the request gave up on short of target, that AWS did not end itself, is stopped.
fn stops_short(fleet: &FleetProgress, filled: u32, target: u32) -> bool {
    fleet.given_up && !fleet.found.gone && filled < target
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::{FleetType, check_template};

    fn template(extra: serde_json::Value) -> Template {
        let mut entry = json!({"templateId": "T", "maxNumber": 10, "imageId": "ami-1", "subnetId": "subnet-1",
            "vmType": "t3.micro", "providerApi": "SpotFleet", "fleetRole": "arn:aws:iam::123456789012:role/fleet"});
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check_template(entry).unwrap()
    }

    fn request(count: u32) -> RequestRecord {
        RequestRecord::new(RequestKind::Provision, "T", "awsinst", count, 1000)
    }

    fn machine(request: &RequestRecord, id: &str, lifecycle: Lifecycle, result: MachineResult) -> MachineRecord {
        MachineRecord { lifecycle, result, ..machine_record(&Observed::launching(id), request) }
    }

    fn progress(units: &[(&str, u32)], given_up: bool, gone: bool) -> FleetProgress {
        let instances = units.iter().map(|(id, u)| ((*id).to_owned(), *u)).collect();
        FleetProgress { found: Found { instances, gone }, given_up, claimed: None }
    }

    #[test]
    fn a_fleet_gives_up_at_its_expiry_plus_the_margin() {
        let r = request(2);
        let cases = [
            (Some(template(json!({"spotFleetRequestExpiry": 10}))), 0, 1000 + 600),
            (Some(template(json!({"spotFleetRequestExpiry": 10}))), 120, 1000 + 720),
            (None, 0, 1000 + DEFAULT_EXPIRY_MINUTES * 60),
            (None, 60, 1000 + DEFAULT_EXPIRY_MINUTES * 60 + 60),
        ];
        for (template, margin, expected) in cases {
            assert_eq!(deadline(&r, template.as_ref(), margin), expected, "margin {margin}");
        }
    }

    #[test]
    fn units_count_the_fleet_and_the_machines_it_no_longer_lists() {
        let r = request(4);
        let mut returned = machine(&r, "i-r", Lifecycle::Spot, MachineResult::Succeed);
        returned.return_request_id = Some("ret-1".into());
        let cases = [
            (progress(&[("i-1", 1), ("i-2", 2)], false, false), vec![], 3),
            (progress(&[("i-1", 1)], false, false), vec![machine(&r, "i-1", Lifecycle::Spot, MachineResult::Succeed)], 1),
            (progress(&[], false, false), vec![machine(&r, "i-od", Lifecycle::Ondemand, MachineResult::Succeed)], 1),
            (progress(&[], false, false), vec![machine(&r, "i-od", Lifecycle::Ondemand, MachineResult::Fail)], 0),
            (progress(&[], false, false), vec![machine(&r, "i-s", Lifecycle::Spot, MachineResult::Succeed)], 0),
            (progress(&[("i-1", 1)], false, false), vec![returned.clone()], 2),
        ];
        for (fleet, machines, units) in cases {
            assert_eq!(fleet.units(&machines), units, "{machines:?}");
        }
    }

    #[test]
    fn the_on_demand_remainder_is_due_once_when_spot_gave_up_short() {
        let hetero = template(json!({"priceType": "heterogeneous", "percentOnDemand": 50}));
        let spot = template(json!({"priceType": "spot", "percentOnDemand": 50}));
        let r = request(4);
        let od = |id: &str| machine(&r, id, Lifecycle::Ondemand, MachineResult::Succeed);
        let cases = [
            (&hetero, progress(&[("i-1", 1)], true, false), vec![od("i-a"), od("i-b")], 1),
            (&hetero, progress(&[], true, true), vec![od("i-a"), od("i-b")], 2),
            (&hetero, progress(&[("i-1", 1)], false, false), vec![od("i-a"), od("i-b")], 0),
            (&hetero, progress(&[("i-1", 1), ("i-2", 1)], true, false), vec![od("i-a"), od("i-b")], 0),
            (&hetero, progress(&[], true, false), vec![od("i-a"), od("i-b"), od("i-c")], 0),
            (&spot, progress(&[("i-1", 1)], true, false), vec![od("i-a"), od("i-b")], 0),
        ];
        for (template, fleet, machines, due) in cases {
            assert_eq!(remainder_due(template, &r, &machines, &fleet), due, "{:?} {machines:?}", fleet.found);
        }
    }

    #[test]
    fn an_owner_given_up_short_and_still_alive_is_stopped() {
        let cases = [
            (progress(&[("i-1", 1)], true, false), 1, 3, true),
            (progress(&[("i-1", 1)], true, true), 1, 3, false),
            (progress(&[("i-1", 1)], false, false), 1, 3, false),
            (progress(&[("i-1", 3)], true, false), 3, 3, false),
        ];
        for (fleet, filled, target, stopped) in cases {
            assert_eq!(stops_short(&fleet, filled, target), stopped, "{:?} {filled}/{target}", fleet.found);
        }
    }

    #[test]
    fn only_instances_not_yet_recorded_are_adopted_with_their_units() {
        let r = request(3);
        let found = Found { instances: vec![("i-1".into(), 1), ("i-2".into(), 2)], gone: false };
        let known = vec![machine(&r, "i-1", Lifecycle::Ondemand, MachineResult::Executing)];
        let cases = [
            (Owner::Ec2Fleet { id: "f".into(), kind: FleetType::Request }, Lifecycle::Ondemand),
            (Owner::SpotFleet { id: "s".into(), kind: FleetType::Request }, Lifecycle::Spot),
            (Owner::Asg { name: "g".into() }, Lifecycle::Ondemand),
        ];
        for (owner, lifecycle) in cases {
            let new = adoptions(&found, &known, &r, &owner);
            let got: Vec<(&str, u32, Lifecycle)> = new.iter().map(|m| (m.machine_id.as_str(), m.units, m.lifecycle)).collect();
            assert_eq!(got, vec![("i-2", 2, lifecycle)], "{owner:?}");
        }
    }
}
