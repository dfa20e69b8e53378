//! An in-memory [`Cloud`] for unit tests: fleets and groups hold what the test says, fleets
//! AWS gave up on are listed, and every call is recorded by name so a test can hold the call
//! counts the moto tests measure.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Cloud, Cooling, Found, Launched, ManagedLaunchTemplate, Observed, Owner, Power};
use crate::error::Result;
use crate::templates::Template;

#[derive(Default)]
pub struct FakeCloud {
    /// What each fleet (by id) and group (by name) holds.
    pub held: HashMap<String, Found>,
    /// Fleets AWS deleted, cancelled or failed.
    pub ended: HashSet<String>,
    pub calls: Mutex<Vec<String>>,
}

impl FakeCloud {
    fn call(&self, name: impl Into<String>) {
        self.calls.lock().unwrap().push(name.into());
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn holding(&self, key: &str) -> Found {
        self.held.get(key).cloned().unwrap_or(Found { instances: Vec::new(), gone: true })
    }
}

#[async_trait]
impl Cloud for FakeCloud {
    async fn launch(&self, template: &Template, _: &str, request_id: &str, count: u32, _: &Cooling) -> Result<Launched> {
        self.call(format!("launch {} {request_id} {count}", template.template_id));
        Ok(Launched::default())
    }

    async fn launch_on_demand(&self, template: &Template, _: &str, request_id: &str, count: u32) -> Result<Launched> {
        self.call(format!("launch_on_demand {} {request_id} {count}", template.template_id));
        Ok(Launched::default())
    }

    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, Observed>> {
        self.call(format!("describe {}", ids.len()));
        Ok(HashMap::new())
    }

    async fn find_tagged(&self, tag: &str, value: &str) -> Result<Vec<Observed>> {
        self.call(format!("find_tagged {tag}={value}"));
        Ok(Vec::new())
    }

    async fn find_managed(&self) -> Result<Vec<Observed>> {
        self.call("find_managed");
        Ok(Vec::new())
    }

    async fn terminate(&self, ids: &[String]) -> Result<()> {
        self.call(format!("terminate {}", ids.join(",")));
        Ok(())
    }

    async fn power(&self, id: &str, power: Power) -> Result<()> {
        self.call(format!("{power:?} {id}"));
        Ok(())
    }

    async fn tag_request_id(&self, ids: &[String], request_id: &str) -> Result<()> {
        self.call(format!("tag {request_id} {}", ids.join(",")));
        Ok(())
    }

    async fn fleet_instances(&self, owner: &Owner, _: Option<&Template>) -> Result<Found> {
        let (Owner::Ec2Fleet { id, .. } | Owner::SpotFleet { id, .. }) = owner else { return Ok(Found::default()) };
        self.call(format!("fleet_instances {id}"));
        Ok(self.holding(id))
    }

    async fn group_instances(&self, groups: &[(&str, Option<&Template>)]) -> Result<Vec<Found>> {
        self.call(format!("group_instances {}", groups.len()));
        Ok(groups.iter().map(|(name, _)| self.holding(name)).collect())
    }

    async fn ended_fleets(&self, owners: &[&Owner]) -> Result<HashSet<String>> {
        self.call(format!("ended_fleets {}", owners.len()));
        let ids = owners.iter().filter_map(|owner| match owner {
            Owner::Ec2Fleet { id, .. } | Owner::SpotFleet { id, .. } => Some(id),
            Owner::Instances | Owner::Asg { .. } => None,
        });
        Ok(ids.filter(|id| self.ended.contains(*id)).cloned().collect())
    }

    async fn shrink(&self, owner: &Owner, _: Option<&Template>, leaving: &[String], empty: bool) -> Result<()> {
        self.call(format!("shrink {owner:?} {} empty={empty}", leaving.join(",")));
        Ok(())
    }

    async fn stop_filling(&self, owner: &Owner, filled: u32) -> Result<()> {
        self.call(format!("stop_filling {owner:?} {filled}"));
        Ok(())
    }

    async fn managed_launch_templates(&self) -> Result<Vec<ManagedLaunchTemplate>> {
        self.call("managed_launch_templates");
        Ok(Vec::new())
    }

    async fn delete_launch_template(&self, id: &str) -> Result<()> {
        self.call(format!("delete_launch_template {id}"));
        Ok(())
    }
}
