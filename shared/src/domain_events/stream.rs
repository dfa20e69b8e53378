//! The DynamoDB store's change capture: the requests', machines' and capacity tables' streams
//! (NEW_AND_OLD_IMAGES) invoke the reconciler function with batches of records; each record's
//! old and new image derive its events ([`super::derive`]), or, for an `event#` item of the
//! capacity table, is a template event. The batch is published, and a failure is answered as
//! every record of the batch failed (`batchItemFailures`): Lambda retries from the first, with
//! the same `eventId`s, and sends what still fails after its retries to the dead-letter queue.

use serde::Serialize;
use serde_json::Value;

use super::{DomainEvent, Publisher, events_of};
use crate::metrics::Metrics;
use crate::store::dynamo::event_log::EVENT_PREFIX;
use crate::store::{Change, ChangeKind, MachineRecord, RequestRecord};

/// What a batch of stream records came to: Lambda's partial batch response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub records: usize,
    pub events: usize,
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    pub item_identifier: String,
}

/// Whether `event` is a batch of DynamoDB stream records.
pub fn is_stream_batch(event: &Value) -> bool {
    event["Records"].as_array().is_some_and(|records| records.iter().any(|r| r["eventSource"] == "aws:dynamodb"))
}

/// Publishes the events of every record of a stream batch.
pub async fn publish_batch(publisher: &Publisher, metrics: &Metrics, event: &Value) -> Published {
    let records = event["Records"].as_array().map(Vec::as_slice).unwrap_or_default();
    let events: Vec<DomainEvent> = records.iter().filter_map(change_of).flat_map(|c| events_of(&c)).collect();
    let failures = match publisher.publish(&events).await {
        Ok(()) => Vec::new(),
        Err(err) => {
            tracing::warn!(records = records.len(), events = events.len(), error = %err, "events not published; the batch is retried");
            records.iter().filter_map(|r| r["dynamodb"]["SequenceNumber"].as_str()).map(|id| ItemFailure { item_identifier: id.to_owned() }).collect()
        }
    };
    let published = if failures.is_empty() { events.len() } else { 0 };
    crate::metrics::emit_events(metrics, published as u64, (events.len() - published) as u64);
    Published { records: records.len(), events: published, batch_item_failures: failures }
}

/// The change one stream record is (`None`: nothing to publish, e.g. a capacity counter); its
/// table is told by the name's suffix (`{prefix}_requests`, `_machines`, `_templates`).
fn change_of(record: &Value) -> Option<Change> {
    let arn = record["eventSourceARN"].as_str()?;
    let table = arn.split("table/").nth(1)?.split('/').next()?;
    let image = |name: &str| -> Option<serde_dynamo::Item> { serde_json::from_value(record["dynamodb"][name].clone()).ok() };
    let (old, new) = (image("OldImage"), image("NewImage"));
    let suffix = ["_requests", "_machines", "_templates"].into_iter().find(|s| table.ends_with(s))?;
    let kind = match suffix {
        "_requests" => ChangeKind::Request { old: decode::<RequestRecord>(old), new: decode(new) },
        "_machines" => ChangeKind::Machine { old: decode::<MachineRecord>(old), new: decode(new) },
        // An event item as it gets its event: put with it, or a write's intent committed.
        "_templates" if old.as_ref().is_none_or(|o| !o.contains_key("event")) => {
            let item = new?;
            let key: String = serde_dynamo::from_attribute_value(item.get("templateKey")?.clone()).ok()?;
            key.strip_prefix(EVENT_PREFIX)?;
            let text: String = serde_dynamo::from_attribute_value(item.get("event")?.clone()).ok()?;
            ChangeKind::Event(serde_json::from_str(&text).ok()?)
        }
        _ => return None,
    };
    Some(Change { seq: 0, attempts: 0, kind })
}

fn decode<T: serde::de::DeserializeOwned>(item: Option<serde_dynamo::Item>) -> Option<T> {
    let item = item?;
    match serde_dynamo::from_item(item) {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::warn!(error = %err, "a stream image is no record; no event from it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A stream record of the capacity table: `old` and `new` images of an `event#w1` item.
    fn record(name: &str, old: Option<Value>, new: Option<Value>) -> Value {
        let image = |extra: Option<Value>| {
            extra.map(|mut item| {
                item["templateKey"] = json!({"S": "event#w1"});
                item
            })
        };
        json!({
            "eventName": name, "eventSource": "aws:dynamodb",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/hf_templates/stream/2026",
            "dynamodb": {"SequenceNumber": "1", "OldImage": image(old), "NewImage": image(new)},
        })
    }

    #[test]
    fn an_event_item_publishes_once_as_it_gets_its_event_and_an_intent_never() {
        let event = json!({"S": json!({"detailType": "Template Created", "detail": {"eventId": "e"}}).to_string()});
        let intent = json!({"intent": {"S": "{}"}, "itemType": {"S": "intent"}});
        let committed = json!({"event": event});
        let cases = [
            ("an event put", record("INSERT", None, Some(committed.clone())), true),
            ("an intent put", record("INSERT", None, Some(intent.clone())), false),
            ("an intent committed", record("MODIFY", Some(intent.clone()), Some(committed.clone())), true),
            ("an event item rewritten", record("MODIFY", Some(committed.clone()), Some(committed.clone())), false),
            ("an intent forgotten", record("REMOVE", Some(intent), None), false),
            ("an event item expired", record("REMOVE", Some(committed), None), false),
        ];
        for (case, record, published) in cases {
            let change = change_of(&record);
            assert_eq!(change.is_some(), published, "{case}");
            if let Some(Change { kind: ChangeKind::Event(value), .. }) = change {
                assert_eq!(value["detailType"], "Template Created", "{case}");
            }
        }
    }
}
