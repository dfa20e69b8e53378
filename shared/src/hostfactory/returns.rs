//! requestReturnMachines' and getReturnRequests' input (the hosts named) and getReturnRequests'
//! answer.

use serde::{Deserialize, Serialize};

use super::one_or_many;
use crate::error::Error;

/// A host named by HostFactory: `machineId` is matched when present, otherwise `name`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineRef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub machine_id: Option<String>,
}

fn validate_machine_refs(machines: &[MachineRef]) -> Result<(), Error> {
    for (i, machine) in machines.iter().enumerate() {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        if blank(&machine.name) && blank(&machine.machine_id) {
            return Err(Error::invalid(format!("machines[{i}]"), "needs a name or a machineId"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReturnMachinesInput {
    #[serde(deserialize_with = "one_or_many")]
    pub machines: Vec<MachineRef>,
}

impl ReturnMachinesInput {
    pub fn validate(&self) -> Result<(), Error> {
        validate_machine_refs(&self.machines)
    }
}

/// getReturnRequests input: `{}` or the hosts HostFactory holds from this provider instance.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ReturnRequestsInput {
    #[serde(default, deserialize_with = "one_or_many")]
    pub machines: Vec<MachineRef>,
}

impl ReturnRequestsInput {
    pub fn validate(&self) -> Result<(), Error> {
        validate_machine_refs(&self.machines)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnRequest {
    /// Host name (PrivateDnsName).
    pub machine: String,
    /// Seconds left before the cloud takes the host.
    pub grace_period: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnRequestsResponse {
    /// Always `complete`: seen in every real output, though not in IBM's schema.
    pub status: String,
    pub message: String,
    pub requests: Vec<ReturnRequest>,
}
