//! An AWS answer lost after the call was applied (a 500 after moto executed it), at every
//! operation of a HostFactory cycle (requestMachines, getRequestStatus, requestReturnMachines,
//! getRequestStatus) on DynamoDB through the wire, with idempotency tokens honoured as AWS does.
//!
//! Lost once, the SDK's retry must apply the call exactly once: the cycle goes through with
//! every answer 200, and capacity and EC2 agree with what HostFactory holds without any
//! reconciler pass. Lost on every attempt (the SDK gives up), HostFactory may get an error
//! with a message, but after one reconciler pass nothing is leaked and nothing drifts.

use std::collections::HashSet;

use hostfactory_tests::audit::Audit;
use hostfactory_tests::hostfactory::HostFactory;
use hostfactory_tests::rig::{ELAPSED, Rig, StoreOn};
use hostfactory_tests::wire::Fault;
use shared::reconcile::run_once;

/// The SDK's default attempts per call (standard retry mode).
const ATTEMPTS: usize = 3;

async fn lost_rig(region: &'static str) -> Rig {
    let rig = Rig::builder().region(region).store(StoreOn::DynamoOnWire).env(ELAPSED).fast_retries().build().await;
    rig.wire.faults.replay_tokens();
    rig
}

/// A cycle of 2 machines; the operations it made, in order of first use.
async fn operations_of_a_cycle(rig: &Rig) -> Vec<String> {
    rig.log.clear();
    let mut hostfactory = HostFactory::default();
    hostfactory.cycle(rig, 2).await;
    assert!(hostfactory.wrong.is_empty() && hostfactory.returned == 2, "{:?}", hostfactory.statuses);
    let mut seen = Vec::new();
    for action in rig.log.calls().into_iter().filter_map(|c| c.action) {
        if !seen.contains(&action) {
            seen.push(action);
        }
    }
    seen
}

/// For each operation of a cycle, a fresh rig with a bystander machine HostFactory keeps, the
/// first call of that operation losing its answer `times` times, one cycle, and what is wrong.
async fn every_operation(region: &'static str, times: usize, pass: bool) {
    let operations = operations_of_a_cycle(&lost_rig(region).await).await;
    eprintln!("a cycle uses {operations:?}");
    let mut broken = Vec::new();
    for operation in &operations {
        let rig = lost_rig(region).await;
        let mut hostfactory = HostFactory::default();
        hostfactory.held.extend(rig.granted(1).await);
        rig.wire.faults.inject(Fault::after_executing(operation).times(times));
        hostfactory.cycle(&rig, 2).await;
        let mut wrong = hostfactory.wrong.clone();
        if !pass && (hostfactory.statuses.keys().any(|s| *s != 200) || hostfactory.returned != 2) {
            wrong.push(format!("answers {:?}, {} of 2 machines returned", hostfactory.statuses, hostfactory.returned));
        }
        if pass {
            let report = run_once(&rig.restarted()).await.expect("a reconcile pass");
            wrong.extend(report.errors.iter().map(|e| format!("pass error: {e}")));
        }
        let held: HashSet<String> = hostfactory.held.clone();
        wrong.extend(Audit::of(&rig, &held).await.violations());
        eprintln!("{operation} answer lost {times}x: {} {:?}", if wrong.is_empty() { "ok" } else { "BROKEN" }, hostfactory.statuses);
        if !wrong.is_empty() {
            broken.push(format!("{operation}: {}", wrong.join("; ")));
        }
    }
    assert!(broken.is_empty(), "answers lost {times}x, operations that broke the promise:\n{}", broken.join("\n"));
}

#[tokio::test]
async fn an_answer_lost_once_is_retried_exactly_once() {
    every_operation("me-south-1", 1, false).await;
}

#[tokio::test]
async fn answers_lost_on_every_attempt_leak_nothing_after_a_pass() {
    every_operation("eu-south-2", ATTEMPTS, true).await;
}
