//! A HostFactory cycle on a [`Rig`] as the tests of each owner kind (EC2 Fleet, Spot Fleet,
//! Auto Scaling group) drive it: provision, return everything, and what EC2 and the records
//! say in between.

use serde_json::Value;
use shared::cloud::tags;
use shared::store::RequestRecord;

use crate::rig::{Rig, machine_ids, request_id, return_body};

/// The role Spot Fleet templates name (`fleetRole`).
pub const FLEET_ROLE: &str = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role";

/// Requests `count` units and polls until the request settles; its answer and record.
pub async fn provision(rig: &Rig, count: i64) -> (Value, RequestRecord) {
    let req = request_id(&rig.request(count).await);
    let answer = rig.settled(&req).await;
    let record = record_of(rig, &req).await;
    (answer, record)
}

/// Returns every machine of `answer` and polls until the return settles; the return's answer.
pub async fn return_all(rig: &Rig, answer: &Value) -> Value {
    let ret = request_id(&rig.post("/api/v1/machines/return", return_body(&machine_ids(answer))).await);
    rig.settled(&ret).await
}

/// The request's instances in EC2 carry every ownership tag and the template's own.
pub async fn assert_tagged(rig: &Rig, req: &str, machines: usize) {
    let tagged: Vec<_> = rig.tagged().await.into_iter().filter(|i| i.state != "terminated").collect();
    assert_eq!(tagged.len(), machines, "{tagged:?}");
    for instance in &tagged {
        assert_eq!(instance.tags[tags::REQUEST_ID], req, "{instance:?}");
        assert_eq!(instance.tags[tags::PROVIDER], "awsinst");
        assert_eq!(instance.tags[tags::MANAGED], "true");
        assert_eq!(instance.tags["team"], "grid");
    }
}

/// Moves the request's creation back past a 5-minute `spotFleetRequestExpiry` and the default
/// fallback margin, as if that much time had passed.
pub async fn past_expiry(rig: &Rig, req: &str) {
    let mut record = record_of(rig, req).await;
    record.created_at -= 5 * 60 + 61;
    rig.state.store.requests.update(&record).await.unwrap();
}

/// Requests three times `count` units, clears the call log and asks for the three in one
/// getRequestStatus call; the answers (the AWS calls that one status call made are in the log).
pub async fn three_requests_polled_once(rig: &Rig, count: i64) -> Value {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(request_id(&rig.request(count).await));
    }
    rig.log.clear();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    rig.status(&ids).await.body["requests"].clone()
}

/// Requests `count` units from a Spot Fleet template, shrinks the fleet to one unit (as if
/// Spot capacity ran out) and moves the request past its expiry; the request id.
pub async fn shrunk_past_expiry(rig: &Rig, count: i64) -> String {
    let req = request_id(&rig.request(count).await);
    let record = record_of(rig, &req).await;
    let fleet = record.fleet_id.clone().unwrap();
    rig.ec2.modify_spot_fleet_request().spot_fleet_request_id(&fleet).target_capacity(1).send().await.unwrap();
    past_expiry(rig, &req).await;
    req
}

/// The request's stored record.
pub async fn record_of(rig: &Rig, req: &str) -> RequestRecord {
    rig.state.store.requests.get(req).await.unwrap().unwrap()
}

/// The machines of `answer` that succeeded.
pub fn succeeded(answer: &Value) -> usize {
    answer["machines"].as_array().unwrap().iter().filter(|m| m["result"] == "succeed").count()
}
