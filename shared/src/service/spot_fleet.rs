//! Launching through Spot Fleet (RequestSpotFleet): one launch specification per weighted
//! `vmTypes` × subnet pair, each tagging its instances with the request's tags (a Spot Fleet
//! request itself can only tag the spot-fleet-request). The fleet fills its target after the
//! call and gives up at `spotFleetRequestExpiry`; getRequestStatus discovers its instances.

use aws_sdk_ec2::types::{
    AllocationStrategy as Ec2AllocationStrategy, FleetType, GroupIdentifier, InstanceType, ResourceType,
    SpotFleetLaunchSpecification, SpotFleetRequestConfigData, SpotFleetTagSpecification,
};

use super::fleet::{split_capacity, valid_until, weighted_pools};
use super::launch::{LaunchSpec, Launched, run_on_demand};
use crate::error::{Error, Result};
use crate::templates::{AllocationStrategy, FleetType as TemplateFleetType, Template};

pub async fn request_spot_fleet(
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
    let instance_tags = SpotFleetTagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(spec.request_tags.clone()))
        .build();
    let groups: Vec<GroupIdentifier> =
        spec.security_group_ids.iter().map(|id| GroupIdentifier::builder().group_id(id).build()).collect();
    let launch_specs: Vec<SpotFleetLaunchSpecification> = weighted_pools(template)
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
        .collect();
    // The `percentOnDemand` share is launched On-Demand at once; the fleet asks Spot for the rest.
    let (on_demand, spot) = split_capacity(template, count);
    let mut launched = match on_demand {
        0 => Launched::default(),
        n => run_on_demand(ec2, template, spec, request_id, n).await,
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
        Ok(None) => launched.error = Some(Error::Config("EC2 answered RequestSpotFleet without a request id".into())),
        Err(err) => launched.error = Some(Error::aws(format!("requesting a Spot Fleet of {spot} unit(s)"), err)),
    }
    Ok(launched)
}

fn allocation_strategy(strategy: AllocationStrategy) -> Ec2AllocationStrategy {
    match strategy {
        AllocationStrategy::CapacityOptimized => Ec2AllocationStrategy::CapacityOptimized,
        AllocationStrategy::CapacityOptimizedPrioritized => Ec2AllocationStrategy::CapacityOptimizedPrioritized,
        AllocationStrategy::PriceCapacityOptimized => Ec2AllocationStrategy::PriceCapacityOptimized,
        AllocationStrategy::Diversified => Ec2AllocationStrategy::Diversified,
        AllocationStrategy::LowestPrice => Ec2AllocationStrategy::LowestPrice,
    }
}
