//! getReturnRequests (spec §2.5): the hosts the cloud is taking back.

use std::collections::{HashMap, HashSet};

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::{MachineRef, ReturnRequest, ReturnRequestsInput, ReturnRequestsResponse};
use crate::store::{Action, InstanceState, Lifecycle, MachineRecord, now};

/// Seconds between a Spot interruption warning and the instance's end.
const SPOT_WARNING_SECS: i64 = 120;

/// Hosts the cloud is taking back among those HostFactory holds: terminated, stopped or not
/// found (grace 0; a host an operator stopped or paused is not reported, one an operator
/// terminated is), and Spot instances under an interruption warning (what is left of 120 s).
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
                (_, Some(m)) if m.last_action() == Some(Action::Terminate) => 0,
                // An operator's stop or pause is not the cloud taking the host back.
                (Some(seen), Some(m)) if seen.state == InstanceState::Stopped && m.held_by_operator() => return None,
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
pub(super) async fn find_machines(state: &AppState, refs: &[MachineRef]) -> Result<Vec<MachineRecord>> {
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
        .filter(|m| m.return_request_id.is_none() || m.last_action() == Some(Action::Terminate))
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
