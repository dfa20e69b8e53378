//! Finding the instances of the fleets and Auto Scaling groups that fill their target after the
//! launch call (EC2 Fleet `request`/`maintain`, Spot Fleet, ASG).
//!
//! Cost: one Describe*Instances per unfinished fleet, one DescribeAutoScalingGroups per 100
//! unfinished groups, and, only when some fleet is short of its target, one DescribeFleets and
//! one DescribeSpotFleetRequests for all of those together (whether AWS gave up on them).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::try_join_all;

use crate::app::AppState;
use crate::cloud::{Found, Owner};
use crate::error::{Error, Result};
use crate::store::RequestRecord;
use crate::templates::{Loaded, Template};

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

/// What each deferred request's fleet or group holds, by request id.
pub async fn discover(
    state: &AppState,
    requests: &[(&RequestRecord, Owner, Option<&Template>)],
) -> Result<HashMap<String, Found>> {
    let is_group = |owner: &Owner| matches!(owner, Owner::Asg { .. });
    let fleets = try_join_all(requests.iter().filter(|(_, owner, _)| !is_group(owner)).map(
        |(request, owner, template)| async move {
            let found = state.cloud.fleet_instances(owner, *template).await?;
            Ok::<_, Error>((request.request_id.clone(), found))
        },
    ))
    .await?;
    let mut found: HashMap<String, Found> = fleets.into_iter().collect();

    let short: Vec<(&str, &Owner)> = requests
        .iter()
        .filter(|(r, owner, _)| {
            !is_group(owner) && found.get(&r.request_id).is_some_and(|f| !f.gone && f.units() < r.machine_count)
        })
        .map(|(r, owner, _)| (r.request_id.as_str(), owner))
        .collect();
    if !short.is_empty() {
        let owners: Vec<&Owner> = short.iter().map(|(_, owner)| *owner).collect();
        let ended = state.cloud.ended_fleets(&owners).await?;
        for (request_id, owner) in short {
            if let (Owner::Ec2Fleet { id, .. } | Owner::SpotFleet { id, .. }, Some(entry)) =
                (owner, found.get_mut(request_id))
                && ended.contains(id)
            {
                entry.gone = true;
            }
        }
    }

    let groups: Vec<(&RequestRecord, &str, Option<&Template>)> = requests
        .iter()
        .filter_map(|(r, owner, t)| match owner {
            Owner::Asg { name } => Some((*r, name.as_str(), *t)),
            _ => None,
        })
        .collect();
    if !groups.is_empty() {
        let named: Vec<(&str, Option<&Template>)> = groups.iter().map(|(_, name, t)| (*name, *t)).collect();
        let held = state.cloud.group_instances(&named).await?;
        found.extend(groups.iter().map(|(r, _, _)| r.request_id.clone()).zip(held));
    }
    Ok(found)
}
