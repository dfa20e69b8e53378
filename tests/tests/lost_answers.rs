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
use hostfactory_tests::rig::{ELAPSED, Rig, StoreOn, machine_ids, request_id};
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
            // HostFactory goes on polling what it still waits for (a launch whose outcome was
            // unknown until the pass looked at EC2) and takes what the pass finished.
            hostfactory.settle(&rig).await;
            wrong.extend(hostfactory.never_final());
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

/// A launch whose answer is lost on every attempt (EC2 started the machines; the SDK gives up)
/// and one refused with a 500 on every attempt (nothing started) look the same to
/// requestMachines. Neither may give the capacity back before EC2 is looked at (the first would
/// then run machines beyond `maxNumber`), nor answer an error (HostFactory would never learn of
/// the machines): the request id is answered, the request waits `pending`, and one pass adopts
/// what the first started and fails the second, releasing its capacity. The first is a top-up
/// (moto fills one machine per RunInstances): its second call's answer is the one lost.
#[tokio::test]
async fn a_launch_of_unknown_outcome_holds_its_capacity_until_ec2_is_looked_at() {
    let rig = Rig::builder().region("eu-central-2").max(3).store(StoreOn::DynamoOnWire).env(ELAPSED).fast_retries().build().await;
    rig.wire.faults.replay_tokens();
    rig.wire.faults.inject(Fault::after_executing("RunInstances").after_calls(1).times(ATTEMPTS));
    let answer = rig.request(2).await;
    let launched = request_id(&answer);
    assert!(answer.message().contains("Launch outcome unknown after 1 machine(s) started"), "{}", answer.message());
    assert_eq!((rig.wire.faults.remaining(), rig.tagged().await.len()), (0, 2), "the second started, its answer lost");
    rig.wire.faults.inject(Fault::internal("RunInstances").times(ATTEMPTS));
    let refused = request_id(&rig.request(1).await);
    assert_eq!(rig.in_use().await, 3, "both reservations held while the outcome is unknown");
    assert_eq!(rig.request(1).await.status, 422, "maxNumber 3 holds: two machines run, one may");
    assert_eq!(rig.status(&[&launched]).await.body["requests"][0]["status"], "running");

    let report = run_once(&rig.state).await.expect("a reconcile pass");
    assert_eq!((report.pending_adopted, report.pending_failed), (1, 1), "{report:?}");
    let adopted = rig.settled(&launched).await;
    assert_eq!((adopted["status"].as_str(), machine_ids(&adopted).len()), (Some("complete"), 2), "{adopted}");
    assert_eq!(rig.settled(&refused).await["status"], "complete_with_error");
    assert_eq!(rig.in_use().await, 2, "the refused launch gave its unit back, once");
    assert_eq!(rig.tagged().await.len(), 2);
}
