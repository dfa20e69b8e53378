//! requestReturnMachines for machines a fleet or Auto Scaling group holds: before they are
//! terminated the owner gives them up, so AWS does not launch replacements, and an owner left
//! with nothing is deleted (how, per owner kind: [`crate::cloud::Cloud::shrink`]). `request`
//! fleets never replace instances, so they are only deleted once empty; instant fleets hold
//! nothing to replace and are left alone.

use std::collections::{HashMap, HashSet};

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::MachineResult;
use crate::store::{InstanceState, MachineRecord, RequestRecord};

use super::discover::templates;

/// Makes every fleet or group holding some of `returned` give them up. An error means some
/// owner could not be shrunk: the caller terminates nothing.
pub async fn release_from_owners(state: &AppState, provider: &str, returned: &[MachineRecord]) -> Result<()> {
    let mut by_request: HashMap<&str, Vec<&MachineRecord>> = HashMap::new();
    // A machine recorded as held by no fleet or group needs no look at its request.
    for machine in returned.iter().filter(|m| !m.request_id.is_empty() && m.fleet_held != Some(false)) {
        by_request.entry(machine.request_id.as_str()).or_default().push(machine);
    }
    if by_request.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = by_request.keys().map(|id| (*id).to_owned()).collect();
    let owners: Vec<RequestRecord> = state
        .store
        .requests
        .batch_get(&ids)
        .await?
        .into_iter()
        .filter(|r| r.fleet_id.is_some() || r.asg_name.is_some())
        .collect();
    if owners.is_empty() {
        return Ok(());
    }
    let loaded = templates(state, provider).await;
    for request in owners {
        let Some(giving_up) = by_request.get(request.request_id.as_str()) else { continue };
        let template = loaded.as_ref().and_then(|l| l.template(&request.template_id));
        let owner = request.owner(template);
        if !owner.fills_later() {
            continue;
        }
        let leaving: HashSet<&str> = giving_up.iter().map(|m| m.machine_id.as_str()).collect();
        let kept = state
            .store
            .machines
            .list_by_request(&request.request_id)
            .await?
            .into_iter()
            .filter(|m| {
                !leaving.contains(m.machine_id.as_str())
                    && m.return_request_id.is_none()
                    && m.state != InstanceState::Terminated
                    && m.result != MachineResult::Fail
            })
            .count();
        let leaving: Vec<String> = leaving.into_iter().map(str::to_owned).collect();
        state.cloud.shrink(&owner, template, &leaving, kept == 0).await?;
    }
    Ok(())
}
