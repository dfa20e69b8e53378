//! Spot Fleet (RequestSpotFleet): one launch specification per weighted `vmTypes` × subnet
//! pair, each tagging its instances with the request's tags (a Spot Fleet request itself can
//! only tag the spot-fleet-request); finding its instances, whether AWS gave up on it, and
//! shrinking it.

use std::collections::HashSet;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AllocationStrategy as Ec2AllocationStrategy, BatchState, ExcessCapacityTerminationPolicy, FleetType,
    GroupIdentifier, InstanceType, ResourceType, SpotFleetLaunchSpecification, SpotFleetRequestConfigData,
    SpotFleetTagSpecification,
};

use super::instances::{Page, collect_pages};
use super::pools::{split_capacity, valid_until, weighted_pools};
use super::spec::LaunchSpec;
use super::{Found, Launched, run_instances};
use crate::error::{Error, Result};
use crate::templates::{AllocationStrategy, FleetType as TemplateFleetType, Template};

/// Launches the `percentOnDemand` share at once with RunInstances and asks a Spot Fleet for the
/// rest; the fleet fills its target after the call and gives up at `spotFleetRequestExpiry`.
pub(super) async fn launch(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    count: u32,
    fleet_type: Option<TemplateFleetType>,
) -> Result<Launched> {
    let role = template.fleet_role.clone().ok_or_else(|| {
        Error::invalid("fleetRole", format!("is required by SpotFleet template '{}'", template.template_id))
    })?;
    let launch_specs = launch_specifications(template, spec);
    // The `percentOnDemand` share is launched On-Demand at once; the fleet asks Spot for the rest.
    let (on_demand, spot) = split_capacity(template, count);
    let mut launched = match on_demand {
        0 => Launched::default(),
        n => run_instances::launch_on_demand(ec2, template, spec, request_id, n).await,
    };
    if launched.error.is_some() || spot == 0 {
        return Ok(launched);
    }
    let kind = match fleet_type {
        Some(TemplateFleetType::Maintain) => FleetType::Maintain,
        _ => FleetType::Request,
    };
    let config = SpotFleetRequestConfigData::builder()
        .iam_fleet_role(role)
        .target_capacity(i32::try_from(spot).unwrap_or(i32::MAX))
        // Spot Fleet's own default, written out.
        .allocation_strategy(
            template.allocation_strategy.map_or(Ec2AllocationStrategy::LowestPrice, allocation_strategy),
        )
        .set_spot_price(template.max_spot_price.map(|price| price.to_string()))
        .valid_until(valid_until(template))
        .r#type(kind.clone())
        .set_launch_specifications(Some(launch_specs))
        .set_tag_specifications(Some(spec.tag_specifications(&[ResourceType::SpotFleetRequest])))
        .build();
    let requested = ec2.request_spot_fleet().spot_fleet_request_config(config).send().await;
    match requested.map(|out| out.spot_fleet_request_id().map(str::to_owned)) {
        Ok(Some(fleet_id)) => {
            tracing::info!(fleet = %fleet_id, spot, on_demand, %kind, "spot fleet requested");
            launched.fleet_id = Some(fleet_id);
            launched.deferred = true;
        }
        Ok(None) => {
            let context = format!("requesting a Spot Fleet of {spot} unit(s)");
            launched.error = Some(Error::upstream(context, "EC2 answered without a request id"));
        }
        Err(err) => launched.error = Some(Error::aws(format!("requesting a Spot Fleet of {spot} unit(s)"), err)),
    }
    Ok(launched)
}

/// One launch specification per weighted (type, subnet) pool, each tagging its instances.
fn launch_specifications(template: &Template, spec: &LaunchSpec) -> Vec<SpotFleetLaunchSpecification> {
    let instance_tags = SpotFleetTagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(spec.request_tags.clone()))
        .build();
    let groups: Vec<GroupIdentifier> =
        spec.security_group_ids.iter().map(|id| GroupIdentifier::builder().group_id(id).build()).collect();
    weighted_pools(template)
        .into_iter()
        .map(|(instance_type, weight, subnet)| {
            SpotFleetLaunchSpecification::builder()
                .image_id(&spec.image_id)
                .instance_type(InstanceType::from(instance_type.as_str()))
                .set_subnet_id(subnet)
                .weighted_capacity(weight as f64)
                .set_security_groups((!groups.is_empty()).then(|| groups.clone()))
                .set_key_name(spec.key_name.clone())
                .set_iam_instance_profile(spec.instance_profile.clone())
                .set_block_device_mappings(spec.root_volume.clone().map(|m| vec![m]))
                .set_user_data(spec.user_data.clone())
                .tag_specifications(instance_tags.clone())
                .build()
        })
        .collect()
}

fn allocation_strategy(strategy: AllocationStrategy) -> Ec2AllocationStrategy {
    match strategy {
        AllocationStrategy::CapacityOptimized => Ec2AllocationStrategy::CapacityOptimized,
        AllocationStrategy::CapacityOptimizedPrioritized | AllocationStrategy::Prioritized => {
            Ec2AllocationStrategy::CapacityOptimizedPrioritized
        }
        AllocationStrategy::PriceCapacityOptimized => Ec2AllocationStrategy::PriceCapacityOptimized,
        AllocationStrategy::Diversified => Ec2AllocationStrategy::Diversified,
        AllocationStrategy::LowestPrice => Ec2AllocationStrategy::LowestPrice,
    }
}

/// What the fleet holds: its active instances, one DescribeSpotFleetInstances per page; a fleet
/// EC2 does not know is gone.
pub(super) async fn instances(ec2: &aws_sdk_ec2::Client, fleet_id: &str, template: Option<&Template>) -> Result<Found> {
    collect_pages(|token| async move {
        let out = ec2
            .describe_spot_fleet_instances()
            .spot_fleet_request_id(fleet_id)
            .set_next_token(token)
            .send()
            .await
            .map_err(|err| (err.code().map(str::to_owned), Error::aws(format!("describing Spot Fleet {fleet_id}"), err)))?;
        Ok(Page::of(out.active_instances(), out.next_token(), template))
    })
    .await
}

/// The fleets among `fleet_ids` EC2 cancelled or failed, in one DescribeSpotFleetRequests call.
pub(super) async fn ended(ec2: &aws_sdk_ec2::Client, fleet_ids: Vec<String>) -> Result<HashSet<String>> {
    let count = fleet_ids.len();
    let out = ec2
        .describe_spot_fleet_requests()
        .set_spot_fleet_request_ids(Some(fleet_ids))
        .send()
        .await
        .map_err(|err| Error::aws(format!("describing {count} Spot Fleet request(s)"), err))?;
    let over = |state: Option<&BatchState>| {
        matches!(
            state,
            Some(
                BatchState::Cancelled
                    | BatchState::CancelledRunning
                    | BatchState::CancelledTerminatingInstances
                    | BatchState::Failed
            )
        )
    };
    let configs = out.spot_fleet_request_configs().iter();
    Ok(configs
        .filter(|c| over(c.spot_fleet_request_state()))
        .filter_map(|c| c.spot_fleet_request_id())
        .map(str::to_owned)
        .collect())
}

/// Cancels the emptied fleet (CancelSpotFleetRequests, TerminateInstances=false), or sets a
/// `maintain` fleet's target to the units it keeps; a `request` fleet never replaces.
pub(super) async fn shrink(
    ec2: &aws_sdk_ec2::Client,
    fleet_id: &str,
    kind: TemplateFleetType,
    template: Option<&Template>,
    leaving: &[String],
    empty: bool,
) -> Result<()> {
    if empty {
        ec2.cancel_spot_fleet_requests()
            .spot_fleet_request_ids(fleet_id)
            .terminate_instances(false)
            .send()
            .await
            .map_err(|err| Error::aws(format!("cancelling Spot Fleet {fleet_id}"), err))?;
        tracing::info!(fleet = fleet_id, "empty fleet deleted");
        return Ok(());
    }
    if kind != TemplateFleetType::Maintain {
        return Ok(());
    }
    let held = instances(ec2, fleet_id, template).await?;
    let target = i32::try_from(held.units_without(leaving)).unwrap_or(i32::MAX);
    ec2.modify_spot_fleet_request()
        .spot_fleet_request_id(fleet_id)
        .target_capacity(target)
        .excess_capacity_termination_policy(ExcessCapacityTerminationPolicy::NoTermination)
        .send()
        .await
        .map_err(|err| Error::aws(format!("shrinking Spot Fleet {fleet_id} to {target} unit(s)"), err))?;
    tracing::info!(fleet = fleet_id, target, "fleet shrunk");
    Ok(())
}
