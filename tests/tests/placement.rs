//! Capacity-aware RunInstances launching on moto (issue #13): a request is spread over the
//! template's pools (types × subnets); a pool that answers a capacity error (injected on the
//! wire for one subnet or type: moto never runs out) is routed around in the same
//! requestMachines, an account limit stops the request saying which quota to raise, and only
//! when every pool refused does the request end `complete_with_error`, naming each pool.

use std::collections::BTreeMap;

use aws_config::Region;
use hostfactory_tests::rig::{Rig, StoreOn, machine_ids, request_id};
use hostfactory_tests::wire::{Chaos, Fault, Kind, Mode};
use hostfactory_tests::{Captured, send_json, sdk_config, unique};
use shared::api::local_router;
use serde_json::{Value, json};
use shared::reconcile::run_once;

/// moto keeps regions apart: the reconciler of the throttling case sees only this file's
/// instances (and leaves the other tests' alone, as another deployment's).
const REGION: &str = "eu-west-1";
const NO_CAPACITY: &str = "InsufficientInstanceCapacity";

/// A VPC with one subnet in each of three zones, and a security group.
async fn three_zones() -> (Vec<String>, String) {
    let sdk = sdk_config().await.to_builder().region(Region::from_static(REGION)).build();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let vpc = ec2.create_vpc().cidr_block("10.1.0.0/16").send().await.unwrap();
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned();
    let mut subnets = Vec::new();
    for (i, zone) in ["a", "b", "c"].iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.1.{}.0/20", i * 16))
            .availability_zone(format!("{REGION}{zone}"))
            .send()
            .await
            .unwrap();
        subnets.push(subnet.subnet().and_then(|s| s.subnet_id()).unwrap().to_owned());
    }
    let sg = ec2.create_security_group().group_name(unique("hf-sg")).description("t").vpc_id(&vpc_id).send().await.unwrap();
    (subnets, sg.group_id().unwrap().to_owned())
}

/// A rig whose template launches `launch` (plus the subnets and the group) on SQLite.
async fn rig(subnets: &[String], sg: &str, launch: Value) -> Rig {
    rig_with(subnets, sg, launch, &[]).await
}

/// [`rig`] with settings `env`.
async fn rig_with(subnets: &[String], sg: &str, launch: Value, env: &[(&'static str, &'static str)]) -> Rig {
    rig_on(StoreOn::Sqlite, subnets, sg, launch, env).await
}

/// [`rig_with`] on `store`.
async fn rig_on(store: StoreOn, subnets: &[String], sg: &str, launch: Value, env: &[(&'static str, &'static str)]) -> Rig {
    let mut keys = json!({"vmType": "t3.micro", "subnetId": subnets, "securityGroupIds": [sg]});
    keys.as_object_mut().unwrap().extend(launch.as_object().unwrap().clone());
    let builder = Rig::builder().region(REGION).max(20).launch(keys).store(store).fast_retries();
    builder.env(env.iter().copied()).build().await
}

/// Subnet and instance type of each of `machines`, as EC2 describes them.
async fn placed(rig: &Rig, machines: Vec<String>) -> Vec<(String, String)> {
    let described = rig.ec2.describe_instances().set_instance_ids(Some(machines)).send().await.unwrap();
    let instances = described.reservations().iter().flat_map(|r| r.instances());
    let mut placed: Vec<(String, String)> = instances
        .map(|i| (i.subnet_id().unwrap_or_default().to_owned(), i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_default()))
        .collect();
    placed.sort();
    placed
}

/// `subnets` in the order [`placed`] lists them.
fn sorted(subnets: Vec<&String>) -> Vec<String> {
    let mut subnets: Vec<String> = subnets.into_iter().cloned().collect();
    subnets.sort();
    subnets
}

/// RunInstances calls since the log was cleared, by subnet.
fn launches_by_subnet(rig: &Rig) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in rig.log.calls().into_iter().filter(|c| c.action.as_deref() == Some("RunInstances")) {
        let subnet = call.form.iter().find_map(|p| p.strip_prefix("SubnetId=")).unwrap_or_default().to_owned();
        *counts.entry(subnet).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zone_out_of_capacity_is_routed_around_in_one_request_machines() {
    let (subnets, sg) = three_zones().await;
    let rig = rig(&subnets, &sg, json!({})).await;
    let first_zone = format!("SubnetId={}", subnets[0]);
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity").when(&first_zone).times(100));
    rig.log.clear();
    let accepted = rig.request(6).await;
    let id = request_id(&accepted);
    assert!(accepted.body["message"].as_str().unwrap().contains(NO_CAPACITY), "{}", accepted.body);
    // The refused zone was asked once, then closed; the other two shared the request.
    let by_subnet = launches_by_subnet(&rig);
    assert_eq!(by_subnet.get(&subnets[0]), Some(&1), "{by_subnet:?}");
    let answer = rig.settled(&id).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    // Each machine says where it runs: its pool's type and zone.
    let mut pools: Vec<&str> = answer["machines"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    pools.sort();
    let (b, c) = (format!("t3.micro in {REGION}b"), format!("t3.micro in {REGION}c"));
    assert_eq!(pools, [&b, &b, &b, &c, &c, &c], "{answer}");
    let zones: Vec<String> = placed(&rig, machine_ids(&answer)).await.into_iter().map(|(subnet, _)| subnet).collect();
    assert_eq!(zones, sorted(vec![&subnets[1], &subnets[1], &subnets[1], &subnets[2], &subnets[2], &subnets[2]]), "all six from the other two zones, spread evenly");
    assert_eq!(rig.in_use().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_type_out_of_capacity_everywhere_falls_back_to_the_next_type() {
    let (subnets, sg) = three_zones().await;
    let rig = rig(&subnets[..2], &sg, json!({"vmType": null, "vmTypes": {"t3.micro": 1, "t3.small": 1}})).await;
    rig.wire.faults.inject(Fault::once("RunInstances", "Unsupported", "not here").when("InstanceType=t3.micro").times(100));
    let id = request_id(&rig.request(4).await);
    let answer = rig.settled(&id).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let placed = placed(&rig, machine_ids(&answer)).await;
    let small: Vec<(String, String)> = sorted(vec![&subnets[0], &subnets[0], &subnets[1], &subnets[1]]).into_iter().map(|s| (s, "t3.small".to_owned())).collect();
    assert_eq!(placed, small);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pool_out_of_capacity_ends_the_request_naming_each_pool() {
    let (subnets, sg) = three_zones().await;
    let rig = rig(&subnets, &sg, json!({})).await;
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity").times(100));
    let accepted = rig.request(4).await;
    // The request id is the answer: HostFactory reads why, and asks another template.
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let answer = rig.settled(&request_id(&accepted)).await;
    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(answer["machines"], json!([]));
    let message = answer["message"].as_str().unwrap();
    for subnet in &subnets {
        assert!(message.contains(&format!("t3.micro in {subnet}: {NO_CAPACITY}")), "{message}");
    }
    assert_eq!(rig.in_use().await, 0, "the reservation is given back");
    assert!(rig.tagged().await.is_empty(), "nothing launched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_limit_stops_the_request_and_says_which_quota_to_raise() {
    let (subnets, sg) = three_zones().await;
    let rig = rig(&subnets, &sg, json!({})).await;
    rig.wire.faults.inject(Fault::once("RunInstances", "VcpuLimitExceeded", "You have requested more vCPU capacity").times(100));
    rig.log.clear();
    let refused = rig.request(3).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains("VcpuLimitExceeded") && message.contains("raise") && message.contains("vCPU quota"), "{message}");
    assert_eq!(rig.log.actions("RunInstances"), 1, "no other pool is tried: the limit is the account's");
    assert_eq!(rig.in_use().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prioritized_fills_the_first_pool_and_tops_up_from_the_next() {
    let (subnets, sg) = three_zones().await;
    let rig = rig(&subnets, &sg, json!({"allocationStrategy": "prioritized"})).await;
    // The first zone takes two, then runs out.
    let first_zone = format!("SubnetId={}", subnets[0]);
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity").when(&first_zone).after_calls(2).times(100));
    let answer = rig.settled(&request_id(&rig.request(4).await)).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let zones: Vec<String> = placed(&rig, machine_ids(&answer)).await.into_iter().map(|(subnet, _)| subnet).collect();
    assert_eq!(zones, sorted(vec![&subnets[0], &subnets[0], &subnets[1], &subnets[1]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_at_thirty_percent_still_ends_every_request_correctly() {
    let (subnets, sg) = three_zones().await;
    // A request left pending (its launch's outcome unknown) is resolved by the next pass.
    let rig = rig_with(&subnets, &sg, json!({}), &[("HOSTFACTORY_PENDING_TIMEOUT_SECS", "0")]).await;
    let kinds = vec![(Kind::Throttle, Mode::Before)];
    rig.wire.faults.chaos(Chaos { seed: 13, rate: 0.3, kinds, operations: vec!["RunInstances".into(), "DescribeInstances".into()] });
    let ids: Vec<String> = one_after_another(&rig, 5, 2).await;
    // A launch throttled on every SDK attempt is resolved from EC2 by the reconciler.
    run_once(&rig.state).await.unwrap();
    rig.wire.faults.calm();
    let launches = rig.log.actions("RunInstances");
    assert!(rig.log.faults().get("throttle").is_some_and(|n| *n >= 2), "{:?} of {launches} launches", rig.log.faults());
    let mut machines = 0;
    for id in &ids {
        let answer = rig.settled(id).await;
        assert_eq!(answer["status"], "complete", "{answer}");
        machines += answer["machines"].as_array().unwrap().len();
    }
    assert_eq!(machines, 10);
    assert_eq!(rig.tagged().await.len(), 10, "no instance beyond the requests");
    assert_eq!(rig.in_use().await, 10);
}

/// `requests` requests of `count` machines, one after another.
async fn one_after_another(rig: &Rig, requests: usize, count: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..requests {
        ids.push(request_id(&rig.request(count).await));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cooled_pool_is_skipped_by_every_process_until_its_cooldown_ends() {
    let (subnets, sg) = three_zones().await;
    let env = [("HOSTFACTORY_POOL_COOLDOWN_SECS", "3")];
    let rig = rig_on(StoreOn::DynamoOnWire, &subnets, &sg, json!({}), &env).await;
    let first_zone = format!("SubnetId={}", subnets[0]);
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity").when(&first_zone));
    request_id(&rig.request(3).await);
    assert_eq!(rig.wire.faults.remaining(), 0, "the first zone refused");

    // Another process on the same store: it reads the cooldown and never calls the first zone.
    let other = local_router(rig.restarted());
    let body = json!({"template": {"templateId": rig.template_id, "machineCount": 3}});
    rig.log.clear();
    let accepted = send_json(&other, "POST", "/api/v1/requests", &body, &[]).await;
    let message = accepted.body["message"].as_str().unwrap();
    assert!(message.contains(&format!("t3.micro in {}: cooling down after {NO_CAPACITY}", subnets[0])), "{message}");
    let by_subnet = launches_by_subnet(&rig);
    assert_eq!(by_subnet.get(&subnets[0]), None, "{by_subnet:?}");
    assert_eq!(by_subnet.values().sum::<usize>(), 3, "three machines from the two other zones");
    let reads = rig.log.actions("BatchGetItem");
    assert_eq!(reads, 1, "one read of the template's pools' cooldowns (no capacity read: reserved in the write)");
    let id = request_id(&accepted);
    let zones: Vec<String> = placed(&rig, machine_ids(&rig.settled(&id).await)).await.into_iter().map(|(s, _)| s).collect();
    assert!(!zones.contains(&subnets[0]), "{zones:?}");

    // Once the cooldown is over, the first zone is used again.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    rig.log.clear();
    request_id(&send_json(&other, "POST", "/api/v1/requests", &body, &[]).await);
    assert_eq!(launches_by_subnet(&rig).get(&subnets[0]), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_short_of_capacity_says_where_it_stopped() {
    let (subnets, sg) = three_zones().await;
    let rig = rig(&subnets, &sg, json!({})).await;
    for (i, subnet) in subnets.iter().enumerate() {
        // The last zone starts one machine, then runs out too.
        let fault = Fault::once("RunInstances", NO_CAPACITY, "no capacity").when(&format!("SubnetId={subnet}")).times(100);
        rig.wire.faults.inject(if i == 2 { fault.after_calls(1) } else { fault });
    }
    let answer = rig.settled(&request_id(&rig.request(4).await)).await;
    assert_eq!(answer["status"], "complete_with_error", "{answer}");
    assert_eq!(answer["machines"].as_array().unwrap().len(), 1);
    let message = answer["message"].as_str().unwrap();
    assert!(message.starts_with("1 of 4 machine(s) ready, 0 failed (at launch: "), "{message}");
    for subnet in &subnets {
        assert!(message.contains(&format!("t3.micro in {subnet}: {NO_CAPACITY}")), "{message}");
    }
    assert_eq!(rig.in_use().await, 1, "the three units not launched are given back");
}

/// getAvailableTemplates' entry of the rig's template.
async fn listed(rig: &Rig) -> Value {
    let response = send_json(&rig.router, "GET", "/api/v1/templates", &Value::Null, &[]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body["templates"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_requests_that_launch_nothing_rest_the_template_until_a_success_or_the_end() {
    let (subnets, sg) = three_zones().await;
    // No cooldowns here: each request meets the refusals itself.
    let env = [("HOSTFACTORY_POOL_COOLDOWN_SECS", "0"), ("HOSTFACTORY_TEMPLATE_REST_SECS", "2")];
    let keys = json!({"vmType": "t3.micro", "subnetId": [subnets[0]], "securityGroupIds": [sg]});
    let metrics = Captured::default();
    let builder = Rig::builder().region(REGION).max(20).launch(keys).store(StoreOn::DynamoOnWire).metrics(metrics.clone());
    let rig = builder.env(env).build().await;
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity").times(5));
    for attempt in 1..=3 {
        assert_eq!(listed(&rig).await["availableNumber"], 20, "offered before failure {attempt}");
        request_id(&rig.request(1).await);
    }
    metrics.take();
    let rested = listed(&rig).await;
    assert_eq!(rested["availableNumber"], 0, "{rested}");
    assert!(rested["message"].as_str().unwrap().starts_with("Resting until "), "{rested}");
    let lines = metrics.take();
    let line = lines.iter().find(|l| l["Operation"] == "getAvailableTemplates").expect("a metrics line");
    assert_eq!(line["TemplatesResting"], 1.0, "the alarm's metric (template.yaml TemplatesRestingAlarm)");

    // The rest ends by itself.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(listed(&rig).await["availableNumber"], 20);
    // Rested again by three more failures (two faults left, and a third)...
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity"));
    for _ in 0..3 {
        request_id(&rig.request(1).await);
    }
    assert_eq!(listed(&rig).await["availableNumber"], 0);
    // ... and back at once when a launch of it succeeds.
    let id = request_id(&rig.request(1).await);
    assert_eq!(rig.settled(&id).await["status"], "complete");
    let back = listed(&rig).await;
    assert_eq!(back["availableNumber"], 19, "{back}");
    assert!(back.get("message").is_none(), "{back}");
}

/// Requests `count` machines of template `template_id` and answers the request id.
async fn request_of(rig: &Rig, template_id: &str, count: i64) -> String {
    request_id(&rig.post("/api/v1/requests", json!({"template": {"templateId": template_id, "machineCount": count}})).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instant_fleet_that_finds_capacity_in_a_cooled_pool_ends_its_cooldown() {
    let (subnets, sg) = three_zones().await;
    let fleet_id = unique("Fleet");
    let fleet = json!({"templateId": fleet_id, "providerApi": "EC2Fleet", "fleetType": "instant", "vmType": null,
        "vmTypes": {"t3.micro": 1}, "subnetId": [subnets[0]]});
    let keys = json!({"vmType": "t3.micro", "subnetId": [subnets[0], subnets[1]], "securityGroupIds": [sg]});
    let builder = Rig::builder().region(REGION).max(20).launch(keys).also(fleet).store(StoreOn::DynamoOnWire);
    let rig = builder.fast_retries().build().await;
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity").when(&format!("SubnetId={}", subnets[0])));
    assert_eq!(rig.settled(&request_id(&rig.request(2).await)).await["status"], "complete");
    rig.log.clear();
    request_id(&rig.request(1).await);
    assert_eq!(launches_by_subnet(&rig).get(&subnets[0]), None, "the first zone cools down");

    // The fleet, given every pool, finds capacity in the cooled one: its cooldown is over.
    rig.log.clear();
    let launched = request_of(&rig, &fleet_id, 1).await;
    let marked = rig.log.actions("BatchWriteItem");
    let answer = rig.settled(&launched).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let placed: Vec<String> = placed(&rig, machine_ids(&answer)).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(placed, [subnets[0].clone()]);
    rig.log.clear();
    request_id(&rig.request(1).await);
    assert_eq!(launches_by_subnet(&rig).get(&subnets[0]), Some(&1), "the first zone is used again at once");
    // Capacity seen is written once, not by every success after it.
    rig.log.clear();
    request_of(&rig, &fleet_id, 1).await;
    assert_eq!(rig.log.actions("BatchWriteItem") + 1, marked, "one write of the pool's record, the first time only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rested_template_is_offered_again_once_another_template_finds_capacity_in_its_pool() {
    let (subnets, sg) = three_zones().await;
    let env = [("HOSTFACTORY_POOL_COOLDOWN_SECS", "2"), ("HOSTFACTORY_TEMPLATE_REST_SECS", "600")];
    let other_id = unique("Other");
    let keys = json!({"vmType": "t3.micro", "subnetId": [subnets[0]], "securityGroupIds": [sg]});
    let builder = Rig::builder().region(REGION).max(20).launch(keys).also(json!({"templateId": other_id})).env(env);
    let rig = builder.fast_retries().build().await;
    // Refused once, then skipped twice while its only pool cools down: three requests that
    // launched nothing.
    rig.wire.faults.inject(Fault::once("RunInstances", NO_CAPACITY, "no capacity"));
    for _ in 0..3 {
        request_id(&rig.request(1).await);
    }
    assert_eq!(listed(&rig).await["availableNumber"], 0);
    // The cooldown running out is no proof of capacity: the template still rests.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(listed(&rig).await["availableNumber"], 0);
    // Another template sharing the pool launches in it: the rest is over at once.
    assert_eq!(rig.settled(&request_of(&rig, &other_id, 1).await).await["status"], "complete");
    let back = listed(&rig).await;
    assert_eq!(back["availableNumber"], 20, "{back}");
    assert!(back.get("message").is_none(), "{back}");
}
