//! The shared launch templates, their whole lifecycle: EC2 Fleet and Auto Scaling launch from
//! one made per distinct launch content and named after its hash (`hostfactory-<hash>`), so
//! requests of an unchanged template reuse it and an edited template gets a new one without ever
//! rewriting one that running fleets point at. None is deleted with its request; the reconciler
//! lists ours and deletes the unused ones.
//!
//! A process remembers the ids it created or found ([`Memo`]), so a launch of known content makes
//! no launch template call at all. A memo can go stale: a reconciler (this process's forgets what
//! it deletes; another's cannot tell) deletes a template nothing referenced for a while. The
//! launch on it then fails as "not found"; [`launching`] forgets the id, creates the template
//! again and retries the launch once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHibernationOptionsRequest, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};
use sha2::{Digest, Sha256};

use super::spec::{LaunchSpec, tags};
use crate::error::{Error, Result};

/// Name prefix of the launch templates we create (`hostfactory-<content hash>`): the reconciler
/// deletes only templates so named and tagged `hostfactory:managed=true`.
pub const LAUNCH_TEMPLATE_PREFIX: &str = "hostfactory-";

/// EC2's codes for a launch template that does not exist (CreateFleet's answer, or an entry of
/// an instant fleet's `Errors`; moto answers the id's code to CreateAutoScalingGroup too).
const GONE_CODES: [&str; 2] = ["InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException"];

/// CreateLaunchTemplate's refusal of a name in use.
const NAME_IN_USE: &str = "InvalidLaunchTemplateName.AlreadyExistsException";

/// One of our launch templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedLaunchTemplate {
    pub id: String,
    pub name: String,
    /// CreateTime as epoch seconds, when EC2 tells it.
    pub created_at: Option<i64>,
}

/// Launch template ids by name, as this process created or found them. One entry per distinct
/// launch content the process launched (templates × their edits): small, never evicted.
#[derive(Clone, Default)]
pub(super) struct Memo(Arc<Mutex<HashMap<String, String>>>);

impl Memo {
    fn get(&self, name: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    fn remember(&self, name: String, id: String) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(name, id);
    }

    /// Forgets launch template `id` (deleted, or found gone).
    pub(super) fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, known| known != id);
    }
}

/// How a launch on a launch template went.
pub(super) enum Used<T> {
    Launched(T),
    /// EC2 answered that the launch template does not exist: its answer.
    Gone(Error),
}

/// Whether an EC2 error code says the launch template does not exist.
pub(super) fn is_gone(code: Option<&str>) -> bool {
    code.is_some_and(|code| GONE_CODES.contains(&code))
}

/// Runs `launch` on the id of `spec`'s launch template. When it proves gone, forgets it,
/// creates it again and runs `launch` once more (a second "gone" is the launch's error).
pub(super) async fn launching<T, F, Fut>(ec2: &aws_sdk_ec2::Client, memo: &Memo, spec: &LaunchSpec, launch: F) -> Result<T>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Used<T>>>,
{
    let id = ensure(ec2, memo, spec).await?;
    let gone = match launch(id.clone()).await? {
        Used::Launched(launched) => return Ok(launched),
        Used::Gone(error) => error,
    };
    tracing::warn!(launch_template_id = %id, error = %gone, "launch template gone behind the memo: creating it again");
    memo.forget(&id);
    let (name, data) = content(spec);
    let id = create_or_find(ec2, memo, spec, name, data).await?;
    match launch(id).await? {
        Used::Launched(launched) => Ok(launched),
        Used::Gone(error) => Err(error),
    }
}

/// The id of the launch template holding `spec`'s launch data: remembered, else looked up by
/// name (a process starting afresh mostly finds what an earlier one created: one call), else
/// created and tagged as ours.
async fn ensure(ec2: &aws_sdk_ec2::Client, memo: &Memo, spec: &LaunchSpec) -> Result<String> {
    let (name, data) = content(spec);
    if let Some(id) = memo.get(&name) {
        return Ok(id);
    }
    match find(ec2, &name).await? {
        Some(id) => {
            memo.remember(name, id.clone());
            Ok(id)
        }
        None => create_or_find(ec2, memo, spec, name, data).await,
    }
}

/// The launch data of `spec` and the name it goes by (`hostfactory-` and its hash).
fn content(spec: &LaunchSpec) -> (String, RequestLaunchTemplateData) {
    let data = launch_data(spec);
    let hash = hex::encode(Sha256::digest(format!("{data:?}")));
    (format!("{LAUNCH_TEMPLATE_PREFIX}{}", &hash[..16]), data)
}

/// The launch template `name`'s id, if it exists (DescribeLaunchTemplates by name).
async fn find(ec2: &aws_sdk_ec2::Client, name: &str) -> Result<Option<String>> {
    let found = ec2
        .describe_launch_templates()
        .filters(Filter::builder().name("launch-template-name").values(name).build())
        .send()
        .await
        .map_err(|err| Error::aws(format!("looking up launch template {name}"), err))?;
    Ok(found.launch_templates().first().and_then(|t| t.launch_template_id()).map(str::to_owned))
}

/// Creates launch template `name`; when EC2 answers that the name is in use (another process
/// created it meanwhile), looks its id up. Remembers the id.
async fn create_or_find(
    ec2: &aws_sdk_ec2::Client,
    memo: &Memo,
    spec: &LaunchSpec,
    name: String,
    data: RequestLaunchTemplateData,
) -> Result<String> {
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
        .await;
    let id = match created {
        Ok(created) => created
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_owned)
            .ok_or_else(|| Error::upstream(format!("creating launch template {name}"), "EC2 answered without an id"))?,
        Err(err) if err.code() == Some(NAME_IN_USE) => find(ec2, &name).await?.ok_or_else(|| {
            Error::upstream(
                format!("looking up launch template {name}"),
                "EC2 refused to create it as existing, then listed none so named (deleted meanwhile)",
            )
        })?,
        Err(err) => return Err(Error::aws(format!("creating launch template {name}"), err)),
    };
    memo.remember(name, id.clone());
    Ok(id)
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
        .set_hibernation_options(
            spec.hibernate.then(|| LaunchTemplateHibernationOptionsRequest::builder().configured(true).build()),
        )
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
