//! Capacity that is exactly once and repairs itself, on moto through the real SDK: answers
//! lost after DynamoDB applied a change (the SDK retries it), a release that fails at a
//! request's finish (kept pending on the record, applied once later), and counters that
//! drifted (recounted from the records by the reconciler).

use std::time::Duration;

use hostfactory_tests::{Captured, new_dynamo_store, sdk_config};
use hostfactory_tests::rig::{ELAPSED, Rig, StoreOn, request_id, return_body};
use hostfactory_tests::wire::{Fault, Wire};
use serde_json::json;
use shared::Error;
use shared::reconcile::events::{Outcome, dispatch};
use shared::reconcile::run_once;
use shared::store::{RequestKind, RequestRecord, RequestPhase, capacity_key};

/// A rig in `region` whose store is DynamoDB on moto through the rig's own wire, so store
/// calls are recorded and can be faulted.
async fn wired_rig(region: &'static str, max_number: i64) -> Rig {
    Rig::builder().region(region).max(max_number).store(StoreOn::DynamoOnWire).build().await
}

/// Returns `machines`; the return request's id.
async fn give_back(rig: &Rig, machines: &[String]) -> String {
    request_id(&rig.post("/api/v1/machines/return", return_body(machines)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_whose_answer_was_lost_counts_once() {
    let rig = wired_rig("us-east-1", 4).await;
    rig.wire.faults.inject(Fault::after_executing("TransactWriteItems"));
    request_id(&rig.request(2).await);
    assert_eq!(rig.wire.faults.remaining(), 0, "the answer of the reservation was lost");
    // Before the launch (the launch is recorded with one more transaction after it).
    let calls = rig.log.calls();
    let before_launch = calls.iter().take_while(|c| c.action.as_deref() != Some("RunInstances"));
    let sent = before_launch.filter(|c| c.action.as_deref() == Some("TransactWriteItems")).count();
    assert_eq!(sent, 2, "the SDK sent the applied reservation again");
    assert_eq!(rig.in_use().await, 2, "counted once");
    // What maxNumber leaves is still there, and no more.
    request_id(&rig.request(2).await);
    let refused = rig.request(1).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(rig.tagged().await.len(), 4);
}

/// The reservation and the request record are one write: refused, it leaves neither (nothing
/// for the reconciler to heal, no units held by a request that does not exist), and EC2 is
/// never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_reservation_write_leaves_no_request_and_no_units() {
    let rig = wired_rig("us-east-1", 4).await;
    rig.wire.faults.inject(Fault::once("TransactWriteItems", "ValidationException", "the write was refused"));
    rig.log.clear();
    let refused = rig.request(2).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(refused.body.to_string().contains("the write was refused"), "{}", refused.body);
    let actions: Vec<String> = rig.log.calls().into_iter().filter_map(|c| c.action).collect();
    assert_eq!(actions, ["TransactWriteItems"], "one write, no launch");
    assert_eq!(rig.in_use().await, 0);
    assert!(rig.state.store.requests.list_active().await.unwrap().is_empty());
    // The whole of maxNumber is still there.
    request_id(&rig.request(4).await);
    assert_eq!(rig.in_use().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_whose_answer_was_lost_gives_back_once() {
    let rig = wired_rig("us-east-1", 3).await;
    let machines = rig.granted(2).await;
    rig.granted(1).await;
    assert_eq!(rig.in_use().await, 3);
    let ret = give_back(&rig, &machines[..1]).await;
    rig.wire.faults.inject(Fault::after_executing("TransactWriteItems"));
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert_eq!(rig.wire.faults.remaining(), 0, "the answer of the release was lost");
    assert_eq!(rig.in_use().await, 2, "released once, the other requests' units intact");
    request_id(&rig.request(1).await);
    assert_eq!(rig.request(1).await.status, 422, "maxNumber 3 holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_writes_whose_answer_was_lost_succeed() {
    let wire = Wire::default();
    let store = new_dynamo_store(&wire.sdk_config(&sdk_config().await)).await;
    let created = RequestRecord::new(RequestKind::Provision, "T", "awsinst", 2, 1_750_000_000);
    wire.faults.inject(Fault::after_executing("PutItem"));
    store.requests.put_if_absent(&created).await.expect("the retry finds its own write");
    assert_eq!(wire.faults.remaining(), 0);
    assert_eq!(store.requests.get(&created.request_id).await.unwrap(), Some(created.clone()));

    let mut next = created.clone();
    next.status = RequestPhase::InProgress;
    wire.faults.inject(Fault::after_executing("PutItem"));
    let written = store.requests.update(&next).await.expect("the retry finds its own write");
    assert_eq!((written.version, wire.faults.remaining()), (2, 0));
    assert_eq!(store.requests.get(&created.request_id).await.unwrap(), Some(written));
    // Another writer at the old version is still refused, even with the very same record:
    // only this call's own retry counts as applied.
    let err = store.requests.update(&next).await.unwrap_err();
    assert!(matches!(err, Error::Stale { expected: 1, .. }), "{err:?}");
    let err = store.requests.put_if_absent(&created).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

/// Returns one of two ready machines while every attempt of the release at the return
/// request's finish is throttled: the request finishes with the release pending on its record.
async fn finish_with_a_throttled_release(rig: &Rig) -> String {
    let machines = rig.granted(2).await;
    let ret = give_back(rig, &machines[..1]).await;
    // The poll's one write (the return and its machines) goes through; the release after it
    // is throttled on every attempt: the SDK's 3 of the release with the record cleared, then
    // its 3 of the release alone.
    let throttled = Fault::once("TransactWriteItems", "ProvisionedThroughputExceededException", "Rate exceeded");
    rig.wire.faults.inject(throttled.times(6).after_calls(1));
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert_eq!(rig.wire.faults.remaining(), 0, "every attempt of the release was throttled");
    assert_eq!(rig.in_use().await, 2, "not released yet");
    let record = rig.state.store.requests.get(&ret).await.unwrap().unwrap();
    assert_eq!(record.status, RequestPhase::Complete);
    let pending: Vec<(&str, u32)> = record.pending_capacity.iter().map(|c| (c.key.as_str(), c.units)).collect();
    assert_eq!(pending, [(capacity_key("awsinst", &rig.template_id).as_str(), 1)]);
    let listed = rig.state.store.requests.list_active().await.unwrap();
    assert!(listed.iter().any(|r| r.request_id == ret), "listed for the reconciler while pending");
    ret
}

async fn assert_applied(rig: &Rig, ret: &str) {
    assert_eq!(rig.in_use().await, 1);
    let record = rig.state.store.requests.get(ret).await.unwrap().unwrap();
    assert!(record.pending_capacity.is_empty(), "{record:?}");
    assert!(rig.state.store.requests.list_active().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_release_is_applied_once_by_the_next_status_call() {
    let rig = wired_rig("us-east-1", 2).await;
    let ret = finish_with_a_throttled_release(&rig).await;
    assert_eq!(rig.status(&[&ret]).await.body["requests"][0]["status"], "complete");
    assert_applied(&rig, &ret).await;
    rig.status(&[&ret]).await;
    assert_eq!(rig.in_use().await, 1, "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_release_is_applied_once_by_the_next_reconcile_pass() {
    let rig = wired_rig("ap-southeast-1", 2).await;
    let ret = finish_with_a_throttled_release(&rig).await;
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!((report.capacity_settled, report.capacity_repaired), (1, 0), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_applied(&rig, &ret).await;
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!(report.capacity_settled, 0);
    assert_eq!(rig.in_use().await, 1, "applied once");
}

/// Sets the rig's counter to `in_use` behind the service's back.
async fn drift(rig: &Rig, in_use: u64) {
    let key = capacity_key("awsinst", &rig.template_id);
    let counter = rig.state.store.capacity.counters().await.unwrap().into_iter().find(|c| c.key == key).unwrap();
    assert!(rig.state.store.capacity.correct(&counter, in_use).await.unwrap());
}

async fn a_drifted_counter_is_corrected_by_one_pass(region: &'static str, store: StoreOn) {
    let out = Captured::default();
    let rig = Rig::builder().region(region).max(5).store(store).metrics(out.clone()).build().await;
    let machines = rig.granted(3).await;
    let ret = give_back(&rig, &machines[..1]).await;
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert_eq!(rig.in_use().await, 2);

    // A lost release (+3): within the quiet period the counter is not touched.
    drift(&rig, 5).await;
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!(report.capacity_repaired, 0, "{report:?}");
    assert_eq!(rig.in_use().await, 5, "changed moments ago: left alone");

    let quiet = rig.with_timings(|t| t.capacity_quiet = Duration::ZERO);
    let Outcome::Reconciled { report } = dispatch(&quiet, json!({"detail-type": "Scheduled Event"})).await.unwrap()
    else {
        panic!("a scheduled event runs a pass");
    };
    assert_eq!(report.capacity_repaired, 1, "{report:?}");
    assert_eq!(rig.in_use().await, 2, "the two running machines");
    let line = out.take().pop().expect("the pass's metrics line");
    assert_eq!(line["CapacityRepaired"], 1.0, "{line}");
    assert_eq!(run_once(&quiet).await.unwrap().capacity_repaired, 0, "agrees now");

    // Counted too low (a reservation lost): maxNumber would be exceeded until corrected.
    drift(&rig, 0).await;
    assert_eq!(run_once(&quiet).await.unwrap().capacity_repaired, 1);
    assert_eq!(rig.in_use().await, 2);
    request_id(&rig.request(3).await);
    assert_eq!(rig.request(1).await.status, 422, "maxNumber 5 holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drifted_counter_is_corrected_on_sqlite() {
    a_drifted_counter_is_corrected_by_one_pass("eu-central-1", StoreOn::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drifted_counter_is_corrected_on_dynamodb() {
    a_drifted_counter_is_corrected_by_one_pass("ap-northeast-2", StoreOn::Dynamo).await;
}

/// The machine writes refused at a return's finishing poll: that poll does not finish the return
/// (its record would stay `executing` under a finished return, and the reconciler's recount
/// would take the released units back); the next poll records it and finishes, released once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_finishes_only_once_its_machines_are_recorded() {
    let rig = Rig::builder().region("af-south-1").max(3).store(StoreOn::DynamoOnWire).env(ELAPSED).build().await;
    let machines = rig.granted(2).await;
    rig.granted(1).await;
    let ret = give_back(&rig, &machines).await;
    // The poll's one write (the return's finish with its machines) is refused.
    rig.wire.faults.inject(Fault::once("TransactWriteItems", "ValidationException", "the write was refused"));
    let first = rig.status(&[&ret]).await.body["requests"][0].clone();
    assert_eq!(rig.wire.faults.remaining(), 0, "the machine writes were refused");
    assert_eq!(first["status"], "running", "{first}");
    assert_eq!(rig.in_use().await, 3, "nothing released yet");
    assert_eq!(rig.settled(&ret).await["status"], "complete");
    assert_eq!(rig.in_use().await, 1, "both returned machines released");
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!(report.capacity_repaired, 0, "{report:?}");
    assert_eq!(rig.in_use().await, 1, "the recount agrees with the release");
}
