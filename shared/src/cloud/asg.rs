//! Auto Scaling groups: one group per request (`hostfactory-<request-id>`), on the shared
//! launch template, every weighted `vmTypes` as an override, MinSize 0 and Max/Desired = the
//! units asked. The group tags (propagated at launch) carry the request id. Every unfinished
//! group is read in one DescribeAutoScalingGroups call per 100; returned machines are detached,
//! an emptied group deleted, and a group given up on stopped at what it filled.

use std::collections::HashMap;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy, Tag,
};

use super::launch_template::{Memo, Used, is_gone, launching};
use super::pools::{on_demand_percent, weight};
use super::spec::LaunchSpec;
use super::{Found, Launched};
use crate::error::{Error, Result};
use crate::templates::{AllocationStrategy, Template};

/// DescribeAutoScalingGroups takes at most 100 names per call.
const MAX_GROUPS_PER_CALL: usize = 100;

/// DetachInstances takes at most 20 instance ids per call.
const MAX_DETACH_PER_CALL: usize = 20;

/// The group name of a request.
pub fn group_name(request_id: &str) -> String {
    format!("hostfactory-{request_id}")
}

/// Creates the request's group (CreateAutoScalingGroup) on the shared launch template.
pub(super) async fn launch(
    ec2: &aws_sdk_ec2::Client,
    memo: &Memo,
    autoscaling: &aws_sdk_autoscaling::Client,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    count: u32,
) -> Result<Launched> {
    launching(ec2, memo, spec, |id| group_on(autoscaling, template, spec, request_id, id, count)).await
}

/// The group on launch template `launch_template_id`, [`Used::Gone`] when Auto Scaling refuses
/// it as not found: AWS answers a `ValidationError` naming the launch template ("... with
/// template ID lt-... does not exist"), moto EC2's not-found code.
async fn group_on(
    autoscaling: &aws_sdk_autoscaling::Client,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    launch_template_id: String,
    count: u32,
) -> Result<Used<Launched>> {
    let name = group_name(request_id);
    let policy = mixed_instances_policy(template, &launch_template_id, count);
    let tags = group_tags(spec, &name);
    let size = i32::try_from(count).unwrap_or(i32::MAX);
    let created = autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .mixed_instances_policy(policy)
        .min_size(0)
        .max_size(size)
        .desired_capacity(size)
        .set_vpc_zone_identifier((!template.subnet_ids().is_empty()).then(|| template.subnet_ids().join(",")))
        .set_tags(Some(tags))
        .send()
        .await;
    if let Err(err) = created {
        let gone = refuses_launch_template(&err, &launch_template_id);
        let error = Error::aws(format!("creating Auto Scaling group {name} of {count} unit(s)"), err);
        return if gone { Ok(Used::Gone(error)) } else { Err(error) };
    }
    tracing::info!(group = %name, requested = count, "Auto Scaling group created");
    Ok(Used::Launched(Launched {
        asg_name: Some(name),
        launch_template_id: Some(launch_template_id),
        deferred: true,
        ..Launched::default()
    }))
}

/// Whether Auto Scaling refused launch template `id` as not found. AWS's `ValidationError` is
/// told from others by naming the id: a guess that costs, when wrong, one more lookup and the
/// same refusal.
fn refuses_launch_template(err: &impl ProvideErrorMetadata, id: &str) -> bool {
    is_gone(err.code()) || (err.code() == Some("ValidationError") && err.message().is_some_and(|m| m.contains(id)))
}

/// Every `vmTypes` type with its weight on the shared launch template, and the On-Demand/Spot
/// split of the template.
fn mixed_instances_policy(template: &Template, launch_template_id: &str, count: u32) -> MixedInstancesPolicy {
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
    let percent = on_demand_percent(template, count);
    MixedInstancesPolicy::builder()
        .launch_template(
            LaunchTemplate::builder()
                .launch_template_specification(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(launch_template_id)
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
        .build()
}

/// The request's tags on the group, propagated to every instance it launches.
fn group_tags(spec: &LaunchSpec, name: &str) -> Vec<Tag> {
    spec
        .request_tags
        .iter()
        .map(|tag| {
            Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .set_key(tag.key().map(str::to_owned))
                .set_value(tag.value().map(str::to_owned))
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

/// Auto Scaling's name of a Spot allocation strategy; it has no `diversified` (AWS's default
/// then applies).
fn spot_allocation_strategy(strategy: AllocationStrategy) -> Option<String> {
    let name = match strategy {
        AllocationStrategy::CapacityOptimized => "capacity-optimized",
        AllocationStrategy::CapacityOptimizedPrioritized | AllocationStrategy::Prioritized => {
            "capacity-optimized-prioritized"
        }
        AllocationStrategy::PriceCapacityOptimized => "price-capacity-optimized",
        AllocationStrategy::LowestPrice => "lowest-price",
        AllocationStrategy::Diversified => return None,
    };
    Some(name.to_owned())
}

/// What each group holds, in the order named: one DescribeAutoScalingGroups per 100 names. A
/// group AWS no longer lists, or is deleting, is gone.
pub(super) async fn instances(
    autoscaling: &aws_sdk_autoscaling::Client,
    groups: &[(&str, Option<&Template>)],
) -> Result<Vec<Found>> {
    let mut found = Vec::with_capacity(groups.len());
    for chunk in groups.chunks(MAX_GROUPS_PER_CALL) {
        let described = describe(autoscaling, chunk.iter().map(|(name, _)| (*name).to_owned()).collect()).await?;
        found.extend(chunk.iter().map(|(name, template)| match described.get(*name) {
            None => Found { instances: Vec::new(), gone: true },
            Some(group) => held(group, *template),
        }));
    }
    Ok(found)
}

async fn describe(
    autoscaling: &aws_sdk_autoscaling::Client,
    names: Vec<String>,
) -> Result<HashMap<String, AutoScalingGroup>> {
    let count = names.len();
    let mut described = HashMap::new();
    let mut pages = autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names))
        .max_records(i32::try_from(MAX_GROUPS_PER_CALL).unwrap_or(100))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Error::aws(format!("describing {count} Auto Scaling group(s)"), err))?;
        for group in page.auto_scaling_groups() {
            described.insert(group.auto_scaling_group_name().unwrap_or_default().to_owned(), group.clone());
        }
    }
    Ok(described)
}

/// The group's instances with their units: the weight the group gives, else the template's.
fn held(group: &AutoScalingGroup, template: Option<&Template>) -> Found {
    let instances = group
        .instances()
        .iter()
        .filter_map(|i| {
            let units = i
                .weighted_capacity()
                .and_then(|w| w.parse::<u32>().ok())
                .unwrap_or_else(|| weight(template, i.instance_type().unwrap_or_default()));
            Some((i.instance_id()?.to_owned(), units))
        })
        .collect();
    Found { instances, gone: group.status().is_some_and(|s| s.starts_with("Delete")) }
}

/// DetachInstances with ShouldDecrementDesiredCapacity (20 ids a call), or
/// DeleteAutoScalingGroup (ForceDelete) once empty.
pub(super) async fn shrink(
    autoscaling: &aws_sdk_autoscaling::Client,
    name: &str,
    leaving: &[String],
    empty: bool,
) -> Result<()> {
    if empty {
        autoscaling
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
        autoscaling
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

/// Stops the group at `filled` units (UpdateAutoScalingGroup Max/Desired), so it launches
/// nothing its request would no longer record.
pub(super) async fn stop(autoscaling: &aws_sdk_autoscaling::Client, name: &str, filled: u32) -> Result<()> {
    let size = i32::try_from(filled).unwrap_or(i32::MAX);
    autoscaling
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
