//! EC2 Fleets (`providerApi` EC2Fleet, and spot templates, which default to an instant fleet)
//! through a HostFactory cycle on moto: request → status until complete → return → status until
//! the return is complete → instances terminated and the fleet deleted, with the AWS calls each
//! HostFactory call makes counted.

use hostfactory_tests::cycle::{assert_tagged, provision, record_of, return_all, succeeded};
use hostfactory_tests::rig::{Rig, request_id};
use hostfactory_tests::wire::Fault;
use serde_json::{Value, json};
use shared::cloud::tags;

#[tokio::test]
async fn an_instant_ec2_fleet_launches_in_one_call_and_reuses_its_launch_template() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "instant", "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().launch(launch).build().await;

    let first = request_id(&rig.request(3).await);
    let second = request_id(&rig.request(2).await);

    assert_eq!(rig.log.actions("CreateFleet"), 2);
    assert_eq!(rig.log.actions("CreateLaunchTemplate"), 1, "the second request reuses the launch template");
    assert_eq!(rig.log.actions("RunInstances"), 0);
    let answer = rig.settled(&first).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(answer["machines"].as_array().unwrap().len(), 3);
    assert!(answer["machines"].as_array().unwrap().iter().all(|m| m["result"] == "succeed" && m["name"] != ""));
    assert_eq!(rig.settled(&second).await["status"], "complete");
    let tagged = rig.tagged().await;
    assert_eq!(tagged.len(), 5);
    assert_eq!(tagged.iter().filter(|i| i.tags[tags::REQUEST_ID] == first).count(), 3);
    assert!(tagged.iter().all(|i| i.tags["team"] == "grid"));
    let record = rig.state.store.requests.get(&first).await.unwrap().unwrap();
    assert!(record.fleet_id.is_some_and(|id| id.starts_with("fleet-")), "the fleet is recorded");
    assert_eq!(rig.in_use().await, 5);

    let hosts: Vec<Value> = tagged.iter().map(|i| json!({"machineId": i.instance_id})).collect();
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": hosts})).await);
    let answer = rig.settled(&ret).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(answer["machines"].as_array().unwrap().len(), 5);
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn a_weighted_spot_fleet_counts_capacity_in_units() {
    let launch = json!({"priceType": "spot", "vmTypes": {"t3.micro": 1, "t3.small": 2}});
    let rig = Rig::builder().launch(launch).build().await;

    let req = request_id(&rig.request(4).await);

    assert_eq!(rig.log.actions("CreateFleet"), 1, "spot templates default to an instant EC2 Fleet");
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let machines = answer["machines"].as_array().unwrap().len();
    let tagged = rig.tagged().await;
    assert_eq!(tagged.len(), machines);
    assert!(tagged.iter().all(|i| i.lifecycle == "spot"), "every instance is spot: {tagged:?}");
    assert_eq!(rig.in_use().await, 4, "capacity counts units, not machines");
}

#[tokio::test]
async fn a_refused_fleet_releases_its_capacity() {
    let launch = json!({"providerApi": "EC2Fleet", "vmTypes": {"t3.micro": 1, "t3.small": 2}});
    let rig = Rig::builder().launch(launch).build().await;
    rig.wire.faults.inject(Fault::once("CreateFleet", "InsufficientInstanceCapacity", "No capacity in any pool."));
    rig.assert_launch_refused(4, "No capacity in any pool.").await;
}

#[tokio::test]
async fn ec2_fleet_request_and_maintain_full_cycles() {
    for fleet_type in ["request", "maintain"] {
        let launch = json!({"providerApi": "EC2Fleet", "fleetType": fleet_type, "vmTypes": {"t3.micro": 1}});
        let rig = Rig::builder().launch(launch).build().await;

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
    let rig = Rig::builder().launch(launch).build().await;
    let req = request_id(&rig.request(2).await);
    let record = record_of(&rig, &req).await;
    let fleet_id = record.fleet_id.clone().unwrap();
    rig.ec2.delete_fleets().fleet_ids(&fleet_id).terminate_instances(true).send().await.unwrap();

    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(rig.in_use().await, 0, "nothing of it is left in use");
}

#[tokio::test]
async fn a_failed_shrink_answers_502_and_terminates_nothing() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "maintain", "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().launch(launch).build().await;
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
async fn launch_templates_are_tagged_as_ours_and_recorded_on_the_request() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "request", "priceType": "spot", "percentOnDemand": 50,
        "allocationStrategy": "priceCapacityOptimized", "maxSpotPrice": 0.1,
        "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().launch(launch).build().await;
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

/// (DescribeLaunchTemplates, CreateLaunchTemplate, CreateFleet) calls since the log was cleared.
fn launch_template_calls(rig: &Rig) -> (usize, usize, usize) {
    let log = &rig.log;
    (log.actions("DescribeLaunchTemplates"), log.actions("CreateLaunchTemplate"), log.actions("CreateFleet"))
}

/// The statuses CreateFleet was answered, in order.
fn create_fleet_statuses(rig: &Rig) -> Vec<u16> {
    rig.log.calls().iter().filter(|c| c.action.as_deref() == Some("CreateFleet")).map(|c| c.status).collect()
}

#[tokio::test]
async fn the_process_remembers_its_launch_templates_and_recreates_one_deleted_behind_its_back() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "instant", "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().launch(launch).build().await;

    let first = request_id(&rig.request(1).await);
    assert_eq!(launch_template_calls(&rig), (1, 1, 1), "first launch: looked up by name (none), created");
    let created = record_of(&rig, &first).await.launch_template_id.unwrap();

    rig.log.clear();
    request_id(&rig.request(1).await);
    assert_eq!(launch_template_calls(&rig), (0, 0, 1), "the same content again: remembered, no launch template call");

    // A process starting afresh (a Lambda cold start) finds the launch template by name: one call.
    let restarted = shared::api::local_router(rig.restarted());
    let body = json!({"template": {"templateId": rig.template_id, "machineCount": 1}});
    rig.log.clear();
    let answer = hostfactory_tests::send_json(&restarted, "POST", "/api/v1/requests", &body, &[]).await;
    let fresh = request_id(&answer);
    assert_eq!(launch_template_calls(&rig), (1, 0, 1), "fresh process: one lookup, no create");
    assert_eq!(record_of(&rig, &fresh).await.launch_template_id.as_deref(), Some(created.as_str()));

    // Another process's reconciler deletes it: the launch on the remembered id is refused as not
    // found, the id forgotten, the launch template created again and the launch retried once.
    rig.ec2.delete_launch_template().launch_template_id(&created).send().await.unwrap();
    rig.log.clear();
    let healed = request_id(&rig.request(1).await);
    assert_eq!(launch_template_calls(&rig), (0, 1, 2), "{:?}", rig.log.calls());
    assert_eq!(create_fleet_statuses(&rig), [400, 200], "moto refuses the deleted id (InvalidLaunchTemplateId.NotFound)");
    let recreated = record_of(&rig, &healed).await.launch_template_id.unwrap();
    assert_ne!(recreated, created);
    assert_eq!(rig.settled(&healed).await["status"], "complete");

    rig.log.clear();
    request_id(&rig.request(1).await);
    assert_eq!(launch_template_calls(&rig), (0, 0, 1), "the new id is remembered");
    assert_eq!(rig.in_use().await, 5);
}
