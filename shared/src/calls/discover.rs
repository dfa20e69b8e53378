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
use crate::cloud::{Cloud, Found, Owner};
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
    cloud: &dyn Cloud,
    requests: &[(&RequestRecord, Owner, Option<&Template>)],
) -> Result<HashMap<String, Found>> {
    let is_group = |owner: &Owner| matches!(owner, Owner::Asg { .. });
    let fleets = try_join_all(requests.iter().filter(|(_, owner, _)| !is_group(owner)).map(
        |(request, owner, template)| async move {
            let found = cloud.fleet_instances(owner, *template).await?;
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
        let ended = cloud.ended_fleets(&owners).await?;
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
        let held = cloud.group_instances(&named).await?;
        found.extend(groups.iter().map(|(r, _, _)| r.request_id.clone()).zip(held));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fake::FakeCloud;
    use crate::store::RequestKind;
    use crate::templates::FleetType;

    fn ec2(id: &str) -> Owner {
        Owner::Ec2Fleet { id: id.into(), kind: FleetType::Request }
    }

    fn spot(id: &str) -> Owner {
        Owner::SpotFleet { id: id.into(), kind: FleetType::Request }
    }

    fn group(name: &str) -> Owner {
        Owner::Asg { name: name.into() }
    }

    fn holding(units: u32) -> Found {
        Found { instances: (0..units).map(|i| (format!("i-{i}"), 1)).collect(), gone: false }
    }

    /// (owner, units asked, units AWS holds (None: AWS does not know it), AWS ended it) per
    /// request → whether each is gone, and the calls made.
    #[tokio::test]
    async fn fleets_are_asked_whether_they_gave_up_only_when_short() {
        type Case = (Vec<(Owner, u32, Option<u32>, bool)>, Vec<bool>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (vec![(ec2("f1"), 2, Some(2), false)], vec![false], vec!["fleet_instances f1"]),
            (vec![(ec2("f1"), 2, Some(1), false)], vec![false], vec!["fleet_instances f1", "ended_fleets 1"]),
            (vec![(ec2("f1"), 2, Some(1), true)], vec![true], vec!["fleet_instances f1", "ended_fleets 1"]),
            (vec![(spot("s1"), 2, None, false)], vec![true], vec!["fleet_instances s1"]),
            (
                vec![(ec2("f1"), 2, Some(0), false), (spot("s1"), 3, Some(1), true)],
                vec![false, true],
                vec!["fleet_instances f1", "fleet_instances s1", "ended_fleets 2"],
            ),
            (vec![(spot("s1"), 1, Some(3), true)], vec![false], vec!["fleet_instances s1"]),
            (vec![(group("g1"), 3, Some(1), false)], vec![false], vec!["group_instances 1"]),
            (
                vec![(group("g1"), 3, Some(3), false), (group("g2"), 1, None, false)],
                vec![false, true],
                vec!["group_instances 2"],
            ),
        ];
        for (requests, gone, calls) in cases {
            let mut cloud = FakeCloud::default();
            let records: Vec<RequestRecord> = requests
                .iter()
                .map(|(_, asked, _, _)| RequestRecord::new(RequestKind::Provision, "T", "awsinst", *asked, 100))
                .collect();
            for (owner, _, held, ended) in &requests {
                let (Owner::Ec2Fleet { id, .. } | Owner::SpotFleet { id, .. } | Owner::Asg { name: id }) = owner else {
                    continue;
                };
                if let Some(units) = held {
                    cloud.held.insert(id.clone(), holding(*units));
                }
                if *ended {
                    cloud.ended.insert(id.clone());
                }
            }
            let deferred: Vec<(&RequestRecord, Owner, Option<&Template>)> =
                records.iter().zip(&requests).map(|(r, (owner, ..))| (r, owner.clone(), None)).collect();
            let found = discover(&cloud, &deferred).await.unwrap();
            let seen: Vec<bool> = records.iter().map(|r| found[&r.request_id].gone).collect();
            assert_eq!(seen, gone, "{requests:?}");
            assert_eq!(cloud.calls(), calls, "{requests:?}");
        }
    }
}
