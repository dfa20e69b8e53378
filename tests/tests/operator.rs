//! The operator lifecycle of machines on moto (issue #14): `GET /api/v1/machines` pages from
//! the store's indexes, `GET /api/v1/machines/{id}`, and `POST /api/v1/machines/{id}/{action}`
//! through the machine's state machine, with the HostFactory calls seeing an operator's stop as
//! no reclaim and an operator's terminate as one.

use std::collections::BTreeSet;

use hostfactory_tests::rig::{Rig, StoreOn, machine_ids, request_id, return_body};
use hostfactory_tests::{Response, get, invoke_event, send_json, unique};
use serde_json::{Value, json};

/// `POST /api/v1/machines/{id}/{action}` on the local server.
async fn act(rig: &Rig, id: &str, action: &str) -> Response {
    send_json(&rig.router, "POST", &format!("/api/v1/machines/{id}/{action}"), &Value::Null, &[]).await
}

/// [`act`], which must succeed: the machine after it.
async fn done(rig: &Rig, id: &str, action: &str) -> Value {
    let response = act(rig, id, action).await;
    assert_eq!(response.status, 200, "{action}: {}", response.body);
    response.body
}

/// `action` must be refused with 409 naming `state` and exactly `allowed`.
async fn refused(rig: &Rig, id: &str, action: &str, state: &str, allowed: &[&str]) {
    let response = act(rig, id, action).await;
    assert_eq!(response.status, 409, "{action} when {state}: {}", response.body);
    assert_eq!(response.body["state"], state, "{}", response.body);
    assert_eq!(response.body["allowedActions"], json!(allowed), "{}", response.body);
}

async fn ec2_state(rig: &Rig, id: &str) -> String {
    let described = rig.ec2.describe_instances().instance_ids(id).send().await.unwrap();
    let instance = described.reservations()[0].instances()[0].clone();
    instance.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap()
}

const RUNNING: [&str; 4] = ["stop", "restart", "pause", "terminate"];
const STOPPED: [&str; 2] = ["start", "terminate"];
const PAUSED: [&str; 3] = ["resume", "stop", "terminate"];

#[tokio::test]
async fn every_transition_of_the_state_machine_is_walked_and_every_invalid_one_refused() {
    let rig = Rig::builder().dynamo().launch(json!({"vmType": "t3.micro", "hibernate": true})).build().await;
    let id = rig.granted(1).await.remove(0);
    let shown = get(&rig.router, &format!("/api/v1/machines/{id}"), &[]).await;
    assert_eq!((shown.body["machineState"].clone(), shown.body["allowedActions"].clone()), (json!("RUNNING"), json!(RUNNING)));

    for action in ["start", "resume"] {
        refused(&rig, &id, action, "RUNNING", &RUNNING).await;
    }
    rig.log.clear();
    assert_eq!(done(&rig, &id, "restart").await["machineState"], "RUNNING");
    assert_eq!(rig.log.actions("RebootInstances"), 1);
    let stopped = done(&rig, &id, "stop").await;
    assert_eq!((stopped["machineState"].clone(), stopped["state"].clone()), (json!("STOPPED"), json!("stopped")));
    assert_eq!(ec2_state(&rig, &id).await, "stopped");
    for action in ["stop", "restart", "pause", "resume"] {
        refused(&rig, &id, action, "STOPPED", &STOPPED).await;
    }
    assert_eq!(done(&rig, &id, "start").await["machineState"], "RUNNING");
    assert_eq!(done(&rig, &id, "pause").await["machineState"], "PAUSED");
    assert!(rig.log.calls().iter().any(|c| c.action.as_deref() == Some("StopInstances") && c.form.iter().any(|p| p == "Hibernate=true")));
    for action in ["start", "restart", "pause"] {
        refused(&rig, &id, action, "PAUSED", &PAUSED).await;
    }
    assert_eq!(done(&rig, &id, "resume").await["machineState"], "RUNNING");
    assert_eq!(done(&rig, &id, "pause").await["machineState"], "PAUSED");
    // A paused machine is stopped already: `stop` makes it a plain stopped one without a call.
    rig.log.clear();
    assert_eq!(done(&rig, &id, "stop").await["machineState"], "STOPPED");
    assert_eq!(rig.log.actions("StopInstances"), 0);
    assert_eq!(done(&rig, &id, "start").await["machineState"], "RUNNING");

    let ended = done(&rig, &id, "terminate").await;
    assert_eq!((ended["machineState"].clone(), ended["allowedActions"].clone()), (json!("TERMINATED"), json!([])), "{ended}");
    for action in ["start", "stop", "restart", "pause", "resume", "terminate"] {
        refused(&rig, &id, action, "TERMINATED", &[]).await;
    }
    // Every action is on the record, by whom and when.
    let actions: Vec<&str> = ended["actions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["restart", "stop", "start", "pause", "resume", "pause", "stop", "start", "terminate"]);
    assert!(ended["actions"].as_array().unwrap().iter().all(|a| a["by"] == "local" && a["at"].as_i64().unwrap() > 0));

    // Bad input: an unknown action, an unknown machine.
    let unknown = act(&rig, &id, "reboot").await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.message().starts_with("action: 'reboot' is not an action; one of start, stop"), "{}", unknown.message());
    assert_eq!(act(&rig, "i-0000000000000000f", "stop").await.status, 404);
}

#[tokio::test]
async fn pause_needs_an_instance_launched_hibernation_capable() {
    let rig = Rig::builder().build().await;
    let id = rig.granted(1).await.remove(0);
    let response = act(&rig, &id, "pause").await;
    assert_eq!(response.status, 409, "{}", response.body);
    assert!(response.message().contains("not launched hibernation-capable (template key `hibernate: true`)"), "{}", response.body);
    assert_eq!(response.body["state"], "RUNNING");
    assert_eq!(ec2_state(&rig, &id).await, "running");
}

#[tokio::test]
async fn the_hostfactory_calls_see_an_operator_stop_as_no_reclaim_and_an_operator_terminate_as_one() {
    let rig = Rig::builder().dynamo().build().await;
    let request = request_id(&rig.request(2).await);
    let ids = machine_ids(&rig.settled(&request).await);
    let (stopped, ended) = (&ids[0], &ids[1]);
    assert_eq!(rig.in_use().await, 2);
    done(&rig, stopped, "stop").await;
    // EC2's own event for the stop is recorded, but is no reclaim.
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(format!("{}/../events/ec2-state-change-terminated.json", env!("CARGO_MANIFEST_DIR"))).unwrap()).unwrap();
    event["detail"]["instance-id"] = json!(stopped);
    event["detail"]["state"] = json!("stopped");
    shared::reconcile::events::dispatch(&rig.state, event).await.unwrap();
    let listed = rig.post("/api/v1/machines/return-requests", return_body(&ids)).await;
    assert_eq!(listed.body["requests"], json!([]), "{}", listed.body);
    assert_eq!(rig.post("/api/v1/machines/return-requests", json!({})).await.body["requests"], json!([]));
    let status = rig.settled(&request).await;
    let states: Vec<&str> = status["machines"].as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert!(states.contains(&"stopped"), "getRequestStatus shows its EC2 state: {status}");
    assert_eq!(rig.in_use().await, 2, "a stopped machine still holds its capacity");

    // An operator's terminate is HostFactory's return path, and reported for HostFactory.
    let terminated = done(&rig, ended, "terminate").await;
    let name = terminated["name"].as_str().unwrap().to_owned();
    let reported = rig.post("/api/v1/machines/return-requests", json!({})).await;
    assert_eq!(reported.body["requests"], json!([{"machine": name, "gracePeriod": 0}]), "{}", reported.body);
    let listed = rig.post("/api/v1/machines/return-requests", return_body(&ids)).await;
    assert_eq!(listed.body["requests"], json!([{"machine": name, "gracePeriod": 0}]), "{}", listed.body);
    let ret = terminated["returnRequestId"].as_str().unwrap().to_owned();
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert_eq!(rig.in_use().await, 1, "released when the return completed");
    // HostFactory returns the host it was told of: nothing more is released, it is no longer reported.
    let returned = rig.post("/api/v1/machines/return", return_body(std::slice::from_ref(ended))).await;
    assert_eq!(returned.status, 200, "{}", returned.body);
    assert_eq!(rig.post("/api/v1/machines/return-requests", json!({})).await.body["requests"], json!([]));
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert_eq!(rig.in_use().await, 1, "capacity released once");
}

/// Every machine id `GET /api/v1/machines?<query>` lists, page by page of `limit`, and how
/// many pages it took.
async fn all_pages(rig: &Rig, query: &str, limit: usize) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut token) = (Vec::new(), 0, None::<String>);
    loop {
        let next = token.as_ref().map(|t| format!("&nextToken={t}")).unwrap_or_default();
        let response = get(&rig.router, &format!("/api/v1/machines?limit={limit}{query}{next}"), &[]).await;
        assert_eq!(response.status, 200, "{}", response.body);
        pages += 1;
        let machines = response.body["machines"].as_array().unwrap();
        assert!(machines.len() <= limit);
        ids.extend(machines.iter().map(|m| m["machineId"].as_str().unwrap().to_owned()));
        token = response.body["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            return (ids, pages);
        }
        assert!(pages < 50, "no end of pages");
    }
}

async fn pages_through_each_filter(store: StoreOn) {
    let other = unique("Other");
    let rig = Rig::builder().store(store).max(20).also(json!({"templateId": other})).build().await;
    let first = request_id(&rig.request(5).await);
    let first_ids = machine_ids(&rig.settled(&first).await);
    let body = json!({"template": {"templateId": other, "machineCount": 3}});
    let second = request_id(&rig.post("/api/v1/requests", body).await);
    let second_ids = machine_ids(&rig.settled(&second).await);
    for id in &first_ids[..3] {
        done(&rig, id, "stop").await;
    }
    let set = |ids: &[String]| ids.iter().cloned().collect::<BTreeSet<String>>();
    let everything: BTreeSet<String> = set(&first_ids).union(&set(&second_ids)).cloned().collect();
    let cases = [
        (String::new(), 3, everything),
        (format!("&requestId={first}"), 2, set(&first_ids)),
        (format!("&templateId={}", rig.template_id), 2, set(&first_ids)),
        (format!("&templateId={other}"), 1, set(&second_ids)),
        ("&state=stopped".to_owned(), 1, set(&first_ids[..3])),
        (format!("&templateId={}&state=stopped", rig.template_id), 1, set(&first_ids[..3])),
        (format!("&requestId={first}&state=running"), 2, set(&first_ids[3..])),
    ];
    for (query, limit, expected) in cases {
        let (ids, pages) = all_pages(&rig, &query, limit).await;
        assert_eq!(ids.len(), set(&ids).len(), "{query}: no machine twice");
        assert_eq!(set(&ids), expected, "{query}");
        assert!(pages > 2 || expected.len() <= limit, "{query}: {pages} pages of {limit}");
    }
    // Another provider instance lists none of them; bad parameters are 400s naming themselves.
    assert_eq!(all_pages(&rig, "&provider=elsewhere", 10).await.0, Vec::<String>::new());
    for (query, field) in [("limit=0", "limit"), ("limit=501", "limit"), ("state=asleep", "state"), ("nextToken=%2F", "nextToken"), ("colour=red", "query")] {
        let response = get(&rig.router, &format!("/api/v1/machines?{query}"), &[]).await;
        assert_eq!(response.status, 400, "{query}: {}", response.body);
        assert!(response.message().starts_with(&format!("{field}: ")), "{query}: {}", response.message());
    }
}

#[tokio::test]
async fn listings_page_through_each_filter_on_dynamodb() {
    pages_through_each_filter(StoreOn::Dynamo).await;
}

#[tokio::test]
async fn listings_page_through_each_filter_on_sqlite() {
    pages_through_each_filter(StoreOn::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_actions_on_one_machine_one_wins_and_ec2_is_called_once() {
    let rig = Rig::builder().dynamo().build().await;
    let id = rig.granted(1).await.remove(0);
    for _ in 0..3 {
        rig.log.clear();
        let (a, b) = tokio::join!(act(&rig, &id, "stop"), act(&rig, &id, "stop"));
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{} / {}", a.body, b.body);
        assert_eq!(rig.log.actions("StopInstances"), 1);
        done(&rig, &id, "start").await;
    }
}

#[tokio::test]
async fn an_untagged_or_another_deployments_instance_is_never_touched() {
    let rig = Rig::builder().dynamo().build().await;
    let ours = rig.granted(1).await.remove(0);
    // An instance nobody recorded here, whatever its tags.
    let stranger = rig.ec2.run_instances().image_id("ami-12c6146b").min_count(1).max_count(1).send().await.unwrap();
    let stranger = stranger.instances()[0].instance_id().unwrap().to_owned();
    // Another deployment's machine (its own store), tagged managed.
    let elsewhere = Rig::builder().dynamo().build().await;
    let theirs = elsewhere.granted(1).await.remove(0);
    rig.log.clear();
    for id in [&stranger, &theirs] {
        for action in ["stop", "terminate"] {
            assert_eq!(act(&rig, id, action).await.status, 404, "{action} {id}");
        }
        assert_eq!(get(&rig.router, &format!("/api/v1/machines/{id}"), &[]).await.status, 404);
    }
    // Recorded here, but EC2 no longer tags it managed: not ours to touch either.
    rig.ec2.delete_tags().resources(&ours).tags(aws_sdk_ec2::types::Tag::builder().key("hostfactory:managed").build()).send().await.unwrap();
    assert_eq!(act(&rig, &ours, "stop").await.status, 404);
    for call in ["StopInstances", "TerminateInstances", "StartInstances", "RebootInstances"] {
        assert_eq!(rig.log.actions(call), 0, "{call}");
    }
    for id in [&stranger, &theirs, &ours] {
        assert_eq!(ec2_state(&rig, id).await, "running");
    }
}

#[tokio::test]
async fn an_action_through_api_gateway_records_the_callers_iam_principal() {
    let rig = Rig::builder().dynamo().build().await;
    let id = rig.granted(1).await.remove(0);
    let file = format!("{}/../events/machine-action.json", env!("CARGO_MANIFEST_DIR"));
    let event = std::fs::read_to_string(file).unwrap().replace("i-0b662ef9931388ba0", &id);
    let response = invoke_event(&rig.router, &event).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["actions"][0]["by"], "arn:aws:sts::123456789012:assumed-role/grid-operators/ops");
    assert_eq!(response.body["machineState"], "STOPPED");
}
