//! Launching through an Auto Scaling group: one group per request (`hostfactory-<request-id>`),
//! on the shared launch template, every weighted `vmTypes` as an override, MinSize 0 and
//! Max/Desired = the units asked. The group tags (propagated at launch) carry the request id.
//! getRequestStatus reads every unfinished group in one DescribeAutoScalingGroups call.

use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification, MixedInstancesPolicy,
    Tag,
};

use super::fleet::{launch_template, split_capacity};
use super::launch::{LaunchSpec, Launched};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::templates::{AllocationStrategy, Template};

/// The group name of a request.
pub fn group_name(request_id: &str) -> String {
    format!("hostfactory-{request_id}")
}

pub async fn create_group(
    state: &AppState,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    count: u32,
) -> Result<Launched> {
    let launch_template_id = launch_template(&state.ec2, spec).await?;
    let name = group_name(request_id);
    let overrides: Vec<LaunchTemplateOverrides> = template
        .vm_types()
        .into_iter()
        .map(|(instance_type, weight)| {
            LaunchTemplateOverrides::builder()
                .instance_type(instance_type)
                .weighted_capacity(weight.to_string())
                .build()
        })
        .collect();
    let (on_demand, _) = split_capacity(template, count);
    let percent =
        if count == 0 { 100 } else { i32::try_from(u64::from(on_demand) * 100 / u64::from(count)).unwrap_or(100) };
    let policy = MixedInstancesPolicy::builder()
        .launch_template(
            LaunchTemplate::builder()
                .launch_template_specification(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(&launch_template_id)
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(overrides))
                .build(),
        )
        .instances_distribution(
            InstancesDistribution::builder()
                .on_demand_base_capacity(0)
                .on_demand_percentage_above_base_capacity(percent)
                .set_spot_max_price(template.max_spot_price.map(|price| price.to_string()))
                .set_spot_allocation_strategy(template.allocation_strategy.and_then(spot_allocation_strategy))
                .build(),
        )
        .build();
    let tags: Vec<Tag> = spec
        .request_tags
        .iter()
        .map(|tag| {
            Tag::builder()
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .set_key(tag.key().map(str::to_owned))
                .set_value(tag.value().map(str::to_owned))
                .propagate_at_launch(true)
                .build()
        })
        .collect();
    let size = i32::try_from(count).unwrap_or(i32::MAX);
    state
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .mixed_instances_policy(policy)
        .min_size(0)
        .max_size(size)
        .desired_capacity(size)
        .set_vpc_zone_identifier((!template.subnet_ids().is_empty()).then(|| template.subnet_ids().join(",")))
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|err| Error::aws(format!("creating Auto Scaling group {name} of {count} unit(s)"), err))?;
    tracing::info!(group = %name, requested = count, "Auto Scaling group created");
    Ok(Launched {
        asg_name: Some(name),
        launch_template_id: Some(launch_template_id),
        deferred: true,
        ..Launched::default()
    })
}

/// Auto Scaling's name of a Spot allocation strategy; it has no `diversified` (AWS's default
/// then applies).
fn spot_allocation_strategy(strategy: AllocationStrategy) -> Option<String> {
    let name = match strategy {
        AllocationStrategy::CapacityOptimized => "capacity-optimized",
        AllocationStrategy::CapacityOptimizedPrioritized => "capacity-optimized-prioritized",
        AllocationStrategy::PriceCapacityOptimized => "price-capacity-optimized",
        AllocationStrategy::LowestPrice => "lowest-price",
        AllocationStrategy::Diversified => return None,
    };
    Some(name.to_owned())
}
