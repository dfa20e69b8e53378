//! EC2 provisioning: launching through RunInstances, EC2 Fleet, Spot Fleet and ASG, observing
//! instances, and mapping what EC2 reports onto HostFactory's results (spec §2.4).

pub mod instances;
pub mod status;

/// Name prefix of the launch templates we create (`hostfactory-<content hash>`): the reconciler
/// deletes only templates so named and tagged `hostfactory:managed=true`.
pub const LAUNCH_TEMPLATE_PREFIX: &str = "hostfactory-";

/// Tags every launched instance, volume and fleet carries, so the reconciler can find them.
pub mod tags {
    pub const REQUEST_ID: &str = "hostfactory:request-id";
    pub const TEMPLATE_ID: &str = "hostfactory:template-id";
    pub const PROVIDER: &str = "hostfactory:provider";
    pub const MANAGED: &str = "hostfactory:managed";
}
