//! What one launch sends, whatever the API: the template's image, type, network, profile, root
//! volume and user data, and the ownership tags every instance, volume and fleet carries at
//! launch, so nothing we start is ever anonymous.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, IamInstanceProfileSpecification, ResourceType, Tag, TagSpecification,
    VolumeType as Ec2VolumeType,
};

use super::images::RootDevices;
use crate::error::{Error, Result};
use crate::templates::{Template, VolumeType};

/// Tags every launched instance, volume and fleet carries, so the reconciler can find them.
pub mod tags {
    pub const REQUEST_ID: &str = "hostfactory:request-id";
    pub const TEMPLATE_ID: &str = "hostfactory:template-id";
    pub const PROVIDER: &str = "hostfactory:provider";
    pub const MANAGED: &str = "hostfactory:managed";
}

/// Everything of one RunInstances call but the count.
#[derive(Clone)]
pub struct LaunchSpec {
    pub(super) image_id: String,
    pub(super) instance_type: String,
    pub(super) subnet_id: Option<String>,
    pub(super) security_group_ids: Vec<String>,
    pub(super) key_name: Option<String>,
    pub(super) instance_profile: Option<IamInstanceProfileSpecification>,
    pub(super) root_volume: Option<BlockDeviceMapping>,
    pub(super) user_data: Option<String>,
    /// Launched hibernation-capable (the template's `hibernate`).
    pub(super) hibernate: bool,
    /// The request's tags (ownership tags first, then the template's `instanceTags`).
    pub(super) request_tags: Vec<Tag>,
    /// The same without the request id: what the shared launch template gives its instances.
    pub(super) template_tags: Vec<Tag>,
}

impl LaunchSpec {
    pub(super) async fn new(
        ec2: &aws_sdk_ec2::Client,
        root_devices: &RootDevices,
        template: &Template,
        provider: &str,
        request_id: &str,
    ) -> Result<Self> {
        let id = &template.template_id;
        let image_id =
            template.image_id.clone().ok_or_else(|| Error::Config(format!("template '{id}' has no imageId")))?;
        let instance_type =
            first_instance_type(template).ok_or_else(|| Error::Config(format!("template '{id}' has no vmType")))?;
        let root_volume = match template.root_device_volume_size {
            Some(size) => Some(root_volume(root_devices.of(ec2, &image_id).await?, template, size)?),
            None => None,
        };
        let instance_profile = template.instance_profile.as_ref().map(|profile| {
            let spec = IamInstanceProfileSpecification::builder();
            if profile.starts_with("arn:") { spec.arn(profile) } else { spec.name(profile) }.build()
        });
        let request_tags = launch_tags(template, provider, request_id);
        let template_tags: Vec<Tag> =
            request_tags.iter().filter(|t| t.key() != Some(tags::REQUEST_ID)).cloned().collect();
        Ok(LaunchSpec {
            image_id,
            instance_type,
            subnet_id: template.subnet_ids().first().cloned(),
            security_group_ids: template.security_group_ids.clone(),
            key_name: template.key_name.clone(),
            instance_profile,
            root_volume,
            user_data: template.user_data.clone(),
            hibernate: template.hibernate,
            request_tags,
            template_tags,
        })
    }

    /// This launch in `pool`: its instance type, in its subnet.
    pub(super) fn in_pool(&self, pool: &super::placement::Pool) -> LaunchSpec {
        LaunchSpec { instance_type: pool.instance_type.clone(), subnet_id: pool.subnet.clone(), ..self.clone() }
    }

    /// The request's tags for each of `resources`.
    pub(super) fn tag_specifications(&self, resources: &[ResourceType]) -> Vec<TagSpecification> {
        resources
            .iter()
            .map(|kind| {
                TagSpecification::builder()
                    .resource_type(kind.clone())
                    .set_tags(Some(self.request_tags.clone()))
                    .build()
            })
            .collect()
    }
}

/// RunInstances launches one type: `vmType`, else the first of `vmTypes`.
fn first_instance_type(template: &Template) -> Option<String> {
    template.vm_type.clone().or_else(|| template.vm_types.keys().next().cloned())
}

/// The ownership tags first, then the template's own (which cannot override ours).
fn launch_tags(template: &Template, provider: &str, request_id: &str) -> Vec<Tag> {
    let ours = [
        (tags::REQUEST_ID, request_id),
        (tags::TEMPLATE_ID, template.template_id.as_str()),
        (tags::PROVIDER, provider),
        (tags::MANAGED, "true"),
    ];
    let own = template.tags().iter().filter(|(key, _)| !key.starts_with("hostfactory:"));
    ours.into_iter()
        .chain(own.map(|(k, v)| (k.as_str(), v.as_str())))
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// The root volume with the template's size and type on the image's root `device`.
fn root_volume(device: String, template: &Template, size: i64) -> Result<BlockDeviceMapping> {
    let volume_type = match template.volume_type {
        VolumeType::Gp2 => Ec2VolumeType::Gp2,
        VolumeType::Gp3 => Ec2VolumeType::Gp3,
        VolumeType::Io1 => Ec2VolumeType::Io1,
        VolumeType::Io2 => Ec2VolumeType::Io2,
        VolumeType::Standard => Ec2VolumeType::Standard,
    };
    let ebs = EbsBlockDevice::builder()
        .volume_size(i32::try_from(size).map_err(|_| Error::invalid("rootDeviceVolumeSize", "is too large"))?)
        .volume_type(volume_type)
        .set_iops(template.iops.and_then(|iops| i32::try_from(iops).ok()))
        .delete_on_termination(true)
        .build();
    Ok(BlockDeviceMapping::builder().device_name(device).ebs(ebs).build())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::check_template;

    fn template(extra: serde_json::Value) -> Template {
        let mut entry = json!({"templateId": "T1", "maxNumber": 5, "imageId": "ami-1", "subnetId": "subnet-1"});
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check_template(entry).unwrap()
    }

    #[test]
    fn ownership_tags_come_first_and_cannot_be_overridden() {
        let t = template(json!({"vmType": "t3.micro", "instanceTags": "team=grid;hostfactory:managed=false"}));
        let tags: Vec<(String, String)> = launch_tags(&t, "awsinst", "req-1")
            .iter()
            .map(|tag| (tag.key().unwrap().to_owned(), tag.value().unwrap().to_owned()))
            .collect();
        let expected = [
            ("hostfactory:request-id", "req-1"),
            ("hostfactory:template-id", "T1"),
            ("hostfactory:provider", "awsinst"),
            ("hostfactory:managed", "true"),
            ("team", "grid"),
        ];
        assert_eq!(tags, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn vm_type_wins_over_vm_types() {
        let both = template(json!({"vmType": "c5.large", "vmTypes": {"m5.large": 1, "m5.xlarge": 2}}));
        assert_eq!(first_instance_type(&both).as_deref(), Some("c5.large"));
        let weighted = template(json!({"vmTypes": {"m5.large": 1, "m5.xlarge": 2}}));
        assert_eq!(first_instance_type(&weighted).as_deref(), Some("m5.large"));
    }
}
