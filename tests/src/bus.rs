//! Domain events as a consumer sees them on moto: an EventBridge bus with a rule sending every
//! `hostfactory-aws` event to an SQS queue ([`bus`]), the DynamoDB tables' stream records as
//! Lambda hands them to the reconciler ([`stream_batch`]), and each event's detail held to its
//! JSON Schema under `openapi/events/` ([`assert_schemas`]).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use shared::domain_events::DETAIL_TYPES;

use crate::rig::Rig;
use crate::{sdk_config, unique};

/// A bus, and a queue its rule sends every `hostfactory-aws` event to.
pub struct Bus {
    pub name: &'static str,
    sqs: aws_sdk_sqs::Client,
    queue: String,
}

pub async fn bus(rig_sdk: &aws_config::SdkConfig) -> Bus {
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
    /// `HOSTFACTORY_EVENTS` for this bus.
    pub fn target(&self) -> &'static str {
        Box::leak(format!("eventbridge:{}", self.name).into_boxed_str())
    }

    /// Every event the queue received so far.
    pub async fn received(&self) -> Vec<Value> {
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

/// Each event's detail against the JSON Schema of its detail type (`openapi/events/`), checked
/// by the Python `jsonschema` validator of the project's venv (infra/requirements-dev.txt).
pub fn assert_schemas(events: &[Value]) {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let lines: Vec<Value> = events
        .iter()
        .map(|event| {
            let detail_type = event["detail-type"].as_str().unwrap();
            let (_, slug) = DETAIL_TYPES.iter().find(|(name, _)| *name == detail_type).unwrap_or_else(|| panic!("{detail_type}"));
            json!({"schema": format!("{root}/openapi/events/{slug}.schema.json"), "detail": event["detail"]})
        })
        .collect();
    let mut child = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/tests/check_event_schemas.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python: run through infra/scripts/test");
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

/// A stream record's image as Lambda hands it over: DynamoDB JSON (`{"S": "..."}`).
fn dynamodb_json(value: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    match value {
        A::S(s) => json!({"S": s}),
        A::N(n) => json!({"N": n}),
        A::Bool(b) => json!({"BOOL": b}),
        A::Null(_) => json!({"NULL": true}),
        A::L(items) => json!({"L": items.iter().map(dynamodb_json).collect::<Vec<_>>()}),
        A::M(map) => json!({"M": map.iter().map(|(k, v)| (k.clone(), dynamodb_json(v))).collect::<serde_json::Map<_, _>>()}),
        A::Ss(items) => json!({"SS": items}),
        A::Ns(items) => json!({"NS": items}),
        other => panic!("no such attribute in our records: {other:?}"),
    }
}

/// Every record of the three tables' streams so far, as Lambda hands them to the reconciler
/// (`{"Records": [...]}` with DynamoDB-JSON images).
pub async fn stream_batch(rig: &Rig, after: &mut BTreeSet<String>) -> Value {
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk_config().await);
    let mut records = Vec::new();
    // The store's tables, as it describes itself: `dynamodb:<requests>, <machines>, <capacity>`.
    let tables: Vec<String> = rig.state.store.location.trim_start_matches("dynamodb:").split(',').map(|t| t.trim().to_owned()).collect();
    for table in &tables {
        let arn = ddb.describe_table().table_name(table).send().await.unwrap().table().unwrap().latest_stream_arn().unwrap().to_owned();
        let shards = streams.describe_stream().stream_arn(&arn).send().await.unwrap();
        for shard in shards.stream_description().unwrap().shards() {
            let iterator = streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard.shard_id().unwrap())
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap();
            let got = streams.get_records().shard_iterator(iterator.shard_iterator().unwrap()).send().await.unwrap();
            for record in got.records() {
                let change = record.dynamodb().unwrap();
                let sequence = change.sequence_number().unwrap().to_owned();
                if !after.insert(format!("{arn}/{sequence}")) {
                    continue;
                }
                let image = |i: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
                    i.map(|i| i.iter().map(|(k, v)| (k.clone(), dynamodb_json(v))).collect::<serde_json::Map<_, _>>())
                };
                records.push(json!({
                    "eventID": record.event_id(), "eventName": record.event_name().map(|n| n.as_str()),
                    "eventSource": "aws:dynamodb", "eventSourceARN": arn,
                    "dynamodb": {"SequenceNumber": sequence, "NewImage": image(change.new_image()), "OldImage": image(change.old_image())},
                }));
            }
        }
    }
    json!({"Records": records})
}

