//! Domain events on moto (issue #15): a HostFactory cycle and a template edit published to an
//! EventBridge bus, read back from an SQS queue a rule targets; every detail held to its JSON
//! Schema under `openapi/events/`; a publisher killed mid-batch loses nothing and repeats
//! only what consumers drop by `eventId`; a failing bus costs the HostFactory calls nothing.

use std::collections::{BTreeMap, BTreeSet};

use hostfactory_tests::rig::{Rig, machine_ids, request_id, return_body};
use hostfactory_tests::wire::Fault;
use hostfactory_tests::{sdk_config, send_json, unique};
use serde_json::{Value, json};
use shared::domain_events::{DETAIL_TYPES, drain};

/// A bus, and a queue its rule sends every `hostfactory-aws` event to.
struct Bus {
    name: &'static str,
    sqs: aws_sdk_sqs::Client,
    queue: String,
}

async fn bus(rig_sdk: &aws_config::SdkConfig) -> Bus {
    let name: &'static str = Box::leak(unique("hf-bus").into_boxed_str());
    let events = aws_sdk_eventbridge::Client::new(rig_sdk);
    let sqs = aws_sdk_sqs::Client::new(rig_sdk);
    events.create_event_bus().name(name).send().await.unwrap();
    let queue = sqs.create_queue().queue_name(unique("hf-events")).send().await.unwrap().queue_url().unwrap().to_owned();
    let attributes = sqs.get_queue_attributes().queue_url(&queue).attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn).send().await.unwrap();
    let arn = attributes.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    let pattern = json!({"source": ["hostfactory-aws"]}).to_string();
    events.put_rule().name("all").event_bus_name(name).event_pattern(pattern).send().await.unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(arn).build().unwrap();
    events.put_targets().rule("all").event_bus_name(name).targets(target).send().await.unwrap();
    Bus { name, sqs, queue }
}

impl Bus {
    /// Every event the queue received so far.
    async fn received(&self) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let got = self.sqs.receive_message().queue_url(&self.queue).max_number_of_messages(10).send().await.unwrap();
            if got.messages().is_empty() {
                return all;
            }
            for message in got.messages() {
                all.push(serde_json::from_str(message.body().unwrap()).unwrap());
                self.sqs.delete_message().queue_url(&self.queue).receipt_handle(message.receipt_handle().unwrap()).send().await.unwrap();
            }
        }
    }
}

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

/// Each event's detail against the JSON Schema of its detail type.
fn assert_schemas(events: &[Value]) {
    let dir = format!("{}/../openapi/events", env!("CARGO_MANIFEST_DIR"));
    for event in events {
        let detail_type = event["detail-type"].as_str().unwrap();
        let (_, slug) = DETAIL_TYPES.iter().find(|(name, _)| *name == detail_type).unwrap_or_else(|| panic!("{detail_type}"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{slug}.schema.json")).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&event["detail"]).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{detail_type}: {errors:?} in {}", event["detail"]);
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
    let (request, machines) = cycle(&rig, 2).await;
    let uri = format!("/api/v1/templates/{}", rig.template_id);
    let current = send_json(&rig.router, "GET", &uri, &Value::Null, &[]).await.body["template"].clone();
    let mut edited = current.clone();
    edited["maxNumber"] = json!(12);
    assert_eq!(send_json(&rig.router, "PUT", &uri, &edited, &[]).await.status, 200);
    let drained = drain(&rig.state).await.unwrap();

    let events = bus.received().await;
    assert_eq!(events.len(), drained.events, "every event published once");
    assert_schemas(&events);
    let mut by_type: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for event in &events {
        by_type.entry(event["detail-type"].as_str().unwrap().to_owned()).or_default().push(&event["detail"]);
    }
    let count = |t: &str| by_type.get(t).map_or(0, Vec::len);
    let expected = [
        ("Request Accepted", 1), ("Machine Launched", 2), ("Request Completed", 1), ("Return Requested", 1),
        ("Machine Returned", 1), ("Return Completed", 1), ("Template Updated", 1),
    ];
    for (detail_type, n) in expected {
        assert_eq!(count(detail_type), n, "{detail_type}: {by_type:?}");
    }
    assert_eq!(by_type["Request Completed"][0]["requestId"], request);
    assert_eq!(by_type["Machine Returned"][0]["machineId"], machines[0]);
    let update = by_type["Template Updated"][0];
    assert_eq!(update["changes"], json!([{"key": "maxNumber", "old": 10, "new": 12}]));
    assert_eq!(update["by"], "local");
    let ids: BTreeSet<&str> = events.iter().map(|e| e["detail"]["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "one eventId per change");
    assert_eq!(drain(&rig.state).await.unwrap().events, 0, "nothing twice");
}

#[tokio::test]
async fn a_publisher_killed_mid_batch_loses_nothing_and_repeats_only_what_event_ids_drop() {
    let bus = bus(&sdk_config().await).await;
    let rig = rig_on(Some(bus.name)).await;
    cycle(&rig, 8).await;
    // The first PutEvents goes through; the publisher dies on the second (every retry of it).
    rig.wire.faults.inject(Fault::internal("PutEvents").after_calls(1).times(20));
    assert!(drain(&rig.state).await.is_err());
    let first = bus.received().await;
    assert_eq!(first.len(), 10, "the first call's ten");
    rig.wire.faults.clear();
    // A new process on the same store publishes the whole batch again.
    let restarted = rig.restarted();
    let drained = drain(&restarted).await.unwrap();
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
    let noisy = rig_on(Some(bus.name)).await;
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
    assert!(drain(&noisy.state).await.is_err(), "the bus refuses");
    noisy.wire.faults.clear();
    let drained = drain(&noisy.state).await.unwrap();
    assert!(drained.events >= 7, "{drained:?}");
    assert_eq!(bus.received().await.len(), drained.events);
}
