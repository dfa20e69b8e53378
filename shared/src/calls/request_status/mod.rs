//! getRequestStatus (spec §2.4) for any mix of provisioning (`req-`) and return (`ret-`) ids.
//!
//! Cost per call: one batch read of the requests, one machine listing per request, one
//! DescribeInstances per 1,000 instances of the whole call (only unfinished requests are
//! described; finished ones answer from their records), and for fleets and Auto Scaling
//! groups what [`super::discover`] costs. Machines whose state changed are
//! written back, and a request that reaches a final state is finished and gives its capacity
//! back, so the outcome survives EC2 forgetting terminated instances.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::future::{join_all, try_join_all};

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::{
    MachineResult, RequestState, RequestReport, RequestStatusInput,
    RequestStatusResponse,
};
use crate::cloud::Observed;
use super::outcome::{machine_status, provisioning_result, request_state, return_result, unknown_request};
use crate::store::{
    CapacityChange, Direction, InstanceState, MachineRecord, RequestKind, RequestRecord, RequestPhase, capacity_key,
    now, unless_stale,
};

use super::claim::{Caller, claim};
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
/// `caller` is HostFactory.
async fn statuses(state: &AppState, provider: &str, ids: &[String], caller: Caller) -> Result<Vec<RequestReport>> {
    let mut records: HashMap<String, RequestRecord> = state
        .store
        .requests
        .batch_get(ids)
        .await?
        .into_iter()
        .filter(|r| r.provider == provider)
        .map(|r| (r.request_id.clone(), r))
        .collect();
    if caller == Caller::HostFactory {
        claim(state, &mut records).await;
    }
    capacity::settle_all(state, &mut records).await;
    let mut machines = list_machines(state, &records).await?;
    let fleets = filling::refresh_fleets(state, provider, &records, &mut machines).await?;
    for claimed in fleets.values().filter_map(|f| f.claimed.clone()) {
        records.insert(claimed.request_id.clone(), claimed);
    }

    let live: Vec<String> = records
        .values()
        .filter(|r| r.status == RequestPhase::InProgress)
        .flat_map(|r| machines.get(&r.request_id).into_iter().flatten().map(|m| m.machine_id.clone()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let observed = if live.is_empty() { HashMap::new() } else { state.cloud.describe(&live).await? };
    filling::tag_adopted(state, &fleets, &machines, &observed).await;

    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        let answer = match records.remove(id) {
            None => unknown_request(id),
            Some(record) => {
                let list = machines.remove(id).unwrap_or_default();
                if record.status == RequestPhase::InProgress {
                    refresh_one(state, record, list, &observed, fleets.get(id)).await?
                } else {
                    answer_from_records(&record, &list)
                }
            }
        };
        answers.push(answer);
    }
    Ok(answers)
}

/// The machines of each request: its own (provisioning) or those it returns.
async fn list_machines(
    state: &AppState,
    records: &HashMap<String, RequestRecord>,
) -> Result<HashMap<String, Vec<MachineRecord>>> {
    let listings = try_join_all(records.values().map(|r| async move {
        let machines = match r.kind {
            RequestKind::Provision => state.store.machines.list_by_request(&r.request_id).await?,
            RequestKind::Return => state.store.machines.list_by_return_request(&r.request_id).await?,
        };
        Ok::<_, Error>((r.request_id.clone(), machines))
    }))
    .await?;
    Ok(listings.into_iter().collect())
}

/// A request whose machines EC2 is still working on: map, persist changes, finish if final.
async fn refresh_one(
    state: &AppState,
    mut request: RequestRecord,
    mut machines: Vec<MachineRecord>,
    observed: &HashMap<String, Observed>,
    fleet: Option<&filling::FleetProgress>,
) -> Result<RequestReport> {
    let now = now();
    let changed = observe(&request, &mut machines, observed, now);
    let recorded = write_machines(state, &changed).await;

    let results: Vec<MachineResult> =
        machines.iter().map(|m| if handed_back(&request, m) { MachineResult::Succeed } else { m.result }).collect();
    let (target_reached, given_up, shortfall, extra) = target(&request, &machines, fleet);
    let mut status = request_state(results.iter().copied(), target_reached, given_up);
    if !recorded {
        // Finishing now would leave a machine record behind the request's outcome (a returned
        // machine still `executing` under a finished return holds its units in the
        // reconciler's recount, which would undo the release). The next poll writes, then finishes.
        status = RequestState::Running;
    }
    let mut message = request.message.clone();
    if status != RequestState::Running {
        if fleet.is_some() && target_reached {
            // As for instant fleets: a filled weighted fleet holds fewer machines than units.
            request.machine_count = u32::try_from(machines.len()).unwrap_or(u32::MAX);
        }
        if finish(state, &mut request, &machines, status, now, (shortfall, extra)).await? {
            message = request.message.clone();
        } else {
            // Another writer moved the request first: its outcome stands, and the next poll
            // answers it. Answering this call's outcome instead could tell HostFactory "final"
            // about a request whose record still takes machines in.
            status = RequestState::Running;
        }
    }
    Ok(RequestReport {
        request_id: request.request_id.clone(),
        status,
        message,
        machines: machines.iter().map(machine_status).collect(),
    })
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
        machine.message = message.to_owned();
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

/// Writes the machines whose state changed; `false` when a write failed. A concurrent caller's
/// newer version is not a failure: it recorded the same observation or a later one.
async fn write_machines(state: &AppState, changed: &[MachineRecord]) -> bool {
    let mut written = true;
    for outcome in join_all(changed.iter().map(|m| state.store.machines.update(m))).await {
        if let Err(err) = unless_stale(outcome) {
            tracing::warn!(error = %err, "machine update failed; the request finishes on a later poll");
            written = false;
        }
    }
    written
}

/// Records the final state and gives back the capacity of machines that are gone: failed ones
/// of a provisioning request, returned ones of a return request, plus the `shortfall` units a
/// fleet never filled; and counts the `extra` units a fleet filled beyond its target. Only the
/// caller whose update wins does either, so each happens once; `true` when this caller's did.
async fn finish(
    state: &AppState,
    request: &mut RequestRecord,
    machines: &[MachineRecord],
    status: RequestState,
    now: i64,
    (shortfall, extra): (u32, u32),
) -> Result<bool> {
    let failed = machines.iter().filter(|m| m.result == MachineResult::Fail && !handed_back(request, m)).count();
    let (final_status, message) = match (request.kind, status) {
        (RequestKind::Provision, RequestState::Complete) => {
            (RequestPhase::Complete, format!("All {} machine(s) are ready.", machines.len()))
        }
        (RequestKind::Provision, _) => {
            let first = machines.iter().find(|m| m.result == MachineResult::Fail).map(|m| m.message.as_str());
            let message = format!(
                "{} of {} machine(s) ready, {failed} failed{}",
                machines.len() - failed,
                request.machine_count,
                first.map(|m| format!(": {m}")).unwrap_or_default()
            );
            (RequestPhase::CompleteWithError, message)
        }
        (RequestKind::Return, RequestState::Complete) => {
            (RequestPhase::Complete, format!("{} machine(s) returned.", machines.len()))
        }
        (RequestKind::Return, _) => (
            RequestPhase::CompleteWithError,
            format!("{failed} of {} machine(s) could not be returned.", machines.len()),
        ),
    };
    commit(state, request, machines, (final_status, message), now, (shortfall, extra), "finish").await
}

/// Writes the request's final status and message; if that write wins, gives back the capacity
/// of machines that are gone (failed ones of a provisioning request, returned ones of a return
/// request) plus the `shortfall` units a fleet never filled, and counts the `extra` units a
/// fleet filled beyond its target. `stage` names the capacity operations (one per stage and
/// template, so each applies once). `true` when this write won.
async fn commit(
    state: &AppState,
    request: &mut RequestRecord,
    machines: &[MachineRecord],
    (final_status, message): (RequestPhase, String),
    now: i64,
    (shortfall, extra): (u32, u32),
    stage: &str,
) -> Result<bool> {
    request.finish(final_status, message, now, state.config.retention);
    // Decided by the update below (only its winner applies them), applied after it.
    let changes = capacity_changes(request, machines, (shortfall, extra), stage);
    request.pending_capacity.extend(changes);
    match unless_stale(state.store.requests.update(request).await)? {
        Some(written) => *request = capacity::settle(state, written).await,
        None => return Ok(false),
    }
    tracing::info!(request_id = %request.request_id, status = ?final_status, "request finished");
    Ok(true)
}

/// What a finishing request gives back (per template: its machines that are gone, and the
/// `shortfall` units a fleet never filled) and the `extra` units a fleet filled beyond target.
fn capacity_changes(
    request: &RequestRecord,
    machines: &[MachineRecord],
    (shortfall, extra): (u32, u32),
    stage: &str,
) -> Vec<CapacityChange> {
    let gone = |m: &&MachineRecord| match request.kind {
        RequestKind::Provision => m.result == MachineResult::Fail && !handed_back(request, m),
        RequestKind::Return => m.result == MachineResult::Succeed,
    };
    let mut per_template: BTreeMap<String, u32> = BTreeMap::new();
    for machine in machines.iter().filter(gone) {
        *per_template.entry(capacity_key(&machine.provider, &machine.template_id)).or_default() += machine.units;
    }
    let own = capacity_key(&request.provider, &request.template_id);
    if shortfall > 0 {
        // Units a fleet or group never filled (its reservation was kept while it could).
        *per_template.entry(own.clone()).or_default() += shortfall;
    }
    let mut changes: Vec<CapacityChange> = per_template
        .into_iter()
        .filter_map(|(key, count)| {
            let op_id = format!("release:{}:{stage}:{key}", request.request_id);
            capacity::change(op_id, &key, Direction::Release, count)
        })
        .collect();
    changes.extend(capacity::overshoot(request, &own, stage, extra));
    changes
}

/// A machine of a provisioning request that HostFactory has since returned.
fn handed_back(request: &RequestRecord, machine: &MachineRecord) -> bool {
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

/// Finishes a provisioning request the reconciler gave up on (its stragglers marked `fail`),
/// with the same message and capacity release as a request that failed on its own. A fleet or
/// group still filling is stopped at what it filled, and the units it never filled are given
/// back (RunInstances and instant fleets gave theirs back at launch).
pub(crate) async fn finish_with_error(
    state: &AppState,
    request: &mut RequestRecord,
    machines: &[MachineRecord],
    now: i64,
) -> Result<()> {
    let mut shortfall = 0;
    let owner = request.owner(None);
    if owner.fills_later() {
        let filled: u32 = machines.iter().filter(|m| m.result != MachineResult::Fail).map(|m| m.units).sum();
        state.cloud.stop_filling(&owner, filled).await?;
        shortfall = request.machine_count.saturating_sub(machines.iter().map(|m| m.units).sum());
    }
    finish(state, request, machines, RequestState::CompleteWithError, now, (shortfall, 0)).await.map(|_| ())
}

/// Finishes a provisioning request HostFactory abandoned, whose `machines` (marked failed) were
/// terminated and whose fleet or group gave them up: `complete_with_error` with `message`,
/// their units and the `shortfall` a fleet never filled given back, once.
pub(crate) async fn finish_abandoned(
    state: &AppState,
    request: &mut RequestRecord,
    machines: &[MachineRecord],
    message: String,
    now: i64,
    shortfall: u32,
) -> Result<()> {
    let outcome = (RequestPhase::CompleteWithError, message);
    commit(state, request, machines, outcome, now, (shortfall, 0), "abandoned").await.map(|_| ())
}

#[cfg(test)]
mod tests;
