//! requestMachines' input and the answer it shares with requestReturnMachines.

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestMachinesInput {
    pub template: RequestedTemplate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedTemplate {
    pub template_id: String,
    /// Signed so that `-1` or `0` reach validation and get a clear message.
    pub machine_count: i64,
}

impl RequestMachinesInput {
    /// Checks what serde cannot: a non-blank id and a count of at least one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.template.template_id.trim().is_empty() {
            return Err(Error::invalid("template.templateId", "must not be empty"));
        }
        if self.template.machine_count < 1 {
            return Err(Error::invalid(
                "template.machineCount",
                format!("must be at least 1, got {}", self.template.machine_count),
            ));
        }
        Ok(())
    }
}

/// Answer of requestMachines and requestReturnMachines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAccepted {
    pub message: String,
    pub request_id: String,
}
