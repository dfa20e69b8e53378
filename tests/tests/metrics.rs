//! The EMF metrics line of each HostFactory call, read back from the router's writer: figures
//! match what happened, and `AwsCalls` matches the calls the wire saw.

use serde_json::{Value, json};
use shared::reconcile::events::{Outcome, dispatch};

use hostfactory_tests::rig::{Rig, request_id};
use hostfactory_tests::wire::Fault;
use hostfactory_tests::{Captured, get};

/// The rig's router with metrics written to a captured writer.
async fn metered() -> (Rig, Captured) {
    let out = Captured::default();
    (Rig::builder().metrics(out.clone()).build().await, out)
}

/// The single line a call wrote; its `AwsCalls` is what went over the wire.
fn only_line(out: &Captured, rig: &Rig, operation: &str) -> Value {
    let lines = out.take();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = lines.into_iter().next().unwrap();
    assert_eq!(line["Operation"], operation, "{line}");
    assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "HF-Test");
    assert_eq!(line["Calls"], 1.0);
    assert_eq!(line["AwsCalls"], rig.log.calls().len() as f64, "{line} vs {:?}", rig.log.calls());
    assert!(line["Latency"].as_f64().unwrap() > 0.0, "{line}");
    rig.log.clear();
    line
}

#[tokio::test]
async fn each_hostfactory_call_writes_one_line_with_its_figures() {
    let (rig, out) = metered().await;
    rig.log.clear();

    let req = request_id(&rig.request(3).await);
    let line = only_line(&out, &rig, "requestMachines");
    assert_eq!((&line["MachinesRequested"], &line["Errors"], &line["Status"]), (&json!(3.0), &json!(0.0), &json!(200)));
    assert!(line["AwsCalls"].as_f64().unwrap() >= 1.0, "RunInstances at least: {line}");
    assert!(!line["RequestId"].as_str().unwrap().is_empty());

    let answer = rig.status(&[&req]).await;
    assert_eq!(answer.body["requests"][0]["status"], "complete", "{}", answer.body);
    let line = only_line(&out, &rig, "getRequestStatus");
    assert_eq!((&line["MachinesLaunched"], &line["MachinesFailed"]), (&json!(3.0), &json!(0.0)));
    assert_eq!(line["AwsCalls"], 1.0, "one DescribeInstances: {line}");

    let machines: Vec<Value> = answer.body["requests"][0]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!({"machineId": m["machineId"], "name": m["name"]}))
        .collect();
    request_id(&rig.post("/api/v1/machines/return", json!({ "machines": machines })).await);
    let line = only_line(&out, &rig, "requestReturnMachines");
    assert_eq!((&line["MachinesReturned"], &line["AwsCalls"]), (&json!(3.0), &json!(1.0)));

    rig.post("/api/v1/machines/return-requests", json!({ "machines": machines })).await;
    only_line(&out, &rig, "getReturnRequests");

    get(&rig.router, "/api/v1/templates", &[]).await;
    let line = only_line(&out, &rig, "getAvailableTemplates");
    assert_eq!(line["AwsCalls"], 0.0, "templates from a folder with explicit attributes: {line}");

    // An unknown route is no HostFactory call.
    assert_eq!(get(&rig.router, "/api/v1/nothing", &[]).await.status, 404);
    assert!(out.take().is_empty());
}

#[tokio::test]
async fn a_failed_launch_counts_as_an_error_with_its_aws_calls() {
    let (rig, out) = metered().await;
    rig.log.clear();
    rig.wire.faults.inject(Fault::once("RunInstances", "InvalidAMIID.NotFound", "The image id does not exist."));

    assert_eq!(rig.request(2).await.status, 502);

    let line = only_line(&out, &rig, "requestMachines");
    assert_eq!((&line["Errors"], &line["Status"], &line["MachinesRequested"]), (&json!(1.0), &json!(502), &json!(2.0)));
    assert!(line["AwsCalls"].as_f64().unwrap() >= 1.0, "{line}");
}

/// A scheduled pass through the reconciler's dispatch writes one line whose `AwsCalls` is what
/// went over the wire and whose figures are the pass's report.
#[tokio::test]
async fn a_reconciler_pass_is_one_line() {
    let (rig, out) = metered().await;
    request_id(&rig.request(1).await);
    out.take();
    rig.log.clear();

    let event = include_str!("../../events/reconcile-schedule.json");
    let outcome = dispatch(&rig.state, serde_json::from_str(event).unwrap()).await.unwrap();
    let Outcome::Reconciled { report } = outcome else { panic!("{outcome:?}") };

    let lines = out.take();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["Operation"], "reconcile");
    assert_eq!(line["RequestsChecked"], json!(report.active as f64));
    assert_eq!(line["RequestsChecked"], json!(1.0), "the rig's one unfinished request");
    assert_eq!(line["StepErrors"], json!(0.0), "{report:?}");
    assert_eq!(line["AwsCalls"], rig.log.calls().len() as f64, "{line} vs {:?}", rig.log.calls());
}
