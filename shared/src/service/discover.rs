//! Finding the instances of the fleets and Auto Scaling groups that fill their target after the
//! launch call (EC2 Fleet `request`/`maintain`, Spot Fleet, ASG).
//!
//! Cost: one Describe*Instances per unfinished fleet, one DescribeAutoScalingGroups per 100
//! unfinished groups, and, only when some fleet is short of its target, one DescribeFleets and
//! one DescribeSpotFleetRequests for all of those together (whether AWS gave up on them).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{BatchState, FleetStateCode};
use futures::future::try_join_all;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::RequestRecord;
use crate::templates::{FleetType, Loaded, ProviderApi, Template};

/// DescribeAutoScalingGroups takes at most 100 names per call.
const MAX_GROUPS_PER_CALL: usize = 100;

/// What a fleet or group holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Its active instances with the capacity units each fills (its `vmTypes` weight).
    pub instances: Vec<(String, u32)>,
    /// AWS deleted, cancelled or failed it, or does not know it: it will not fill any further.
    pub gone: bool,
}

impl Found {
    pub fn units(&self) -> u32 {
        self.instances.iter().map(|(_, units)| units).sum()
    }
}

/// The API of a request whose instances arrive after the launch call, `None` for the others
/// (RunInstances and instant EC2 Fleet record theirs at launch).
pub fn deferred_api(request: &RequestRecord, template: Option<&Template>) -> Option<ProviderApi> {
    match request.provider_api.as_deref() {
        Some("SpotFleet") if request.fleet_id.is_some() => Some(ProviderApi::SpotFleet),
        Some("ASG") if request.asg_name.is_some() => Some(ProviderApi::Asg),
        Some("EC2Fleet")
            if request.fleet_id.is_some() && fleet_type(request, template).is_some_and(|t| t != FleetType::Instant) =>
        {
            Some(ProviderApi::Ec2Fleet)
        }
        _ => None,
    }
}

/// The provider's templates, for weights and expiries. A templates location that does not load
/// does not stop getRequestStatus or requestReturnMachines (the requests carry their fleet or
/// group): it is logged, and the spec's defaults apply.
pub async fn templates(state: &AppState, provider: &str) -> Option<Arc<Loaded>> {
    match state.catalog.load(provider, false).await {
        Ok(loaded) => Some(loaded),
        Err(err) => {
            tracing::warn!(provider, error = %err, "templates not loaded: fleet defaults apply");
            None
        }
    }
}

/// The request's fleet type as recorded; records from before it was (and ORB imports) ask the
/// template (with neither, an EC2 Fleet is taken for the instant kind: its machines are recorded).
pub fn fleet_type(request: &RequestRecord, template: Option<&Template>) -> Option<FleetType> {
    request.fleet_type.or_else(|| template.and_then(Template::fleet_type))
}

/// What each deferred request's fleet or group holds, by request id.
pub async fn discover(
    state: &AppState,
    requests: &[(&RequestRecord, ProviderApi, Option<&Template>)],
) -> Result<HashMap<String, Found>> {
    let fleets = try_join_all(requests.iter().filter(|(_, api, _)| *api != ProviderApi::Asg).map(
        |(request, api, template)| async move {
            let fleet_id = request.fleet_id.as_deref().unwrap_or_default();
            let found = fleet_instances(&state.ec2, *api, fleet_id, *template).await?;
            Ok::<_, Error>((request.request_id.clone(), found))
        },
    ))
    .await?;
    let mut found: HashMap<String, Found> = fleets.into_iter().collect();

    let short: Vec<&RequestRecord> = requests
        .iter()
        .filter(|(r, api, _)| {
            *api != ProviderApi::Asg && found.get(&r.request_id).is_some_and(|f| !f.gone && f.units() < r.machine_count)
        })
        .map(|(r, _, _)| *r)
        .collect();
    for request_id in given_up(state, &short).await? {
        if let Some(entry) = found.get_mut(&request_id) {
            entry.gone = true;
        }
    }

    let groups: Vec<(&RequestRecord, Option<&Template>)> =
        requests.iter().filter(|(_, api, _)| *api == ProviderApi::Asg).map(|(r, _, t)| (*r, *t)).collect();
    for chunk in groups.chunks(MAX_GROUPS_PER_CALL) {
        found.extend(group_instances(state, chunk).await?);
    }
    Ok(found)
}

/// The capacity units of `instance_type` in `template` (1 when it is not listed).
fn weight(template: Option<&Template>, instance_type: &str) -> u32 {
    template.and_then(|t| t.vm_types().get(instance_type).copied()).and_then(|w| u32::try_from(w).ok()).unwrap_or(1)
}

pub(super) async fn fleet_instances(
    ec2: &aws_sdk_ec2::Client,
    api: ProviderApi,
    fleet_id: &str,
    template: Option<&Template>,
) -> Result<Found> {
    let mut instances = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = match api {
            ProviderApi::SpotFleet => ec2
                .describe_spot_fleet_instances()
                .spot_fleet_request_id(fleet_id)
                .set_next_token(token.take())
                .send()
                .await
                .map(|out| {
                    let active = out.active_instances().iter().map(|i| (i.instance_id(), i.instance_type())).map(
                        |(id, kind)| (id.unwrap_or_default().to_owned(), weight(template, kind.unwrap_or_default())),
                    );
                    (active.collect::<Vec<_>>(), out.next_token().map(str::to_owned))
                })
                .map_err(|err| {
                    (err.code().map(str::to_owned), Error::aws(format!("describing Spot Fleet {fleet_id}"), err))
                }),
            _ => ec2
                .describe_fleet_instances()
                .fleet_id(fleet_id)
                .set_next_token(token.take())
                .send()
                .await
                .map(|out| {
                    let active = out.active_instances().iter().map(|i| {
                        let kind = i.instance_type().unwrap_or_default();
                        (i.instance_id().unwrap_or_default().to_owned(), weight(template, kind))
                    });
                    (active.collect::<Vec<_>>(), out.next_token().map(str::to_owned))
                })
                .map_err(|err| {
                    (err.code().map(str::to_owned), Error::aws(format!("describing EC2 fleet {fleet_id}"), err))
                }),
        };
        match page {
            Ok((active, next)) => {
                instances.extend(active.into_iter().filter(|(id, _)| !id.is_empty()));
                match next {
                    Some(next) if !next.is_empty() => token = Some(next),
                    _ => return Ok(Found { instances, gone: false }),
                }
            }
            Err((Some(code), _)) if code.contains("NotFound") => return Ok(Found { instances, gone: true }),
            Err((_, err)) => return Err(err),
        }
    }
}

/// The requests among `short` whose fleet AWS deleted, cancelled or failed: one describe of all
/// their EC2 fleets, one of all their Spot Fleets.
async fn given_up(state: &AppState, short: &[&RequestRecord]) -> Result<Vec<String>> {
    let request_of = |api: &str| -> HashMap<String, String> {
        short
            .iter()
            .filter(|r| r.provider_api.as_deref() == Some(api))
            .filter_map(|r| Some((r.fleet_id.clone()?, r.request_id.clone())))
            .collect()
    };
    let (ec2_fleets, spot_fleets) = (request_of("EC2Fleet"), request_of("SpotFleet"));
    let mut ended: Vec<String> = Vec::new();
    if !ec2_fleets.is_empty() {
        let out = state
            .ec2
            .describe_fleets()
            .set_fleet_ids(Some(ec2_fleets.keys().cloned().collect()))
            .send()
            .await
            .map_err(|err| Error::aws(format!("describing {} EC2 fleet(s)", ec2_fleets.len()), err))?;
        let over = |state: Option<&FleetStateCode>| {
            matches!(
                state,
                Some(
                    FleetStateCode::Deleted
                        | FleetStateCode::DeletedRunning
                        | FleetStateCode::DeletedTerminatingInstances
                        | FleetStateCode::Failed
                )
            )
        };
        ended.extend(
            out.fleets().iter().filter(|f| over(f.fleet_state())).filter_map(|f| f.fleet_id()).map(str::to_owned),
        );
    }
    if !spot_fleets.is_empty() {
        let out = state
            .ec2
            .describe_spot_fleet_requests()
            .set_spot_fleet_request_ids(Some(spot_fleets.keys().cloned().collect()))
            .send()
            .await
            .map_err(|err| Error::aws(format!("describing {} Spot Fleet request(s)", spot_fleets.len()), err))?;
        let over = |state: Option<&BatchState>| {
            matches!(
                state,
                Some(
                    BatchState::Cancelled
                        | BatchState::CancelledRunning
                        | BatchState::CancelledTerminatingInstances
                        | BatchState::Failed
                )
            )
        };
        let configs = out.spot_fleet_request_configs().iter();
        ended.extend(
            configs
                .filter(|c| over(c.spot_fleet_request_state()))
                .filter_map(|c| c.spot_fleet_request_id())
                .map(str::to_owned),
        );
    }
    Ok(ended.iter().filter_map(|fleet| ec2_fleets.get(fleet).or_else(|| spot_fleets.get(fleet))).cloned().collect())
}

/// Up to 100 groups in one DescribeAutoScalingGroups call; a group AWS no longer lists, or is
/// deleting, is gone.
async fn group_instances(
    state: &AppState,
    groups: &[(&RequestRecord, Option<&Template>)],
) -> Result<Vec<(String, Found)>> {
    let names: Vec<String> = groups.iter().filter_map(|(r, _)| r.asg_name.clone()).collect();
    let mut described = HashMap::new();
    let mut pages = state
        .autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names.clone()))
        .max_records(i32::try_from(MAX_GROUPS_PER_CALL).unwrap_or(100))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Error::aws(format!("describing {} Auto Scaling group(s)", names.len()), err))?;
        for group in page.auto_scaling_groups() {
            described.insert(group.auto_scaling_group_name().unwrap_or_default().to_owned(), group.clone());
        }
    }
    Ok(groups
        .iter()
        .map(|(request, template)| {
            let group = request.asg_name.as_deref().and_then(|name| described.get(name));
            let found = match group {
                None => Found { instances: Vec::new(), gone: true },
                Some(group) => Found {
                    instances: group
                        .instances()
                        .iter()
                        .filter_map(|i| {
                            let units = i
                                .weighted_capacity()
                                .and_then(|w| w.parse::<u32>().ok())
                                .unwrap_or_else(|| weight(*template, i.instance_type().unwrap_or_default()));
                            Some((i.instance_id()?.to_owned(), units))
                        })
                        .collect(),
                    gone: group.status().is_some_and(|s| s.starts_with("Delete")),
                },
            };
            (request.request_id.clone(), found)
        })
        .collect())
}
