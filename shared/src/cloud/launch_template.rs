//! The shared launch templates, their whole lifecycle: EC2 Fleet and Auto Scaling launch from
//! one made per distinct launch content and named after its hash (`hostfactory-<hash>`), so
//! requests of an unchanged template reuse it and an edited template gets a new one without ever
//! rewriting one that running fleets point at. None is deleted with its request; the reconciler
//! lists ours and deletes the unused ones.

use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};
use sha2::{Digest, Sha256};

use super::spec::{LaunchSpec, tags};
use crate::error::{Error, Result};

/// Name prefix of the launch templates we create (`hostfactory-<content hash>`): the reconciler
/// deletes only templates so named and tagged `hostfactory:managed=true`.
pub const LAUNCH_TEMPLATE_PREFIX: &str = "hostfactory-";

/// One of our launch templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedLaunchTemplate {
    pub id: String,
    pub name: String,
    /// CreateTime as epoch seconds, when EC2 tells it.
    pub created_at: Option<i64>,
}

/// The id of the launch template holding `spec`'s launch data, created on first use and tagged
/// as ours (the reconciler deletes the ones no request uses any more).
pub(super) async fn ensure(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec) -> Result<String> {
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
        .ok_or_else(|| Error::upstream(format!("creating launch template {name}"), "EC2 answered without an id"))
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

/// Every launch template tagged `hostfactory:managed=true` and named with our prefix, in
/// paginated DescribeLaunchTemplates calls (200 a page).
pub(super) async fn list_managed(ec2: &aws_sdk_ec2::Client) -> Result<Vec<ManagedLaunchTemplate>> {
    let filter = Filter::builder().name(format!("tag:{}", tags::MANAGED)).values("true").build();
    let mut pages = ec2.describe_launch_templates().filters(filter).max_results(200).into_paginator().send();
    let mut managed = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Error::aws("listing managed launch templates", err))?;
        for template in page.launch_templates() {
            let (Some(id), Some(name)) = (template.launch_template_id(), template.launch_template_name()) else {
                continue;
            };
            if name.starts_with(LAUNCH_TEMPLATE_PREFIX) {
                let created_at = template.create_time().map(|t| t.secs());
                managed.push(ManagedLaunchTemplate { id: id.to_owned(), name: name.to_owned(), created_at });
            }
        }
    }
    Ok(managed)
}

pub(super) async fn delete(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<()> {
    ec2.delete_launch_template()
        .launch_template_id(id)
        .send()
        .await
        .map(|_| ())
        .map_err(|err| Error::aws(format!("deleting {id}"), err))
}
