//! Everything that talks to EC2 and Auto Scaling, behind one narrow trait, [`Cloud`], listing
//! exactly the operations the product uses. [`SdkCloud`] is the production implementation; the
//! use cases and the reconciler see only the trait (`AppState.cloud`).
//!
//! One file per owner kind ([`run_instances`], [`ec2_fleet`], [`spot_fleet`], [`asg`]), each with
//! its launch, find-instances, ended?, shrink and stop; [`sdk`] dispatches on the typed
//! [`Owner`]. Shared pieces: [`spec`] (what one launch sends, ownership tags), [`pools`] (weights,
//! On-Demand split, expiry; pure), [`launch_template`] (the shared launch templates' whole
//! lifecycle), [`instances`] (describe, find, terminate, tag).

mod asg;
mod ec2_fleet;
#[cfg(test)]
pub mod fake;
pub mod instances;
mod images;
mod instance_types;
mod launch_template;
pub mod placement;
pub mod pools;
mod run_instances;
mod sdk;
pub mod spec;
mod spot_fleet;

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use crate::error::{Error, Result};
pub use crate::store::Owner;
use crate::templates::Template;

pub use asg::group_name;
pub use instances::{Observed, Power};
pub use launch_template::{LAUNCH_TEMPLATE_PREFIX, ManagedLaunchTemplate};
pub use placement::{Cooling, Pool};
pub use sdk::SdkCloud;
pub use spec::tags;

/// The operations the product asks of EC2 and Auto Scaling. Each names the AWS calls it makes
/// in its implementation's docs; their counts are part of the contract (the metrics count them).
#[async_trait]
pub trait Cloud: Send + Sync {
    /// Launches `count` units of `template` with the API it names, every instance tagged with
    /// `provider` and `request_id`.
    /// Launches `count` units of `template` for `request_id`; RunInstances skips the pools
    /// `cooling` names.
    async fn launch(
        &self,
        template: &Template,
        provider: &str,
        request_id: &str,
        count: u32,
        cooling: &Cooling,
    ) -> Result<Launched>;
    /// Launches `count` instances of `template` On-Demand with RunInstances (the remainder a
    /// `heterogeneous` template's Spot part did not fill). `Err` when nothing could be tried.
    async fn launch_on_demand(
        &self,
        template: &Template,
        provider: &str,
        request_id: &str,
        count: u32,
    ) -> Result<Launched>;
    /// What EC2 says about `ids`; ids it no longer knows are absent.
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, Observed>>;
    /// Every instance tagged `tag=value`.
    async fn find_tagged(&self, tag: &str, value: &str) -> Result<Vec<Observed>>;
    /// Every live instance tagged `hostfactory:managed=true`.
    async fn find_managed(&self) -> Result<Vec<Observed>>;
    async fn terminate(&self, ids: &[String]) -> Result<()>;
    /// Starts, stops, hibernates or reboots one instance (an operator's action).
    async fn power(&self, id: &str, power: Power) -> Result<()>;
    /// Adds the request id tag to `ids` (instances a fleet launched without it).
    async fn tag_request_id(&self, ids: &[String], request_id: &str) -> Result<()>;
    /// What a fleet (EC2 Fleet or Spot Fleet) holds now; `template` gives the weights.
    async fn fleet_instances(&self, owner: &Owner, template: Option<&Template>) -> Result<Found>;
    /// What each Auto Scaling group holds now, in the order named.
    async fn group_instances(&self, groups: &[(&str, Option<&Template>)]) -> Result<Vec<Found>>;
    /// The fleet ids among `owners` that AWS deleted, cancelled or failed (gave up on).
    async fn ended_fleets(&self, owners: &[&Owner]) -> Result<HashSet<String>>;
    /// Makes `owner` give up `leaving` (so AWS launches no replacements), deleting it when
    /// `empty`; `template` gives the weights.
    async fn shrink(&self, owner: &Owner, template: Option<&Template>, leaving: &[String], empty: bool)
    -> Result<()>;
    /// Stops an owner whose request gave up short of target at the `filled` units it holds.
    async fn stop_filling(&self, owner: &Owner, filled: u32) -> Result<()>;
    /// Our launch templates (tagged managed and so named).
    async fn managed_launch_templates(&self) -> Result<Vec<ManagedLaunchTemplate>>;
    async fn delete_launch_template(&self, id: &str) -> Result<()>;
}

/// What one launch produced: the instances EC2 started, and the error that stopped it short.
#[derive(Default)]
pub struct Launched {
    pub instances: Vec<Observed>,
    /// Units of each instance that fills more than one (weighted fleets); others fill one.
    pub unit_of: HashMap<String, u32>,
    pub error: Option<Error>,
    /// The EC2 Fleet or Spot Fleet holding the instances.
    pub fleet_id: Option<String>,
    /// The Auto Scaling group holding the instances.
    pub asg_name: Option<String>,
    pub launch_template_id: Option<String>,
    /// The fleet or group fills its target after the call: getRequestStatus discovers its
    /// instances, so nothing launched yet is not a shortfall.
    pub deferred: bool,
    /// The pools that answered a capacity error and were routed around, with its code.
    pub refused: Vec<(Pool, String)>,
    /// The pools skipped as cooling down, with the code that started it.
    pub skipped: Vec<(Pool, String)>,
    /// The pools that started instances (RunInstances, an instant EC2 Fleet; the other fleets
    /// and groups place theirs later).
    pub succeeded: Vec<Pool>,
}

impl Launched {
    /// A launch that failed before anything started.
    pub fn failed(error: Error) -> Self {
        Launched { error: Some(error), ..Launched::default() }
    }

    /// Capacity units `instance_id` fills: its `vmTypes` weight, else one.
    pub fn units_of(&self, instance_id: &str) -> u32 {
        self.unit_of.get(instance_id).copied().unwrap_or(1)
    }

    /// Capacity units the instances fill.
    pub fn units(&self) -> u32 {
        self.instances.iter().map(|i| self.units_of(&i.instance_id)).sum()
    }
}

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

    /// The units of the instances it keeps once `leaving` have gone.
    pub fn units_without(&self, leaving: &[String]) -> u32 {
        self.instances.iter().filter(|(id, _)| !leaving.contains(id)).map(|(_, units)| units).sum()
    }
}
