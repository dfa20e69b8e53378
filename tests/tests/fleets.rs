//! Every provider API and priceType through a full HostFactory cycle on moto: request → status
//! until complete → return → status until the return is complete → instances terminated (and the
//! fleet or Auto Scaling group deleted), with the AWS calls each HostFactory call makes counted.

use hostfactory_tests::rig::{Rig, request_id, rig_with};
use hostfactory_tests::wire::Fault;
use serde_json::{Value, json};
use shared::provision::tags;
use shared::store::RequestRecord;

const FLEET_ROLE: &str = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role";

/// Requests `count` units and polls until the request settles; its answer and record.
async fn provision(rig: &Rig, count: i64) -> (Value, RequestRecord) {
    let req = request_id(&rig.request(count).await);
    let answer = rig.settled(&req).await;
    let record = record_of(rig, &req).await;
    (answer, record)
}

/// Returns every machine of `answer` and polls until the return settles; the return's answer.
async fn return_all(rig: &Rig, answer: &Value) -> Value {
    let hosts: Vec<Value> =
        answer["machines"].as_array().unwrap().iter().map(|m| json!({"machineId": m["machineId"]})).collect();
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": hosts})).await);
    rig.settled(&ret).await
}

/// The request's instances in EC2 carry every ownership tag and the template's own.
async fn assert_tagged(rig: &Rig, req: &str, machines: usize) {
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
async fn past_expiry(rig: &Rig, req: &str) {
    let mut record = record_of(rig, req).await;
    record.created_at -= 5 * 60 + 61;
    rig.state.store.requests.update(&record).await.unwrap();
}

/// The request's stored record.
async fn record_of(rig: &Rig, req: &str) -> RequestRecord {
    rig.state.store.requests.get(req).await.unwrap().unwrap()
}

fn succeeded(answer: &Value) -> usize {
    answer["machines"].as_array().unwrap().iter().filter(|m| m["result"] == "succeed").count()
}

#[tokio::test]
async fn spot_fleet_full_cycle() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE,
        "vmTypes": {"t3.micro": 1}, "maxSpotPrice": 0.05, "allocationStrategy": "capacityOptimized"});
    let rig = rig_with(10, false, launch).await;

    let accepted = rig.request(3).await;
    assert_eq!(rig.log.actions("RequestSpotFleet"), 1);
    assert_eq!(rig.log.actions("RunInstances"), 0);
    assert_eq!(rig.in_use().await, 3, "the fleet keeps its reservation while it fills");
    let req = request_id(&accepted);

    rig.log.clear();
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(succeeded(&answer), 3, "{answer}");
    assert_eq!(rig.log.actions("DescribeSpotFleetInstances"), 1, "{:?}", rig.log.calls());
    assert_eq!(rig.log.actions("DescribeInstances"), 1, "{:?}", rig.log.calls());
    let record = record_of(&rig, &req).await;
    assert!(record.fleet_id.as_deref().is_some_and(|id| id.starts_with("sfr-")), "{record:?}");
    assert_tagged(&rig, &req, 3).await;
    assert!(rig.tagged().await.iter().all(|i| i.lifecycle == "spot"));

    let ret = return_all(&rig, &answer).await;
    assert_eq!(ret["status"], "complete", "{ret}");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert_eq!(rig.log.actions("CancelSpotFleetRequests"), 1, "the empty fleet is cancelled");
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn a_refused_spot_fleet_releases_its_capacity() {
    let launch =
        json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE, "vmType": "t3.micro"});
    let rig = rig_with(10, false, launch).await;
    rig.wire.faults.inject(Fault::once("RequestSpotFleet", "InvalidSpotFleetRequestConfig", "Bad role."));
    rig.assert_launch_refused(2, "Bad role.").await;
}

#[tokio::test]
async fn ec2_fleet_request_and_maintain_full_cycles() {
    for fleet_type in ["request", "maintain"] {
        let launch = json!({"providerApi": "EC2Fleet", "fleetType": fleet_type, "vmTypes": {"t3.micro": 1}});
        let rig = rig_with(10, false, launch).await;

        let req = request_id(&rig.request(2).await);
        assert_eq!(rig.log.actions("CreateFleet"), 1);
        assert_eq!(rig.in_use().await, 2);
        rig.log.clear();
        let answer = rig.settled(&req).await;
        assert_eq!(answer["status"], "complete", "{fleet_type}: {answer}");
        assert_eq!(succeeded(&answer), 2, "{answer}");
        assert_eq!(rig.log.actions("DescribeFleetInstances"), 1, "{:?}", rig.log.calls());
        assert_eq!(rig.log.actions("DescribeInstances"), 1);
        assert_eq!(rig.log.actions("CreateTags"), 1, "the request id is added to the fleet's instances");
        assert_tagged(&rig, &req, 2).await;
        let record = record_of(&rig, &req).await;
        assert!(record.launch_template_id.is_some(), "{record:?}");
        let recorded = serde_json::to_value(record.fleet_type).unwrap();
        assert_eq!(recorded, fleet_type, "the fleet type is recorded: status and returns need no template");

        let ret = return_all(&rig, &answer).await;
        assert_eq!(ret["status"], "complete", "{ret}");
        assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
        let fleet = record.fleet_id.unwrap();
        let described = rig.ec2.describe_fleets().fleet_ids(&fleet).send().await.unwrap();
        let state = described.fleets()[0].fleet_state().unwrap().as_str().to_owned();
        assert!(state.starts_with("deleted"), "the empty fleet is deleted: {state}");
        assert_eq!(rig.in_use().await, 0);
    }
}

#[tokio::test]
async fn a_fleet_aws_deleted_short_of_target_ends_with_error() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "request", "vmTypes": {"t3.micro": 1}});
    let rig = rig_with(10, false, launch).await;
    let req = request_id(&rig.request(2).await);
    let record = record_of(&rig, &req).await;
    let fleet_id = record.fleet_id.clone().unwrap();
    rig.ec2.delete_fleets().fleet_ids(&fleet_id).terminate_instances(true).send().await.unwrap();

    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(rig.in_use().await, 0, "nothing of it is left in use");
}

#[tokio::test]
async fn asg_full_cycle() {
    let launch = json!({"providerApi": "ASG", "priceType": "spot", "percentOnDemand": 50, "vmType": "t3.micro",
        "allocationStrategy": "priceCapacityOptimized", "maxSpotPrice": 0.1});
    let rig = rig_with(10, false, launch).await;

    let req = request_id(&rig.request(2).await);
    assert_eq!(rig.log.actions("CreateAutoScalingGroup"), 1);
    rig.log.clear();
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(succeeded(&answer), 2, "{answer}");
    assert_eq!(rig.log.actions("DescribeAutoScalingGroups"), 1, "{:?}", rig.log.calls());
    assert_eq!(rig.log.actions("DescribeInstances"), 1);
    assert_tagged(&rig, &req, 2).await;
    let record = record_of(&rig, &req).await;
    assert_eq!(record.asg_name.as_deref(), Some(format!("hostfactory-{req}").as_str()));

    let ret = return_all(&rig, &answer).await;
    assert_eq!(ret["status"], "complete", "{ret}");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert!(rig.asg_describe(&format!("hostfactory-{req}")).await.is_none(), "the empty group is deleted");
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn returning_part_of_a_group_detaches_it_and_the_last_return_deletes_the_group() {
    let rig = rig_with(10, false, json!({"providerApi": "ASG", "vmType": "t3.micro"})).await;
    let (answer, record) = provision(&rig, 3).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let ids: Vec<String> =
        answer["machines"].as_array().unwrap().iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let group = record.asg_name.unwrap();

    rig.log.clear();
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": [{"machineId": ids[0]}]})).await);
    assert_eq!(rig.log.actions("DetachInstances"), 1, "{:?}", rig.log.calls());
    assert_eq!(rig.log.actions("DeleteAutoScalingGroup"), 0);
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    let groups = rig.asg_describe(&group).await;
    assert_eq!(groups.as_ref().and_then(|g| g.desired_capacity()), Some(2), "{groups:?}");
    assert_eq!(groups.unwrap().instances().len(), 2, "no replacement was launched");

    let rest: Vec<Value> = ids[1..].iter().map(|id| json!({"machineId": id})).collect();
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": rest})).await);
    assert_eq!(rig.log.actions("DeleteAutoScalingGroup"), 1);
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert!(rig.asg_describe(&group).await.is_none(), "the empty group is deleted");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn a_failed_shrink_answers_502_and_terminates_nothing() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "maintain", "vmTypes": {"t3.micro": 1}});
    let rig = rig_with(10, false, launch).await;
    let (answer, _) = provision(&rig, 2).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    // moto has no ModifyFleet: the shrink of a maintain fleet is driven through the wire.
    rig.wire.faults.inject(Fault::once("ModifyFleet", "UnauthorizedOperation", "Not allowed to modify fleets."));

    rig.log.clear();
    let first = &answer["machines"][0]["machineId"];
    let response = rig.post("/api/v1/machines/return", json!({"machines": [{"machineId": first}]})).await;

    assert_eq!(response.status, 502, "{}", response.body);
    assert!(response.message().contains("shrinking EC2 fleet"), "{}", response.message());
    assert!(response.message().contains("Not allowed to modify fleets."), "{}", response.message());
    assert_eq!(rig.wire.faults.remaining(), 0);
    assert_eq!(rig.log.actions("DescribeFleetInstances"), 1);
    assert_eq!(rig.log.actions("TerminateInstances"), 0);
    assert!(rig.tagged().await.iter().all(|i| i.state == "running"));
}

#[tokio::test]
async fn spot_fleet_maintain_shrinks_then_is_cancelled_when_empty() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetType": "maintain",
        "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1}});
    let rig = rig_with(10, false, launch).await;
    let (answer, record) = provision(&rig, 2).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let fleet = record.fleet_id.unwrap();

    rig.log.clear();
    let first = &answer["machines"][0]["machineId"];
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": [{"machineId": first}]})).await);
    assert_eq!(rig.log.actions("ModifySpotFleetRequest"), 1, "{:?}", rig.log.calls());
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    let described = rig.ec2.describe_spot_fleet_requests().spot_fleet_request_ids(&fleet).send().await.unwrap();
    let config = described.spot_fleet_request_configs()[0].spot_fleet_request_config().unwrap();
    assert_eq!(config.target_capacity(), Some(1));

    let second = &answer["machines"][1]["machineId"];
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": [{"machineId": second}]})).await);
    assert_eq!(rig.log.actions("CancelSpotFleetRequests"), 1);
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn heterogeneous_launches_the_on_demand_remainder_once_spot_falls_short_past_expiry() {
    let launch = json!({"priceType": "heterogeneous", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1},
        "vmTypesOnDemand": {"t3.small": 1}, "spotFleetRequestExpiry": 5});
    let rig = rig_with(10, false, launch).await;
    let req = request_id(&rig.request(3).await);
    assert_eq!(rig.log.actions("RequestSpotFleet"), 1, "heterogeneous starts with a Spot Fleet");
    let record = record_of(&rig, &req).await;
    // Spot fills one of three (moto fills at once: the fleet is shrunk behind our back) ...
    let fleet = record.fleet_id.clone().unwrap();
    rig.ec2.modify_spot_fleet_request().spot_fleet_request_id(&fleet).target_capacity(1).send().await.unwrap();

    // ... and before the expiry nothing else is launched.
    let early = rig.status(&[&req]).await.body["requests"][0].clone();
    assert_eq!(early["status"], "running", "{early}");
    assert_eq!(rig.log.actions("RunInstances"), 0);

    // Once spotFleetRequestExpiry (plus the margin) has passed, status launches the remainder.
    past_expiry(&rig, &req).await;
    rig.log.clear();
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(rig.log.actions("RunInstances"), 2, "moto fills one per call: {:?}", rig.log.calls());
    assert_eq!(succeeded(&answer), 3, "{answer}");
    let live: Vec<_> = rig.tagged().await.into_iter().filter(|i| i.state != "terminated").collect();
    assert_eq!(live.iter().filter(|i| i.lifecycle == "spot").count(), 1, "{live:?}");
    assert_eq!(live.iter().filter(|i| i.lifecycle != "spot").count(), 2, "{live:?}");
    assert_tagged(&rig, &req, 3).await;
    assert_eq!(rig.in_use().await, 3);

    let ret = return_all(&rig, &answer).await;
    assert_eq!(ret["status"], "complete", "{ret}");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert_eq!(rig.log.actions("CancelSpotFleetRequests"), 1);
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn percent_on_demand_of_a_spot_fleet_is_launched_on_demand_and_the_rest_by_the_fleet() {
    let launch = json!({"priceType": "heterogeneous", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1},
        "vmTypesOnDemand": {"t3.small": 1}, "percentOnDemand": 50});
    let rig = rig_with(10, false, launch).await;
    let (answer, _) = provision(&rig, 4).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(succeeded(&answer), 4, "{answer}");
    assert_eq!(rig.log.actions("RunInstances"), 2, "two On-Demand, one per moto call");
    let live = rig.tagged().await;
    assert_eq!(live.iter().filter(|i| i.lifecycle == "spot").count(), 2, "{live:?}");
    assert_tagged(&rig, answer["requestId"].as_str().unwrap(), 4).await;
    assert_eq!(rig.in_use().await, 4);
}

#[tokio::test]
async fn a_spot_fleet_short_at_expiry_ends_with_error_and_releases_the_unfilled_units() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE,
        "vmTypes": {"t3.micro": 1}, "spotFleetRequestExpiry": 5});
    let rig = rig_with(10, false, launch).await;
    let req = request_id(&rig.request(3).await);
    let record = record_of(&rig, &req).await;
    let fleet = record.fleet_id.clone().unwrap();
    rig.ec2.modify_spot_fleet_request().spot_fleet_request_id(&fleet).target_capacity(1).send().await.unwrap();
    past_expiry(&rig, &req).await;

    rig.log.clear();
    let answer = rig.settled(&req).await;

    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(succeeded(&answer), 1, "{answer}");
    assert_eq!(rig.log.actions("RunInstances"), 0, "spot only: no On-Demand remainder");
    assert_eq!(rig.in_use().await, 1, "the two units never filled are given back");
}

#[tokio::test]
async fn one_status_call_over_many_groups_and_fleets_stays_within_the_call_budget() {
    let rig = rig_with(20, false, json!({"providerApi": "ASG", "vmType": "t3.micro"})).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(request_id(&rig.request(2).await));
    }
    rig.log.clear();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let answers = rig.status(&ids).await.body["requests"].clone();
    assert!(answers.as_array().unwrap().iter().all(|a| a["status"] == "complete"), "{answers}");
    assert_eq!(rig.log.actions("DescribeAutoScalingGroups"), 1, "one call for every group: {:?}", rig.log.calls());
    assert_eq!(rig.log.actions("DescribeInstances"), 1);

    let launch =
        json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1}});
    let rig = rig_with(20, false, launch).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(request_id(&rig.request(2).await));
    }
    rig.log.clear();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let answers = rig.status(&ids).await.body["requests"].clone();
    assert!(answers.as_array().unwrap().iter().all(|a| a["status"] == "complete"), "{answers}");
    let calls = rig.log.calls();
    assert_eq!(rig.log.actions("DescribeSpotFleetInstances"), 3, "one per fleet: {calls:?}");
    assert_eq!(rig.log.actions("DescribeInstances"), 1);
    assert_eq!(calls.len(), 4, "nothing else for filled fleets: {calls:?}");
}

#[tokio::test]
async fn launch_templates_are_tagged_as_ours_and_recorded_on_the_request() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "request", "priceType": "spot", "percentOnDemand": 50,
        "allocationStrategy": "priceCapacityOptimized", "maxSpotPrice": 0.1,
        "vmTypes": {"t3.micro": 1}});
    let rig = rig_with(10, false, launch).await;
    let (answer, record) = provision(&rig, 4).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let id = record.launch_template_id.unwrap();
    let templates = rig.ec2.describe_launch_templates().launch_template_ids(&id).send().await.unwrap();
    let tags: Vec<(&str, &str)> = templates.launch_templates()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    assert!(tags.contains(&(tags::MANAGED, "true")), "{tags:?}");
    assert!(tags.contains(&(tags::PROVIDER, "awsinst")), "{tags:?}");
    let live: Vec<_> = rig.tagged().await.into_iter().filter(|i| i.state != "terminated").collect();
    assert_eq!(live.iter().filter(|i| i.lifecycle == "spot").count(), 2, "percentOnDemand splits the target: {live:?}");
}

#[tokio::test]
async fn concurrent_status_calls_launch_the_on_demand_remainder_once() {
    let launch = json!({"priceType": "heterogeneous", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1},
        "spotFleetRequestExpiry": 5});
    let rig = rig_with(10, true, launch).await;
    let req = request_id(&rig.request(3).await);
    let record = record_of(&rig, &req).await;
    let fleet = record.fleet_id.clone().unwrap();
    rig.ec2.modify_spot_fleet_request().spot_fleet_request_id(&fleet).target_capacity(1).send().await.unwrap();
    past_expiry(&rig, &req).await;

    rig.log.clear();
    let ids = [req.as_str()];
    let (a, b) = tokio::join!(rig.status(&ids), rig.status(&ids));
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    let answer = rig.settled(&req).await;

    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(rig.log.actions("RunInstances"), 2, "two units, launched once: {:?}", rig.log.calls());
    assert_eq!(answer["machines"].as_array().unwrap().len(), 3, "{answer}");
    assert_eq!(rig.in_use().await, 3);
}

#[tokio::test]
async fn weighted_fleet_machines_give_back_their_units_when_returned() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE,
        "vmTypes": {"t3.small": 2}});
    let rig = rig_with(20, false, launch).await;
    let (answer, _) = provision(&rig, 5).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let machines = rig.state.store.machines.list_by_request(answer["requestId"].as_str().unwrap()).await.unwrap();
    let units: u32 = machines.iter().map(|m| m.units).sum();
    assert!(units >= 5, "{machines:?}");
    assert!(machines.iter().all(|m| m.units == 2), "weights are recorded per machine: {machines:?}");
    assert_eq!(rig.in_use().await, u64::from(units), "what runs is counted, overshoot included");

    let ret = return_all(&rig, &answer).await;
    assert_eq!(ret["status"], "complete", "{ret}");
    assert_eq!(rig.in_use().await, 0, "each machine gave back its own units");
}

#[tokio::test]
async fn a_group_short_at_expiry_is_stopped_at_what_it_filled() {
    let rig =
        rig_with(10, false, json!({"providerApi": "ASG", "vmType": "t3.micro", "spotFleetRequestExpiry": 5})).await;
    let req = request_id(&rig.request(3).await);
    let record = record_of(&rig, &req).await;
    let group = record.asg_name.clone().unwrap();
    // The group filled one of three (moto fills at once: it is shrunk behind our back).
    rig.state
        .autoscaling
        .set_desired_capacity()
        .auto_scaling_group_name(&group)
        .desired_capacity(1)
        .send()
        .await
        .unwrap();
    past_expiry(&rig, &req).await;

    rig.log.clear();
    let answer = rig.settled(&req).await;

    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(rig.log.actions("UpdateAutoScalingGroup"), 1, "{:?}", rig.log.calls());
    let described = rig.asg_describe(&group).await.unwrap();
    assert_eq!((described.max_size(), described.desired_capacity()), (Some(1), Some(1)));
    assert_eq!(rig.in_use().await, 1, "the two units never filled are given back");
}
