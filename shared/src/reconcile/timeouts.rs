//! Provisioning requests still launching after `HOSTFACTORY_LAUNCH_TIMEOUT_SECS`: the machines
//! that never reached a usable `running` are terminated and marked failed, and the request
//! finishes `complete_with_error` the way getRequestStatus finishes a failed one (capacity of
//! the failed machines released, a message naming the cause).

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::MachineResult;
use crate::calls::finish_with_error;
use crate::store::{RequestKind, RequestPhase, unless_stale};

use super::{Report, reread, seconds};

pub(super) async fn expire(state: &AppState, request_id: &str, now: i64, report: &mut Report) -> Result<()> {
    let Some(mut request) = reread(state, request_id, &[RequestPhase::InProgress]).await? else {
        return Ok(());
    };
    if request.kind != RequestKind::Provision {
        return Ok(());
    }
    let mut machines = state.store.machines.list_by_request(request_id).await?;
    let limit = seconds(state.config.reconcile.launch_timeout);
    let message = format!("instance did not become ready within {limit} s; terminated");
    let mut stuck = Vec::new();
    for machine in machines.iter_mut() {
        if machine.return_request_id.is_none() && machine.result == MachineResult::Executing {
            machine.result = MachineResult::Fail;
            machine.message = message.clone();
            machine.updated_at = now;
            stuck.push(machine.clone());
        }
    }
    if stuck.is_empty() {
        // Nothing left launching: getRequestStatus finishes such a request on its own.
        return Ok(());
    }
    let ids: Vec<String> = stuck.iter().map(|m| m.machine_id.clone()).collect();
    state.cloud.terminate(&ids).await?;
    for machine in &stuck {
        unless_stale(state.store.machines.update(machine).await)?;
    }
    finish_with_error(state, &mut request, &machines, now).await?;
    report.timed_out += 1;
    tracing::warn!(%request_id, stuck = ids.len(), limit, "request timed out; stragglers terminated");
    Ok(())
}
