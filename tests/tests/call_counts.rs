//! What each HostFactory call costs in AWS calls on the deployed store (DynamoDB on moto, every
//! call recorded on the wire): the figures issue #16 sets, held here so a change that adds a
//! call per request or per machine fails.

use std::collections::BTreeMap;

use hostfactory_tests::rig::{Rig, StoreOn, machine_ids, request_id, return_body};

/// The calls since the log was cleared, by operation.
fn by_operation(rig: &Rig) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in rig.log.calls() {
        *counts.entry(call.action.unwrap_or_default()).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(op, n)| ((*op).to_owned(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_calls_cost_the_same_whatever_the_number_of_requests() {
    let rig = Rig::builder().region("il-central-1").max(100).store(StoreOn::DynamoOnWire).build().await;
    // requestMachines: the template's pools' cooldowns, the reservation with the request, the
    // launch, the launch recorded (the request with its machines).
    rig.log.clear();
    let mut ids = vec![request_id(&rig.request(10).await)];
    // (moto fills only MinCount=1 per RunInstances, so its launch takes one call per machine;
    // EC2 fills MaxCount in one.)
    let mut launched = by_operation(&rig);
    assert_eq!(launched.remove("RunInstances"), Some(10));
    assert_eq!(launched, counts(&[("BatchGetItem", 1), ("TransactWriteItems", 2)]));
    for _ in 1..5 {
        ids.push(request_id(&rig.request(10).await));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    // First poll: 5 requests × 10 machines observed, claimed and finished in one write.
    rig.log.clear();
    let answer = rig.status(&ids).await.body;
    let statuses: Vec<&str> = answer["requests"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["complete"; 5], "{answer}");
    let expected = [("BatchGetItem", 2), ("DescribeInstances", 1), ("TransactWriteItems", 1)];
    assert_eq!(by_operation(&rig), counts(&expected), "requests, their machines, EC2, one write");

    // A later poll answers from the records: the two batch reads.
    rig.log.clear();
    let again = rig.status(&ids).await.body;
    assert_eq!(again["requests"][4]["machines"].as_array().unwrap().len(), 10);
    assert_eq!(by_operation(&rig), counts(&[("BatchGetItem", 2)]));

    // Returning 10 machines, then polling the return to its end.
    let machines = machine_ids(&answer["requests"][0]);
    rig.log.clear();
    let ret = request_id(&rig.post("/api/v1/machines/return", return_body(&machines)).await);
    // The machines (recorded as held by no fleet, so their requests are not read), the return
    // with its machines, EC2, the return's progress.
    let expected = [("BatchGetItem", 1), ("TransactWriteItems", 1), ("TerminateInstances", 1), ("PutItem", 1)];
    assert_eq!(by_operation(&rig), counts(&expected));
    rig.log.clear();
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    // The return and its machines, EC2, one write of the return's finish with its machines,
    // then one of the release of their capacity (counter and operation marker) with the
    // record cleared of it.
    let expected = [("BatchGetItem", 2), ("DescribeInstances", 1), ("TransactWriteItems", 2)];
    assert_eq!(by_operation(&rig), counts(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_templates_reads_every_capacity_in_one_call() {
    let rig = Rig::builder().region("il-central-1").store(StoreOn::DynamoOnWire).build().await;
    rig.request(2).await;
    rig.log.clear();
    let response = hostfactory_tests::send_json(&rig.router, "GET", "/api/v1/templates", &serde_json::Value::Null, &[]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["templates"][0]["availableNumber"], 8);
    assert_eq!(by_operation(&rig), counts(&[("BatchGetItem", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_root_volume_size_describes_its_image_once_per_process() {
    let launch = serde_json::json!({"vmType": "t3.micro", "rootDeviceVolumeSize": 30, "volumeType": "gp3"});
    let rig = Rig::builder().region("il-central-1").launch(launch).store(StoreOn::DynamoOnWire).build().await;
    let launch_calls = [("BatchGetItem", 1), ("TransactWriteItems", 2), ("RunInstances", 1)];
    rig.log.clear();
    request_id(&rig.request(1).await);
    let first = [&launch_calls[..], &[("DescribeImages", 1)]].concat();
    assert_eq!(by_operation(&rig), counts(&first), "the image's root device name, then the launch");
    // The image's root device name never changes: a second launch of it does not ask again.
    rig.log.clear();
    let second = request_id(&rig.request(1).await);
    assert_eq!(by_operation(&rig), counts(&launch_calls));
    // ... and still launches on it with the template's root volume.
    let machines = machine_ids(&rig.settled(&second).await);
    let instances = rig.ec2.describe_instances().set_instance_ids(Some(machines)).send().await.unwrap();
    let instance = &instances.reservations()[0].instances()[0];
    let root = instance.block_device_mappings().iter().find(|m| m.device_name() == instance.root_device_name());
    let volume = root.and_then(|m| m.ebs()).and_then(|ebs| ebs.volume_id()).expect("a root volume");
    let volumes = rig.ec2.describe_volumes().volume_ids(volume).send().await.unwrap();
    assert_eq!(volumes.volumes()[0].size(), Some(30));
}
