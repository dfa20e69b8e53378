//! The enumerated keys of a template (`priceType`, `providerApi`, `fleetType`, `volumeType`,
//! the allocation strategies, `tenancy`) and the instance-type weight maps, as written in files.

use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// `priceType`: how instances are bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceType {
    #[default]
    Ondemand,
    Spot,
    /// A Spot fleet first; what it has not filled near expiry is requested On-Demand.
    Heterogeneous,
}

/// `providerApi`: the EC2 API that launches the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderApi {
    RunInstances,
    #[serde(rename = "EC2Fleet")]
    Ec2Fleet,
    SpotFleet,
    #[serde(rename = "ASG")]
    Asg,
}

impl fmt::Display for ProviderApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderApi::RunInstances => "RunInstances",
            ProviderApi::Ec2Fleet => "EC2Fleet",
            ProviderApi::SpotFleet => "SpotFleet",
            ProviderApi::Asg => "ASG",
        })
    }
}

/// `fleetType` of an EC2 Fleet or Spot Fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetType {
    Instant,
    Request,
    Maintain,
}

/// `volumeType` of the root EBS volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    #[default]
    Gp2,
    Gp3,
    Io1,
    Io2,
    Standard,
}

/// `allocationStrategy` of the Spot part of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationStrategy {
    /// RunInstances: fill the pools in their order (each topping up the one before). Fleets
    /// and groups take it as `capacityOptimizedPrioritized`.
    Prioritized,
    CapacityOptimized,
    CapacityOptimizedPrioritized,
    PriceCapacityOptimized,
    Diversified,
    LowestPrice,
}

/// `allocationStrategyOnDemand` of the On-Demand part of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnDemandAllocationStrategy {
    #[default]
    LowestPrice,
    Prioritized,
}

/// `tenancy` of the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tenancy {
    Default,
    Dedicated,
    Host,
}

/// Instance type → integer (weight or priority), in the order written.
pub type TypeWeights = IndexMap<String, i64>;
