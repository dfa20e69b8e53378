//! Where a RunInstances request launches, decided as plain data: the template's pools (each an
//! instance type in a subnet), how a request's machines are spread over the pools still open,
//! and which EC2 refusals mean "no capacity in this pool" (route around it) or "an account
//! limit" (stop). The launch loop (`run_instances`) makes the calls and closes the pools that
//! refused.

use std::collections::HashMap;
use std::fmt;

use crate::templates::{AllocationStrategy, Template};

/// One place EC2 may have capacity: an instance type in a subnet (`None`: the default subnet).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pool {
    pub instance_type: String,
    pub subnet: Option<String>,
}

/// The pools cooling down after a capacity error, by [`Pool::key`], with that error's code.
pub type Cooling = HashMap<String, String>;

impl Pool {
    /// How the store names the pool (`c5.large@subnet-1`), shared by every template using it.
    pub fn key(&self) -> String {
        format!("{}@{}", self.instance_type, self.subnet.as_deref().unwrap_or("default"))
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subnet {
            Some(subnet) => write!(f, "{} in {subnet}", self.instance_type),
            None => write!(f, "{} in the default subnet", self.instance_type),
        }
    }
}

/// How a request's machines are spread over the open pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Evenly over the open pools of the first type that has any (the default).
    RoundRobin,
    /// All to the first open pool; the next ones top up what it could not fill
    /// (`allocationStrategy` `prioritized` or `capacityOptimizedPrioritized`).
    Prioritized,
}

/// The template's [`Spread`].
pub fn spread(template: &Template) -> Spread {
    match template.allocation_strategy {
        Some(AllocationStrategy::Prioritized | AllocationStrategy::CapacityOptimizedPrioritized) => Spread::Prioritized,
        _ => Spread::RoundRobin,
    }
}

/// The instance types in launch order: `vmTypesPriority` (lowest first, ties as written) when
/// it is given, then every other type of `vmType`/`vmTypes` as written.
pub fn launch_types(template: &Template) -> Vec<String> {
    let mut ranked: Vec<(&String, i64)> = template.vm_types_priority.iter().map(|(t, p)| (t, *p)).collect();
    ranked.sort_by_key(|(_, priority)| *priority);
    let mut types: Vec<String> = ranked.into_iter().map(|(t, _)| t.clone()).collect();
    for (instance_type, _) in template.vm_types() {
        if !types.contains(&instance_type) {
            types.push(instance_type);
        }
    }
    types
}

/// Every pool of the template: each type (in launch order) in each subnet (as written).
pub fn pools(template: &Template) -> Vec<Pool> {
    pools_of(launch_types(template), template)
}

/// Each of `types` in each of the template's subnets (as written).
pub fn pools_of(types: Vec<String>, template: &Template) -> Vec<Pool> {
    let subnets: Vec<Option<String>> = match template.subnet_ids() {
        [] => vec![None],
        ids => ids.iter().cloned().map(Some).collect(),
    };
    types
        .into_iter()
        .flat_map(|t| subnets.iter().map(move |subnet| Pool { instance_type: t.clone(), subnet: subnet.clone() }))
        .collect()
}

/// The next calls, as (pool index, machines), for `remaining` machines over the pools whose
/// `open` flag is set. Round-robin: the open pools of the first type that has any share them
/// evenly, earlier pools taking one more; prioritized: the first open pool takes them all.
/// Empty when no pool is open.
pub fn next_calls(pools: &[Pool], open: &[bool], remaining: u32, spread: Spread) -> Vec<(usize, u32)> {
    let Some(first) = (0..pools.len()).find(|&i| open[i]) else { return Vec::new() };
    if remaining == 0 {
        return Vec::new();
    }
    let candidates: Vec<usize> = match spread {
        Spread::Prioritized => vec![first],
        Spread::RoundRobin => (first..pools.len())
            .filter(|&i| open[i] && pools[i].instance_type == pools[first].instance_type)
            .collect(),
    };
    let share = u32::try_from(candidates.len()).unwrap_or(u32::MAX);
    let (each, odd) = (remaining / share, remaining % share);
    let calls = candidates.into_iter().enumerate().map(|(n, i)| (i, each + u32::from(u32::try_from(n).unwrap_or(u32::MAX) < odd)));
    calls.filter(|(_, machines)| *machines > 0).collect()
}

/// What an EC2 refusal of a launch means for its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This pool has no capacity now: launch elsewhere.
    Capacity,
    /// An account limit: no other pool helps; the message says which quota to raise.
    Limit(&'static str),
}

/// Codes EC2 answers when a pool (a type in a zone or subnet) has no room.
const CAPACITY_CODES: [&str; 6] = [
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "Unsupported",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
];

/// The [`Refusal`] of an EC2 error `code`; `None` for every other error (throttling is retried
/// by the SDK and is not a refusal).
pub fn refusal(code: &str) -> Option<Refusal> {
    match code {
        "InstanceLimitExceeded" | "VcpuLimitExceeded" => Some(Refusal::Limit(
            "the account's EC2 vCPU quota for this instance family (Service Quotas: Amazon EC2, \
             'Running On-Demand ... instances') in this region",
        )),
        code if CAPACITY_CODES.contains(&code) => Some(Refusal::Capacity),
        _ => None,
    }
}

/// The pools an instant EC2 Fleet's `Errors` say had no capacity, each once with its code: they
/// cool down as RunInstances refusals do.
pub fn refused_by_fleet(errors: &[aws_sdk_ec2::types::CreateFleetError]) -> Vec<(Pool, String)> {
    let mut refused: Vec<(Pool, String)> = Vec::new();
    for error in errors {
        let Some(code) = error.error_code().filter(|code| refusal(code) == Some(Refusal::Capacity)) else { continue };
        let Some(overrides) = error.launch_template_and_overrides().and_then(|l| l.overrides()) else { continue };
        let Some(instance_type) = overrides.instance_type() else { continue };
        let pool = Pool { instance_type: instance_type.as_str().to_owned(), subnet: overrides.subnet_id().map(str::to_owned) };
        if !refused.iter().any(|(known, _)| *known == pool) {
            refused.push((pool, code.to_owned()));
        }
    }
    refused
}

/// The pools an instant EC2 Fleet started instances in, as its `Instances` name them.
pub fn started_by_fleet(instances: &[aws_sdk_ec2::types::CreateFleetInstance]) -> Vec<Pool> {
    let mut started: Vec<Pool> = Vec::new();
    for set in instances.iter().filter(|set| !set.instance_ids().is_empty()) {
        let Some(overrides) = set.launch_template_and_overrides().and_then(|l| l.overrides()) else { continue };
        let Some(instance_type) = overrides.instance_type().or(set.instance_type()) else { continue };
        let pool = Pool { instance_type: instance_type.as_str().to_owned(), subnet: overrides.subnet_id().map(str::to_owned) };
        if !started.contains(&pool) {
            started.push(pool);
        }
    }
    started
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::check_template;

    fn template(extra: serde_json::Value) -> Template {
        let mut entry = json!({"templateId": "T1", "maxNumber": 50, "imageId": "ami-1", "vmType": "c5.large",
            "subnetId": ["subnet-1", "subnet-2", "subnet-3"]});
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check_template(entry).unwrap()
    }

    fn names(pools: &[Pool]) -> Vec<String> {
        pools.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn pools_are_every_type_in_launch_order_in_every_subnet() {
        let cases = [
            (json!({}), vec!["c5.large in subnet-1", "c5.large in subnet-2", "c5.large in subnet-3"]),
            (json!({"subnetId": "subnet-2,subnet-1"}), vec!["c5.large in subnet-2", "c5.large in subnet-1"]),
            (
                json!({"vmType": null, "vmTypes": {"m5.large": 1, "c5.large": 1}, "subnetId": ["subnet-1", "subnet-2"]}),
                vec!["m5.large in subnet-1", "m5.large in subnet-2", "c5.large in subnet-1", "c5.large in subnet-2"],
            ),
            (
                json!({"vmType": null, "vmTypes": {"m5.large": 1, "c5.large": 1, "r5.large": 1},
                       "vmTypesPriority": {"r5.large": 1, "c5.large": 2}, "subnetId": "subnet-1"}),
                vec!["r5.large in subnet-1", "c5.large in subnet-1", "m5.large in subnet-1"],
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(names(&pools(&template(extra.clone()))), expected, "{extra}");
        }
    }

    /// (pools, open flags, remaining, spread) → the calls.
    type Case<'a> = (&'a [Pool], &'a [bool], u32, Spread, Vec<(usize, u32)>);

    #[test]
    fn machines_are_spread_over_the_open_pools_of_the_first_type() {
        let two_types = template(json!({"vmType": null, "vmTypes": {"m5.large": 1, "c5.large": 1}}));
        let one = pools(&template(json!({})));
        let six = pools(&two_types);
        let cases: [Case; 8] = [
            (&one, &[true, true, true], 10, Spread::RoundRobin, vec![(0, 4), (1, 3), (2, 3)]),
            (&one, &[false, true, true], 10, Spread::RoundRobin, vec![(1, 5), (2, 5)]),
            (&one, &[true, true, true], 2, Spread::RoundRobin, vec![(0, 1), (1, 1)]),
            (&one, &[true, true, true], 10, Spread::Prioritized, vec![(0, 10)]),
            (&one, &[false, false, true], 10, Spread::Prioritized, vec![(2, 10)]),
            (&one, &[false, false, false], 10, Spread::RoundRobin, vec![]),
            // The first type closed everywhere: the next type's pools.
            (&six, &[false, false, false, true, true, true], 6, Spread::RoundRobin, vec![(3, 2), (4, 2), (5, 2)]),
            (&six, &[true, true, true, true, true, true], 0, Spread::RoundRobin, vec![]),
        ];
        for (pools, open, remaining, spread, expected) in cases {
            assert_eq!(next_calls(pools, open, remaining, spread), expected, "{open:?} {remaining} {spread:?}");
        }
    }

    #[test]
    fn refusals_tell_capacity_from_limits_and_everything_else() {
        let cases = [
            ("InsufficientInstanceCapacity", Some(true)),
            ("InsufficientCapacity", Some(true)),
            ("Unsupported", Some(true)),
            ("MaxSpotInstanceCountExceeded", Some(true)),
            ("InstanceLimitExceeded", Some(false)),
            ("VcpuLimitExceeded", Some(false)),
            ("RequestLimitExceeded", None),
            ("InvalidParameterValue", None),
        ];
        for (code, capacity) in cases {
            assert_eq!(refusal(code).map(|r| r == Refusal::Capacity), capacity, "{code}");
        }
    }

    #[test]
    fn an_instant_fleets_capacity_errors_name_their_pools_once() {
        use aws_sdk_ec2::types::{CreateFleetError, FleetLaunchTemplateOverrides, InstanceType, LaunchTemplateAndOverridesResponse};
        let error = |code: &str, instance_type: &str, subnet: &str| {
            let overrides = FleetLaunchTemplateOverrides::builder().instance_type(InstanceType::from(instance_type)).subnet_id(subnet).build();
            let with = LaunchTemplateAndOverridesResponse::builder().overrides(overrides).build();
            CreateFleetError::builder().error_code(code).launch_template_and_overrides(with).build()
        };
        let errors = [
            error("InsufficientInstanceCapacity", "c5.large", "subnet-1"),
            error("InsufficientInstanceCapacity", "c5.large", "subnet-1"),
            error("UnfulfillableCapacity", "m5.large", "subnet-1"),
            error("Unsupported", "m5.large", "subnet-2"),
            error("InvalidLaunchTemplateId.NotFound", "r5.large", "subnet-1"),
        ];
        let refused: Vec<(String, String)> = refused_by_fleet(&errors).into_iter().map(|(p, code)| (p.key(), code)).collect();
        let expected = [("c5.large@subnet-1", "InsufficientInstanceCapacity"), ("m5.large@subnet-2", "Unsupported")];
        assert_eq!(refused, expected.map(|(p, c)| (p.to_owned(), c.to_owned())));
    }

    #[test]
    fn an_instant_fleet_names_each_pool_that_started_instances_once() {
        use aws_sdk_ec2::types::{CreateFleetInstance, FleetLaunchTemplateOverrides, InstanceType, LaunchTemplateAndOverridesResponse};
        let set = |instance_type: &str, subnet: &str, ids: &[&str]| {
            let overrides = FleetLaunchTemplateOverrides::builder().instance_type(InstanceType::from(instance_type)).subnet_id(subnet).build();
            let with = LaunchTemplateAndOverridesResponse::builder().overrides(overrides).build();
            let ids = ids.iter().map(|id| (*id).to_owned()).collect();
            CreateFleetInstance::builder().launch_template_and_overrides(with).set_instance_ids(Some(ids)).build()
        };
        let instances = [
            set("c5.large", "subnet-1", &["i-1"]),
            set("c5.large", "subnet-1", &["i-2", "i-3"]),
            set("m5.large", "subnet-2", &[]),
            set("m5.large", "subnet-3", &["i-4"]),
        ];
        let started: Vec<String> = started_by_fleet(&instances).iter().map(Pool::key).collect();
        assert_eq!(started, ["c5.large@subnet-1", "m5.large@subnet-3"]);
    }

    #[test]
    fn the_spread_follows_the_allocation_strategy() {
        let cases = [
            (json!({}), Spread::RoundRobin),
            (json!({"allocationStrategy": "lowestPrice"}), Spread::RoundRobin),
            (json!({"allocationStrategy": "prioritized"}), Spread::Prioritized),
            (json!({"allocationStrategy": "capacityOptimizedPrioritized"}), Spread::Prioritized),
        ];
        for (extra, expected) in cases {
            assert_eq!(spread(&template(extra.clone())), expected, "{extra}");
        }
    }
}
