//! Provisioning requests HostFactory never learned of: no getRequestStatus named them within
//! `HOSTFACTORY_UNCLAIMED_SECS` (HostFactory polls every ~30 s), because the requestMachines
//! answer was lost or the call died after EC2 had started instances. Nobody would ever return
//! their machines, so they are reaped: the fleet or group gives the machines up (and is deleted
//! once empty), the instances are terminated, and the request ends `complete_with_error`
//! saying so, giving its capacity back once. A request HostFactory has polled is never reaped
//! here, and neither is one still `pending` (the pending step heals it first).

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::MachineResult;
use crate::calls::{finish_abandoned, finish_with_error, release_from_owners};
use crate::store::{InstanceState, MachineRecord, RequestKind, RequestRecord, RequestPhase, unless_stale};

use super::{Report, older, seconds, write};

/// Whether `request` is due: unclaimed and older than both the unclaimed limit and the orphan
/// grace (a launch being recorded right now keeps its instances).
pub(super) fn due(state: &AppState, request: &RequestRecord, now: i64) -> bool {
    let timings = state.config.reconcile;
    request.unclaimed
        && request.kind == RequestKind::Provision
        && older(request, now, timings.unclaimed.max(timings.orphan_grace))
}

/// Reaps the request if, as stored now, it is due and launched (a pending one healed earlier in
/// the same pass counts as launched; one still pending is left to the pending step).
pub(super) async fn reap(state: &AppState, request_id: &str, now: i64, report: &mut Report) -> Result<()> {
    let stored = state.store.requests.get(request_id).await?;
    let Some(mut request) = stored.filter(|r| due(state, r, now) && r.status != RequestPhase::Pending) else {
        return Ok(());
    };
    let message = format!(
        "Abandoned: HostFactory did not ask for this request's status within {} s, so it never learned of it; its machines were terminated.",
        seconds(state.config.reconcile.unclaimed)
    );
    let finished = request.is_finished();
    let machines = state.store.machines.list_by_request(request_id).await?;
    // The machines that still hold something: everything not returned and, once the request is
    // finished, not failed already (those gave their capacity back when it finished).
    let mut live: Vec<MachineRecord> = machines
        .into_iter()
        .filter(|m| m.return_request_id.is_none() && !(finished && m.result == MachineResult::Fail))
        .collect();
    request.unclaimed = false;
    match (finished, live.is_empty()) {
        // It holds nothing (it failed at once): it only leaves the active index.
        (true, true) => {
            write(state, &request).await?;
            return Ok(());
        }
        // Nothing launched yet: a fleet or group still filling is stopped at nothing.
        (false, true) => finish_with_error(state, &mut request, &[], now).await?,
        _ => {
            terminate(state, &request, &mut live, &message, now).await?;
            let held: u32 = live.iter().map(|m| m.units).sum();
            let shortfall = if finished { 0 } else { request.machine_count.saturating_sub(held) };
            finish_abandoned(state, &mut request, &live, message, now, shortfall).await?;
        }
    }
    report.abandoned += 1;
    tracing::warn!(%request_id, machines = live.len(), "abandoned request reaped");
    Ok(())
}

/// The fleet or group gives the machines up (an empty one is deleted), then they are terminated
/// and recorded as failed with `message`.
async fn terminate(
    state: &AppState,
    request: &RequestRecord,
    machines: &mut [MachineRecord],
    message: &str,
    now: i64,
) -> Result<()> {
    release_from_owners(state, &request.provider, machines).await?;
    let ids: Vec<String> = machines.iter().filter(|m| m.state != InstanceState::Terminated).map(|m| m.machine_id.clone()).collect();
    if !ids.is_empty() {
        state.cloud.terminate(&ids).await?;
    }
    for machine in machines.iter_mut() {
        machine.result = MachineResult::Fail;
        machine.message = message.to_owned();
        machine.updated_at = now;
        if let Some(written) = unless_stale(state.store.machines.update(machine).await)? {
            *machine = written;
        }
    }
    Ok(())
}
