//! Launching through EC2 Fleet of type `instant`: one CreateFleet call answers with the
//! instance ids, spread over every weighted `vmTypes` × subnet pair.
//!
//! The fleet needs a launch template. One is made per distinct launch content and named after
//! its hash (`hostfactory-<hash>`), so requests of an unchanged template reuse it and an
//! edited template gets a new one without ever rewriting one that running fleets point at.

use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetType, InstanceType, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateIamInstanceProfileSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, TagSpecification, TargetCapacitySpecificationRequest,
};
use sha2::{Digest, Sha256};

use super::launch::{LaunchSpec, Launched};
use crate::error::{Error, Result};
use crate::provision::instances::Observed;
use crate::templates::{PriceType, Template};

/// Launches `count` capacity units of `template` with one instant CreateFleet call. Returns
/// the fleet id with what started; the fleet's errors explain any shortfall.
pub async fn create_instant_fleet(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    count: u32,
) -> Result<(Option<String>, Launched)> {
    let launch_template_id = launch_template(ec2, spec).await?;
    let overrides: Vec<FleetLaunchTemplateOverridesRequest> = template
        .vm_types()
        .iter()
        .flat_map(|(instance_type, weight)| {
            let subnets: Vec<Option<String>> = match template.subnet_ids() {
                [] => vec![None],
                ids => ids.iter().cloned().map(Some).collect(),
            };
            subnets.into_iter().map(move |subnet| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::from(instance_type.as_str()))
                    .set_subnet_id(subnet)
                    .weighted_capacity(*weight as f64)
                    .build()
            })
        })
        .collect();
    let capacity_type = match template.price_type {
        PriceType::Ondemand => DefaultTargetCapacityType::OnDemand,
        PriceType::Spot | PriceType::Heterogeneous => DefaultTargetCapacityType::Spot,
    };
    let total = i32::try_from(count).unwrap_or(i32::MAX);
    let output = ec2
        .create_fleet()
        .r#type(FleetType::Instant)
        .launch_template_configs(
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_id(&launch_template_id)
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(overrides))
                .build(),
        )
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(total)
                .default_target_capacity_type(capacity_type)
                .build(),
        )
        .set_tag_specifications(Some(spec.fleet_tags()))
        .send()
        .await
        .map_err(|err| Error::aws(format!("creating an instant EC2 fleet of {count} unit(s)"), err))?;

    let instances: Vec<Observed> = output
        .instances()
        .iter()
        .flat_map(|launched| launched.instance_ids().iter())
        .map(|id| Observed::launching(id))
        .collect();
    let units: f64 = output
        .instances()
        .iter()
        .map(|launched| {
            let weight = launched
                .launch_template_and_overrides()
                .and_then(|l| l.overrides())
                .and_then(|o| o.weighted_capacity());
            launched.instance_ids().len() as f64 * weight.unwrap_or(1.0)
        })
        .sum();
    // Weighted fleets may overshoot the target (spec §3.1: maxNumber counts units).
    let units = (units.ceil() as u32).min(count);
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
        }
    });
    tracing::info!(launched = instances.len(), requested = count, fleet = ?output.fleet_id(), "instant fleet created");
    Ok((output.fleet_id().map(str::to_owned), Launched { instances, units, error }))
}

/// The id of the launch template holding `spec`'s launch data, created on first use.
async fn launch_template(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec) -> Result<String> {
    let data = launch_data(spec);
    let name = format!("hostfactory-{}", &hex::encode(Sha256::digest(format!("{data:?}")))[..16]);
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
        .send()
        .await
        .map_err(|err| Error::aws(format!("creating launch template {name}"), err))?;
    created
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_owned)
        .ok_or_else(|| Error::Config(format!("launch template {name} was created without an id")))
}

/// What the launch template holds: everything but the instance type, subnet and the
/// per-request tags (those are fleet overrides and fleet tags).
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
        .build()
}

impl LaunchSpec {
    /// The request's tags for the fleet and for its instances (CreateFleet tags no volumes;
    /// the launch template is shared between requests, so it carries no request tags).
    fn fleet_tags(&self) -> Vec<TagSpecification> {
        let tags = self
            .tags
            .iter()
            .find(|t| t.resource_type() == Some(&ResourceType::Instance))
            .map(|t| t.tags().to_vec())
            .unwrap_or_default();
        [ResourceType::Fleet, ResourceType::Instance]
            .into_iter()
            .map(|kind| TagSpecification::builder().resource_type(kind).set_tags(Some(tags.clone())).build())
            .collect()
    }
}
