//! getRequestStatus bounded by the clock (`HOSTFACTORY_CALL_BUDGET_SECS`): when EC2 does not
//! answer in time the call still answers, with its requests `running` as recorded, and the next
//! poll finishes them. EC2 here stops answering altogether (the wire holds the call forever).

use std::time::Duration;

use hostfactory_tests::rig::{Rig, machine_ids, request_id};
use hostfactory_tests::wire::{Crash, Mode};
use shared::store::RequestPhase;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_status_call_answers_within_its_budget_when_ec2_does_not() {
    let rig = Rig::builder().env([("HOSTFACTORY_CALL_BUDGET_SECS", "1")]).build().await;
    let id = request_id(&rig.request(2).await);
    rig.wire.faults.crash(Crash { operation: Some("DescribeInstances".into()), index: 0, mode: Mode::Before });

    let ids = [id.as_str()];
    let answer = tokio::time::timeout(Duration::from_secs(30), rig.status(&ids)).await.expect("the call answers without EC2").body;
    let request = &answer["requests"][0];
    assert_eq!(request["status"], "running", "{answer}");
    assert_eq!(machine_ids(request).len(), 2, "the machines as recorded: {answer}");
    let record = rig.state.store.requests.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, RequestPhase::InProgress, "nothing decided without EC2");
    assert!(!record.unclaimed, "the poll's claim is written all the same");

    // EC2 answers again: the next poll finishes the request.
    assert_eq!(rig.settled(&id).await["status"], "complete");
}
