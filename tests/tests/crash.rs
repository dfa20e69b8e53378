//! A process killed at every durable step of requestMachines and requestReturnMachines. The
//! store is DynamoDB on moto through the wire, so every durable step is an AWS call: the happy
//! path's calls are recorded, then for each call and each side of it (before moto executes it,
//! after), the HostFactory call is run until the wire stops answering there and its task is
//! aborted. A fresh process on the same store and EC2 then runs one reconciler pass with every
//! wait elapsed, and EC2 and the records must agree with what HostFactory holds: no live
//! instance it does not hold, none unrecorded, the capacity counter at exactly its units.

use std::collections::HashSet;

use hostfactory_tests::audit::Audit;
use hostfactory_tests::rig::{ELAPSED, Rig, StoreOn, return_body};
use hostfactory_tests::wire::{Crash, Mode};
use hostfactory_tests::{Response, send_json};
use serde_json::{Value, json};
use shared::api::local_router;
use shared::reconcile::run_once;

async fn crash_rig(region: &'static str) -> Rig {
    Rig::builder().region(region).store(StoreOn::DynamoOnWire).env(ELAPSED).fast_retries().build().await
}

/// Runs `uri` on a task until the armed crash is hit, then aborts the task (the process dies
/// there). `Some` with the answer when the call finished without reaching the crash.
async fn until_crash(rig: &Rig, uri: &'static str, body: Value) -> Option<Response> {
    let router = rig.router.clone();
    let mut task = tokio::spawn(async move { send_json(&router, "POST", uri, &body, &[]).await });
    tokio::select! {
        done = &mut task => Some(done.expect("the call does not panic")),
        () = rig.wire.faults.crashed() => {
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            None
        }
    }
}

/// The operations one happy run of `call` makes, in order.
async fn happy_path(rig: &Rig, uri: &'static str, body: Value) -> Vec<String> {
    rig.log.clear();
    let answer = until_crash(rig, uri, body).await.expect("no crash armed");
    assert_eq!(answer.status, 200, "{}", answer.body);
    rig.log.calls().into_iter().filter_map(|c| c.action).collect()
}

/// One crash: HostFactory never got an answer. After a restart and one pass, what is wrong.
async fn crash_and_heal(rig: &Rig, step: usize, mode: Mode, uri: &'static str, body: Value) -> Vec<String> {
    rig.wire.faults.crash(Crash::at(step, mode));
    if let Some(answer) = until_crash(rig, uri, body).await {
        return vec![format!("the call finished without reaching the crash: {} {}", answer.status, answer.body)];
    }
    let restarted = rig.restarted();
    let report = run_once(&restarted).await.expect("a reconcile pass");
    let mut wrong: Vec<String> = report.errors.iter().map(|e| format!("pass error: {e}")).collect();
    let active = restarted.store.requests.list_active().await.unwrap();
    wrong.extend(active.iter().filter(|r| !r.is_finished()).map(|r| format!("{} left {:?}", r.request_id, r.status)));
    wrong
}

/// Runs `run` at every crash point (each call of the happy path, each side of it) and fails
/// listing every crash point that broke the promise.
async fn every_crash_point(label: &str, points: &[String], mut run: impl AsyncFnMut(usize, Mode) -> Vec<String>) {
    let mut broken = Vec::new();
    for (step, operation) in points.iter().enumerate() {
        for mode in [Mode::Before, Mode::AfterExecuting] {
            let wrong = run(step, mode).await;
            let side = if mode == Mode::Before { "before" } else { "after" };
            eprintln!("{label} crash {side} call {step} ({operation}): {}", if wrong.is_empty() { "ok" } else { "BROKEN" });
            if !wrong.is_empty() {
                broken.push(format!("{side} call {step} ({operation}): {}", wrong.join("; ")));
            }
        }
    }
    eprintln!("{label}: {} crash points, {} broken", points.len() * 2, broken.len());
    assert!(broken.is_empty(), "{label}: crash points that leak or drift:\n{}", broken.join("\n"));
}

#[tokio::test]
async fn a_crash_at_any_step_of_request_machines_leaks_nothing() {
    const REGION: &str = "ap-northeast-1";
    let body = |rig: &Rig| json!({"template": {"templateId": rig.template_id, "machineCount": 2}});
    let first = crash_rig(REGION).await;
    let points = happy_path(&first, "/api/v1/requests", body(&first)).await;
    eprintln!("requestMachines makes {} calls: {points:?}", points.len());
    every_crash_point("requestMachines", &points, async |step, mode| {
        let rig = crash_rig(REGION).await;
        let bystander: HashSet<String> = rig.granted(1).await.into_iter().collect();
        let mut wrong = crash_and_heal(&rig, step, mode, "/api/v1/requests", body(&rig)).await;
        // HostFactory never learned the crashed request: it holds the bystander's machine only.
        wrong.extend(Audit::of(&rig, &bystander).await.violations());
        wrong
    })
    .await;
}

#[tokio::test]
async fn a_crash_at_any_step_of_request_return_machines_leaks_nothing() {
    const REGION: &str = "eu-south-1";
    let first = crash_rig(REGION).await;
    let machines = first.granted(2).await;
    let points = happy_path(&first, "/api/v1/machines/return", return_body(&machines)).await;
    eprintln!("requestReturnMachines makes {} calls: {points:?}", points.len());
    every_crash_point("requestReturnMachines", &points, async |step, mode| {
        let rig = crash_rig(REGION).await;
        let bystander: HashSet<String> = rig.granted(1).await.into_iter().collect();
        let returned = rig.granted(2).await;
        let mut wrong = crash_and_heal(&rig, step, mode, "/api/v1/machines/return", return_body(&returned)).await;
        // HostFactory got no answer, so it returns the machines again, on the new process.
        let router = local_router(rig.restarted());
        let retry = send_json(&router, "POST", "/api/v1/machines/return", &return_body(&returned), &[]).await;
        if retry.status != 200 {
            wrong.push(format!("the repeated return answered {}: {}", retry.status, retry.body));
        } else if let Some(status) = final_status(&router, retry.body["requestId"].as_str().unwrap()).await {
            wrong.extend((status != "complete").then(|| format!("the repeated return ended {status}")));
        } else {
            wrong.push("the repeated return never finished".to_owned());
        }
        run_once(&rig.restarted()).await.expect("a second pass");
        wrong.extend(Audit::of(&rig, &bystander).await.violations());
        wrong
    })
    .await;
}

/// Polls a request until it leaves `running`: its final status.
async fn final_status(router: &axum::Router, id: &str) -> Option<String> {
    for _ in 0..10 {
        let body = json!({"requests": [{"requestId": id}]});
        let answer = send_json(router, "POST", "/api/v1/requests/status", &body, &[]).await;
        let status = answer.body["requests"][0]["status"].as_str().unwrap_or_default().to_owned();
        if answer.status == 200 && status != "running" {
            return Some(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    None
}
