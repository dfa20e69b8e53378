//! A machine under a return is not returned again: of 20 concurrent requestReturnMachines of
//! one machine, one `ret-` terminates it (exactly one TerminateInstances on the wire) and the
//! others answer 200 with their own `ret-` id, which completes at once; capacity is given back
//! once.

use std::collections::HashSet;

use hostfactory_tests::audit::Audit;
use hostfactory_tests::rig::Rig;
use hostfactory_tests::send_json;
use serde_json::json;

async fn twenty_returns_of_one_machine(rig: Rig) {
    let bystander: HashSet<String> = rig.granted(1).await.into_iter().collect();
    let machine = rig.granted(1).await.remove(0);
    assert_eq!(rig.in_use().await, 2);

    rig.log.clear();
    let body = json!({"machines": [{"machineId": machine}]});
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (router, body) = (rig.router.clone(), body.clone());
            tokio::spawn(async move { send_json(&router, "POST", "/api/v1/machines/return", &body, &[]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let mut ids = HashSet::new();
    for answer in &answers {
        assert_eq!(answer.status, 200, "every return is accepted: {}", answer.body);
        let ret = answer.body["requestId"].as_str().unwrap().to_owned();
        assert!(ret.starts_with("ret-"), "{}", answer.body);
        ids.insert(ret);
    }
    assert_eq!(ids.len(), 20, "each return has its own id");
    assert_eq!(rig.log.actions("TerminateInstances"), 1, "one TerminateInstances for the machine: {:?}", rig.log.calls());

    for ret in &ids {
        let status = rig.settled(ret).await;
        assert_eq!(status["status"], "complete", "{status}");
    }
    let record = rig.state.store.machines.get(&machine).await.unwrap().expect("the machine's record");
    let by = record.return_request_id.expect("returned by one of the calls");
    assert!(ids.contains(&by), "the machine is returned by {by}, one of the 20");
    assert_eq!(rig.in_use().await, 1, "the machine's unit given back once; the bystander's still held");
    assert_eq!(rig.log.actions("TerminateInstances"), 1, "and no more afterwards");
    let audit = Audit::of(&rig, &bystander).await;
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_returns_terminate_the_machine_once_on_sqlite() {
    twenty_returns_of_one_machine(Rig::builder().max(5).build().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_returns_terminate_the_machine_once_on_dynamodb() {
    twenty_returns_of_one_machine(Rig::builder().max(5).dynamo().build().await).await;
}
