//! A template write's event survives the templates call dying (issue #15): the write is
//! announced to the store before the file is written and its event recorded after, so a crash
//! between the two leaves an intent the reconciler settles — published when the file shows the
//! write, dropped when it does not — and no file is written whose intent could not be recorded.

use hostfactory_tests::bus::{assert_schemas, bus, stream_batch};
use hostfactory_tests::rig::{Rig, StoreOn};
use hostfactory_tests::wire::Fault;
use hostfactory_tests::{sdk_config, send_json};
use serde_json::{Value, json};
use shared::calls::template_writes::settle_stale;
use shared::domain_events::templates::Intent;
use shared::store::now;

/// The template `id` as written in its file, with the file's ETag.
async fn written(rig: &Rig, id: &str) -> (Value, String) {
    let read = send_json(&rig.router, "GET", &format!("/api/v1/templates/{id}"), &Value::Null, &[]).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    (read.body["template"].clone(), read.headers["etag"].to_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_event_the_call_could_not_record_is_published_once_the_reconciler_judges_its_intent() {
    let bus = bus(&sdk_config().await).await;
    let rig = Rig::builder().store(StoreOn::DynamoOnWire).env([("HOSTFACTORY_EVENTS", bus.target())]).fast_retries().build().await;
    let (mut edited, _) = written(&rig, &rig.template_id).await;
    edited["maxNumber"] = json!(11);
    // The call dies after the file write: the update that records its event never lands.
    rig.wire.faults.inject(Fault::internal("UpdateItem").times(50));
    let uri = format!("/api/v1/templates/{}", rig.template_id);
    assert_eq!(send_json(&rig.router, "PUT", &uri, &edited, &[]).await.status, 200, "the write stands");
    rig.wire.faults.clear();
    let (now_written, etag) = written(&rig, &rig.template_id).await;
    assert_eq!(now_written["maxNumber"], 11);

    let mut seen = Default::default();
    let dispatch = |batch| shared::reconcile::events::dispatch(&rig.state, batch);
    let intent_only = serde_json::to_value(dispatch(stream_batch(&rig, &mut seen).await).await.unwrap()).unwrap();
    assert_eq!(intent_only["events"], 0, "an intent is no event: {intent_only}");
    assert_eq!(settle_stale(&rig.state, now() - 60).await.unwrap().committed, 0, "not judged while its write may be in flight");

    let settled = settle_stale(&rig.state, now() + 1).await.unwrap();
    assert_eq!((settled.committed, settled.forgotten), (1, 0));
    let outcome = serde_json::to_value(dispatch(stream_batch(&rig, &mut seen).await).await.unwrap()).unwrap();
    assert_eq!(outcome["events"], 1, "{outcome}");
    let received = bus.received().await;
    assert_eq!(received.len(), 1);
    assert_schemas(&received);
    assert_eq!(received[0]["detail-type"], "Template Updated");
    assert_eq!(received[0]["detail"]["changes"], json!([{"key": "maxNumber", "old": 10, "new": 11}]));
    assert_eq!(received[0]["detail"]["etag"], etag.as_str());
    assert_eq!(settle_stale(&rig.state, now() + 1).await.unwrap(), Default::default(), "settled once");
}

#[tokio::test]
async fn a_write_whose_intent_cannot_be_recorded_is_refused_and_writes_nothing() {
    let rig = Rig::builder().store(StoreOn::DynamoOnWire).env([("HOSTFACTORY_EVENTS", "file:/dev/null")]).fast_retries().build().await;
    let (before, etag) = written(&rig, &rig.template_id).await;
    let mut edited = before.clone();
    edited["maxNumber"] = json!(3);
    rig.wire.faults.inject(Fault::internal("PutItem").times(50));
    let uri = format!("/api/v1/templates/{}", rig.template_id);
    let refused = send_json(&rig.router, "PUT", &uri, &edited, &[]).await;
    rig.wire.faults.clear();
    assert!(refused.status.is_server_error(), "{} {:?}", refused.status, refused.body);
    assert!(refused.message().contains("recording the intent of template write"), "{}", refused.message());
    assert_eq!(written(&rig, &rig.template_id).await, (before, etag), "the file is as it was");
}

/// What a templates call had recorded when it died: the intent of its write, `age` seconds old.
async fn intended(rig: &Rig, id: &str, template_id: &str, (old, new): (Option<Value>, Option<Value>), age: i64) {
    let intent = Intent {
        id: id.into(),
        provider: rig.state.config.default_provider.clone(),
        template_id: template_id.into(),
        by: "arn:aws:iam::123456789012:role/ops".into(),
        file_before: old.as_ref().map(|_| "awsprov_templates.json".to_owned()),
        old,
        new,
        at: now() - age,
    };
    rig.state.store.event_log.intend(id, intent.at, &serde_json::to_value(&intent).unwrap()).await.unwrap();
}

#[tokio::test]
async fn a_reconcile_pass_publishes_the_writes_a_crash_made_and_drops_those_it_did_not() {
    // A region of its own: the pass sweeps every tagged instance and launch template of it.
    let region = "ap-southeast-4";
    let bus = bus(&sdk_config().await.to_builder().region(aws_config::Region::from_static(region)).build()).await;
    let rig = Rig::builder()
        .region(region)
        .also(json!({"templateId": "Second"}))
        .env([("HOSTFACTORY_EVENTS", bus.target())])
        .build()
        .await;
    let provider = rig.state.config.default_provider.clone();
    let (original, _) = written(&rig, &rig.template_id).await;
    let (second, _) = written(&rig, "Second").await;
    let mut updated = original.clone();
    updated["maxNumber"] = json!(12);
    // Died after the file write: an update and a delete.
    intended(&rig, "w-update", &rig.template_id, (Some(original.clone()), Some(updated.clone())), 200).await;
    rig.state.catalog.put(&provider, &rig.template_id, updated.clone(), None, None).await.unwrap();
    intended(&rig, "w-delete", "Second", (Some(second), None), 200).await;
    rig.state.catalog.delete(&provider, "Second", None).await.unwrap();
    // Died before it: a create never made; and a write still in flight, not judged yet.
    intended(&rig, "w-ghost", "Ghost", (None, Some(json!({"templateId": "Ghost"}))), 200).await;
    let mut later = updated.clone();
    later["maxNumber"] = json!(13);
    intended(&rig, "w-fresh", &rig.template_id, (Some(updated), Some(later)), 0).await;

    let report = shared::reconcile::run_once(&rig.state).await.unwrap();
    assert_eq!((report.template_events_recovered, report.template_intents_dropped), (2, 1), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(rig.state.publish_events().await.unwrap().events, 2);
    let mut received = bus.received().await;
    received.sort_by_key(|e| e["detail-type"].as_str().unwrap().to_owned());
    assert_schemas(&received);
    let types: Vec<&str> = received.iter().map(|e| e["detail-type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Template Deleted", "Template Updated"]);
    assert_eq!(received[1]["detail"]["changes"], json!([{"key": "maxNumber", "old": 10, "new": 12}]));
    assert_eq!(received[0]["detail"]["templateId"], "Second");
    assert_eq!(received[0]["detail"]["by"], "arn:aws:iam::123456789012:role/ops");

    let fresh = rig.state.store.event_log.stale_intents(now() + 1).await.unwrap();
    assert_eq!(fresh.len(), 1, "the write in flight waits: {fresh:?}");
    assert_eq!(fresh[0]["id"], "w-fresh");
}
