//! Launching with RunInstances: the instances are the request's own (no fleet or group), so
//! there is nothing to find, shrink or stop later; they are described and terminated by id.

use aws_sdk_ec2::types::{InstanceType, ResourceType};

use super::spec::LaunchSpec;
use super::{Launched, Observed};
use crate::error::{Error, Result};
use crate::templates::Template;

/// Launches up to `count` instances with RunInstances (MinCount=1, MaxCount=remaining). EC2
/// may fill less than MaxCount (and moto fills exactly MinCount), so the remainder is asked
/// for again, at most `count` calls in all, until filled or until EC2 refuses.
pub(super) async fn launch(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec, request_id: &str, count: u32) -> Launched {
    let mut instances: Vec<Observed> = Vec::new();
    let mut error = None;
    for _ in 0..count {
        let remaining = count.saturating_sub(u32::try_from(instances.len()).unwrap_or(u32::MAX));
        if remaining == 0 {
            break;
        }
        match send(ec2, spec, remaining).await {
            Ok(started) if started.is_empty() => break,
            Ok(started) => instances.extend(started),
            Err(err) => {
                error = Some(err);
                break;
            }
        }
    }
    tracing::info!(
        request_id,
        launched = instances.len(),
        requested = count,
        failed = error.is_some(),
        "RunInstances done"
    );
    Launched { instances, error, ..Launched::default() }
}

/// The On-Demand part of a Spot template with RunInstances: the first `vmTypesOnDemand`, else
/// the template's type.
pub(super) async fn launch_on_demand(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    count: u32,
) -> Launched {
    let mut spec = spec.clone();
    if let Some(instance_type) = template.vm_types_on_demand.keys().next() {
        spec.instance_type = instance_type.clone();
    }
    launch(ec2, &spec, request_id, count).await
}

/// One RunInstances call for up to `count` instances of `spec`.
async fn send(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec, count: u32) -> Result<Vec<Observed>> {
    let max = i32::try_from(count).unwrap_or(i32::MAX);
    let output = ec2
        .run_instances()
        .image_id(&spec.image_id)
        .instance_type(InstanceType::from(spec.instance_type.as_str()))
        .min_count(1)
        .max_count(max)
        .set_subnet_id(spec.subnet_id.clone())
        .set_security_group_ids((!spec.security_group_ids.is_empty()).then(|| spec.security_group_ids.clone()))
        .set_key_name(spec.key_name.clone())
        .set_iam_instance_profile(spec.instance_profile.clone())
        .set_block_device_mappings(spec.root_volume.clone().map(|m| vec![m]))
        .set_user_data(spec.user_data.clone())
        .set_tag_specifications(Some(spec.tag_specifications(&[ResourceType::Instance, ResourceType::Volume])))
        .send()
        .await
        .map_err(|err| Error::aws(format!("launching {count} instance(s) of {}", spec.instance_type), err))?;
    Ok(output.instances().iter().filter_map(Observed::from_instance).collect())
}
