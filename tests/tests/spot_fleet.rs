//! Spot Fleet requests (`providerApi` SpotFleet) and heterogeneous templates (a Spot Fleet whose
//! On-Demand part or remainder RunInstances launches) through a HostFactory cycle on moto:
//! request → status until complete → return → status until the return is complete → instances
//! terminated and the fleet cancelled, with the AWS calls each HostFactory call makes counted.

use hostfactory_tests::cycle::{
    FLEET_ROLE, assert_tagged, past_expiry, provision, record_of, return_all, shrunk_past_expiry, succeeded,
};
use hostfactory_tests::rig::{Rig, request_id};
use hostfactory_tests::wire::Fault;
use serde_json::json;

#[tokio::test]
async fn spot_fleet_full_cycle() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE,
        "vmTypes": {"t3.micro": 1}, "maxSpotPrice": 0.05, "allocationStrategy": "capacityOptimized"});
    let rig = Rig::builder().launch(launch).build().await;

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
    let rig = Rig::builder().launch(launch).build().await;
    rig.wire.faults.inject(Fault::once("RequestSpotFleet", "InvalidSpotFleetRequestConfig", "Bad role."));
    rig.assert_launch_refused(2, "Bad role.").await;
}

#[tokio::test]
async fn spot_fleet_maintain_shrinks_then_is_cancelled_when_empty() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetType": "maintain",
        "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().launch(launch).build().await;
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
async fn a_spot_fleet_short_at_expiry_ends_with_error_and_releases_the_unfilled_units() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE,
        "vmTypes": {"t3.micro": 1}, "spotFleetRequestExpiry": 5});
    let rig = Rig::builder().launch(launch).build().await;
    let req = shrunk_past_expiry(&rig, 3).await;

    rig.log.clear();
    let answer = rig.settled(&req).await;

    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(succeeded(&answer), 1, "{answer}");
    assert_eq!(rig.log.actions("RunInstances"), 0, "spot only: no On-Demand remainder");
    assert_eq!(rig.in_use().await, 1, "the two units never filled are given back");
}

#[tokio::test]
async fn weighted_fleet_machines_give_back_their_units_when_returned() {
    let launch = json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE,
        "vmTypes": {"t3.small": 2}});
    let rig = Rig::builder().max(20).launch(launch).build().await;
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
async fn heterogeneous_launches_the_on_demand_remainder_once_spot_falls_short_past_expiry() {
    let launch = json!({"priceType": "heterogeneous", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1},
        "vmTypesOnDemand": {"t3.small": 1}, "spotFleetRequestExpiry": 5});
    let rig = Rig::builder().launch(launch).build().await;
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
    let rig = Rig::builder().launch(launch).build().await;
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
async fn concurrent_status_calls_launch_the_on_demand_remainder_once() {
    let launch = json!({"priceType": "heterogeneous", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1},
        "spotFleetRequestExpiry": 5});
    let rig = Rig::builder().launch(launch).dynamo().build().await;
    let req = shrunk_past_expiry(&rig, 3).await;

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
