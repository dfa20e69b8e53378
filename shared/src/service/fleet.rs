//! Launching through EC2 Fleet: `instant` (one CreateFleet call answers with the instance ids)
//! or `request`/`maintain` (the fleet fills its target later), spread over every weighted
//! `vmTypes` × subnet pair.
//!
//! The fleet needs a launch template. One is made per distinct launch content and named after
//! its hash (`hostfactory-<hash>`), so requests of an unchanged template reuse it and an
//! edited template gets a new one without ever rewriting one that running fleets point at.

use std::collections::HashMap;

use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetType, InstanceType, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, SpotAllocationStrategy,
    SpotOptionsRequest, Tag, TagSpecification, TargetCapacitySpecificationRequest,
};
use aws_smithy_types::DateTime;
use sha2::{Digest, Sha256};

use super::launch::{LaunchSpec, Launched};
use crate::error::{Error, Result};
use crate::provision::LAUNCH_TEMPLATE_PREFIX;
use crate::provision::instances::Observed;
use crate::templates::{AllocationStrategy, FleetType as TemplateFleetType, PriceType, Template};

/// Launches `count` capacity units of `template` with one instant CreateFleet call. Returns
/// what started with the fleet id; the fleet's errors explain any shortfall.
pub async fn create_instant_fleet(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    count: u32,
) -> Result<Launched> {
    let launch_template_id = launch_template(ec2, spec).await?;
    let output = fleet_call(ec2, template, spec, &launch_template_id, count, FleetType::Instant)
        .send()
        .await
        .map_err(|err| Error::aws(format!("creating an instant EC2 fleet of {count} unit(s)"), err))?;
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
        let message = match output.errors().first() {
            Some(first) => {
                format!("{}: {}", first.error_code().unwrap_or("Unknown"), first.error_message().unwrap_or_default())
            }
            None => "no error reported".to_owned(),
        };
        Error::Aws {
            context: format!("EC2 Fleet filled {units} of {count} unit(s)"),
            source: Box::new(std::io::Error::other(message.clone())),
            message,
            throttled: false,
            // The instant fleet's answer is its outcome: what it did not launch, it never will.
            refused: true,
        }
    });
    tracing::info!(launched = instances.len(), requested = count, fleet = ?output.fleet_id(), "instant fleet created");
    Ok(Launched {
        instances,
        unit_of,
        error,
        fleet_id: output.fleet_id().map(str::to_owned),
        launch_template_id: Some(launch_template_id),
        ..Launched::default()
    })
}

/// Creates an EC2 Fleet of type `request` or `maintain` for `count` units. AWS answers with the
/// fleet id only: getRequestStatus finds the instances with DescribeFleetInstances.
pub async fn create_fleet(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    count: u32,
    fleet_type: TemplateFleetType,
) -> Result<Launched> {
    let kind = match fleet_type {
        TemplateFleetType::Maintain => FleetType::Maintain,
        TemplateFleetType::Request | TemplateFleetType::Instant => FleetType::Request,
    };
    let launch_template_id = launch_template(ec2, spec).await?;
    let call = fleet_call(ec2, template, spec, &launch_template_id, count, kind.clone());
    // A `request` fleet stops trying when the request gives up on it (`spotFleetRequestExpiry`),
    // so nothing it launches later goes unrecorded; a `maintain` fleet keeps maintaining.
    let call = match kind {
        FleetType::Request => call.valid_until(valid_until(template)),
        _ => call,
    };
    let output =
        call.send().await.map_err(|err| Error::aws(format!("creating a {kind} EC2 fleet of {count} unit(s)"), err))?;
    let fleet_id = output
        .fleet_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::Config(format!("EC2 answered a {kind} CreateFleet without a fleet id")))?;
    tracing::info!(fleet = %fleet_id, requested = count, %kind, "EC2 fleet created");
    Ok(Launched {
        fleet_id: Some(fleet_id),
        launch_template_id: Some(launch_template_id),
        deferred: true,
        ..Launched::default()
    })
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
    let spot_options = template.allocation_strategy.map(|strategy| {
        let strategy = match strategy {
            AllocationStrategy::CapacityOptimized => SpotAllocationStrategy::CapacityOptimized,
            AllocationStrategy::CapacityOptimizedPrioritized => SpotAllocationStrategy::CapacityOptimizedPrioritized,
            AllocationStrategy::PriceCapacityOptimized => SpotAllocationStrategy::PriceCapacityOptimized,
            AllocationStrategy::Diversified => SpotAllocationStrategy::Diversified,
            AllocationStrategy::LowestPrice => SpotAllocationStrategy::LowestPrice,
        };
        SpotOptionsRequest::builder().allocation_strategy(strategy).build()
    });
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

/// When a fleet stops trying: now + `spotFleetRequestExpiry` minutes.
pub(super) fn valid_until(template: &Template) -> DateTime {
    let expiry_secs = template.spot_fleet_request_expiry.max(1).saturating_mul(60);
    DateTime::from_secs(crate::store::now().saturating_add(expiry_secs))
}

/// Every (instance type, weight, subnet) the template may launch, subnets in the order written.
pub(super) fn weighted_pools(template: &Template) -> Vec<(String, i64, Option<String>)> {
    let subnets: Vec<Option<String>> = match template.subnet_ids() {
        [] => vec![None],
        ids => ids.iter().cloned().map(Some).collect(),
    };
    template
        .vm_types()
        .into_iter()
        .flat_map(|(instance_type, weight)| {
            subnets.clone().into_iter().map(move |subnet| (instance_type.clone(), weight, subnet))
        })
        .collect()
}

/// `count` units as (On-Demand, Spot): all On-Demand for `ondemand`, else `percentOnDemand`
/// percent On-Demand (rounded down) and the rest Spot.
pub(super) fn split_capacity(template: &Template, count: u32) -> (u32, u32) {
    let on_demand = match template.price_type {
        PriceType::Ondemand => count,
        PriceType::Spot | PriceType::Heterogeneous => {
            let percent = u64::try_from(template.percent_on_demand.clamp(0, 100)).unwrap_or(0);
            u32::try_from(u64::from(count) * percent / 100).unwrap_or(count)
        }
    };
    (on_demand, count - on_demand)
}

/// The id of the launch template holding `spec`'s launch data, created on first use and tagged
/// as ours (the reconciler deletes the ones no request uses any more).
pub(super) async fn launch_template(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec) -> Result<String> {
    let data = launch_data(spec);
    let hash = hex::encode(Sha256::digest(format!("{data:?}")));
    let name = format!("{LAUNCH_TEMPLATE_PREFIX}{}", &hash[..16]);
    let found = ec2
        .describe_launch_templates()
        .filters(Filter::builder().name("launch-template-name").values(&name).build())
        .send()
        .await
        .map_err(|err| Error::aws(format!("looking up launch template {name}"), err))?;
    if let Some(id) = found.launch_templates().first().and_then(|t| t.launch_template_id()) {
        return Ok(id.to_owned());
    }
    let created = ec2
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(data)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(spec.template_tags.iter().filter(|t| is_ownership(t)).cloned().collect()))
                .build(),
        )
        .send()
        .await
        .map_err(|err| Error::aws(format!("creating launch template {name}"), err))?;
    created
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_owned)
        .ok_or_else(|| Error::Config(format!("launch template {name} was created without an id")))
}

/// Tags naming us (managed, provider, template), not the template's own `instanceTags`.
fn is_ownership(tag: &Tag) -> bool {
    tag.key().is_some_and(|k| k.starts_with("hostfactory:"))
}

/// What the launch template holds: everything but the instance type, subnet and the request id
/// (overrides and fleet tags); its instances and volumes carry the template's tags.
fn launch_data(spec: &LaunchSpec) -> RequestLaunchTemplateData {
    let profile = spec.instance_profile.as_ref().map(|p| {
        LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
            .set_arn(p.arn().map(str::to_owned))
            .set_name(p.name().map(str::to_owned))
            .build()
    });
    let root = spec.root_volume.as_ref().map(|m| {
        let ebs = m.ebs().map(|e| {
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_volume_size(e.volume_size())
                .set_volume_type(e.volume_type().cloned())
                .set_iops(e.iops())
                .delete_on_termination(true)
                .build()
        });
        LaunchTemplateBlockDeviceMappingRequest::builder()
            .set_device_name(m.device_name().map(str::to_owned))
            .set_ebs(ebs)
            .build()
    });
    RequestLaunchTemplateData::builder()
        .image_id(&spec.image_id)
        .set_key_name(spec.key_name.clone())
        .set_security_group_ids((!spec.security_group_ids.is_empty()).then(|| spec.security_group_ids.clone()))
        .set_iam_instance_profile(profile)
        .set_block_device_mappings(root.map(|r| vec![r]))
        .set_user_data(spec.user_data.clone())
        .set_tag_specifications(Some(
            [ResourceType::Instance, ResourceType::Volume]
                .into_iter()
                .map(|kind| {
                    LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(kind)
                        .set_tags(Some(spec.template_tags.clone()))
                        .build()
                })
                .collect(),
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::check_template;

    fn template(extra: serde_json::Value) -> Template {
        let mut entry = json!({"templateId": "T1", "maxNumber": 5, "imageId": "ami-1", "vmType": "t3.micro",
            "subnetId": ["subnet-1", "subnet-2"]});
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check_template(entry).unwrap()
    }

    #[test]
    fn capacity_splits_on_demand_by_percent_rounding_down() {
        assert_eq!(split_capacity(&template(json!({})), 5), (5, 0), "ondemand is all On-Demand");
        assert_eq!(split_capacity(&template(json!({"priceType": "spot"})), 5), (0, 5));
        assert_eq!(split_capacity(&template(json!({"priceType": "spot", "percentOnDemand": 50})), 5), (2, 3));
        assert_eq!(split_capacity(&template(json!({"priceType": "spot", "percentOnDemand": 100})), 5), (5, 0));
    }

    #[test]
    fn every_weighted_type_goes_to_every_subnet() {
        let pools = weighted_pools(&template(json!({"vmTypes": {"m5.large": 1, "m5.xlarge": 2}})));
        let expected = [
            ("m5.large", 1, "subnet-1"),
            ("m5.large", 1, "subnet-2"),
            ("m5.xlarge", 2, "subnet-1"),
            ("m5.xlarge", 2, "subnet-2"),
        ];
        let pools: Vec<(&str, i64, &str)> =
            pools.iter().map(|(t, w, s)| (t.as_str(), *w, s.as_deref().unwrap_or_default())).collect();
        assert_eq!(pools, expected);
    }
}
