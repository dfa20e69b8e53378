//! Observing, tagging and terminating EC2 instances in as few calls as the API allows.

use std::collections::HashMap;

use aws_sdk_ec2::types::{ActiveInstance, Filter, Instance, Tag};

use super::Found;
use super::pools::weight;
use super::spec::tags;
use crate::error::{Error, Result};
use crate::store::{InstanceState, Lifecycle};
use crate::templates::Template;

/// The states of an instance the reconciler checks: not terminated or terminating.
const LIVE: [InstanceState; 4] =
    [InstanceState::Pending, InstanceState::Running, InstanceState::Stopping, InstanceState::Stopped];

/// DescribeInstances and TerminateInstances take at most 1,000 instance ids per call.
pub const MAX_IDS_PER_CALL: usize = 1000;

/// What EC2 says about one instance, in the terms HostFactory needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub instance_id: String,
    /// EC2 `State.Name`.
    pub state: InstanceState,
    /// PrivateDnsName: the host name the instance registers with in the Symphony cluster.
    pub private_dns_name: String,
    pub private_ip_address: String,
    pub public_ip_address: String,
    /// LaunchTime as epoch seconds (UTC).
    pub launch_time: i64,
    pub lifecycle: Lifecycle,
    /// EC2's reason for the last state change (e.g. `Server.SpotInstanceTermination`).
    pub state_reason: String,
    pub tags: HashMap<String, String>,
    /// The pool it runs in, `<instance type> in <zone>` (empty until EC2 tells).
    pub placement: String,
    /// Launched hibernation-capable (`HibernationOptions.Configured`): it may be paused.
    pub hibernation: bool,
}

impl Observed {
    pub fn from_instance(instance: &Instance) -> Option<Observed> {
        let instance_id = instance.instance_id()?.to_owned();
        let text = |v: Option<&str>| v.unwrap_or_default().to_owned();
        Some(Observed {
            instance_id,
            state: InstanceState::parse(instance.state().and_then(|s| s.name()).map_or("", |n| n.as_str())),
            private_dns_name: text(instance.private_dns_name()),
            private_ip_address: text(instance.private_ip_address()),
            public_ip_address: text(instance.public_ip_address()),
            launch_time: instance.launch_time().map(|t| t.secs()).unwrap_or_default(),
            lifecycle: Lifecycle::of_ec2(instance.instance_lifecycle().map(|l| l.as_str())),
            state_reason: instance.state_reason().and_then(|r| r.code()).map(str::to_owned).unwrap_or_default(),
            tags: instance
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                .collect(),
            placement: placement_of(instance),
            hibernation: instance.hibernation_options().and_then(|h| h.configured()).unwrap_or(false),
        })
    }
}

/// `<instance type> in <zone>`, or empty when EC2 left either out.
fn placement_of(instance: &Instance) -> String {
    let zone = instance.placement().and_then(|p| p.availability_zone()).filter(|z| !z.is_empty());
    match (instance.instance_type(), zone) {
        (Some(instance_type), Some(zone)) => format!("{} in {zone}", instance_type.as_str()),
        _ => String::new(),
    }
}

impl Observed {
    /// An instance EC2 just accepted to launch, known only by its id (EC2 Fleet answers with
    /// ids alone); getRequestStatus fills in the rest.
    pub fn launching(instance_id: &str) -> Observed {
        Observed {
            instance_id: instance_id.to_owned(),
            state: InstanceState::Pending,
            private_dns_name: String::new(),
            private_ip_address: String::new(),
            public_ip_address: String::new(),
            launch_time: crate::store::now(),
            lifecycle: Lifecycle::Ondemand,
            state_reason: String::new(),
            tags: HashMap::new(),
            placement: String::new(),
            hibernation: false,
        }
    }
}

/// Describes `ids` with one DescribeInstances call per 1,000 ids. Ids EC2 no longer knows are
/// simply absent from the answer (the spec treats "not found" as gone), so an unknown id in a
/// batch never fails the others.
pub async fn describe(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Result<HashMap<String, Observed>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IDS_PER_CALL) {
        // A filter on instance-id (rather than InstanceIds) makes unknown ids drop out
        // instead of failing the whole call with InvalidInstanceID.NotFound.
        let filter = Filter::builder().name("instance-id").set_values(Some(chunk.to_vec())).build();
        let mut pages = ec2.describe_instances().filters(filter).max_results(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| Error::aws(format!("describing {} instances", chunk.len()), err))?;
            for observed in page.reservations().iter().flat_map(|r| r.instances()).filter_map(Observed::from_instance) {
                found.insert(observed.instance_id.clone(), observed);
            }
        }
    }
    Ok(found)
}

/// Every instance carrying `tag=value`, e.g. all instances of one request, for adoption.
pub async fn find_tagged(ec2: &aws_sdk_ec2::Client, tag: &str, value: &str) -> Result<Vec<Observed>> {
    let filter = Filter::builder().name(format!("tag:{tag}")).values(value).build();
    find(ec2, vec![filter], &format!("finding instances tagged {tag}={value}")).await
}

/// Every instance tagged `hostfactory:managed=true` that is not terminated or terminating:
/// what the reconciler checks against its records, in one paginated call.
pub async fn find_managed(ec2: &aws_sdk_ec2::Client) -> Result<Vec<Observed>> {
    let filters = vec![
        Filter::builder().name(format!("tag:{}", tags::MANAGED)).values("true").build(),
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE.iter().map(|state| state.as_str().to_owned()).collect()))
            .build(),
    ];
    find(ec2, filters, "finding instances tagged hostfactory:managed=true").await
}

async fn find(ec2: &aws_sdk_ec2::Client, filters: Vec<Filter>, context: &str) -> Result<Vec<Observed>> {
    let mut pages = ec2.describe_instances().set_filters(Some(filters)).max_results(1000).into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Error::aws(context, err))?;
        found.extend(page.reservations().iter().flat_map(|r| r.instances()).filter_map(Observed::from_instance));
    }
    Ok(found)
}

/// Terminates `ids`, 1,000 per call.
pub async fn terminate(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Result<()> {
    for chunk in ids.chunks(MAX_IDS_PER_CALL) {
        ec2.terminate_instances()
            .set_instance_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|err| Error::aws(format!("terminating {} instances", chunk.len()), err))?;
    }
    Ok(())
}

/// An operator's power action on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// StartInstances (also what resumes a hibernated instance).
    Start,
    /// StopInstances.
    Stop,
    /// StopInstances with `Hibernate`.
    Hibernate,
    /// RebootInstances.
    Reboot,
}

/// One StartInstances, StopInstances or RebootInstances call for `id`.
pub async fn power(ec2: &aws_sdk_ec2::Client, id: &str, power: Power) -> Result<()> {
    let context = |verb: &str| format!("{verb} instance {id}");
    match power {
        Power::Start => ec2.start_instances().instance_ids(id).send().await.map(drop).map_err(|e| Error::aws(context("starting"), e)),
        Power::Stop | Power::Hibernate => {
            let hibernate = power == Power::Hibernate;
            let sent = ec2.stop_instances().instance_ids(id).hibernate(hibernate).send().await;
            sent.map(drop).map_err(|e| Error::aws(context(if hibernate { "hibernating" } else { "stopping" }), e))
        }
        Power::Reboot => ec2.reboot_instances().instance_ids(id).send().await.map(drop).map_err(|e| Error::aws(context("rebooting"), e)),
    }
}

/// Adds the request id tag to `ids` with one CreateTags call.
pub(super) async fn tag_request_id(ec2: &aws_sdk_ec2::Client, ids: &[String], request_id: &str) -> Result<()> {
    let tag = Tag::builder().key(tags::REQUEST_ID).value(request_id).build();
    ec2.create_tags()
        .set_resources(Some(ids.to_vec()))
        .tags(tag)
        .send()
        .await
        .map(|_| ())
        .map_err(|err| Error::aws("tagging adopted instances", err))
}

/// One page of a fleet's active instances (id, units) and the token of the next.
pub(super) struct Page {
    pub active: Vec<(String, u32)>,
    pub next: Option<String>,
}

impl Page {
    /// A page of DescribeFleetInstances or DescribeSpotFleetInstances (both answer
    /// `ActiveInstance`s), each instance weighted by its type in `template`.
    pub fn of(active: &[ActiveInstance], next: Option<&str>, template: Option<&Template>) -> Page {
        let active = active.iter().map(|i| {
            let units = weight(template, i.instance_type().unwrap_or_default());
            (i.instance_id().unwrap_or_default().to_owned(), units)
        });
        Page { active: active.collect(), next: next.map(str::to_owned) }
    }
}

/// A failed page: the AWS error code (a `...NotFound` code means the fleet is gone) and the error.
pub(super) type PageError = (Option<String>, Error);

/// Every page of a fleet's instances, `fetch` asked with the previous page's token; a fleet AWS
/// does not know (a `NotFound` code) is gone with what was found so far.
pub(super) async fn collect_pages<F, Fut>(mut fetch: F) -> Result<Found>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page, PageError>>,
{
    let mut instances = Vec::new();
    let mut token: Option<String> = None;
    loop {
        match fetch(token.take()).await {
            Ok(page) => {
                instances.extend(page.active.into_iter().filter(|(id, _)| !id.is_empty()));
                match page.next {
                    Some(next) if !next.is_empty() => token = Some(next),
                    _ => return Ok(Found { instances, gone: false }),
                }
            }
            Err((Some(code), _)) if code.contains("NotFound") => return Ok(Found { instances, gone: true }),
            Err((_, err)) => return Err(err),
        }
    }
}
