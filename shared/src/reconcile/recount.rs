//! The capacity steps of a pass: capacity changes left pending on requests are applied, then
//! the units each template holds are recounted from the records (authoritative) and a counter
//! that disagrees is corrected.
//!
//! Units held by a template (`provider/templateId`) are
//! - the units of its machine records that hold capacity: every machine, unless
//!   - it was returned and its return request is finished with it `succeed` (that request gave
//!     its units back), or
//!   - it was not returned, is `fail`, and its provisioning request is finished (its units went
//!     back at the finish, or with the state-change event of a host EC2 terminated on its own);
//! - plus, for each unfinished provisioning request whose fleet or group fills after the call,
//!   `machineCount` − the units of its machines: the reservation it keeps for what it has not
//!   filled yet. (Any other request holds just its machines: requestMachines gave back what it
//!   did not launch.)
//!
//! Race safety: a counter is corrected only when no change touched it for
//! `HOSTFACTORY_CAPACITY_QUIET_SECS` (30 s), so no reservation or release is in flight and the
//! indexes show the records behind every change; the records are read after the counter, and
//! the correction is written on the counter's version as read, so a change landing meanwhile
//! turns it into a no-op (left to the next pass). A template with a `pending` request (a launch
//! under way) or with capacity changes still pending on a request is skipped.

use std::collections::{HashMap, HashSet};

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::MachineResult;
use crate::calls::capacity;
use crate::store::{Counter, MachineRecord, RequestKind, RequestRecord, RequestPhase, capacity_key, now};

use super::{Report, seconds};

/// Applies the capacity changes pending on the listed requests (re-read by key first: the
/// listing may lag).
pub(super) async fn settle(state: &AppState, listed: &[RequestRecord], report: &mut Report) -> Result<()> {
    for listed in listed.iter().filter(|r| !r.pending_capacity.is_empty()) {
        let Some(request) = state.store.requests.get(&listed.request_id).await? else {
            continue;
        };
        let before = request.pending_capacity.len();
        let after = capacity::settle(state, request).await.pending_capacity.len();
        report.capacity_settled += before.saturating_sub(after);
    }
    Ok(())
}

/// Recounts every quiet counter and corrects those that disagree with the records.
pub(super) async fn recount(state: &AppState, report: &mut Report) -> Result<()> {
    let quiet = seconds(state.config.reconcile.capacity_quiet);
    let now = now();
    let counters: Vec<Counter> = state
        .store
        .capacity
        .counters()
        .await?
        .into_iter()
        .filter(|c| now.saturating_sub(c.updated_at) >= quiet)
        .collect();
    if counters.is_empty() {
        return Ok(());
    }
    // Listed after the counters were read: every request behind their last change is in it.
    let active = state.store.requests.list_active().await?;
    let unfinished: HashMap<&str, &RequestRecord> =
        active.iter().filter(|r| !r.is_finished()).map(|r| (r.request_id.as_str(), r)).collect();
    let unsettled: HashSet<String> = active
        .iter()
        .filter(|r| r.status == RequestPhase::Pending && r.kind == RequestKind::Provision)
        .map(|r| capacity_key(&r.provider, &r.template_id))
        .chain(active.iter().flat_map(|r| r.pending_capacity.iter().map(|c| c.key.clone())))
        .collect();
    for counter in counters.iter().filter(|c| !unsettled.contains(&c.key)) {
        if let Err(err) = repair(state, counter, &unfinished, report).await {
            report.failed(&format!("recounting capacity of {}", counter.key), err);
        }
    }
    Ok(())
}

async fn repair(
    state: &AppState,
    counter: &Counter,
    unfinished: &HashMap<&str, &RequestRecord>,
    report: &mut Report,
) -> Result<()> {
    let Some((provider, template_id)) = counter.key.split_once('/') else {
        return Ok(());
    };
    let machines = state.store.machines.list_by_template(provider, template_id).await?;
    let held = held_units(provider, template_id, &machines, unfinished);
    if held == counter.in_use {
        return Ok(());
    }
    if state.store.capacity.correct(counter, held).await? {
        report.capacity_repaired += 1;
        tracing::warn!(key = %counter.key, counted = counter.in_use, held, "capacity counter corrected from the records");
    } else {
        tracing::info!(key = %counter.key, "capacity counter changed during the recount; left to the next pass");
    }
    Ok(())
}

/// The units `machines` (all of one template) and the template's unfinished requests hold.
fn held_units(
    provider: &str,
    template_id: &str,
    machines: &[MachineRecord],
    unfinished: &HashMap<&str, &RequestRecord>,
) -> u64 {
    let holding: u64 = machines.iter().filter(|m| holds(m, unfinished)).map(|m| u64::from(m.units)).sum();
    let reserved: u64 = unfinished
        .values()
        .filter(|r| r.kind == RequestKind::Provision && r.provider == provider && r.template_id == template_id)
        .filter(|r| r.status == RequestPhase::InProgress && r.owner(None).fills_later())
        .map(|r| {
            let filled: u32 = machines.iter().filter(|m| m.request_id == r.request_id).map(|m| m.units).sum();
            u64::from(r.machine_count.saturating_sub(filled))
        })
        .sum();
    holding + reserved
}

/// Whether a machine still holds its units (see the module documentation).
fn holds(machine: &MachineRecord, unfinished: &HashMap<&str, &RequestRecord>) -> bool {
    match &machine.return_request_id {
        Some(returned) => machine.result != MachineResult::Succeed || unfinished.contains_key(returned.as_str()),
        None => machine.result != MachineResult::Fail || unfinished.contains_key(machine.request_id.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Lifecycle, RequestKind};

    fn machine(id: &str, request_id: &str, result: MachineResult, returned: Option<&str>, units: u32) -> MachineRecord {
        MachineRecord {
            machine_id: id.into(),
            request_id: request_id.into(),
            return_request_id: returned.map(str::to_owned),
            template_id: "T".into(),
            provider: "p".into(),
            name: String::new(),
            private_ip_address: String::new(),
            public_ip_address: String::new(),
            state: "running".into(),
            result,
            launchtime: 0,
            lifecycle: Lifecycle::Ondemand,
            interrupted_at: None,
            units,
            reclaimed_at: None,
            message: String::new(),
            version: 1,
            updated_at: 0,
            expires_at: None,
            fleet_held: None,
            actions: Vec::new(),
        }
    }

    #[test]
    fn units_held_follow_the_release_points() {
        let mut filling = RequestRecord::new(RequestKind::Provision, "T", "p", 10, 0);
        filling.status = RequestPhase::InProgress;
        filling.provider_api = Some("ASG".into());
        filling.asg_name = Some("g".into());
        let mut returning = RequestRecord::new(RequestKind::Return, "", "p", 1, 0);
        returning.status = RequestPhase::InProgress;
        let unfinished: HashMap<&str, &RequestRecord> =
            [(filling.request_id.as_str(), &filling), (returning.request_id.as_str(), &returning)].into();
        let machines = [
            // Finished request: running holds, failed was given back at the finish.
            machine("i-1", "req-done", MachineResult::Succeed, None, 2),
            machine("i-2", "req-done", MachineResult::Fail, None, 5),
            // Returned: held until its return request finishes with it `succeed`.
            machine("i-3", "req-done", MachineResult::Succeed, Some("ret-done"), 7),
            machine("i-4", "req-done", MachineResult::Fail, Some("ret-done"), 1),
            machine("i-5", "req-done", MachineResult::Succeed, Some(&returning.request_id), 1),
            // The filling group: its machines (even failed) hold, and so does what it has not filled.
            machine("i-6", &filling.request_id, MachineResult::Succeed, None, 3),
            machine("i-7", &filling.request_id, MachineResult::Fail, None, 1),
        ];
        assert_eq!(held_units("p", "T", &machines, &unfinished), 2 + 1 + 1 + 3 + 1 + (10 - 4));
        assert_eq!(held_units("p", "Other", &[], &unfinished), 0, "another template's request is not counted");
    }
}
