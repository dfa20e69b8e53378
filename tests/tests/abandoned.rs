//! Requests HostFactory never learned of, and machines returned more than once: on moto, through
//! the routers and the reconciler.

use std::time::Duration;

use hostfactory_tests::rig::{Rig, StoreOn, request_id};
use hostfactory_tests::send_json;
use hostfactory_tests::wire::Fault;
use serde_json::{Value, json};
use shared::app::AppState;
use shared::reconcile::run_once;
use shared::store::RequestPhase;

async fn rig(region: &'static str) -> Rig {
    Rig::builder().region(region).max(5).build().await
}

/// The rig's state with no waiting: unclaimed requests and orphans are due at once.
fn impatient(rig: &Rig) -> AppState {
    rig.with_timings(|timings| {
        timings.unclaimed = Duration::ZERO;
        timings.orphan_grace = Duration::ZERO;
    })
}

async fn running(rig: &Rig) -> usize {
    rig.tagged().await.iter().filter(|i| i.state == "running").count()
}

#[tokio::test]
async fn a_request_nobody_polls_is_reaped_once_its_time_is_up() {
    let rig = rig("us-west-2").await;
    let req = request_id(&rig.request(2).await);
    assert!(rig.state.store.requests.get(&req).await.unwrap().unwrap().unclaimed);

    // Young: the reconciler refreshes it (finishing it) but does not claim it, and leaves it be.
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!((report.refreshed, report.finished, report.abandoned), (1, 1, 0), "{report:?}");
    let record = rig.state.store.requests.get(&req).await.unwrap().unwrap();
    assert_eq!(record.status, RequestPhase::Complete);
    assert!(record.unclaimed, "the reconciler's own refresh is no claim");
    assert_eq!((running(&rig).await, rig.in_use().await), (2, 2));

    let report = run_once(&impatient(&rig)).await.unwrap();
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert_eq!(running(&rig).await, 0, "its machines are terminated");
    assert_eq!(rig.in_use().await, 0, "its capacity is given back");
    let record = rig.state.store.requests.get(&req).await.unwrap().unwrap();
    assert_eq!(record.status, RequestPhase::CompleteWithError);
    assert!(record.message.contains("Abandoned"), "{}", record.message);
    assert!(!record.unclaimed);

    let again = run_once(&impatient(&rig)).await.unwrap();
    assert_eq!((again.abandoned, again.active), (0, 0), "reaped once, then forgotten: {again:?}");
    assert_eq!(rig.in_use().await, 0, "released once");
}

#[tokio::test]
async fn a_request_hostfactory_polled_is_never_reaped() {
    let rig = rig("eu-central-1").await;
    let req = request_id(&rig.request(2).await);
    let polled = rig.status(&[&req]).await;
    assert_eq!(polled.body["requests"][0]["requestId"], req.as_str());
    assert!(!rig.state.store.requests.get(&req).await.unwrap().unwrap().unclaimed, "the first poll claims it");

    let report = run_once(&impatient(&rig)).await.unwrap();
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!((running(&rig).await, rig.in_use().await), (2, 2));
    assert_eq!(rig.settled(&req).await["status"], "complete");
}

#[tokio::test]
async fn an_unclaimed_request_is_reaped_in_one_pass_and_its_machines_fail() {
    let rig = rig("ap-east-1").await;
    let req = request_id(&rig.request(3).await);
    let report = run_once(&impatient(&rig)).await.unwrap();
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert_eq!(running(&rig).await, 0);
    assert_eq!(rig.in_use().await, 0);
    let answer = rig.settled(&req).await;
    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert!(answer["machines"].as_array().unwrap().iter().all(|m| m["result"] == "fail"), "{answer}");
}

#[tokio::test]
async fn a_launch_whose_machines_could_not_be_recorded_still_answers_its_request_id() {
    // The store goes through the recording wire, so its writes can fail.
    let rig = Rig::builder().region("ap-southeast-3").max(5).store(StoreOn::DynamoOnWire).build().await;
    let (state, router) = (rig.state.clone(), rig.router.clone());
    // The reservation goes through; the launch's record (the request with its machines) is
    // refused, and so is the machines' write on its own (the request's goes through).
    rig.wire.faults.inject(Fault::once("TransactWriteItems", "ValidationException", "the write was refused").after_calls(1));
    rig.wire.faults.inject(Fault::once("BatchWriteItem", "ValidationException", "the write was refused"));

    let body = json!({"template": {"templateId": rig.template_id, "machineCount": 2}});
    let accepted = send_json(&router, "POST", "/api/v1/requests", &body, &[]).await;
    let req = request_id(&accepted);
    assert_eq!(rig.wire.faults.remaining(), 0, "the machine write was refused");
    assert!(state.store.machines.list_by_request(&req).await.unwrap().is_empty());
    assert_eq!(running(&rig).await, 2);

    // The reconciler adopts the tagged instances; HostFactory then sees them.
    let report = run_once(&state).await.unwrap();
    assert_eq!(report.orphans_adopted, 2, "{report:?}");
    let polled = send_json(&router, "POST", "/api/v1/requests/status", &json!({"requests": [{"requestId": req}]}), &[]).await;
    assert_eq!(polled.body["requests"][0]["status"], "complete", "{}", polled.body);
    assert_eq!(polled.body["requests"][0]["machines"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_machine_is_returned_once_however_often_it_is_asked() {
    let rig = rig("me-central-1").await;
    let req = request_id(&rig.request(1).await);
    let machine = rig.settled(&req).await["machines"][0]["machineId"].clone();
    let body = json!({"machines": [{"machineId": machine}]});
    rig.log.clear();

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (router, body) = (rig.router.clone(), body.clone());
        calls.spawn(async move { send_json(&router, "POST", "/api/v1/machines/return", &body, &[]).await });
    }
    let answers = calls.join_all().await;
    let ids: Vec<String> = answers.iter().map(request_id).collect();
    assert_eq!(rig.log.actions("TerminateInstances"), 1, "one return terminates it");
    let terminating: Vec<&Value> =
        answers.iter().map(|a| &a.body).filter(|b| b["message"].as_str().unwrap().starts_with("Delete VM")).collect();
    assert_eq!(terminating.len(), 1, "{answers:?}");
    for (id, answer) in ids.iter().zip(&answers) {
        let settled = rig.settled(id).await;
        assert_eq!(settled["status"], "complete", "{settled}");
        if !answer.body["message"].as_str().unwrap().starts_with("Delete VM") {
            assert!(answer.body["message"].as_str().unwrap().starts_with("Already returning"), "{}", answer.body);
        }
    }
    let later = rig.post("/api/v1/machines/return", body).await;
    assert_eq!(later.status, 200);
    assert_eq!(rig.log.actions("TerminateInstances"), 1, "a later return sends nothing either");
    assert_eq!(rig.in_use().await, 0, "released once");
}
