//! The machine lifecycle end to end through the routers on moto: requestMachines,
//! getRequestStatus, requestReturnMachines, getReturnRequests.

use hostfactory_tests::rig::{Rig, request_id};
use hostfactory_tests::wire::Fault;
use serde_json::{Value, json};
use shared::cloud::tags;

#[tokio::test]
async fn request_status_return_and_status_again() {
    let rig = Rig::builder().max(5).build().await;

    let accepted = rig.request(3).await;
    let req = request_id(&accepted);
    assert!(req.starts_with("req-"), "{req}");
    assert_eq!(rig.in_use().await, 3);
    assert_eq!(rig.log.actions("RunInstances"), 3, "moto fills one per call");
    assert_eq!(rig.log.actions("DescribeInstances"), 0, "the launch answer is recorded as is");

    rig.log.clear();
    let answer = rig.settled(&req).await;
    assert_eq!(rig.log.calls().len(), 1, "one status call, one DescribeInstances: {:?}", rig.log.calls());
    assert_eq!(answer["status"], "complete", "{answer}");
    let machines = answer["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3, "{answer}");
    for machine in machines {
        assert_eq!(machine["result"], "succeed", "{machine}");
        assert_eq!(machine["status"], "running");
        assert!(machine["name"].as_str().unwrap().ends_with(".internal"), "{machine}");
        assert!(machine["privateIpAddress"].as_str().unwrap().starts_with("10.0."), "{machine}");
        assert!(machine["launchtime"].as_i64().unwrap() > 1_700_000_000, "{machine}");
    }

    let launched = rig.tagged().await;
    assert_eq!(launched.len(), 3);
    for instance in &launched {
        assert_eq!(instance.tags[tags::REQUEST_ID], req);
        assert_eq!(instance.tags[tags::PROVIDER], "awsinst");
        assert_eq!(instance.tags[tags::MANAGED], "true");
        assert_eq!(instance.tags["team"], "grid");
        assert_eq!(instance.tags["cost-center"], "42");
    }

    let ids: Vec<Value> = machines.iter().map(|m| json!({"machineId": m["machineId"]})).collect();
    rig.log.clear();
    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": ids})).await);
    assert!(ret.starts_with("ret-"), "{ret}");
    assert_eq!(rig.log.calls().len(), 1, "one TerminateInstances: {:?}", rig.log.calls());
    assert_eq!(rig.log.actions("TerminateInstances"), 1);

    let answer = rig.settled(&ret).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(answer["machines"].as_array().unwrap().len(), 3);
    assert!(answer["machines"].as_array().unwrap().iter().all(|m| m["result"] == "succeed"), "{answer}");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"));
    assert_eq!(rig.in_use().await, 0, "returned machines give their capacity back");

    // Finished requests answer from their records without asking EC2.
    rig.log.clear();
    let again = rig.status(&[&req, &ret]).await;
    assert_eq!(again.body["requests"][1]["status"], "complete");
    assert_eq!(rig.log.actions("DescribeInstances"), 0);
}

#[tokio::test]
async fn a_machine_returned_before_its_request_finished_is_counted_once() {
    let rig = Rig::builder().max(5).build().await;
    let req = request_id(&rig.request(2).await);
    let launched = rig.state.store.machines.list_by_request(&req).await.unwrap();
    let early = launched[0].machine_id.clone();

    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": [{"machineId": early}]})).await);
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    let answer = rig.settled(&req).await;

    assert_eq!(answer["status"], "complete", "a returned machine is not a failed launch: {answer}");
    assert_eq!(rig.in_use().await, 1, "released once, by the return");
}

#[tokio::test]
async fn the_cycle_on_the_dynamodb_store() {
    let rig = Rig::builder().max(5).dynamo().build().await;
    let req = request_id(&rig.request(2).await);
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let name = answer["machines"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(rig.in_use().await, 2);

    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": [{"name": name}]})).await);
    rig.settled(&ret).await;
    let answers = rig.status(&[&req, &ret, "ret-unknown"]).await.body["requests"].clone();
    assert_eq!(answers[0]["status"], "complete");
    assert_eq!(answers[1]["status"], "complete");
    assert_eq!(answers[1]["machines"][0]["name"], name.as_str());
    assert_eq!(answers[2]["status"], "complete_with_error");
    assert_eq!(rig.in_use().await, 1);
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_launches() {
    let rig = Rig::builder().max(5).build().await;

    let over = rig.request(6).await;
    assert_eq!(over.status, 422, "{}", over.body);
    assert!(over.message().contains("5 machine(s) available"), "{}", over.message());

    let zero = rig.request(0).await;
    assert_eq!(zero.status, 400, "{}", zero.body);
    assert!(zero.message().starts_with("template.machineCount"), "{}", zero.message());

    let unknown = rig.post("/api/v1/requests", json!({"template": {"templateId": "Nope", "machineCount": 1}})).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.message(), "template 'Nope' not found");

    assert_eq!(rig.log.actions("RunInstances"), 0);
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn mixed_ids_in_one_status_call_and_return_by_name() {
    let rig = Rig::builder().max(5).build().await;
    let req = request_id(&rig.request(2).await);
    let answer = rig.settled(&req).await;
    let name = answer["machines"][0]["name"].as_str().unwrap().to_owned();
    let kept = answer["machines"][1]["machineId"].as_str().unwrap().to_owned();

    let ret = request_id(&rig.post("/api/v1/machines/return", json!({"machines": [{"name": name}]})).await);
    rig.settled(&ret).await;

    rig.log.clear();
    let response = rig.status(&[&req, &ret, "req-unknown"]).await;
    let answers = response.body["requests"].as_array().unwrap();
    assert_eq!(answers[0]["requestId"], req.as_str());
    assert_eq!(answers[1]["requestId"], ret.as_str());
    assert_eq!(answers[1]["status"], "complete");
    assert_eq!(answers[1]["machines"][0]["name"], name.as_str());
    assert_eq!(answers[2]["status"], "complete_with_error");
    assert_eq!(answers[2]["machines"], json!([]));
    assert!(answers[2]["message"].as_str().unwrap().contains("not found"));

    let alive: Vec<_> = rig.tagged().await.into_iter().filter(|i| i.state == "running").collect();
    assert_eq!(alive.len(), 1);
    assert_eq!(alive[0].instance_id, kept);
    assert_eq!(rig.in_use().await, 1);

    // Returning unknown or already-gone machines still yields a ret- id to poll.
    let nothing = rig
        .post("/api/v1/machines/return", json!({"machines": [{"name": name}, {"machineId": "i-0000000000000000"}]}))
        .await;
    let empty = request_id(&nothing);
    assert_eq!(nothing.body["message"], "No active VM.");
    assert_eq!(rig.settled(&empty).await["status"], "complete");
}

/// An EC2 refusal no other pool can help with (here an invalid image; capacity errors are
/// routed around, see placement.rs) is the answer, recorded and released.
#[tokio::test]
async fn an_ec2_failure_is_reported_recorded_and_releases_capacity() {
    let rig = Rig::builder().max(5).build().await;
    rig.wire.faults.inject(Fault::once("RunInstances", "InvalidAMIID.NotFound", "The image id does not exist."));

    let response = rig.request(2).await;

    assert_eq!(response.status, 502, "{}", response.body);
    assert!(
        response.message().contains("InvalidAMIID.NotFound: The image id does not exist."),
        "{}",
        response.message()
    );
    assert_eq!(rig.wire.faults.remaining(), 0);
    assert_eq!(rig.log.actions("RunInstances"), 1, "a refused launch is not retried: {:?}", rig.log.calls());
    assert_eq!(rig.in_use().await, 0);
    assert!(rig.tagged().await.is_empty(), "nothing launched");
    let page = rig.state.store.records.page_requests(None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let recorded = &page.items[0];
    assert_eq!(recorded.status, shared::store::RequestPhase::CompleteWithError);
    assert!(recorded.message.contains("InvalidAMIID.NotFound"), "{}", recorded.message);
    let status = rig.status(&[&recorded.request_id]).await;
    assert_eq!(status.body["requests"][0]["status"], "complete_with_error");
}

#[tokio::test]
async fn a_partial_fill_is_topped_up_with_further_calls() {
    let rig = Rig::builder().max(5).build().await;
    // moto fills MinCount (1) and ignores MaxCount, like a real EC2 short of capacity.
    let req = request_id(&rig.request(3).await);
    assert_eq!(rig.log.actions("RunInstances"), 3);
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete");
    assert_eq!(answer["machines"].as_array().unwrap().len(), 3);
    assert_eq!(rig.in_use().await, 3);
}

#[tokio::test]
async fn get_return_requests_reports_hosts_the_cloud_took() {
    let rig = Rig::builder().max(5).build().await;
    let req = request_id(&rig.request(2).await);
    let answer = rig.settled(&req).await;
    let gone = answer["machines"][0].clone();
    let alive = answer["machines"][1].clone();
    let gone_id = gone["machineId"].as_str().unwrap().to_owned();
    rig.ec2.terminate_instances().instance_ids(&gone_id).send().await.unwrap();

    rig.log.clear();
    let hosts = json!({"machines": [
        {"name": gone["name"], "machineId": gone_id},
        {"name": alive["name"], "machineId": alive["machineId"]},
        {"name": "ip-10-9-9-9.ec2.internal", "machineId": "i-0fffffffffffffff0"},
    ]});
    let response = rig.post("/api/v1/machines/return-requests", hosts).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["status"], "complete");
    assert_eq!(
        response.body["requests"],
        json!([{"machine": gone["name"], "gracePeriod": 0}, {"machine": "ip-10-9-9-9.ec2.internal", "gracePeriod": 0}])
    );
    assert_eq!(rig.log.actions("DescribeInstances"), 1);

    let empty = rig.post("/api/v1/machines/return-requests", json!({})).await;
    assert_eq!(empty.body["requests"], json!([]));
}

/// 20 requests of 50 machines: one status call for all of them is one DescribeInstances (the
/// 1,000 ids fit one call), never one per request or per machine.
#[tokio::test]
async fn one_status_call_for_a_thousand_machines_describes_them_at_most_twice() {
    let rig = Rig::builder().max(1000).build().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(request_id(&rig.request(50).await));
    }
    rig.log.clear();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let response = rig.status(&refs).await;
    let answers = response.body["requests"].as_array().unwrap();
    assert_eq!(answers.len(), 20);
    assert!(answers.iter().all(|a| a["machines"].as_array().unwrap().len() == 50));
    let describes = rig.log.actions("DescribeInstances");
    assert!((1..=2).contains(&describes), "{describes} DescribeInstances calls");
}
