//! What EC2 and the records say after a fault or crash run, against what HostFactory holds:
//! the promise is never a leaked instance, never past `maxNumber`, nothing released twice.

use std::collections::HashSet;
use std::fmt;

use crate::rig::Rig;

/// States in which an instance still runs (or will): it holds capacity and costs money.
const ENDED: [&str; 2] = ["shutting-down", "terminated"];

/// One look at a rig's template in EC2 and the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Tagged instances of the template not shutting down or terminated.
    pub live: usize,
    /// Live instances HostFactory holds (they were given to it and not returned).
    pub held: usize,
    /// Live instances HostFactory does not hold: launched for nobody, or returned yet running.
    pub leaked: Vec<String>,
    /// Live instances no machine record knows.
    pub unrecorded: Vec<String>,
    /// Machines HostFactory holds that are no longer live (taken from it).
    pub lost: Vec<String>,
    /// The capacity counter of the template.
    pub in_use: u64,
    /// `in_use` minus the units of the live machines HostFactory holds: above zero is capacity
    /// leaked (fewer machines offered than allowed), below zero is capacity released twice
    /// (`maxNumber` no longer holds).
    pub drift: i64,
}

impl Audit {
    /// Looks at EC2 (through the rig's wire, so calm its faults first) and the store.
    pub async fn of(rig: &Rig, held_by_hostfactory: &HashSet<String>) -> Audit {
        let live: Vec<String> = rig
            .tagged()
            .await
            .into_iter()
            .filter(|i| !ENDED.contains(&i.state.as_str()))
            .map(|i| i.instance_id)
            .collect();
        let records = rig.state.store.machines.batch_get(&live).await.expect("read machine records");
        let recorded: HashSet<&str> = records.iter().map(|m| m.machine_id.as_str()).collect();
        let held_units: u64 = records
            .iter()
            .filter(|m| held_by_hostfactory.contains(&m.machine_id))
            .map(|m| u64::from(m.units.max(1)))
            .sum();
        let live_set: HashSet<&String> = live.iter().collect();
        let in_use = rig.in_use().await;
        let mut lost: Vec<String> = held_by_hostfactory.iter().filter(|id| !live_set.contains(id)).cloned().collect();
        lost.sort();
        Audit {
            live: live.len(),
            held: live.iter().filter(|id| held_by_hostfactory.contains(*id)).count(),
            leaked: live.iter().filter(|id| !held_by_hostfactory.contains(*id)).cloned().collect(),
            unrecorded: live.iter().filter(|id| !recorded.contains(id.as_str())).cloned().collect(),
            lost,
            in_use,
            drift: i64::try_from(in_use).unwrap_or(i64::MAX) - i64::try_from(held_units).unwrap_or(i64::MAX),
        }
    }

    /// What breaks the promise, one line each; empty when EC2 and the records agree.
    pub fn violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        if !self.leaked.is_empty() {
            found.push(format!("{} leaked instance(s) (live, not held by HostFactory): {:?}", self.leaked.len(), self.leaked));
        }
        if !self.unrecorded.is_empty() {
            found.push(format!("{} live instance(s) no record knows: {:?}", self.unrecorded.len(), self.unrecorded));
        }
        if !self.lost.is_empty() {
            found.push(format!("{} machine(s) HostFactory holds are gone: {:?}", self.lost.len(), self.lost));
        }
        match self.drift {
            0 => {}
            d if d > 0 => found.push(format!("capacity drift +{d}: {} in use for {} held", self.in_use, self.held)),
            d => found.push(format!("capacity released twice: drift {d}, {} in use for {} held", self.in_use, self.held)),
        }
        found
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "live {} held {} leaked {} unrecorded {} lost {} in_use {} drift {}",
            self.live,
            self.held,
            self.leaked.len(),
            self.unrecorded.len(),
            self.lost.len(),
            self.in_use,
            self.drift
        )
    }
}
