//! getRequestStatus' input and answer: the state of each request and of its machines.

use serde::{Deserialize, Serialize};

use super::one_or_many;
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestStatusInput {
    #[serde(deserialize_with = "one_or_many")]
    pub requests: Vec<RequestRef>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRef {
    pub request_id: String,
}

impl RequestStatusInput {
    pub fn validate(&self) -> Result<(), Error> {
        if self.requests.is_empty() {
            return Err(Error::invalid("requests", "must list at least one request"));
        }
        for (i, request) in self.requests.iter().enumerate() {
            if request.request_id.trim().is_empty() {
                return Err(Error::invalid(format!("requests[{i}].requestId"), "must not be empty"));
            }
        }
        Ok(())
    }
}

/// Request `status`: `running` (keep polling), `complete`, `complete_with_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Running,
    Complete,
    CompleteWithError,
}

/// Machine `result`: `executing`, `succeed`, `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineResult {
    Executing,
    Succeed,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    pub machine_id: String,
    pub name: String,
    pub result: MachineResult,
    pub status: String,
    pub private_ip_address: String,
    pub public_ip_address: String,
    /// Epoch seconds (UTC). Lower-case on the wire, by the spec.
    #[serde(rename = "launchtime")]
    pub launchtime: i64,
    pub message: String,
}

/// What getRequestStatus reports of one request (an entry of `requests`, spec §2.4). Named
/// apart from the stored [`crate::store::RequestPhase`] and the answered [`RequestState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReport {
    pub request_id: String,
    pub status: RequestState,
    pub message: String,
    pub machines: Vec<MachineStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestStatusResponse {
    pub requests: Vec<RequestReport>,
}
