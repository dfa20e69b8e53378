//! The reconciler on moto: crash healing (pending requests, unrecorded instances), launch
//! timeouts, launch template cleanup, the EventBridge events, and what an idle pass costs.
//!
//! Each test that sweeps tagged instances or launch templates runs EC2 in a region of its own,
//! so it never sees what other tests of the run launched.

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use hostfactory_tests::rig::{Rig, request_id};
use hostfactory_tests::wire::Fault;
use serde_json::{Value, json};
use shared::hostfactory::MachineResult;
use shared::cloud::tags;
use shared::reconcile::events::{Outcome, dispatch};
use shared::reconcile::{Report, run_once};
use shared::store::{Lifecycle, MachineRecord, RequestKind, RequestRecord, RequestPhase, capacity_key, now};

async fn rig(region: &'static str, max_number: i64) -> Rig {
    Rig::builder().region(region).max(max_number).build().await
}

async fn dynamo_rig(region: &'static str, max_number: i64) -> Rig {
    Rig::builder().region(region).max(max_number).dynamo().build().await
}

/// Requests `count` machines, waits for them, and makes the first a Spot instance: the
/// machines, as recorded.
async fn ready_with_a_spot(rig: &Rig, count: i64) -> Vec<MachineRecord> {
    let req = request_id(&rig.request(count).await);
    assert_eq!(rig.settled(&req).await["status"], "complete");
    let mut machines = rig.state.store.machines.list_by_request(&req).await.unwrap();
    machines[0].lifecycle = Lifecycle::Spot;
    machines[0] = rig.state.store.machines.update(&machines[0]).await.unwrap();
    machines
}

/// Launches one instance straight through the SDK with `tags`, as a request handler that died
/// before recording it would have.
async fn launch_tagged(rig: &Rig, tags: &[(&str, &str)]) -> String {
    let tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
    let mut call =
        rig.ec2.run_instances().image_id("ami-12c6146b").instance_type(InstanceType::T3Micro).min_count(1).max_count(1);
    if !tags.is_empty() {
        call = call.tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags)).build(),
        );
    }
    let output = call.send().await.expect("run instance");
    output.instances()[0].instance_id().unwrap().to_owned()
}

/// The ownership tags of an instance launched for `request_id`.
fn ours<'a>(rig: &'a Rig, request_id: &'a str) -> [(&'a str, &'a str); 4] {
    [
        (tags::REQUEST_ID, request_id),
        (tags::TEMPLATE_ID, &rig.template_id),
        (tags::PROVIDER, "awsinst"),
        (tags::MANAGED, "true"),
    ]
}

/// A provisioning request as requestMachines writes it before calling EC2, `age` seconds ago,
/// with its capacity reserved.
async fn pending_request(rig: &Rig, count: u32, age: i64) -> RequestRecord {
    let request = RequestRecord::new(RequestKind::Provision, &rig.template_id, "awsinst", count, now() - age);
    rig.state.store.requests.put_if_absent(&request).await.unwrap();
    let op_id = format!("reserve:{}", request.request_id);
    rig.state.store.capacity.reserve(&capacity_key("awsinst", &rig.template_id), &op_id, count, -1).await.unwrap();
    request
}

async fn state_of(rig: &Rig, instance_id: &str) -> String {
    let found = shared::cloud::instances::describe(&rig.ec2, &[instance_id.to_owned()]).await.unwrap();
    found[instance_id].state.to_string()
}

#[tokio::test]
async fn an_idle_pass_makes_two_ec2_calls() {
    let rig = rig("ap-northeast-3", 5).await;
    rig.log.clear();
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!(report, Report::default());
    let calls: Vec<_> = rig.log.calls().into_iter().filter_map(|c| c.action).collect();
    assert_eq!(calls, ["DescribeInstances", "DescribeLaunchTemplates"], "one paginated call each");

    // A finished request costs nothing more; an unfinished one adds its status observation.
    let req = request_id(&rig.request(2).await);
    rig.log.clear();
    let report = run_once(&rig.state).await.unwrap();
    assert_eq!((report.active, report.refreshed, report.finished), (1, 1, 1), "{report:?}");
    assert_eq!(rig.log.actions("DescribeInstances"), 2, "orphan sweep + one status describe: {:?}", rig.log.calls());
    assert_eq!(rig.log.calls().len(), 3);
    assert_eq!(rig.settled(&req).await["status"], "complete");
    rig.log.clear();
    assert_eq!(run_once(&rig.state).await.unwrap(), Report::default());
    assert_eq!(rig.log.calls().len(), 2);
}

#[tokio::test]
async fn pending_requests_adopt_their_instances_or_fail() {
    pending_requests_are_healed(rig("ap-south-1", 10).await).await;
}

#[tokio::test]
async fn pending_requests_adopt_their_instances_or_fail_on_dynamodb() {
    pending_requests_are_healed(dynamo_rig("us-west-1", 10).await).await;
}

async fn pending_requests_are_healed(rig: Rig) {
    // Crashed after EC2 launched 2 of 3, before anything was recorded.
    let crashed = pending_request(&rig, 3, 400).await;
    let launched = [
        launch_tagged(&rig, &ours(&rig, &crashed.request_id)).await,
        launch_tagged(&rig, &ours(&rig, &crashed.request_id)).await,
    ];
    // Crashed before EC2 was called.
    let lost = pending_request(&rig, 2, 400).await;
    // Still within the pending timeout: its handler may be running.
    let young = pending_request(&rig, 1, 10).await;
    assert_eq!(rig.in_use().await, 6);

    let report = run_once(&rig.state).await.unwrap();
    assert_eq!((report.pending_adopted, report.pending_failed, report.active), (1, 1, 3), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.orphans_adopted, 0, "adopted by the pending step first");

    let machines = rig.state.store.machines.list_by_request(&crashed.request_id).await.unwrap();
    let mut ids: Vec<&str> = machines.iter().map(|m| m.machine_id.as_str()).collect();
    ids.sort();
    let mut expected: Vec<&str> = launched.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let answer = rig.settled(&crashed.request_id).await;
    assert_eq!(answer["status"], "complete_with_error", "2 of 3 launched: {answer}");
    assert!(answer["machines"].as_array().unwrap().iter().all(|m| m["result"] == "succeed"), "{answer}");

    let answer = rig.settled(&lost.request_id).await;
    assert_eq!(answer["status"], "complete_with_error");
    assert!(answer["message"].as_str().unwrap().contains("no instance was started"), "{answer}");
    let young = rig.state.store.requests.get(&young.request_id).await.unwrap().unwrap();
    assert_eq!(young.status, RequestPhase::Pending, "too young to judge");
    assert_eq!(rig.in_use().await, 2 + 1, "the lost request and the unlaunched third gave capacity back");

    // A second pass finds nothing more to do.
    let again = run_once(&rig.state).await.unwrap();
    assert_eq!((again.pending_adopted, again.pending_failed, again.orphans_terminated), (0, 0, 0), "{again:?}");
}

#[tokio::test]
async fn a_pending_return_is_terminated_again() {
    let rig = rig("ap-southeast-2", 5).await;
    let req = request_id(&rig.request(1).await);
    assert_eq!(rig.settled(&req).await["status"], "complete");
    let mut machine = rig.state.store.machines.list_by_request(&req).await.unwrap().remove(0);
    // The return was recorded, then the process died before TerminateInstances.
    let ret = RequestRecord::new(RequestKind::Return, "", "awsinst", 1, now() - 400);
    machine.return_request_id = Some(ret.request_id.clone());
    machine.result = MachineResult::Executing;
    rig.state.store.requests.put_with_machines(&ret, &[machine.clone()]).await.unwrap();

    let report = run_once(&rig.state).await.unwrap();
    assert_eq!((report.returns_resent, report.finished), (1, 1), "{report:?}");
    assert_eq!(state_of(&rig, &machine.machine_id).await, "terminated");
    assert_eq!(rig.settled(&ret.request_id).await["status"], "complete");
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test]
async fn unrecorded_tagged_instances_are_adopted_or_terminated_after_the_grace() {
    let rig = rig("eu-north-1", 5).await;
    let req = request_id(&rig.request(1).await);
    // Launched for the unfinished request but never recorded.
    let stray = launch_tagged(&rig, &ours(&rig, &req)).await;
    // Seen only after its request had given up (finished with nothing launched).
    let mut gave_up = RequestRecord::new(RequestKind::Provision, &rig.template_id, "awsinst", 1, now() - 900);
    gave_up.finish(
        RequestPhase::CompleteWithError,
        "nothing launched",
        now() - 600,
        std::time::Duration::from_secs(60),
    );
    rig.state.store.requests.put_if_absent(&gave_up).await.unwrap();
    let orphan = launch_tagged(&rig, &ours(&rig, &gave_up.request_id)).await;
    // Launched by another deployment (a request this store never had); and an untagged host.
    let foreign = launch_tagged(&rig, &ours(&rig, "req-00000000-0000-0000-0000-000000000000")).await;
    let untagged = launch_tagged(&rig, &[("team", "grid")]).await;

    let report = run_once(&rig.state).await.unwrap();
    assert_eq!((report.orphans_adopted, report.orphans_terminated), (1, 0), "orphan still in its grace: {report:?}");
    assert_eq!(report.foreign_instances, 1, "{report:?}");
    let machines = rig.state.store.machines.list_by_request(&req).await.unwrap();
    assert!(machines.iter().any(|m| m.machine_id == stray), "{machines:?}");

    let no_grace = rig.with_timings(|t| t.orphan_grace = std::time::Duration::ZERO);
    let report = run_once(&no_grace).await.unwrap();
    assert_eq!((report.orphans_adopted, report.orphans_terminated), (0, 1), "{report:?}");
    assert_eq!(state_of(&rig, &orphan).await, "terminated");
    assert_eq!(state_of(&rig, &foreign).await, "running", "another deployment's instances are never touched");
    assert_eq!(state_of(&rig, &untagged).await, "running", "untagged instances are never touched");
    assert_eq!(state_of(&rig, &stray).await, "running", "adopted machines are kept");
    let again = run_once(&no_grace).await.unwrap();
    assert_eq!(again.orphans_terminated, 0, "terminated instances are not listed again: {again:?}");
}

#[tokio::test]
async fn a_request_stuck_launching_times_out() {
    let rig = rig("eu-west-3", 5).await;
    let req = request_id(&rig.request(2).await);
    let stuck = rig.with_timings(|t| t.launch_timeout = std::time::Duration::ZERO);
    // EC2 cannot be observed (moto starts every instance at once, so nothing stays pending):
    // the store still says launching, and the timeout applies to what it says.
    rig.wire.faults.inject(Fault::once("DescribeInstances", "UnauthorizedOperation", "not allowed").times(2));

    let report = run_once(&stuck).await.unwrap();
    assert_eq!(rig.wire.faults.remaining(), 0);
    assert_eq!(report.timed_out, 1, "{report:?}");
    assert_eq!(report.errors.len(), 2, "the sweep and the refresh failed and say so: {report:?}");
    assert!(report.errors.iter().all(|e| e.contains("UnauthorizedOperation")), "{report:?}");

    let answer = rig.status(&[&req]).await.body["requests"][0].clone();
    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("did not become ready within 0 s"), "{answer}");
    assert!(answer["machines"].as_array().unwrap().iter().all(|m| m["result"] == "fail"), "{answer}");
    assert!(rig.tagged().await.iter().all(|i| i.state == "terminated"), "stragglers terminated");
    assert_eq!(rig.in_use().await, 0, "their capacity released");
}

#[tokio::test]
async fn unused_managed_launch_templates_are_deleted() {
    let rig = rig("sa-east-1", 5).await;
    let create = |name: &'static str, tagged: bool| {
        let ec2 = rig.ec2.clone();
        async move {
            let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder().image_id("ami-12c6146b").build();
            let mut call = ec2.create_launch_template().launch_template_name(name).launch_template_data(data);
            if tagged {
                let tag = Tag::builder().key(tags::MANAGED).value("true").build();
                call = call.tag_specifications(
                    TagSpecification::builder().resource_type(ResourceType::LaunchTemplate).tags(tag).build(),
                );
            }
            let output = call.send().await.expect("create launch template");
            output.launch_template().unwrap().launch_template_id().unwrap().to_owned()
        }
    };
    let unused = create("hostfactory-0123456789abcdef", true).await;
    let in_use = create("hostfactory-fedcba9876543210", true).await;
    let other_name = create("team-template", true).await;
    let untagged = create("hostfactory-00000000aaaaaaaa", false).await;
    // A request still launching (pending: the reconciler leaves a young one alone) uses one.
    let mut active = RequestRecord::new(RequestKind::Provision, &rig.template_id, "awsinst", 1, now());
    active.launch_template_id = Some(in_use.clone());
    rig.state.store.requests.put_if_absent(&active).await.unwrap();

    let report = run_once(&rig.state).await.unwrap();
    assert_eq!(report.launch_templates_deleted, 0, "all younger than the grace: {report:?}");

    let no_grace = rig.with_timings(|t| t.launch_template_grace = std::time::Duration::ZERO);
    let report = run_once(&no_grace).await.unwrap();
    assert_eq!(report.launch_templates_deleted, 1, "{report:?}");
    let left = rig.ec2.describe_launch_templates().send().await.unwrap();
    let left: Vec<&str> = left.launch_templates().iter().filter_map(|t| t.launch_template_id()).collect();
    assert!(!left.contains(&unused.as_str()), "{left:?}");
    for kept in [&in_use, &other_name, &untagged] {
        assert!(left.contains(&kept.as_str()), "{kept} kept: {left:?}");
    }
}

#[tokio::test]
async fn a_launch_template_the_reconciler_deletes_is_forgotten_by_its_process() {
    let launch = json!({"providerApi": "EC2Fleet", "fleetType": "instant", "vmTypes": {"t3.micro": 1}});
    let rig = Rig::builder().region("eu-south-1").max(5).launch(launch).build().await;
    let first = request_id(&rig.request(1).await);
    assert_eq!(rig.settled(&first).await["status"], "complete");
    let no_grace = rig.with_timings(|t| t.launch_template_grace = std::time::Duration::ZERO);
    let report = run_once(&no_grace).await.unwrap();
    assert_eq!(report.launch_templates_deleted, 1, "finished, so unreferenced: {report:?}");

    rig.log.clear();
    let second = request_id(&rig.request(1).await);
    let calls = |action: &str| rig.log.actions(action);
    let counted = (calls("DescribeLaunchTemplates"), calls("CreateLaunchTemplate"), calls("CreateFleet"));
    assert_eq!(counted, (1, 1, 1), "forgotten: looked up and created, never launched on: {:?}", rig.log.calls());
    assert_eq!(rig.settled(&second).await["status"], "complete");
}

/// `events/<file>` with the sample instance id replaced.
fn event(file: &str, instance_id: &str) -> Value {
    let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text.replace("i-0b662ef9931388ba0", instance_id)).unwrap()
}

#[tokio::test]
async fn every_reconciler_event_file_is_dispatched() {
    let rig = rig("ca-central-1", 5).await;
    let machines = ready_with_a_spot(&rig, 2).await;
    let (spot, doomed) = (&machines[0], &machines[1]);

    // The schedule runs a pass.
    let outcome = dispatch(&rig.state, event("reconcile-schedule.json", "")).await.unwrap();
    assert!(matches!(outcome, Outcome::Reconciled { ref report } if report.errors.is_empty()), "{outcome:?}");

    // A Spot warning 20 s ago: getReturnRequests reports the host with what is left of 120 s.
    let mut warning = event("ec2-spot-interruption.json", &spot.machine_id);
    let at = now() - 20;
    warning["time"] = json!(rfc3339(at));
    let outcome = dispatch(&rig.state, warning.clone()).await.unwrap();
    assert_eq!(outcome, Outcome::Interrupted { machine_id: spot.machine_id.clone(), interrupted_at: at });
    let repeat = dispatch(&rig.state, event("ec2-spot-interruption.json", &spot.machine_id)).await.unwrap();
    assert_eq!(repeat, outcome, "a repeated warning keeps the first time");
    let hosts = json!({"machines": [{"name": spot.name, "machineId": spot.machine_id}]});
    let answer = rig.post("/api/v1/machines/return-requests", hosts).await;
    let grace = answer.body["requests"][0]["gracePeriod"].as_i64().unwrap_or_else(|| panic!("{}", answer.body));
    assert!((95..=100).contains(&grace), "{}", answer.body);

    // EC2 reports a host terminated: the machine records it.
    let outcome = dispatch(&rig.state, event("ec2-state-change-terminated.json", &doomed.machine_id)).await.unwrap();
    assert_eq!(outcome, Outcome::StateRecorded { machine_id: doomed.machine_id.clone(), state: "terminated".into() });
    let recorded = rig.state.store.machines.get(&doomed.machine_id).await.unwrap().unwrap();
    assert_eq!((recorded.state.as_str(), recorded.result), ("terminated", MachineResult::Fail));
    assert_eq!(rig.in_use().await, 1, "the host EC2 took back gave its capacity back");
    dispatch(&rig.state, event("ec2-state-change-terminated.json", &doomed.machine_id)).await.unwrap();
    assert_eq!(rig.in_use().await, 1, "a repeated event releases nothing more");

    // Instances we do not know and events we do not handle are ignored.
    for ignored in [
        event("ec2-state-change-terminated.json", "i-00000000000000000"),
        event("ec2-spot-interruption.json", "i-00000000000000000"),
        json!({"detail-type": "EC2 Instance Rebalance Recommendation", "source": "aws.ec2", "detail": {"instance-id": spot.machine_id}}),
        json!({"anything": true}),
    ] {
        let outcome = dispatch(&rig.state, ignored.clone()).await.unwrap();
        assert!(matches!(outcome, Outcome::Ignored { .. }), "{ignored} → {outcome:?}");
    }
    let running = event("ec2-state-change-terminated.json", &spot.machine_id);
    let mut running = running;
    running["detail"]["state"] = json!("running");
    assert!(matches!(dispatch(&rig.state, running).await.unwrap(), Outcome::Ignored { .. }));
}

/// Epoch seconds as an RFC 3339 UTC time (EventBridge's `time`).
fn rfc3339(epoch: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(epoch).unwrap();
    time.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn hosts_the_cloud_takes_back_are_reported_to_an_empty_get_return_requests() {
    reclaimed_hosts_are_reported(rig("eu-west-2", 5).await).await;
}

#[tokio::test]
async fn hosts_the_cloud_takes_back_are_reported_on_dynamodb() {
    reclaimed_hosts_are_reported(dynamo_rig("us-east-2", 5).await).await;
}

async fn reclaimed_hosts_are_reported(rig: Rig) {
    let machines = ready_with_a_spot(&rig, 3).await;
    let (spot, doomed) = (&machines[0], &machines[1]);
    let reported = |body: &Value| -> Vec<(String, i64)> {
        let mut list: Vec<(String, i64)> = body["requests"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|r| (r["machine"].as_str().unwrap().to_owned(), r["gracePeriod"].as_i64().unwrap()))
            .collect();
        list.sort();
        list
    };
    let empty = rig.post("/api/v1/machines/return-requests", json!({})).await;
    assert_eq!((empty.body["status"].as_str(), reported(&empty.body)), (Some("complete"), vec![]));

    let mut warning = event("ec2-spot-interruption.json", &spot.machine_id);
    warning["time"] = json!(rfc3339(now() - 30));
    dispatch(&rig.state, warning).await.unwrap();
    dispatch(&rig.state, event("ec2-state-change-terminated.json", &doomed.machine_id)).await.unwrap();

    rig.log.clear();
    let answer = rig.post("/api/v1/machines/return-requests", json!({})).await;
    assert_eq!(rig.log.calls().len(), 0, "answered from the store alone");
    let mut expected = vec![(spot.name.clone(), 90), (doomed.name.clone(), 0)];
    expected.sort();
    let got = reported(&answer.body);
    assert_eq!(got.len(), 2, "{}", answer.body);
    for ((name, grace), (want_name, want_grace)) in got.iter().zip(&expected) {
        assert_eq!(name, want_name);
        assert!((want_grace - 5..=*want_grace).contains(grace), "{}", answer.body);
    }

    // HostFactory returns both: they are no longer reported.
    let hosts = json!({"machines": [{"name": spot.name, "machineId": spot.machine_id}, {"name": doomed.name, "machineId": doomed.machine_id}]});
    request_id(&rig.post("/api/v1/machines/return", hosts).await);
    let after = rig.post("/api/v1/machines/return-requests", json!({})).await;
    assert_eq!(reported(&after.body), vec![], "{}", after.body);
}
