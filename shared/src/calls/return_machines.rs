//! requestReturnMachines (spec §2.3).

use std::collections::HashSet;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::{MachineResult, RequestAccepted, ReturnMachinesInput};

use super::return_requests::find_machines;
use super::shrink;
use crate::store::{
    Action, InstanceState, MAX_TRANSACTION_MACHINES, MachineRecord, RequestKind, RequestRecord, RequestPhase, now,
};

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
    let found = find_machines(state, &input.machines).await?;
    return_found(state, provider, found, None).await
}

/// An operator's `terminate` of `machine` (by `by`): exactly requestReturnMachines' path, and
/// the machine stays reported by getReturnRequests until HostFactory returns it too. A
/// concurrent return or action wins: [`Error::Conflict`] or [`Error::Stale`].
pub(crate) async fn terminate_by_operator(state: &AppState, machine: MachineRecord, by: &str) -> Result<RequestAccepted> {
    let (id, provider) = (machine.machine_id.clone(), machine.provider.clone());
    let accepted = return_found(state, &provider, vec![machine], Some(by)).await?;
    if accepted.message.starts_with("Delete VM success") {
        return Ok(accepted);
    }
    Err(Error::Conflict(format!("machine {id} is being returned already ({})", accepted.message)))
}

/// Returns the `found` machines of `provider` still alive; `operator`: the caller of an
/// operator's `terminate`.
async fn return_found(state: &AppState, provider: &str, found: Vec<MachineRecord>, operator: Option<&str>) -> Result<RequestAccepted> {
    let (known, gone): (Vec<MachineRecord>, Vec<MachineRecord>) =
        found.into_iter().filter(|m| m.provider == provider).partition(|m| m.state != InstanceState::Terminated);
    let now = now();
    let (returning, fresh, hostfactory_returns) = already_returning(state, known).await?;
    if operator.is_none() {
        forget_reclaimed(state, gone.into_iter().chain(hostfactory_returns).collect(), now).await;
    }
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
        tracing::info!(%request_id, asked = count, returning = returning.len(), "nothing to return");
        return Ok(RequestAccepted { message, request_id });
    }
    let marked = mark(fresh, &request_id, operator, now);
    request.record_machine_ids(marked.iter().map(|m| m.machine_id.clone()));
    // The request and (up to the transaction limit) its machines in one transaction; the rest
    // in batched transactions after it. A machine changed concurrently fails the call (the
    // retry looks again; HostFactory retries what is left).
    let (first, rest) = marked.split_at(marked.len().min(MAX_TRANSACTION_MACHINES));
    state.store.requests.put_with_machines(&request, first).await?;
    if !rest.is_empty() {
        let written = state.store.requests.update_all(&[], rest).await?;
        if let Some((machine, _)) = rest.iter().zip(&written.machines).find(|(_, w)| w.is_none()) {
            return Err(Error::Stale { what: "machine", id: machine.machine_id.clone(), expected: machine.version });
        }
    }
    terminate(state, provider, &mut request, &marked, &returning, now).await
}

/// Splits `known` into the machines already under a return request (as `id under ret-…`; a
/// return that failed does not count, so HostFactory can return its machines again) and the
/// machines to return now; and answers, among the first, those an operator terminated, still
/// reported by getReturnRequests (HostFactory returning them ends that).
async fn already_returning(
    state: &AppState,
    known: Vec<MachineRecord>,
) -> Result<(Vec<String>, Vec<MachineRecord>, Vec<MachineRecord>)> {
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
    let reported = returning.iter().filter(|m| m.reclaimed_at.is_some()).cloned().collect();
    let returning = returning
        .into_iter()
        .map(|m| format!("{} under {}", m.machine_id, m.return_request_id.unwrap_or_default()))
        .collect();
    Ok((returning, fresh, reported))
}

/// The machines under return request `request_id`. An operator's terminate is recorded on the
/// machine, and marks it reclaimed: getReturnRequests `{}` reports it (grace 0) until
/// HostFactory returns the host.
fn mark(machines: Vec<MachineRecord>, request_id: &str, operator: Option<&str>, now: i64) -> Vec<MachineRecord> {
    machines
        .into_iter()
        .map(|mut m| {
            m.return_request_id = Some(request_id.to_owned());
            m.reclaimed_at = operator.map(|_| now);
            if let Some(by) = operator {
                m.record_action(Action::Terminate, by, now);
            }
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

/// HostFactory returned hosts that were already terminated (or an operator terminated):
/// nothing to terminate, but the cloud no longer takes them back, so getReturnRequests `{}`
/// stops reporting them. Best effort: a concurrent change only means one more report.
async fn forget_reclaimed(state: &AppState, gone: Vec<MachineRecord>, now: i64) {
    for mut machine in gone.into_iter().filter(|m| m.reclaimed_at.is_some()) {
        machine.reclaimed_at = None;
        machine.updated_at = now;
        if let Err(err) = state.store.machines.update(&machine).await {
            tracing::warn!(machine_id = %machine.machine_id, error = %err, "reclaimed mark not cleared");
        }
    }
}
