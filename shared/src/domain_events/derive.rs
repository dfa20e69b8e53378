//! Which domain events one change of a stored record is, decided as plain data from the record
//! before and after the change (a DynamoDB stream record's old and new images, a SQLite
//! trigger's old and new bodies). The same change always derives the same events with the same
//! ids, so a change delivered twice is dropped by consumers.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::hostfactory::MachineResult;
use crate::store::{InstanceState, MachineRecord, RequestKind, RequestPhase, RequestRecord};

/// The version of every event's `detail` layout.
pub const SCHEMA_VERSION: u32 = 1;

/// One domain event: its EventBridge `DetailType` and `Detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    pub detail_type: &'static str,
    pub detail: Value,
}

/// Every detail type, with the file of its JSON Schema under `openapi/events/`.
pub const DETAIL_TYPES: [(&str, &str); 14] = [
    ("Template Created", "template-created"),
    ("Template Updated", "template-updated"),
    ("Template Deleted", "template-deleted"),
    ("Template Validated", "template-validated"),
    ("Request Accepted", "request-accepted"),
    ("Request Completed", "request-completed"),
    ("Request Failed", "request-failed"),
    ("Return Requested", "return-requested"),
    ("Return Completed", "return-completed"),
    ("Machine Launched", "machine-launched"),
    ("Machine Failed", "machine-failed"),
    ("Machine Returned", "machine-returned"),
    ("Machine Reclaimed", "machine-reclaimed"),
    ("Machine Action", "machine-action"),
];

/// An id unique per change and detail type, the same whenever that change is derived again.
pub fn event_id(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\u{1f}"));
    let hex = hex::encode(&digest[..16]);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The fields every event's detail starts with.
pub(super) fn base(detail_type: &str, id_parts: &[&str], provider: &str, template_id: &str, at: i64) -> serde_json::Map<String, Value> {
    let mut detail = serde_json::Map::new();
    detail.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
    let mut parts = vec![detail_type];
    parts.extend_from_slice(id_parts);
    detail.insert("eventId".into(), json!(event_id(&parts)));
    detail.insert("provider".into(), json!(provider));
    detail.insert("templateId".into(), json!(template_id));
    detail.insert("time".into(), json!(at));
    detail
}

fn event(detail_type: &'static str, mut detail: serde_json::Map<String, Value>, extra: Value) -> DomainEvent {
    if let Value::Object(extra) = extra {
        detail.extend(extra);
    }
    DomainEvent { detail_type, detail: Value::Object(detail) }
}

/// The events of one change of a request record (`None`: absent before or after).
pub fn request_events(old: Option<&RequestRecord>, new: Option<&RequestRecord>) -> Vec<DomainEvent> {
    let Some(new) = new else { return Vec::new() };
    let version = new.version.to_string();
    let base = |detail_type: &str| base(detail_type, &[&new.request_id, &version], &new.provider, &new.template_id, new.updated_at);
    let finished_now = new.status.is_finished() && !old.is_some_and(|o| o.status.is_finished());
    let mut events = Vec::new();
    match new.kind {
        RequestKind::Provision => {
            if old.is_none() {
                let extra = json!({"requestId": new.request_id, "machineCount": new.machine_count, "createdAt": new.created_at});
                events.push(event("Request Accepted", base("Request Accepted"), extra));
            }
            if finished_now {
                let detail_type = if new.status == RequestPhase::Complete { "Request Completed" } else { "Request Failed" };
                let extra = json!({"requestId": new.request_id, "machineCount": new.machine_count, "message": new.message,
                    "machineIds": new.machine_ids.clone().unwrap_or_default()});
                events.push(event(detail_type, base(detail_type), extra));
            }
        }
        RequestKind::Return => {
            let ids = new.machine_ids.clone().unwrap_or_default();
            if old.is_none() {
                let extra = json!({"requestId": new.request_id, "machineIds": ids, "createdAt": new.created_at});
                events.push(event("Return Requested", base("Return Requested"), extra));
            }
            if finished_now {
                let extra = json!({"requestId": new.request_id, "machineIds": ids, "status": new.status, "message": new.message});
                events.push(event("Return Completed", base("Return Completed"), extra));
            }
        }
    }
    events
}

/// The events of one change of a machine record.
pub fn machine_events(old: Option<&MachineRecord>, new: Option<&MachineRecord>) -> Vec<DomainEvent> {
    let Some(new) = new else { return Vec::new() };
    let version = new.version.to_string();
    let base_of = |detail_type: &str| base(detail_type, &[&new.machine_id, &version], &new.provider, &new.template_id, new.updated_at);
    let machine = json!({"machineId": new.machine_id, "requestId": new.request_id, "name": new.name, "state": new.state,
        "lifecycle": new.lifecycle, "message": new.message});
    let with = |extra: Value| {
        let mut all = machine.clone();
        if let (Value::Object(all), Value::Object(extra)) = (&mut all, extra) {
            all.extend(extra);
        }
        all
    };
    let was = |test: &dyn Fn(&MachineRecord) -> bool| old.is_some_and(test);
    let mut events = Vec::new();
    let returned = new.return_request_id.is_some();
    if !returned && new.result == MachineResult::Succeed && !was(&|o| o.result == MachineResult::Succeed) {
        events.push(event("Machine Launched", base_of("Machine Launched"), with(json!({"launchTime": new.launchtime}))));
    }
    if !returned && new.result == MachineResult::Fail && !was(&|o| o.result == MachineResult::Fail) {
        events.push(event("Machine Failed", base_of("Machine Failed"), machine.clone()));
    }
    if returned && new.state == InstanceState::Terminated && !was(&|o| o.state == InstanceState::Terminated) {
        let extra = json!({"returnRequestId": new.return_request_id});
        events.push(event("Machine Returned", base_of("Machine Returned"), with(extra)));
    }
    let operator_terminated = new.last_action() == Some(crate::store::Action::Terminate);
    let reclaimed = new.reclaimed_at.is_some() && !was(&|o| o.reclaimed_at.is_some()) && !operator_terminated;
    let interrupted = new.interrupted_at.is_some() && !was(&|o| o.interrupted_at.is_some());
    if reclaimed || interrupted {
        let why = if interrupted { "spot interruption warning" } else { "stopped or terminated by EC2 unasked" };
        let extra = json!({"reason": why, "reclaimedAt": new.reclaimed_at.or(new.interrupted_at)});
        events.push(event("Machine Reclaimed", base_of("Machine Reclaimed"), with(extra)));
    }
    // The record keeps the last actions only: new ones are those the old record did not hold.
    let known = old.map_or(&[][..], |o| o.actions.as_slice());
    for action in new.actions.iter().filter(|a| !known.contains(a)) {
        let (name, at) = (action.action.as_str(), action.at.to_string());
        let detail = base("Machine Action", &[&new.machine_id, name, &at], &new.provider, &new.template_id, action.at);
        events.push(event("Machine Action", detail, with(json!({"action": action.action, "by": action.by, "at": action.at}))));
    }
    events
}

#[cfg(test)]
#[path = "derive_tests.rs"]
mod tests;
