//! Domain events on moto (issue #15): a HostFactory cycle and a template edit published to an
//! EventBridge bus, read back from an SQS queue a rule targets; every detail held to its JSON
//! Schema under `openapi/events/`; a publisher killed mid-batch loses nothing and repeats
//! only what consumers drop by `eventId`; a failing bus costs the HostFactory calls nothing.

use std::collections::{BTreeMap, BTreeSet};

use hostfactory_tests::bus::{assert_schemas, bus, stream_batch};
use hostfactory_tests::rig::{Rig, machine_ids, request_id, return_body};
use hostfactory_tests::wire::Fault;
use hostfactory_tests::{Captured, sdk_config, send_json};
use serde_json::{Value, json};
use shared::domain_events::DETAIL_TYPES;

async fn rig_on(bus_name: Option<&'static str>) -> Rig {
    let builder = Rig::builder().max(10);
    match bus_name {
        Some(name) => {
            let events: &'static str = Box::leak(format!("eventbridge:{name}").into_boxed_str());
            builder.env([("HOSTFACTORY_EVENTS", events)]).fast_retries().build().await
        }
        None => builder.env([("HOSTFACTORY_EVENTS", "off")]).build().await,
    }
}

/// A request of `count`, one of its machines returned: the calls a HostFactory session makes.
async fn cycle(rig: &Rig, count: i64) -> (String, Vec<String>) {
    let request = request_id(&rig.request(count).await);
    let machines = machine_ids(&rig.settled(&request).await);
    let ret = request_id(&rig.post("/api/v1/machines/return", return_body(&machines[..1])).await);
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    (request, machines)
}

#[tokio::test]
async fn a_hostfactory_cycle_and_a_template_edit_publish_each_event_once() {
    let bus = bus(&sdk_config().await).await;
    let rig = rig_on(Some(bus.name)).await;
    let (request, machines) = cycle(&rig, 3).await;
    let uri = format!("/api/v1/templates/{}", rig.template_id);
    let current = send_json(&rig.router, "GET", &uri, &Value::Null, &[]).await.body["template"].clone();
    let mut edited = current.clone();
    edited["maxNumber"] = json!(12);
    assert_eq!(send_json(&rig.router, "PUT", &uri, &edited, &[]).await.status, 200);
    // A template created and deleted, a validation, an operator's action.
    let mut other = current.clone();
    other["templateId"] = json!("Extra");
    assert_eq!(send_json(&rig.router, "PUT", "/api/v1/templates/Extra?level=inst", &other, &[]).await.status, 201);
    assert_eq!(send_json(&rig.router, "DELETE", "/api/v1/templates/Extra", &Value::Null, &[]).await.status, 200);
    assert_eq!(rig.post("/api/v1/templates/validate", json!({"templates": [edited]})).await.status, 200);
    let stop = send_json(&rig.router, "POST", &format!("/api/v1/machines/{}/stop", machines[1]), &Value::Null, &[]).await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    // The cloud takes one back (its warning, then its end); a request finds no capacity at all.
    let file = format!("{}/../events/ec2-spot-interruption.json", env!("CARGO_MANIFEST_DIR"));
    let warning: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap().replace("i-0b662ef9931388ba0", &machines[2])).unwrap();
    shared::reconcile::events::dispatch(&rig.state, warning).await.unwrap();
    let file = format!("{}/../events/ec2-state-change-terminated.json", env!("CARGO_MANIFEST_DIR"));
    let ended: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap().replace("i-0b662ef9931388ba0", &machines[2])).unwrap();
    shared::reconcile::events::dispatch(&rig.state, ended).await.unwrap();
    rig.wire.faults.inject(Fault::once("RunInstances", "InsufficientInstanceCapacity", "no capacity").times(10));
    let failed = request_id(&rig.request(1).await);
    assert_eq!(rig.settled(&failed).await["status"], "complete_with_error");
    let drained = rig.state.publish_events().await.unwrap();

    let events = bus.received().await;
    assert_eq!(events.len(), drained.events, "every event published once");
    assert_schemas(&events);
    let mut by_type: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for event in &events {
        by_type.entry(event["detail-type"].as_str().unwrap().to_owned()).or_default().push(&event["detail"]);
    }
    let count = |t: &str| by_type.get(t).map_or(0, Vec::len);
    let expected = [
        ("Request Accepted", 2), ("Machine Launched", 3), ("Request Completed", 1), ("Return Requested", 1),
        ("Machine Returned", 1), ("Return Completed", 1), ("Template Updated", 1), ("Template Created", 1),
        ("Template Deleted", 1), ("Template Validated", 1), ("Machine Action", 1), ("Machine Reclaimed", 1),
        ("Request Failed", 1), ("Machine Failed", 1),
    ];
    for (detail_type, n) in expected {
        assert_eq!(count(detail_type), n, "{detail_type}: {by_type:?}");
    }
    let published: BTreeSet<&str> = by_type.keys().map(String::as_str).collect();
    assert_eq!(published, DETAIL_TYPES.iter().map(|(name, _)| *name).collect(), "every detail type");
    assert_eq!(by_type["Request Completed"][0]["requestId"], request);
    assert_eq!(by_type["Machine Returned"][0]["machineId"], machines[0]);
    let update = by_type["Template Updated"][0];
    assert_eq!(update["changes"], json!([{"key": "maxNumber", "old": 10, "new": 12}]));
    assert_eq!(update["by"], "local");
    assert_eq!(by_type["Machine Action"][0]["action"], "stop");
    assert_eq!(by_type["Template Validated"][0]["valid"], true);
    assert_eq!((by_type["Machine Reclaimed"][0]["machineId"].as_str(), by_type["Request Failed"][0]["requestId"].as_str()), (Some(machines[2].as_str()), Some(failed.as_str())));
    let ids: BTreeSet<&str> = events.iter().map(|e| e["detail"]["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "one eventId per change");
    assert_eq!(rig.state.publish_events().await.unwrap().events, 0, "nothing twice");
}

#[tokio::test]
async fn a_publisher_killed_mid_batch_loses_nothing_and_repeats_only_what_event_ids_drop() {
    let bus = bus(&sdk_config().await).await;
    let rig = rig_on(Some(bus.name)).await;
    cycle(&rig, 8).await;
    // The first PutEvents goes through; the publisher dies on the second (every retry of it).
    rig.wire.faults.inject(Fault::internal("PutEvents").after_calls(1).times(20));
    assert!(rig.state.publish_events().await.is_err());
    let first = bus.received().await;
    assert_eq!(first.len(), 10, "the first call's ten");
    rig.wire.faults.clear();
    // A new process on the same store publishes the whole batch again.
    let restarted = rig.restarted();
    let drained = restarted.publish_events().await.unwrap();
    let second = bus.received().await;
    assert_eq!(second.len(), drained.events);
    let all: Vec<&Value> = first.iter().chain(&second).collect();
    let unique: BTreeSet<&str> = all.iter().map(|e| e["detail"]["eventId"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), drained.events, "after dropping repeats by eventId, each change once");
    assert!(first.iter().all(|e| unique.contains(e["detail"]["eventId"].as_str().unwrap())));
}

#[tokio::test]
async fn a_failing_bus_costs_a_hostfactory_call_nothing_and_its_events_wait() {
    let bus = bus(&sdk_config().await).await;
    let quiet = rig_on(None).await;
    let metrics = Captured::default();
    let events: &'static str = Box::leak(format!("eventbridge:{}", bus.name).into_boxed_str());
    let noisy = Rig::builder().max(10).env([("HOSTFACTORY_EVENTS", events)]).fast_retries().metrics(metrics.clone()).build().await;
    noisy.wire.faults.inject(Fault::internal("PutEvents").times(1000));
    for rig in [&quiet, &noisy] {
        rig.log.clear();
        cycle(rig, 2).await;
    }
    let calls = |rig: &Rig| {
        let mut actions: Vec<String> = rig.log.calls().into_iter().filter_map(|c| c.action).collect();
        actions.sort();
        actions
    };
    assert_eq!(calls(&noisy), calls(&quiet), "the same AWS calls on the HostFactory path, none to the bus");
    metrics.take();
    assert!(noisy.state.publish_events().await.is_err(), "the bus refuses");
    let lines = metrics.take();
    let line = lines.iter().find(|l| l["Operation"] == "events").expect("an events metrics line");
    assert!(line["EventsFailed"].as_f64().unwrap() >= 7.0, "counted for EventsFailedAlarm: {line}");
    noisy.wire.faults.clear();
    let drained = noisy.state.publish_events().await.unwrap();
    assert!(drained.events >= 7, "{drained:?}");
    assert_eq!(bus.received().await.len(), drained.events);
}

#[tokio::test]
async fn on_dynamodb_the_tables_streams_publish_every_change_and_a_failed_batch_is_retried() {
    let bus = bus(&sdk_config().await).await;
    let events: &'static str = Box::leak(format!("eventbridge:{}", bus.name).into_boxed_str());
    let rig = Rig::builder().max(10).dynamo().env([("HOSTFACTORY_EVENTS", events)]).fast_retries().build().await;
    cycle(&rig, 2).await;
    let uri = format!("/api/v1/templates/{}", rig.template_id);
    let mut edited = send_json(&rig.router, "GET", &uri, &Value::Null, &[]).await.body["template"].clone();
    edited["maxNumber"] = json!(11);
    assert_eq!(send_json(&rig.router, "PUT", &uri, &edited, &[]).await.status, 200);
    let mut seen = BTreeSet::new();
    let batch = stream_batch(&rig, &mut seen).await;

    // The bus refuses: every record is reported failed, for Lambda to retry.
    rig.wire.faults.inject(Fault::internal("PutEvents").times(100));
    let outcome = serde_json::to_value(shared::reconcile::events::dispatch(&rig.state, batch.clone()).await.unwrap()).unwrap();
    let records = batch["Records"].as_array().unwrap().len();
    assert_eq!(outcome["batchItemFailures"].as_array().unwrap().len(), records, "{outcome}");
    rig.wire.faults.clear();
    let outcome = serde_json::to_value(shared::reconcile::events::dispatch(&rig.state, batch).await.unwrap()).unwrap();
    assert_eq!(outcome["batchItemFailures"], json!([]), "{outcome}");

    let received = bus.received().await;
    assert_eq!(received.len() as u64, outcome["events"].as_u64().unwrap());
    assert_schemas(&received);
    let types: BTreeSet<&str> = received.iter().map(|e| e["detail-type"].as_str().unwrap()).collect();
    for expected in ["Request Accepted", "Machine Launched", "Request Completed", "Return Requested", "Machine Returned", "Return Completed", "Template Updated"] {
        assert!(types.contains(expected), "{expected}: {types:?}");
    }
    let update = received.iter().find(|e| e["detail-type"] == "Template Updated").unwrap();
    assert_eq!(update["detail"]["changes"], json!([{"key": "maxNumber", "old": 10, "new": 11}]));
}
