//! requestReturnMachines for machines a fleet or Auto Scaling group holds: before they are
//! terminated the owner gives them up, so AWS does not launch replacements, and an owner left
//! with nothing is deleted.
//!
//! - Auto Scaling group: DetachInstances with ShouldDecrementDesiredCapacity (20 ids a call);
//!   DeleteAutoScalingGroup (ForceDelete) once empty.
//! - EC2 Fleet `maintain`: ModifyFleet to the units still held; Spot Fleet `maintain`:
//!   ModifySpotFleetRequest likewise (one Describe*Instances tells the units).
//! - Empty fleets: DeleteFleets (TerminateInstances=false) / CancelSpotFleetRequests.
//!   `request` fleets never replace instances, so they are only deleted once empty; instant
//!   fleets hold nothing to replace and are left alone.

use std::collections::{HashMap, HashSet};

use aws_sdk_ec2::types::{
    ExcessCapacityTerminationPolicy, FleetExcessCapacityTerminationPolicy, TargetCapacitySpecificationRequest,
};

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::MachineResult;
use crate::store::{MachineRecord, RequestRecord};
use crate::templates::{FleetType, ProviderApi, Template};

use super::discover::{deferred_api, fleet_instances, fleet_type, templates};

/// DetachInstances takes at most 20 instance ids per call.
const MAX_DETACH_PER_CALL: usize = 20;

/// Makes every fleet or group holding some of `returned` give them up. An error means some
/// owner could not be shrunk: the caller terminates nothing.
pub async fn release_from_owners(state: &AppState, provider: &str, returned: &[MachineRecord]) -> Result<()> {
    let mut by_request: HashMap<&str, Vec<&MachineRecord>> = HashMap::new();
    for machine in returned.iter().filter(|m| !m.request_id.is_empty()) {
        by_request.entry(machine.request_id.as_str()).or_default().push(machine);
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
        let Some(api) = deferred_api(&request, template) else { continue };
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
                    && m.state != "terminated"
                    && m.result != MachineResult::Fail
            })
            .count();
        let leaving: Vec<String> = leaving.into_iter().map(str::to_owned).collect();
        match api {
            ProviderApi::Asg => shrink_group(state, &request, &leaving, kept == 0).await?,
            _ => shrink_fleet(state, &request, api, template, &leaving, kept == 0).await?,
        }
    }
    Ok(())
}

async fn shrink_group(state: &AppState, request: &RequestRecord, leaving: &[String], empty: bool) -> Result<()> {
    let name = request.asg_name.as_deref().unwrap_or_default();
    if empty {
        state
            .autoscaling
            .delete_auto_scaling_group()
            .auto_scaling_group_name(name)
            .force_delete(true)
            .send()
            .await
            .map_err(|err| Error::aws(format!("deleting Auto Scaling group {name}"), err))?;
        tracing::info!(group = name, "empty Auto Scaling group deleted");
        return Ok(());
    }
    for chunk in leaving.chunks(MAX_DETACH_PER_CALL) {
        state
            .autoscaling
            .detach_instances()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(chunk.to_vec()))
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|err| {
                Error::aws(format!("detaching {} instance(s) from Auto Scaling group {name}", chunk.len()), err)
            })?;
    }
    tracing::info!(group = name, detached = leaving.len(), "Auto Scaling group shrunk");
    Ok(())
}

async fn shrink_fleet(
    state: &AppState,
    request: &RequestRecord,
    api: ProviderApi,
    template: Option<&Template>,
    leaving: &[String],
    empty: bool,
) -> Result<()> {
    let fleet_id = request.fleet_id.as_deref().unwrap_or_default();
    let ec2 = &state.ec2;
    match (api, empty) {
        (ProviderApi::SpotFleet, true) => {
            ec2.cancel_spot_fleet_requests()
                .spot_fleet_request_ids(fleet_id)
                .terminate_instances(false)
                .send()
                .await
                .map_err(|err| Error::aws(format!("cancelling Spot Fleet {fleet_id}"), err))?;
        }
        (_, true) => {
            ec2.delete_fleets()
                .fleet_ids(fleet_id)
                .terminate_instances(false)
                .send()
                .await
                .map_err(|err| Error::aws(format!("deleting EC2 fleet {fleet_id}"), err))?;
        }
        (_, false) if fleet_type(request, template) != Some(FleetType::Maintain) => return Ok(()),
        (_, false) => {
            let held = fleet_instances(ec2, api, fleet_id, template).await?;
            let target: u32 =
                held.instances.iter().filter(|(id, _)| !leaving.contains(id)).map(|(_, units)| units).sum();
            return set_fleet_target(ec2, api, fleet_id, target).await;
        }
    }
    tracing::info!(fleet = fleet_id, "empty fleet deleted");
    Ok(())
}

/// Sets a `maintain` fleet's target to `target` units without terminating anything.
async fn set_fleet_target(ec2: &aws_sdk_ec2::Client, api: ProviderApi, fleet_id: &str, target: u32) -> Result<()> {
    let target = i32::try_from(target).unwrap_or(i32::MAX);
    if api == ProviderApi::SpotFleet {
        ec2.modify_spot_fleet_request()
            .spot_fleet_request_id(fleet_id)
            .target_capacity(target)
            .excess_capacity_termination_policy(ExcessCapacityTerminationPolicy::NoTermination)
            .send()
            .await
            .map_err(|err| Error::aws(format!("shrinking Spot Fleet {fleet_id} to {target} unit(s)"), err))?;
    } else {
        ec2.modify_fleet()
            .fleet_id(fleet_id)
            .target_capacity_specification(
                TargetCapacitySpecificationRequest::builder().total_target_capacity(target).build(),
            )
            .excess_capacity_termination_policy(FleetExcessCapacityTerminationPolicy::NoTermination)
            .send()
            .await
            .map_err(|err| Error::aws(format!("shrinking EC2 fleet {fleet_id} to {target} unit(s)"), err))?;
    }
    tracing::info!(fleet = fleet_id, target, "fleet shrunk");
    Ok(())
}

/// A group or `maintain` fleet whose request gave up short of target stops at what it filled,
/// so it launches nothing the request would no longer record. (`request` fleets and Spot
/// Fleets stop by themselves at their ValidUntil.)
pub async fn stop_filling(
    state: &AppState,
    request: &RequestRecord,
    api: ProviderApi,
    template: Option<&Template>,
    filled: u32,
) -> Result<()> {
    match api {
        ProviderApi::Asg => {
            let name = request.asg_name.as_deref().unwrap_or_default();
            let size = i32::try_from(filled).unwrap_or(i32::MAX);
            state
                .autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(name)
                .max_size(size)
                .desired_capacity(size)
                .send()
                .await
                .map_err(|err| Error::aws(format!("stopping Auto Scaling group {name} at {size} unit(s)"), err))?;
            tracing::info!(group = name, size, "Auto Scaling group stopped short of target");
            Ok(())
        }
        ProviderApi::Ec2Fleet if fleet_type(request, template) == Some(FleetType::Maintain) => {
            set_fleet_target(&state.ec2, api, request.fleet_id.as_deref().unwrap_or_default(), filled).await
        }
        _ => Ok(()),
    }
}
