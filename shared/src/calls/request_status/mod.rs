//! getRequestStatus (spec §2.4) for any mix of provisioning (`req-`) and return (`ret-`) ids.
//!
//! Cost per call, whatever the number of requests: one batch read of the requests, one batch
//! read of their machines per 100 (by the ids the requests record; a fleet or group still
//! filling is listed by its index), one DescribeInstances per 1,000 instances of unfinished
//! requests (finished ones answer from their records), what [`super::discover`] costs for
//! fleets and groups filling, and one batched write of every machine that changed, every
//! request that finished and every claim ([`write`]), each request with its machines. A
//! request that reaches a final state gives its capacity back, so the outcome survives EC2
//! forgetting terminated instances.

use std::collections::{BTreeMap, HashMap};

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::{MachineResult, RequestReport, RequestState, RequestStatusInput, RequestStatusResponse};
use crate::cloud::Observed;
use super::outcome::{machine_status, provisioning_result, request_state, return_result, unknown_request};
use crate::store::{InstanceState, MachineRecord, RequestKind, RequestPhase, RequestRecord, now};

use super::claim::{self, Caller};
use super::{capacity, filling};

/// How long a just-launched instance may be missing from DescribeInstances (EC2 is eventually
/// consistent) before it counts as failed.
const LAUNCH_VISIBILITY_SECS: i64 = 120;

/// getRequestStatus as HostFactory calls it: the requests it names are claimed.
pub async fn get_request_status(
    state: &AppState,
    provider: &str,
    input: RequestStatusInput,
) -> Result<RequestStatusResponse> {
    input.validate()?;
    let ids: Vec<String> = input.requests.iter().map(|r| r.request_id.trim().to_owned()).collect();
    let requests = statuses(state, provider, &ids, Caller::HostFactory).await?;
    Ok(RequestStatusResponse { requests })
}

/// The reconciler's refresh of unfinished requests, per provider instance: re-read by id,
/// observed and finished as a getRequestStatus would, but never claimed (an abandoned request
/// stays abandoned).
pub async fn refresh(state: &AppState, requests: &[&RequestRecord]) -> Result<Vec<RequestReport>> {
    let mut by_provider: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for request in requests {
        by_provider.entry(&request.provider).or_default().push(request.request_id.clone());
    }
    let mut reports = Vec::with_capacity(requests.len());
    for (provider, ids) in by_provider {
        reports.extend(statuses(state, provider, &ids, Caller::Reconciler).await?);
    }
    Ok(reports)
}

/// The status of the requests `ids` (in that order), refreshed from EC2; claims them when
/// `caller` is HostFactory. Everything the call changes is written in one batched update.
async fn statuses(state: &AppState, provider: &str, ids: &[String], caller: Caller) -> Result<Vec<RequestReport>> {
    let started = tokio::time::Instant::now();
    let mut records: HashMap<String, RequestRecord> = state
        .store
        .requests
        .batch_get(ids)
        .await?
        .into_iter()
        .filter(|r| r.provider == provider)
        .map(|r| (r.request_id.clone(), r))
        .collect();
    let claimed = if caller == Caller::HostFactory { claim::mark(&mut records, now()) } else { Vec::new() };
    capacity::settle_all(state, &mut records).await;
    let mut machines = read::machines(state, &records).await?;
    let fleets = filling::refresh_fleets(state, provider, &records, &mut machines).await?;
    for rewritten in fleets.values().filter_map(|f| f.claimed.clone()) {
        records.insert(rewritten.request_id.clone(), rewritten);
    }
    // Three quarters of the budget for EC2, the rest for the write.
    let budget = state.config.call_budget;
    let seen = read::observe_live(state, &records, &machines, started + budget.mul_f64(0.75)).await?;
    let observed = seen.observed;
    filling::tag_adopted(state, &fleets, &machines, &observed).await;

    let finish = Finish { now: now(), retention: state.config.retention, shortfall: 0, extra: 0, stage: "finish" };
    let decisions: Vec<Decision> = records
        .values()
        .filter(|r| r.status == RequestPhase::InProgress && !seen.late.contains(&r.request_id))
        .map(|r| {
            let list = machines.get(&r.request_id).cloned().unwrap_or_default();
            decide(r.clone(), list, &observed, fleets.get(&r.request_id), finish)
        })
        .collect();
    let claims = claimed.iter().filter_map(|id| records.get(id).cloned()).collect();
    let written = tokio::time::timeout_at(started + budget, write::write(state, decisions, claims)).await;
    let reports: HashMap<String, RequestReport> = match written {
        Ok(reports) => reports.into_iter().map(|r| (r.request_id.clone(), r)).collect(),
        Err(_) => {
            tracing::warn!(?budget, "the status write did not finish within the call budget; the next poll finishes it");
            HashMap::new()
        }
    };
    let answer = |id: &String| match (reports.get(id), records.get(id)) {
        (Some(report), _) => report.clone(),
        (None, Some(record)) => answer_from_records(record, machines.get(id).map_or(&[][..], Vec::as_slice)),
        (None, None) => unknown_request(id),
    };
    Ok(ids.iter().map(answer).collect())
}

/// What this call makes of an unfinished request (pure): its machines as EC2 shows them, the
/// records that changed, and, when it is final, its finished record.
fn decide(
    mut request: RequestRecord,
    mut machines: Vec<MachineRecord>,
    observed: &HashMap<String, Observed>,
    fleet: Option<&filling::FleetProgress>,
    finish: Finish<'_>,
) -> Decision {
    let message = request.message.clone();
    let changed = observe(&request, &mut machines, observed, finish.now);
    let results: Vec<MachineResult> =
        machines.iter().map(|m| if handed_back(&request, m) { MachineResult::Succeed } else { m.result }).collect();
    let (target_reached, given_up, shortfall, extra) = target(&request, &machines, fleet);
    let status = request_state(results.iter().copied(), target_reached, given_up);
    if status != RequestState::Running {
        if fleet.is_some() && target_reached {
            // As for instant fleets: a filled weighted fleet holds fewer machines than units.
            request.machine_count = u32::try_from(machines.len()).unwrap_or(u32::MAX);
        }
        let outcome = finish::outcome(&request, &machines, status);
        finish::finished(&mut request, &machines, outcome, Finish { shortfall, extra, ..finish });
    }
    Decision { request, machines, changed, status, message }
}

/// Maps what EC2 shows of each machine onto its record (pure); the records that changed.
fn observe(
    request: &RequestRecord,
    machines: &mut [MachineRecord],
    observed: &HashMap<String, Observed>,
    now: i64,
) -> Vec<MachineRecord> {
    let mut changed = Vec::new();
    for machine in machines.iter_mut() {
        // Already handed back to a return request, which now owns its result and capacity.
        if handed_back(request, machine) {
            continue;
        }
        let seen = observed.get(&machine.machine_id);
        let (result, message) = match request.kind {
            RequestKind::Provision if seen.is_none() && now - machine.launchtime < LAUNCH_VISIBILITY_SECS => {
                (MachineResult::Executing, "")
            }
            RequestKind::Provision => provisioning_result(seen),
            RequestKind::Return => return_result(seen),
        };
        let before = machine.clone();
        match seen {
            Some(instance) => {
                machine.state = instance.state.clone();
                machine.name = instance.private_dns_name.clone();
                machine.private_ip_address = instance.private_ip_address.clone();
                machine.public_ip_address = instance.public_ip_address.clone();
                machine.launchtime = instance.launch_time;
                machine.lifecycle = instance.lifecycle;
            }
            None if result != MachineResult::Executing => machine.state = InstanceState::Terminated,
            None => {}
        }
        machine.result = result;
        machine.message = match (message, seen) {
            // A machine without news says where it runs (its pool), as EC2 last told.
            ("", Some(instance)) if !instance.placement.is_empty() => instance.placement.clone(),
            ("", _) if result == MachineResult::Executing => before.message.clone(),
            _ => message.to_owned(),
        };
        if *machine != before {
            machine.updated_at = now;
            changed.push(machine.clone());
        }
    }
    changed
}

/// Whether the request reached its target, whether it can still fill (a fleet or group may
/// until it gives up), the units it never filled and those filled beyond target (pure).
fn target(request: &RequestRecord, machines: &[MachineRecord], fleet: Option<&filling::FleetProgress>) -> (bool, bool, u32, u32) {
    let Some(progress) = fleet else {
        let reached = request.kind == RequestKind::Return || machines.len() >= request.machine_count as usize;
        return (reached, true, 0, 0);
    };
    // A fleet or group: its target is in units.
    let units = progress.units(machines);
    // Failed machines give their own capacity back in `finish`: not part of the shortfall.
    let failed: u32 =
        machines.iter().filter(|m| m.result == MachineResult::Fail && !handed_back(request, m)).map(|m| m.units).sum();
    let covered = units.saturating_add(failed);
    let extra = units.saturating_sub(request.machine_count);
    (units >= request.machine_count, progress.given_up, request.machine_count.saturating_sub(covered), extra)
}

/// A machine of a provisioning request that HostFactory has since returned.
pub(super) fn handed_back(request: &RequestRecord, machine: &MachineRecord) -> bool {
    request.kind == RequestKind::Provision && machine.return_request_id.is_some()
}

/// A request that is finished (or not launched yet): its records are the answer.
fn answer_from_records(request: &RequestRecord, machines: &[MachineRecord]) -> RequestReport {
    RequestReport {
        request_id: request.request_id.clone(),
        status: request.status.hostfactory(),
        message: request.message.clone(),
        machines: machines.iter().map(machine_status).collect(),
    }
}

mod finish;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub(crate) use finish::{finish_abandoned, finish_with_error};
use finish::Finish;
use write::Decision;
