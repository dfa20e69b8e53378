//! EC2 Fleet: `instant` (one CreateFleet call answers with the instance ids) or
//! `request`/`maintain` (the fleet fills its target later), spread over every weighted
//! `vmTypes` × subnet pair on the shared launch template; finding a filling fleet's instances,
//! whether AWS gave up on it, and shrinking or stopping it.

use std::collections::{HashMap, HashSet};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetExcessCapacityTerminationPolicy, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest, FleetStateCode, FleetType,
    InstanceType, ResourceType, SpotAllocationStrategy, SpotOptionsRequest, TargetCapacitySpecificationRequest,
};

use super::instances::{Page, collect_pages};
use super::pools::{split_capacity, valid_until, weighted_pools};
use super::spec::LaunchSpec;
use super::launch_template::{Memo, Used, is_gone, launching};
use super::{Found, Launched, Observed};
use crate::error::{Error, Result};
use crate::templates::{AllocationStrategy, FleetType as TemplateFleetType, Template};

/// Launches `count` capacity units of `template` with one instant CreateFleet call. Returns
/// what started with the fleet id; the fleet's errors explain any shortfall.
pub(super) async fn launch_instant(
    ec2: &aws_sdk_ec2::Client,
    memo: &Memo,
    template: &Template,
    spec: &LaunchSpec,
    count: u32,
) -> Result<Launched> {
    launching(ec2, memo, spec, |id| instant_on(ec2, template, spec, id, count)).await
}

/// The instant fleet on launch template `launch_template_id`. When EC2 refuses the launch
/// template as not found, as the call's answer or as the errors of a fleet that launched
/// nothing, it is [`Used::Gone`].
async fn instant_on(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    launch_template_id: String,
    count: u32,
) -> Result<Used<Launched>> {
    let context = || format!("creating an instant EC2 fleet of {count} unit(s)");
    let output = match fleet_call(ec2, template, spec, &launch_template_id, count, FleetType::Instant).send().await {
        Ok(output) => output,
        Err(err) if is_gone(err.code()) => return Ok(Used::Gone(Error::aws(context(), err))),
        Err(err) => return Err(Error::aws(context(), err)),
    };
    let first_error = output.errors().first().map(|first| {
        (first.error_code(), format!("{}: {}", first.error_code().unwrap_or("Unknown"), first.error_message().unwrap_or_default()))
    });
    if output.instances().is_empty()
        && let Some((code, message)) = &first_error
        && is_gone(*code)
    {
        return Ok(Used::Gone(Error::upstream(context(), message.clone())));
    }
    let mut unit_of = HashMap::new();
    for launched in output.instances() {
        let weight = launched
            .launch_template_and_overrides()
            .and_then(|l| l.overrides())
            .and_then(|o| o.weighted_capacity())
            .unwrap_or(1.0);
        for id in launched.instance_ids() {
            unit_of.insert(id.clone(), (weight.ceil() as u32).max(1));
        }
    }
    let instances: Vec<Observed> = unit_of.keys().map(|id| Observed::launching(id)).collect();
    // Weighted fleets may overshoot the target (spec §3.1: maxNumber counts units).
    let units: u32 = unit_of.values().sum();
    let error = (units < count).then(|| {
        let message = first_error.map_or_else(|| "no error reported".to_owned(), |(_, message)| message);
        Error::upstream(format!("EC2 Fleet filled {units} of {count} unit(s)"), message)
    });
    tracing::info!(launched = instances.len(), requested = count, fleet = ?output.fleet_id(), "instant fleet created");
    Ok(Used::Launched(Launched {
        instances,
        unit_of,
        error,
        fleet_id: output.fleet_id().map(str::to_owned),
        launch_template_id: Some(launch_template_id),
        refused: super::placement::refused_by_fleet(output.errors()),
        succeeded: super::placement::started_by_fleet(output.instances()),
        ..Launched::default()
    }))
}

/// Creates an EC2 Fleet of type `request` or `maintain` for `count` units. AWS answers with the
/// fleet id only: getRequestStatus finds the instances with DescribeFleetInstances.
pub(super) async fn launch_filling(
    ec2: &aws_sdk_ec2::Client,
    memo: &Memo,
    template: &Template,
    spec: &LaunchSpec,
    count: u32,
    fleet_type: TemplateFleetType,
) -> Result<Launched> {
    let kind = match fleet_type {
        TemplateFleetType::Maintain => FleetType::Maintain,
        TemplateFleetType::Request | TemplateFleetType::Instant => FleetType::Request,
    };
    launching(ec2, memo, spec, |id| filling_on(ec2, template, spec, id, count, kind.clone())).await
}

/// The `request` or `maintain` fleet on launch template `launch_template_id` ([`Used::Gone`]
/// when EC2 refuses it as not found).
async fn filling_on(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    launch_template_id: String,
    count: u32,
    kind: FleetType,
) -> Result<Used<Launched>> {
    let call = fleet_call(ec2, template, spec, &launch_template_id, count, kind.clone());
    // A `request` fleet stops trying when the request gives up on it (`spotFleetRequestExpiry`),
    // so nothing it launches later goes unrecorded; a `maintain` fleet keeps maintaining.
    let call = match kind {
        FleetType::Request => call.valid_until(valid_until(template)),
        _ => call,
    };
    let context = || format!("creating a {kind} EC2 fleet of {count} unit(s)");
    let output = match call.send().await {
        Ok(output) => output,
        Err(err) if is_gone(err.code()) => return Ok(Used::Gone(Error::aws(context(), err))),
        Err(err) => return Err(Error::aws(context(), err)),
    };
    let fleet_id = output
        .fleet_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::upstream(format!("creating a {kind} EC2 fleet"), "EC2 answered without a fleet id"))?;
    tracing::info!(fleet = %fleet_id, requested = count, %kind, "EC2 fleet created");
    Ok(Used::Launched(Launched {
        fleet_id: Some(fleet_id),
        launch_template_id: Some(launch_template_id),
        deferred: true,
        ..Launched::default()
    }))
}

/// The CreateFleet call for `count` units: every weighted `vmTypes` × subnet pair as an
/// override, the On-Demand share per `percentOnDemand`, the request's tags on the fleet (and,
/// for instant fleets, on the instances; `request`/`maintain` fleets cannot tag instances, so
/// theirs come from the launch template and the request id is added when they are found).
fn fleet_call(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    launch_template_id: &str,
    count: u32,
    kind: FleetType,
) -> aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder {
    let overrides: Vec<FleetLaunchTemplateOverridesRequest> = weighted_pools(template)
        .into_iter()
        .map(|(instance_type, weight, subnet)| {
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(InstanceType::from(instance_type.as_str()))
                .set_subnet_id(subnet)
                .weighted_capacity(weight as f64)
                .set_max_price(template.max_spot_price.map(|price| price.to_string()))
                .build()
        })
        .collect();
    let spot_options = template.allocation_strategy.map(spot_options);
    let (on_demand, spot) = split_capacity(template, count);
    let capacity_type = if spot == 0 { DefaultTargetCapacityType::OnDemand } else { DefaultTargetCapacityType::Spot };
    let as_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let resources: &[ResourceType] = if kind == FleetType::Instant {
        &[ResourceType::Fleet, ResourceType::Instance]
    } else {
        &[ResourceType::Fleet]
    };
    ec2.create_fleet()
        .r#type(kind)
        .launch_template_configs(
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_id(launch_template_id)
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(overrides))
                .build(),
        )
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(as_i32(count))
                .on_demand_target_capacity(as_i32(on_demand))
                .spot_target_capacity(as_i32(spot))
                .default_target_capacity_type(capacity_type)
                .build(),
        )
        .set_spot_options(spot_options)
        .set_tag_specifications(Some(spec.tag_specifications(resources)))
}

/// EC2 Fleet's Spot options for the template's allocation strategy.
fn spot_options(strategy: AllocationStrategy) -> SpotOptionsRequest {
    let strategy = match strategy {
        AllocationStrategy::CapacityOptimized => SpotAllocationStrategy::CapacityOptimized,
        AllocationStrategy::CapacityOptimizedPrioritized | AllocationStrategy::Prioritized => {
            SpotAllocationStrategy::CapacityOptimizedPrioritized
        }
        AllocationStrategy::PriceCapacityOptimized => SpotAllocationStrategy::PriceCapacityOptimized,
        AllocationStrategy::Diversified => SpotAllocationStrategy::Diversified,
        AllocationStrategy::LowestPrice => SpotAllocationStrategy::LowestPrice,
    };
    SpotOptionsRequest::builder().allocation_strategy(strategy).build()
}

/// What the fleet holds: its active instances, one DescribeFleetInstances per page; a fleet EC2
/// does not know is gone.
pub(super) async fn instances(ec2: &aws_sdk_ec2::Client, fleet_id: &str, template: Option<&Template>) -> Result<Found> {
    collect_pages(|token| async move {
        let out = ec2.describe_fleet_instances().fleet_id(fleet_id).set_next_token(token).send().await.map_err(|err| {
            (err.code().map(str::to_owned), Error::aws(format!("describing EC2 fleet {fleet_id}"), err))
        })?;
        Ok(Page::of(out.active_instances(), out.next_token(), template))
    })
    .await
}

/// The fleets among `fleet_ids` EC2 deleted or failed, in one DescribeFleets call.
pub(super) async fn ended(ec2: &aws_sdk_ec2::Client, fleet_ids: Vec<String>) -> Result<HashSet<String>> {
    let count = fleet_ids.len();
    let out = ec2
        .describe_fleets()
        .set_fleet_ids(Some(fleet_ids))
        .send()
        .await
        .map_err(|err| Error::aws(format!("describing {count} EC2 fleet(s)"), err))?;
    let over = |state: Option<&FleetStateCode>| {
        matches!(
            state,
            Some(
                FleetStateCode::Deleted
                    | FleetStateCode::DeletedRunning
                    | FleetStateCode::DeletedTerminatingInstances
                    | FleetStateCode::Failed
            )
        )
    };
    Ok(out.fleets().iter().filter(|f| over(f.fleet_state())).filter_map(|f| f.fleet_id()).map(str::to_owned).collect())
}

/// Deletes the emptied fleet (DeleteFleets, TerminateInstances=false), or sets a `maintain`
/// fleet's target to the units it keeps; a `request` fleet never replaces, so is left alone.
pub(super) async fn shrink(
    ec2: &aws_sdk_ec2::Client,
    fleet_id: &str,
    kind: TemplateFleetType,
    template: Option<&Template>,
    leaving: &[String],
    empty: bool,
) -> Result<()> {
    if empty {
        ec2.delete_fleets()
            .fleet_ids(fleet_id)
            .terminate_instances(false)
            .send()
            .await
            .map_err(|err| Error::aws(format!("deleting EC2 fleet {fleet_id}"), err))?;
        tracing::info!(fleet = fleet_id, "empty fleet deleted");
        return Ok(());
    }
    if kind != TemplateFleetType::Maintain {
        return Ok(());
    }
    let held = instances(ec2, fleet_id, template).await?;
    set_target(ec2, fleet_id, held.units_without(leaving)).await
}

/// Sets a `maintain` fleet's target to `target` units without terminating anything.
pub(super) async fn set_target(ec2: &aws_sdk_ec2::Client, fleet_id: &str, target: u32) -> Result<()> {
    let target = i32::try_from(target).unwrap_or(i32::MAX);
    ec2.modify_fleet()
        .fleet_id(fleet_id)
        .target_capacity_specification(TargetCapacitySpecificationRequest::builder().total_target_capacity(target).build())
        .excess_capacity_termination_policy(FleetExcessCapacityTerminationPolicy::NoTermination)
        .send()
        .await
        .map_err(|err| Error::aws(format!("shrinking EC2 fleet {fleet_id} to {target} unit(s)"), err))?;
    tracing::info!(fleet = fleet_id, target, "fleet shrunk");
    Ok(())
}
