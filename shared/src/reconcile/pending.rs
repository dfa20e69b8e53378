//! Requests left `pending`: the process died between writing the request and recording EC2's
//! answer. Instances launched meanwhile carry the request id in their tags, so they are found
//! and adopted; with none, the launch never happened and the request fails, freeing capacity.
//! A pending return request had its machines marked but maybe not terminated: termination is
//! sent again (TerminateInstances is idempotent).

use std::collections::HashSet;

use crate::app::AppState;
use crate::error::Result;
use crate::cloud::tags;
use crate::calls::{capacity, machine_record};
use crate::store::{InstanceState, MachineRecord, RequestKind, RequestRecord, RequestPhase, capacity_key};

use super::{Report, reread, seconds, write, write_back};

/// Heals one pending request; `true` when it now has machines launching (adopted or resent).
pub(super) async fn heal(state: &AppState, request_id: &str, now: i64, report: &mut Report) -> Result<bool> {
    let Some(request) = reread(state, request_id, &[RequestPhase::Pending]).await? else {
        return Ok(false);
    };
    match request.kind {
        RequestKind::Provision => adopt_or_fail(state, request, now, report).await,
        RequestKind::Return => resend_return(state, request, now, report).await,
    }
}

async fn adopt_or_fail(state: &AppState, mut request: RequestRecord, now: i64, report: &mut Report) -> Result<bool> {
    let request_id = request.request_id.clone();
    let found = state.cloud.find_tagged(tags::REQUEST_ID, &request_id).await?;
    let key = capacity_key(&request.provider, &request.template_id);
    if found.is_empty() {
        let waited = seconds(state.config.reconcile.pending_timeout);
        let message = format!(
            "The launch was interrupted: no instance was started for this request within {waited} s; capacity released."
        );
        request.finish(RequestPhase::CompleteWithError, message, now, state.config.retention);
        request.pending_capacity.extend(capacity::unlaunched(&request, &key, request.machine_count));
        if let Some(written) = write_back(state, &request).await? {
            capacity::settle(state, written).await;
            report.pending_failed += 1;
            tracing::warn!(%request_id, "pending request had launched nothing; finished with an error");
        }
        return Ok(false);
    }

    // Records the request handler wrote before it died are kept as they are.
    let ids: Vec<String> = found.iter().map(|i| i.instance_id.clone()).collect();
    let known: HashSet<String> =
        state.store.machines.batch_get(&ids).await?.into_iter().map(|m| m.machine_id).collect();
    let adopted: Vec<MachineRecord> = found
        .iter()
        .filter(|i| !known.contains(&i.instance_id))
        .map(|instance| machine_record(instance, &request))
        .collect();
    state.store.machines.upsert_batch(&adopted).await?;
    let machines = u32::try_from(found.len()).unwrap_or(u32::MAX);
    request.status = RequestPhase::InProgress;
    request.message = format!("Recovered {machines} machine(s) launched before the request was interrupted.");
    request.updated_at = now;
    // As after a short launch: capacity not launched goes back, the request keeps its count.
    // The same op id as requestMachines' own release, so a handler that got that far before it
    // died is not counted twice.
    let unlaunched = request.machine_count.saturating_sub(machines);
    request.pending_capacity.extend(capacity::unlaunched(&request, &key, unlaunched));
    let Some(written) = write_back(state, &request).await? else {
        return Ok(false);
    };
    capacity::settle(state, written).await;
    report.pending_adopted += 1;
    tracing::warn!(%request_id, machines, newly_recorded = adopted.len(), "pending request healed by adoption");
    Ok(true)
}

async fn resend_return(state: &AppState, mut request: RequestRecord, now: i64, report: &mut Report) -> Result<bool> {
    let machines = state.store.machines.list_by_return_request(&request.request_id).await?;
    let ids: Vec<String> = machines.iter().filter(|m| m.state != InstanceState::Terminated).map(|m| m.machine_id.clone()).collect();
    state.cloud.terminate(&ids).await?;
    request.status = RequestPhase::InProgress;
    request.message = format!("Delete VM success: {} machine(s) terminating.", ids.len());
    request.updated_at = now;
    if !write(state, &request).await? {
        return Ok(false);
    }
    report.returns_resent += 1;
    tracing::warn!(request_id = %request.request_id, machines = ids.len(), "pending return request: termination resent");
    Ok(true)
}
