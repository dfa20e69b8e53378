use serde_json::json;

use super::*;
use crate::store::Action;

fn request(kind: &str, status: &str, version: u64) -> RequestRecord {
    serde_json::from_value(json!({
        "requestId": if kind == "return" { "ret-1" } else { "req-1" }, "kind": kind, "templateId": "T", "provider": "awsinst",
        "machineCount": 2, "status": status, "message": "m", "createdAt": 10, "updatedAt": 20 + version, "version": version,
        "machineIds": ["i-1", "i-2"]
    }))
    .unwrap()
}

fn machine(result: &str, state: &str, version: u64) -> MachineRecord {
    serde_json::from_value(json!({
        "machineId": "i-1", "requestId": "req-1", "templateId": "T", "provider": "awsinst", "privateIpAddress": "",
        "publicIpAddress": "", "state": state, "result": result, "launchtime": 5, "lifecycle": "ondemand", "message": "",
        "version": version, "updatedAt": 30 + version
    }))
    .unwrap()
}

fn types(events: &[DomainEvent]) -> Vec<&str> {
    events.iter().map(|e| e.detail_type).collect()
}

#[test]
fn request_changes_derive_their_events() {
    let pending = request("provision", "pending", 1);
    let running = request("provision", "in_progress", 2);
    let done = request("provision", "complete", 3);
    let failed = request("provision", "complete_with_error", 3);
    let ret = request("return", "in_progress", 1);
    let ret_done = request("return", "complete", 2);
    let cases: [(Option<&RequestRecord>, Option<&RequestRecord>, Vec<&str>); 8] = [
        (None, Some(&pending), vec!["Request Accepted"]),
        (Some(&pending), Some(&running), vec![]),
        (Some(&running), Some(&done), vec!["Request Completed"]),
        (Some(&running), Some(&failed), vec!["Request Failed"]),
        (Some(&done), Some(&done), vec![]),
        (None, Some(&ret), vec!["Return Requested"]),
        (Some(&ret), Some(&ret_done), vec!["Return Completed"]),
        (Some(&done), None, vec![]),
    ];
    for (old, new, expected) in cases {
        assert_eq!(types(&request_events(old, new)), expected, "{old:?} -> {new:?}");
    }
}

#[test]
fn machine_changes_derive_their_events() {
    let launching = machine("executing", "pending", 1);
    let up = machine("succeed", "running", 2);
    let failed = machine("fail", "terminated", 2);
    let mut returning = machine("executing", "running", 3);
    returning.return_request_id = Some("ret-1".into());
    let mut returned = returning.clone();
    returned.state = InstanceState::Terminated;
    let mut reclaimed = up.clone();
    reclaimed.reclaimed_at = Some(40);
    let mut acted = up.clone();
    acted.record_action(Action::Stop, "arn:aws:iam::1:user/ops", 50);
    let mut terminated_by_operator = returning.clone();
    terminated_by_operator.reclaimed_at = Some(60);
    terminated_by_operator.record_action(Action::Terminate, "local", 60);
    let cases: [(Option<&MachineRecord>, &MachineRecord, Vec<&str>); 8] = [
        (None, &launching, vec![]),
        (Some(&launching), &up, vec!["Machine Launched"]),
        (None, &up, vec!["Machine Launched"]),
        (Some(&up), &up, vec![]),
        (Some(&launching), &failed, vec!["Machine Failed"]),
        (Some(&returning), &returned, vec!["Machine Returned"]),
        (Some(&up), &reclaimed, vec!["Machine Reclaimed"]),
        (Some(&up), &terminated_by_operator, vec!["Machine Action"]),
    ];
    for (old, new, expected) in cases {
        assert_eq!(types(&machine_events(old, Some(new))), expected, "{old:?} -> {new:?}");
    }
    let action = &machine_events(Some(&up), Some(&acted))[0];
    assert_eq!((action.detail["action"].clone(), action.detail["by"].clone()), (json!("stop"), json!("arn:aws:iam::1:user/ops")));
}

#[test]
fn the_same_change_derives_the_same_event_ids_and_another_change_others() {
    let (old, new) = (request("provision", "in_progress", 2), request("provision", "complete", 3));
    let first = request_events(Some(&old), Some(&new));
    assert_eq!(first, request_events(Some(&old), Some(&new)));
    let detail = &first[0].detail;
    assert_eq!((detail["schemaVersion"].clone(), detail["provider"].clone(), detail["templateId"].clone()), (json!(1), json!("awsinst"), json!("T")));
    let later = request("provision", "complete", 4);
    let other = request_events(Some(&old), Some(&later));
    assert_ne!(first[0].detail["eventId"], other[0].detail["eventId"]);
}
