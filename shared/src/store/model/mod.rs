//! The records the store keeps: one per request (provisioning or return) and one per machine.
//! Attribute names are camelCase in both backends (DynamoDB items, SQLite JSON bodies).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hostfactory::{MachineResult, RequestState};
use crate::templates::{FleetType, Template};

mod capacity;
mod lifecycle;
mod state;

pub use capacity::{Availability, CapacityChange, Cooldown, Counter, Direction, Health, Reservation, Rest, limit};
pub use lifecycle::{Action, ActionRecord, Effect, MachineState, Refusal, decide};
pub use state::{InstanceState, Owner};

/// Prefix of provisioning request ids (`req-<uuid>`).
pub const PROVISION_PREFIX: &str = "req-";
/// Prefix of return request ids (`ret-<uuid>`): getRequestStatus tells the two apart by it.
pub const RETURN_PREFIX: &str = "ret-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// requestMachines.
    Provision,
    /// requestReturnMachines.
    Return,
}

impl RequestKind {
    pub fn prefix(self) -> &'static str {
        match self {
            RequestKind::Provision => PROVISION_PREFIX,
            RequestKind::Return => RETURN_PREFIX,
        }
    }
}

/// Where a request is in its stored lifecycle (the record's `status` attribute). `Pending` and
/// `InProgress` answer HostFactory `running` ([`crate::hostfactory::RequestState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestPhase {
    /// Recorded; the cloud call has not been confirmed yet (a crash here is healed by the reconciler).
    Pending,
    /// The cloud accepted the call; machines are launching or terminating.
    InProgress,
    Complete,
    CompleteWithError,
}

impl RequestPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, RequestPhase::Complete | RequestPhase::CompleteWithError)
    }

    /// The `status` HostFactory sees (spec §2.4).
    pub fn hostfactory(self) -> RequestState {
        match self {
            RequestPhase::Pending | RequestPhase::InProgress => RequestState::Running,
            RequestPhase::Complete => RequestState::Complete,
            RequestPhase::CompleteWithError => RequestState::CompleteWithError,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub request_id: String,
    pub kind: RequestKind,
    /// Empty for return requests, which may span templates.
    pub template_id: String,
    /// HostFactory provider instance (`HF_PROVIDER_NAME`), e.g. `awsinst`.
    pub provider: String,
    pub machine_count: u32,
    pub status: RequestPhase,
    pub message: String,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
    /// Optimistic lock: every update must name the version it read; the store bumps it.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asg_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template_id: Option<String>,
    /// EC2 API the request used: `RunInstances`, `EC2Fleet`, `SpotFleet`, `ASG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_api: Option<String>,
    /// Type of the request's EC2 Fleet or Spot Fleet: `instant`, `request`, `maintain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_type: Option<FleetType>,
    /// TTL (epoch seconds), set when the request finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Set on a new provisioning request until a getRequestStatus names it. A request
    /// HostFactory never polls was never learned of (the requestMachines answer was lost) and
    /// is reaped by the reconciler after `HOSTFACTORY_UNCLAIMED_SECS`. Records written before
    /// this field existed read as claimed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unclaimed: bool,
    /// Capacity changes this request decided (in the same write) that may not be applied to
    /// the counter yet: applied after the write, cleared once applied, finished by the next
    /// getRequestStatus of the request or reconcile pass (each is idempotent by its op id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_capacity: Vec<CapacityChange>,
    /// Every machine of the request, when that is known for good: a provisioning request's
    /// instances once a launch that fills no further answered them (RunInstances, an instant
    /// fleet), a return request's machines from its creation. A status call then reads them
    /// by id in one batch instead of querying an index per request. `None` (a fleet or group
    /// still filling, a launch whose outcome is unknown, records from before the field) lists
    /// them by the index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_ids: Option<Vec<String>>,
}

/// The most machine ids a request record carries (a DynamoDB item holds 400 KB); a request
/// with more lists its machines by the index.
pub const MAX_RECORDED_MACHINE_IDS: usize = 5_000;

impl RequestRecord {
    /// Who holds the request's instances. The fleet type as recorded; records from before it
    /// was (and ORB imports) ask the template (with neither, an EC2 Fleet is taken for the
    /// instant kind: its machines are recorded, and a Spot Fleet for the `request` kind).
    pub fn owner(&self, template: Option<&Template>) -> Owner {
        let kind = self.fleet_type.or_else(|| template.and_then(Template::fleet_type));
        match (self.provider_api.as_deref(), &self.fleet_id, &self.asg_name) {
            (Some("SpotFleet"), Some(id), _) => {
                let kind = if kind == Some(FleetType::Maintain) { FleetType::Maintain } else { FleetType::Request };
                Owner::SpotFleet { id: id.clone(), kind }
            }
            (Some("EC2Fleet"), Some(id), _) => {
                Owner::Ec2Fleet { id: id.clone(), kind: kind.unwrap_or(FleetType::Instant) }
            }
            (Some("ASG"), _, Some(name)) => Owner::Asg { name: name.clone() },
            _ => Owner::Instances,
        }
    }

    /// A new `Pending` request with a fresh `req-`/`ret-` id, version 1.
    pub fn new(kind: RequestKind, template_id: &str, provider: &str, machine_count: u32, now: i64) -> Self {
        RequestRecord {
            request_id: format!("{}{}", kind.prefix(), uuid::Uuid::new_v4()),
            kind,
            template_id: template_id.to_owned(),
            provider: provider.to_owned(),
            machine_count,
            status: RequestPhase::Pending,
            message: String::new(),
            created_at: now,
            updated_at: now,
            version: 1,
            fleet_id: None,
            asg_name: None,
            launch_template_id: None,
            provider_api: None,
            fleet_type: None,
            expires_at: None,
            unclaimed: kind == RequestKind::Provision,
            pending_capacity: Vec::new(),
            machine_ids: None,
        }
    }

    /// Records `ids` as all of the request's machines (see [`RequestRecord::machine_ids`]),
    /// unless there are too many to carry.
    pub fn record_machine_ids(&mut self, ids: impl IntoIterator<Item = String>) {
        let ids: Vec<String> = ids.into_iter().collect();
        self.machine_ids = (ids.len() <= MAX_RECORDED_MACHINE_IDS).then_some(ids);
    }

    /// Whether `machine` is (still) one of this request's: launched by it (provisioning), or
    /// returned by it (a machine returned again under a later return, after this one failed,
    /// is no longer this one's).
    pub fn owns(&self, machine: &MachineRecord) -> bool {
        match self.kind {
            RequestKind::Provision => machine.request_id == self.request_id,
            RequestKind::Return => machine.return_request_id.as_deref() == Some(self.request_id.as_str()),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    /// Whether the reconciler still has work on it (the sparse `active` index): unfinished,
    /// finished but never claimed by HostFactory (it may hold machines nobody will return), or
    /// with capacity changes still to apply.
    pub fn is_active(&self) -> bool {
        !self.is_finished() || self.unclaimed || !self.pending_capacity.is_empty()
    }

    /// Moves to a final status and starts the retention clock.
    pub fn finish(&mut self, status: RequestPhase, message: impl Into<String>, now: i64, retention: Duration) {
        self.status = status;
        self.message = message.into();
        self.updated_at = now;
        self.expires_at = status.is_finished().then(|| expiry(now, retention));
    }
}

/// How the instance is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Spot,
    Ondemand,
}

impl Lifecycle {
    /// EC2's `InstanceLifecycle`: `spot` is Spot; none (and `scheduled`, `capacity-block`) is
    /// billed On-Demand.
    pub fn of_ec2(lifecycle: Option<&str>) -> Self {
        if lifecycle == Some("spot") { Lifecycle::Spot } else { Lifecycle::Ondemand }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Spot => "spot",
            Lifecycle::Ondemand => "ondemand",
        }
    }
}

/// Compared with EC2's spelling, as the contract tests do (`i.lifecycle == "spot"`).
impl PartialEq<&str> for Lifecycle {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineRecord {
    /// EC2 instance id.
    pub machine_id: String,
    /// The provisioning request that launched (or adopted) it. (Index keys cannot be empty
    /// strings in DynamoDB, so empty key attributes are left out of the item.)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// Set once HostFactory returns the machine (sparse index `return-index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_request_id: Option<String>,
    /// Key of the `template-index` (the reconciler's capacity recount); empty is left out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template_id: String,
    pub provider: String,
    /// PrivateDnsName: the host name HostFactory knows the machine by (index `name-index`);
    /// empty until EC2 assigns one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub private_ip_address: String,
    pub public_ip_address: String,
    /// EC2 state, stored by its name (`pending`, `running`, `shutting-down`, `terminated`, ...).
    pub state: InstanceState,
    /// HostFactory's per-machine result for the request it belongs to now.
    pub result: MachineResult,
    /// Epoch seconds (EC2 LaunchTime).
    pub launchtime: i64,
    pub lifecycle: Lifecycle,
    /// Epoch seconds of the spot interruption warning, when one arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_at: Option<i64>,
    /// Capacity units the machine fills: its `vmTypes` weight when a fleet or group launched
    /// it, else 1. What it gives back to `maxNumber` when it is gone.
    #[serde(default = "one_unit", skip_serializing_if = "is_one_unit")]
    pub units: u32,
    /// Epoch seconds since the cloud is taking the machine back (a Spot interruption warning,
    /// or EC2 stopping or terminating it unasked), while HostFactory still holds it: the sparse
    /// index `reclaim-index` that getReturnRequests `{}` reads. Cleared when it is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaimed_at: Option<i64>,
    pub message: String,
    pub version: u64,
    /// Epoch seconds.
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Whether a fleet or Auto Scaling group that could replace it holds it (so a return makes
    /// the owner give it up first): `Some(false)` for what a RunInstances or instant-fleet
    /// launch started, so a return need not read its request; `None` when not recorded
    /// (adopted, imported, older records): the return reads the request to find out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_held: Option<bool>,
    /// Operator actions on it, oldest first (the last [`lifecycle::KEPT_ACTIONS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionRecord>,
}

fn one_unit() -> u32 {
    1
}

fn is_one_unit(units: &u32) -> bool {
    *units == 1
}

/// The TTL value for something that finished at `now`.
pub fn expiry(now: i64, retention: Duration) -> i64 {
    now.saturating_add(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A page of a full listing (migration): `next` is the cursor to pass back, `None` at the end.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_carry_their_kind() {
        let provision = RequestRecord::new(RequestKind::Provision, "T", "awsinst", 2, 100);
        let ret = RequestRecord::new(RequestKind::Return, "", "awsinst", 1, 100);
        assert!(provision.request_id.starts_with("req-") && provision.request_id.len() == 40);
        assert!(ret.request_id.starts_with("ret-"));
        assert_eq!(provision.status.hostfactory(), RequestState::Running);
        assert_eq!(provision.expires_at, None);
    }

    #[test]
    fn finishing_starts_the_retention_clock() {
        let mut request = RequestRecord::new(RequestKind::Provision, "T", "awsinst", 2, 100);
        request.finish(RequestPhase::CompleteWithError, "1 of 2 failed", 200, Duration::from_secs(50));
        assert!(request.is_finished());
        assert_eq!(request.status.hostfactory(), RequestState::CompleteWithError);
        assert_eq!((request.updated_at, request.expires_at), (200, Some(250)));
        request.finish(RequestPhase::InProgress, "", 300, Duration::from_secs(50));
        assert_eq!(request.expires_at, None);
    }

    #[test]
    fn attribute_names_are_camel_case() {
        let request = RequestRecord::new(RequestKind::Return, "", "awsinst", 1, 100);
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["kind"], "return");
        assert_eq!(json["status"], "pending");
        assert_eq!(json["machineCount"], 1);
        assert!(json.get("fleetId").is_none(), "absent options are left out: {json}");
        assert!(json.get("unclaimed").is_none(), "a return request is never unclaimed: {json}");
    }

    #[test]
    fn new_provisioning_requests_are_unclaimed_and_stay_active_until_claimed() {
        let mut request = RequestRecord::new(RequestKind::Provision, "T", "awsinst", 2, 100);
        assert!(request.unclaimed && request.is_active());
        assert_eq!(serde_json::to_value(&request).unwrap()["unclaimed"], true);
        request.finish(RequestPhase::Complete, "", 200, Duration::from_secs(50));
        assert!(request.is_active(), "finished but never claimed: the reconciler reaps it");
        request.unclaimed = false;
        assert!(!request.is_active());
    }

    #[test]
    fn records_written_before_claims_existed_read_as_claimed() {
        let mut json = serde_json::to_value(RequestRecord::new(RequestKind::Provision, "T", "awsinst", 2, 100)).unwrap();
        json.as_object_mut().unwrap().remove("unclaimed");
        let old: RequestRecord = serde_json::from_value(json).unwrap();
        assert!(!old.unclaimed);
    }

    #[test]
    fn negative_max_is_unlimited() {
        assert_eq!(limit(-1), None);
        assert_eq!(limit(0), Some(0));
        assert_eq!(limit(10), Some(10));
    }
}
