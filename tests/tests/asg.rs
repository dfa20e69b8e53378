//! Auto Scaling groups (`providerApi` ASG) through a HostFactory cycle on moto: request → status
//! until complete → return → status until the return is complete → instances terminated and the
//! group deleted, with the AWS calls each HostFactory call makes counted; and one status call
//! over many groups and Spot Fleets.

use hostfactory_tests::cycle::{
    FLEET_ROLE, assert_tagged, past_expiry, provision, record_of, return_all, succeeded, three_requests_polled_once,
};
use hostfactory_tests::rig::{Rig, request_id};
use hostfactory_tests::wire::Fault;
use serde_json::{Value, json};

#[tokio::test]
async fn asg_full_cycle() {
    let launch = json!({"providerApi": "ASG", "priceType": "spot", "percentOnDemand": 50, "vmType": "t3.micro",
        "allocationStrategy": "priceCapacityOptimized", "maxSpotPrice": 0.1});
    let rig = Rig::builder().launch(launch).build().await;

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
    let rig = Rig::builder().launch(json!({"providerApi": "ASG", "vmType": "t3.micro"})).build().await;
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
async fn a_group_short_at_expiry_is_stopped_at_what_it_filled() {
    let launch = json!({"providerApi": "ASG", "vmType": "t3.micro", "spotFleetRequestExpiry": 5});
    let rig = Rig::builder().launch(launch).build().await;
    let req = request_id(&rig.request(3).await);
    let record = record_of(&rig, &req).await;
    let group = record.asg_name.clone().unwrap();
    // The group filled one of three (moto fills at once: it is shrunk behind our back).
    rig.autoscaling
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

#[tokio::test]
async fn one_status_call_over_many_groups_and_fleets_stays_within_the_call_budget() {
    let rig = Rig::builder().max(20).launch(json!({"providerApi": "ASG", "vmType": "t3.micro"})).build().await;
    let answers = three_requests_polled_once(&rig, 2).await;
    assert!(answers.as_array().unwrap().iter().all(|a| a["status"] == "complete"), "{answers}");
    assert_eq!(rig.log.actions("DescribeAutoScalingGroups"), 1, "one call for every group: {:?}", rig.log.calls());
    assert_eq!(rig.log.actions("DescribeInstances"), 1);

    let launch =
        json!({"providerApi": "SpotFleet", "priceType": "spot", "fleetRole": FLEET_ROLE, "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().max(20).launch(launch).build().await;
    let answers = three_requests_polled_once(&rig, 2).await;
    assert!(answers.as_array().unwrap().iter().all(|a| a["status"] == "complete"), "{answers}");
    let calls = rig.log.calls();
    assert_eq!(rig.log.actions("DescribeSpotFleetInstances"), 3, "one per fleet: {calls:?}");
    assert_eq!(rig.log.actions("DescribeInstances"), 1);
    assert_eq!(calls.len(), 4, "nothing else for filled fleets: {calls:?}");
}

/// The statuses CreateAutoScalingGroup was answered, in order.
fn group_statuses(rig: &Rig) -> Vec<u16> {
    let calls = rig.log.calls();
    calls.iter().filter(|c| c.action.as_deref() == Some("CreateAutoScalingGroup")).map(|c| c.status).collect()
}

#[tokio::test]
async fn a_group_on_a_launch_template_deleted_behind_the_memo_is_created_on_a_new_one() {
    let rig = Rig::builder().launch(json!({"providerApi": "ASG", "vmType": "t3.micro"})).build().await;
    let (answer, record) = provision(&rig, 1).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let deleted = record.launch_template_id.unwrap();
    rig.ec2.delete_launch_template().launch_template_id(&deleted).send().await.unwrap();

    rig.log.clear();
    let req = request_id(&rig.request(1).await);
    // moto answers InvalidLaunchTemplateId.NotFound.
    assert_eq!(group_statuses(&rig), [400, 200], "refused on the deleted launch template, then created: {:?}", rig.log.calls());
    assert_eq!(rig.log.actions("DescribeLaunchTemplates"), 0, "the memo's id was tried first");
    assert_eq!(rig.log.actions("CreateLaunchTemplate"), 1);
    let recreated = record_of(&rig, &req).await.launch_template_id.unwrap();
    assert_ne!(recreated, deleted);
    assert_eq!(rig.settled(&req).await["status"], "complete");
}

#[tokio::test]
async fn aws_validation_error_naming_the_launch_template_retries_once_and_others_do_not() {
    let rig = Rig::builder().launch(json!({"providerApi": "ASG", "vmType": "t3.micro"})).build().await;
    let (_, record) = provision(&rig, 1).await;
    let id = record.launch_template_id.unwrap();
    // What AWS answers for a deleted launch template (moto cannot: it answers EC2's code).
    let message = format!(
        "You must use a valid fully-formed launch template. The specified launch template, with template ID {id}, does not exist."
    );
    rig.wire.faults.inject(Fault::once("CreateAutoScalingGroup", "ValidationError", &message));
    rig.log.clear();
    let req = request_id(&rig.request(1).await);
    assert_eq!(group_statuses(&rig), [400, 200], "{:?}", rig.log.calls());
    // It exists after all (the answer was injected): created again, refused as existing, found.
    assert_eq!((rig.log.actions("CreateLaunchTemplate"), rig.log.actions("DescribeLaunchTemplates")), (1, 1));
    assert_eq!(record_of(&rig, &req).await.launch_template_id, Some(id));

    rig.wire.faults.inject(Fault::once("CreateAutoScalingGroup", "ValidationError", "Max bid price is too low."));
    rig.log.clear();
    let refused = rig.request(1).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(refused.message().contains("Max bid price is too low."), "{}", refused.message());
    assert_eq!(group_statuses(&rig), [400], "another validation error is not retried");
    assert_eq!(rig.log.calls().iter().filter(|c| c.action.as_deref().is_some_and(|a| a.contains("LaunchTemplate"))).count(), 0);
}
