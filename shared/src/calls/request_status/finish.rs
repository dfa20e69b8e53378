//! How a request finishes: its final status and message, and the capacity it gives back
//! (decided with the final write, so only the writer that wins applies it, once). The status
//! calls write finishes in their batched update; the reconciler's give-ups here, one by one.

use std::collections::BTreeMap;

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::{MachineResult, RequestState};
use crate::store::{CapacityChange, Direction, MachineRecord, RequestKind, RequestPhase, RequestRecord, capacity_key, unless_stale};

use super::super::capacity;
use super::handed_back;

/// What a finish writes, beyond the final status and message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Finish<'a> {
    pub now: i64,
    pub retention: std::time::Duration,
    /// Units a fleet never filled (its reservation was kept while it could).
    pub shortfall: u32,
    /// Units a fleet filled beyond target.
    pub extra: u32,
    /// Names the capacity operations (one per stage and template, so each applies once).
    pub stage: &'a str,
}

/// The final status and message `status` makes of a request's `machines` (pure).
pub(super) fn outcome(request: &RequestRecord, machines: &[MachineRecord], status: RequestState) -> (RequestPhase, String) {
    let failed = machines.iter().filter(|m| m.result == MachineResult::Fail && !handed_back(request, m)).count();
    match (request.kind, status) {
        (RequestKind::Provision, RequestState::Complete) => {
            (RequestPhase::Complete, format!("All {} machine(s) are ready.", machines.len()))
        }
        (RequestKind::Provision, _) => {
            let first = machines.iter().find(|m| m.result == MachineResult::Fail).map(|m| m.message.as_str());
            // A launch that stopped short said why when it was accepted (the pools without
            // capacity, the error): keep it.
            let short = machines.len() < request.machine_count as usize && !request.message.is_empty();
            let message = format!(
                "{} of {} machine(s) ready, {failed} failed{}{}",
                machines.len() - failed,
                request.machine_count,
                first.map(|m| format!(": {m}")).unwrap_or_default(),
                if short { format!(" (at launch: {})", request.message) } else { String::new() }
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
    }
}

/// Turns `request` into its finished record as `outcome` says (pure), with, pending on it, the
/// capacity of its machines that are gone (failed ones of a provisioning request, returned ones
/// of a return request) plus the `shortfall`, and the `extra` units counted.
pub(super) fn finished(request: &mut RequestRecord, machines: &[MachineRecord], outcome: (RequestPhase, String), finish: Finish<'_>) {
    request.finish(outcome.0, outcome.1, finish.now, finish.retention);
    let changes = capacity_changes(request, machines, (finish.shortfall, finish.extra), finish.stage);
    request.pending_capacity.extend(changes);
}

/// Writes `request` finished as `outcome` says; if that write wins, applies the capacity it
/// gives back. `true` when this write won (another writer's outcome stands otherwise).
async fn commit(
    state: &AppState,
    request: &mut RequestRecord,
    machines: &[MachineRecord],
    outcome: (RequestPhase, String),
    finish: Finish<'_>,
) -> Result<bool> {
    let final_status = outcome.0;
    finished(request, machines, outcome, finish);
    match unless_stale(state.store.requests.update(request).await)? {
        Some(written) => *request = capacity::settle(state, written).await,
        None => return Ok(false),
    }
    tracing::info!(request_id = %request.request_id, status = ?final_status, "request finished");
    Ok(true)
}

/// What a finishing request gives back (per template: its machines that are gone, and the
/// `shortfall` units a fleet never filled) and the `extra` units a fleet filled beyond target.
pub(super) fn capacity_changes(
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
    let finish = Finish { now, retention: state.config.retention, shortfall, extra: 0, stage: "finish" };
    let outcome = outcome(request, machines, RequestState::CompleteWithError);
    commit(state, request, machines, outcome, finish).await.map(drop)
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
    let finish = Finish { now, retention: state.config.retention, shortfall, extra: 0, stage: "abandoned" };
    commit(state, request, machines, (RequestPhase::CompleteWithError, message), finish).await.map(drop)
}
