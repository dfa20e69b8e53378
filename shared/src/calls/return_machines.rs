//! requestReturnMachines (spec §2.3) and getReturnRequests (spec §2.5).

use std::collections::{HashMap, HashSet};

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::{
    MachineRef, MachineResult, RequestAccepted, ReturnMachinesInput, ReturnRequest, ReturnRequestsInput,
    ReturnRequestsResponse,
};

use super::shrink;
use crate::store::{
    InstanceState, Lifecycle, MAX_TRANSACTION_MACHINES, MachineRecord, RequestKind, RequestRecord, RequestPhase, now,
};

/// Seconds between a Spot interruption warning and the instance's end.
const SPOT_WARNING_SECS: i64 = 120;

/// Terminates the named machines under a new `ret-` request. Machines we do not know, of
/// another provider instance, already gone or already being returned are left out without
/// failing the call; a return request is created even when nothing is left, so HostFactory
/// always has an id to poll. A machine is terminated under one return request only: a
/// concurrent return of the same machine loses the conditional write and, looking again,
/// finds it already returning.
pub async fn request_return_machines(
    state: &AppState,
    provider: &str,
    input: ReturnMachinesInput,
) -> Result<RequestAccepted> {
    input.validate()?;
    let mut attempt = 1;
    loop {
        match return_once(state, provider, &input).await {
            Err(Error::Stale { .. } | Error::Conflict(_)) if attempt < RETURN_ATTEMPTS => attempt += 1,
            outcome => return outcome,
        }
    }
}

/// How often a return looks again after losing a machine to a concurrent return.
const RETURN_ATTEMPTS: usize = 3;

async fn return_once(state: &AppState, provider: &str, input: &ReturnMachinesInput) -> Result<RequestAccepted> {
    let (known, gone): (Vec<MachineRecord>, Vec<MachineRecord>) = find_machines(state, &input.machines)
        .await?
        .into_iter()
        .filter(|m| m.provider == provider)
        .partition(|m| m.state != InstanceState::Terminated);
    let now = now();
    forget_reclaimed(state, gone, now).await;
    let (returning, fresh) = already_returning(state, known).await?;
    let count = u32::try_from(fresh.len()).unwrap_or(u32::MAX);
    let mut request = RequestRecord::new(RequestKind::Return, "", provider, count, now);
    let request_id = request.request_id.clone();
    if fresh.is_empty() {
        let message = match returning.is_empty() {
            true => "No active VM.".to_owned(),
            false => format!("Already returning: {}.", returning.join(", ")),
        };
        request.finish(RequestPhase::Complete, message.clone(), now, state.config.retention);
        state.store.requests.put_if_absent(&request).await?;
        tracing::info!(%request_id, asked = input.machines.len(), returning = returning.len(), "nothing to return");
        return Ok(RequestAccepted { message, request_id });
    }
    let marked = mark(fresh, &request_id, now);
    // The request and (up to the transaction limit) its machines in one transaction; the rest
    // one by one. A machine changed concurrently fails the call: HostFactory retries it.
    let (first, rest) = marked.split_at(marked.len().min(MAX_TRANSACTION_MACHINES));
    state.store.requests.put_with_machines(&request, first).await?;
    for machine in rest {
        state.store.machines.update(machine).await?;
    }
    terminate(state, provider, &mut request, &marked, &returning, now).await
}

/// Splits `known` into the machines already under a return request (as `id under ret-…`; a
/// return that failed does not count, so HostFactory can return its machines again) and the
/// machines to return now.
async fn already_returning(state: &AppState, known: Vec<MachineRecord>) -> Result<(Vec<String>, Vec<MachineRecord>)> {
    let return_ids: Vec<String> =
        known.iter().filter_map(|m| m.return_request_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    let failed: HashSet<String> = match return_ids.is_empty() {
        true => HashSet::new(),
        false => state
            .store
            .requests
            .batch_get(&return_ids)
            .await?
            .into_iter()
            .filter(|r| r.status == RequestPhase::CompleteWithError)
            .map(|r| r.request_id)
            .collect(),
    };
    let (returning, fresh): (Vec<MachineRecord>, Vec<MachineRecord>) = known
        .into_iter()
        .partition(|m| m.return_request_id.as_ref().is_some_and(|id| !failed.contains(id)));
    let returning = returning
        .into_iter()
        .map(|m| format!("{} under {}", m.machine_id, m.return_request_id.unwrap_or_default()))
        .collect();
    Ok((returning, fresh))
}

fn mark(machines: Vec<MachineRecord>, request_id: &str, now: i64) -> Vec<MachineRecord> {
    machines
        .into_iter()
        .map(|mut m| {
            m.return_request_id = Some(request_id.to_owned());
            m.reclaimed_at = None;
            m.result = MachineResult::Executing;
            m.message = String::new();
            m.updated_at = now;
            m
        })
        .collect()
}

/// Fleets and groups give the machines up first (or nothing is terminated), so AWS does not
/// replace them; then one TerminateInstances per 1,000.
async fn terminate(
    state: &AppState,
    provider: &str,
    request: &mut RequestRecord,
    marked: &[MachineRecord],
    returning: &[String],
    now: i64,
) -> Result<RequestAccepted> {
    let request_id = request.request_id.clone();
    let ids: Vec<String> = marked.iter().map(|m| m.machine_id.clone()).collect();
    let outcome = match shrink::release_from_owners(state, provider, marked).await {
        Ok(()) => state.cloud.terminate(&ids).await,
        failed => failed,
    };
    if let Err(err) = outcome {
        request.finish(RequestPhase::CompleteWithError, err.to_string(), now, state.config.retention);
        state.store.requests.update(request).await?;
        return Err(err);
    }
    let mut message = format!("Delete VM success: {} machine(s) terminating.", ids.len());
    if !returning.is_empty() {
        message.push_str(&format!(" Already returning: {}.", returning.join(", ")));
    }
    request.status = RequestPhase::InProgress;
    request.message = message.clone();
    state.store.requests.update(request).await?;
    tracing::info!(%request_id, machines = ids.len(), "machines returned");
    Ok(RequestAccepted { message, request_id })
}

/// HostFactory returned hosts that were already terminated: nothing to terminate, but the
/// cloud no longer takes them back, so getReturnRequests `{}` stops reporting them. Best
/// effort: a concurrent change only means one more report.
async fn forget_reclaimed(state: &AppState, gone: Vec<MachineRecord>, now: i64) {
    for mut machine in gone.into_iter().filter(|m| m.reclaimed_at.is_some()) {
        machine.reclaimed_at = None;
        machine.updated_at = now;
        if let Err(err) = state.store.machines.update(&machine).await {
            tracing::warn!(machine_id = %machine.machine_id, error = %err, "reclaimed mark not cleared");
        }
    }
}

/// Hosts the cloud is taking back among those HostFactory holds: terminated, stopped or not
/// found (grace 0), and Spot instances under an interruption warning (what is left of 120 s).
/// With `{}`, the hosts the reconciler recorded as taken back (EC2 events) that HostFactory
/// has not returned yet, from the store alone.
pub async fn get_return_requests(
    state: &AppState,
    provider: &str,
    input: ReturnRequestsInput,
) -> Result<ReturnRequestsResponse> {
    input.validate()?;
    if input.machines.is_empty() {
        return reclaimed(state, provider).await;
    }
    let known: HashMap<String, MachineRecord> = find_machines(state, &input.machines)
        .await?
        .into_iter()
        .filter(|m| m.provider == provider)
        .map(|m| (m.machine_id.clone(), m))
        .collect();
    let by_name: HashMap<&str, &str> =
        known.values().filter(|m| !m.name.is_empty()).map(|m| (m.name.as_str(), m.machine_id.as_str())).collect();
    // Each listed host as (host name, instance id); a host neither known nor named by id is
    // not ours to judge.
    let hosts: Vec<(String, String)> = input
        .machines
        .iter()
        .filter_map(|r| {
            let id = r
                .machine_id
                .clone()
                .or_else(|| r.name.as_deref().and_then(|n| by_name.get(n)).map(|id| (*id).to_owned()))?;
            let name = r.name.clone().or_else(|| known.get(&id).map(|m| m.name.clone())).unwrap_or_else(|| id.clone());
            Some((name, id))
        })
        .collect();
    let ids: Vec<String> = hosts.iter().map(|(_, id)| id.clone()).collect::<HashSet<_>>().into_iter().collect();
    let observed = if ids.is_empty() { HashMap::new() } else { state.cloud.describe(&ids).await? };

    let now = now();
    let requests: Vec<ReturnRequest> = hosts
        .into_iter()
        .filter_map(|(machine, id)| {
            let grace = match (observed.get(&id), known.get(&id)) {
                (None, _) => 0,
                (Some(seen), _) if matches!(seen.state, InstanceState::Terminated | InstanceState::Stopped) => 0,
                (Some(_), Some(MachineRecord { lifecycle: Lifecycle::Spot, interrupted_at: Some(at), .. })) => {
                    (SPOT_WARNING_SECS - (now - at)).max(0)
                }
                _ => return None,
            };
            Some(ReturnRequest { machine, grace_period: grace })
        })
        .collect();
    tracing::info!(provider, listed = input.machines.len(), reported = requests.len(), "return requests checked");
    Ok(answer(requests))
}

/// The stored machines HostFactory names: by `machineId` when given, else by host name.
async fn find_machines(state: &AppState, refs: &[MachineRef]) -> Result<Vec<MachineRecord>> {
    let nonblank = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let ids: Vec<String> = refs.iter().filter_map(|r| nonblank(&r.machine_id)).collect();
    let names: Vec<String> =
        refs.iter().filter(|r| nonblank(&r.machine_id).is_none()).filter_map(|r| nonblank(&r.name)).collect();
    let mut found = if ids.is_empty() { Vec::new() } else { state.store.machines.batch_get(&ids).await? };
    if !names.is_empty() {
        let seen: HashSet<String> = found.iter().map(|m| m.machine_id.clone()).collect();
        let by_name = state.store.machines.find_by_names(&names).await?;
        found.extend(by_name.into_iter().filter(|m| !seen.contains(&m.machine_id)));
    }
    Ok(found)
}

/// getReturnRequests `{}`: one query of the sparse reclaim index, no EC2 call. A Spot host under
/// its warning keeps what is left of 120 s; a host already stopped or gone has none.
async fn reclaimed(state: &AppState, provider: &str) -> Result<ReturnRequestsResponse> {
    let now = now();
    let requests: Vec<ReturnRequest> = state
        .store
        .machines
        .list_reclaimed(provider)
        .await?
        .into_iter()
        .filter(|m| m.return_request_id.is_none())
        .map(|m| {
            let running = !matches!(m.state, InstanceState::ShuttingDown | InstanceState::Stopped | InstanceState::Terminated);
            let grace = match (m.lifecycle, m.interrupted_at) {
                (Lifecycle::Spot, Some(at)) if running => (SPOT_WARNING_SECS - (now - at)).max(0),
                _ => 0,
            };
            let machine = if m.name.is_empty() { m.machine_id } else { m.name };
            ReturnRequest { machine, grace_period: grace }
        })
        .collect();
    tracing::info!(provider, reported = requests.len(), "reclaimed hosts reported");
    Ok(answer(requests))
}

fn answer(requests: Vec<ReturnRequest>) -> ReturnRequestsResponse {
    ReturnRequestsResponse {
        status: "complete".to_owned(),
        message: "Instances marked for termination retrieved successfully.".to_owned(),
        requests,
    }
}
