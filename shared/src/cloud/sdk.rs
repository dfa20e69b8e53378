//! The production [`Cloud`]: the EC2 and Auto Scaling SDK clients, each operation dispatched to
//! the file of the owner kind it concerns.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_config::SdkConfig;

use super::images::RootDevices;
use super::spec::LaunchSpec;
use super::{
    Cloud, Cooling, Found, Launched, ManagedLaunchTemplate, Observed, Owner, Power, asg, ec2_fleet, instances, launch_template,
    run_instances, spot_fleet,
};
use crate::error::Result;
use crate::templates::{FleetType, ProviderApi, Template};

/// EC2 and Auto Scaling through the AWS SDK.
#[derive(Clone)]
pub struct SdkCloud {
    pub(super) ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    /// The launch templates this process created or found, by name (shared by clones).
    launch_templates: launch_template::Memo,
    /// The images' root device names this process described (shared by clones).
    root_devices: RootDevices,
}

impl SdkCloud {
    /// Both clients from `sdk` (wrap it with [`crate::aws::counting`] to count the calls).
    pub fn new(sdk: &SdkConfig) -> Self {
        SdkCloud {
            ec2: aws_sdk_ec2::Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(sdk),
            launch_templates: launch_template::Memo::default(),
            root_devices: RootDevices::default(),
        }
    }
}

#[async_trait]
impl Cloud for SdkCloud {
    async fn launch(
        &self,
        template: &Template,
        provider: &str,
        request_id: &str,
        count: u32,
        cooling: &Cooling,
    ) -> Result<Launched> {
        let (ec2, memo) = (&self.ec2, &self.launch_templates);
        let spec = LaunchSpec::new(ec2, &self.root_devices, template, provider, request_id).await?;
        match (template.provider_api(), template.fleet_type()) {
            (ProviderApi::RunInstances, _) => Ok(run_instances::launch(ec2, template, &spec, request_id, count, cooling).await),
            (ProviderApi::Ec2Fleet, Some(FleetType::Instant)) => {
                ec2_fleet::launch_instant(ec2, memo, template, &spec, count).await
            }
            (ProviderApi::Ec2Fleet, kind) => {
                let kind = kind.unwrap_or(FleetType::Request);
                ec2_fleet::launch_filling(ec2, memo, template, &spec, count, kind).await
            }
            (ProviderApi::SpotFleet, kind) => spot_fleet::launch(ec2, template, &spec, request_id, count, kind).await,
            (ProviderApi::Asg, _) => asg::launch(ec2, memo, &self.autoscaling, template, &spec, request_id, count).await,
        }
    }

    async fn launch_on_demand(
        &self,
        template: &Template,
        provider: &str,
        request_id: &str,
        count: u32,
    ) -> Result<Launched> {
        let spec = LaunchSpec::new(&self.ec2, &self.root_devices, template, provider, request_id).await?;
        Ok(run_instances::launch_on_demand(&self.ec2, template, &spec, request_id, count).await)
    }

    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, Observed>> {
        instances::describe(&self.ec2, ids).await
    }

    async fn find_tagged(&self, tag: &str, value: &str) -> Result<Vec<Observed>> {
        instances::find_tagged(&self.ec2, tag, value).await
    }

    async fn find_managed(&self) -> Result<Vec<Observed>> {
        instances::find_managed(&self.ec2).await
    }

    async fn terminate(&self, ids: &[String]) -> Result<()> {
        instances::terminate(&self.ec2, ids).await
    }

    async fn power(&self, id: &str, power: Power) -> Result<()> {
        instances::power(&self.ec2, id, power).await
    }

    async fn tag_request_id(&self, ids: &[String], request_id: &str) -> Result<()> {
        instances::tag_request_id(&self.ec2, ids, request_id).await
    }

    async fn fleet_instances(&self, owner: &Owner, template: Option<&Template>) -> Result<Found> {
        match owner {
            Owner::Ec2Fleet { id, .. } => ec2_fleet::instances(&self.ec2, id, template).await,
            Owner::SpotFleet { id, .. } => spot_fleet::instances(&self.ec2, id, template).await,
            Owner::Instances | Owner::Asg { .. } => Ok(Found::default()),
        }
    }

    async fn group_instances(&self, groups: &[(&str, Option<&Template>)]) -> Result<Vec<Found>> {
        asg::instances(&self.autoscaling, groups).await
    }

    async fn ended_fleets(&self, owners: &[&Owner]) -> Result<HashSet<String>> {
        let (mut ec2_fleets, mut spot_fleets) = (Vec::new(), Vec::new());
        for owner in owners {
            match owner {
                Owner::Ec2Fleet { id, .. } => ec2_fleets.push(id.clone()),
                Owner::SpotFleet { id, .. } => spot_fleets.push(id.clone()),
                Owner::Instances | Owner::Asg { .. } => {}
            }
        }
        let mut ended = HashSet::new();
        if !ec2_fleets.is_empty() {
            ended.extend(ec2_fleet::ended(&self.ec2, ec2_fleets).await?);
        }
        if !spot_fleets.is_empty() {
            ended.extend(spot_fleet::ended(&self.ec2, spot_fleets).await?);
        }
        Ok(ended)
    }

    async fn shrink(
        &self,
        owner: &Owner,
        template: Option<&Template>,
        leaving: &[String],
        empty: bool,
    ) -> Result<()> {
        match owner {
            Owner::Ec2Fleet { id, kind } => ec2_fleet::shrink(&self.ec2, id, *kind, template, leaving, empty).await,
            Owner::SpotFleet { id, kind } => spot_fleet::shrink(&self.ec2, id, *kind, template, leaving, empty).await,
            Owner::Asg { name } => asg::shrink(&self.autoscaling, name, leaving, empty).await,
            Owner::Instances => Ok(()),
        }
    }

    /// `request` fleets and Spot Fleets stop by themselves at their ValidUntil.
    async fn stop_filling(&self, owner: &Owner, filled: u32) -> Result<()> {
        match owner {
            Owner::Asg { name } => asg::stop(&self.autoscaling, name, filled).await,
            Owner::Ec2Fleet { id, kind: FleetType::Maintain } => ec2_fleet::set_target(&self.ec2, id, filled).await,
            _ => Ok(()),
        }
    }

    async fn managed_launch_templates(&self) -> Result<Vec<ManagedLaunchTemplate>> {
        launch_template::list_managed(&self.ec2).await
    }

    /// Forgets the id first: whether the delete succeeds or not, a later launch looks it up.
    async fn delete_launch_template(&self, id: &str) -> Result<()> {
        self.launch_templates.forget(id);
        launch_template::delete(&self.ec2, id).await
    }
}
