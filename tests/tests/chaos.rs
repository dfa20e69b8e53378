//! Randomized fault runs, seeded and bounded: HostFactory cycles (requestMachines, poll
//! getRequestStatus to the end, requestReturnMachines, poll to the end) while the wire fails a
//! share of the AWS calls with every retried kind (throttling, 500 before executing, 500 after
//! executing) and honours idempotency tokens. Every answer must be correct or a non-2xx with a
//! `message`; after the run and one reconciler pass, EC2 and the records agree with what
//! HostFactory holds: no leaked instance, no capacity drift, never past `maxNumber`.
//!
//! `HOSTFACTORY_CHAOS_SEED`, `HOSTFACTORY_CHAOS_CYCLES` and `HOSTFACTORY_CHAOS_RATE_PERCENT`
//! change the seed, length and fault rate (see `infra/scripts/soak`).

use std::time::Instant;

use hostfactory_tests::audit::Audit;
use hostfactory_tests::hostfactory::{HostFactory, POLLS};
use hostfactory_tests::rig::{ELAPSED, Rig, StoreOn};
use hostfactory_tests::wire::Chaos;
use hostfactory_tests::sdk_config;
use shared::reconcile::run_once;

const MAX_NUMBER: i64 = 8;
/// HostFactory cycles per run: about 40 s on a 2-core machine (infra/scripts/soak runs longer).
const CYCLES: u64 = 30;
/// Percent of the AWS calls faulted.
const RATE_PERCENT: u64 = 30;
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Live tagged instances of the template, seen past the wire's faults.
async fn live(ec2: &aws_sdk_ec2::Client, template_id: &str) -> usize {
    let found = shared::cloud::instances::find_tagged(ec2, shared::cloud::tags::TEMPLATE_ID, template_id);
    found.await.unwrap().iter().filter(|i| !["shutting-down", "terminated"].contains(&i.state.as_str())).count()
}

async fn chaos_run(region: &'static str, store: StoreOn, seed: u64) {
    let seed = setting("HOSTFACTORY_CHAOS_SEED", seed);
    let cycles = setting("HOSTFACTORY_CHAOS_CYCLES", CYCLES);
    let rate = setting("HOSTFACTORY_CHAOS_RATE_PERCENT", RATE_PERCENT) as f64 / 100.0;
    let rig = Rig::builder().region(region).max(MAX_NUMBER).store(store).env(ELAPSED).fast_retries().build().await;
    let direct = aws_sdk_ec2::Client::new(&sdk_config().await.to_builder().region(aws_config::Region::new(region)).build());
    let mut hostfactory = HostFactory::default();
    // One machine HostFactory keeps through the run: a capacity released twice shows as drift.
    hostfactory.held.extend(rig.granted(1).await);

    let started = Instant::now();
    rig.log.clear();
    rig.wire.faults.replay_tokens();
    rig.wire.faults.chaos(Chaos::retried(seed, rate));
    let mut past_max = Vec::new();
    for cycle in 0..cycles {
        hostfactory.cycle(&rig, 1 + i64::try_from(cycle % 3).unwrap()).await;
        hostfactory.housekeeping(&rig).await;
        let running = live(&direct, &rig.template_id).await;
        if running > usize::try_from(MAX_NUMBER).unwrap() {
            past_max.push(format!("cycle {cycle}: {running} live instances"));
        }
    }
    rig.wire.faults.calm();
    let calls = rig.log.calls().len();
    let faults = rig.log.faults();
    hostfactory.settle(&rig).await;
    hostfactory.housekeeping(&rig).await;
    let before = Audit::of(&rig, &hostfactory.held).await;
    let report = run_once(&rig.state).await.expect("a reconcile pass");
    // HostFactory goes on polling what it still waits for, and takes what the pass finished.
    hostfactory.settle(&rig).await;
    let audit = Audit::of(&rig, &hostfactory.held).await;

    eprintln!("chaos {store:?} seed {seed}: {cycles} cycles in {:.1} s", started.elapsed().as_secs_f64());
    eprintln!("  AWS calls {calls}, wire faults {faults:?}");
    eprintln!("  HostFactory answers by status {:?}", hostfactory.statuses);
    eprintln!(
        "  machines granted {} returned {} still held {} (requests left running after {POLLS} polls: {})",
        hostfactory.granted,
        hostfactory.returned,
        hostfactory.held.len(),
        hostfactory.unsettled
    );
    eprintln!("  before the pass: {before}");
    eprintln!("  reconcile pass {}", serde_json::to_string(&report).unwrap());
    eprintln!("  after the pass: {audit}");
    let mut wrong = hostfactory.never_final();
    wrong.extend(hostfactory.wrong);
    wrong.extend(past_max);
    wrong.extend(audit.violations());
    wrong.extend(report.errors.iter().map(|e| format!("pass error: {e}")));
    assert!(wrong.is_empty(), "chaos {store:?} seed {seed}:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn random_faults_leak_nothing_on_sqlite() {
    chaos_run("ap-southeast-1", StoreOn::Sqlite, 0x5EED_0011).await;
}

/// The same on DynamoDB through the wire: every durable step is a call the faults can hit.
#[tokio::test]
async fn random_faults_leak_nothing_on_dynamodb() {
    chaos_run("ap-northeast-2", StoreOn::DynamoOnWire, 0x5EED_0012).await;
}
