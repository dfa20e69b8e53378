//! Migration: SQLite → DynamoDB (moto) → SQLite with equal checksums, re-runs, and the ORB
//! JSON database import.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hostfactory_tests::{new_dynamo_store, new_sqlite_store, sdk_config};
use shared::hostfactory::MachineResult;
use shared::store::migrate::{Progress, fingerprint, migrate};
use shared::store::orb::OrbDatabase;
use shared::store::{Lifecycle, MachineRecord, RequestKind, RequestRecord, RequestPhase, Store};

const REQUESTS: usize = 1_000;
const MACHINES_PER_REQUEST: usize = 5;
const T0: i64 = 1_750_000_000;

/// Varied records: finished and active requests, optional fields set and not, returned and
/// spot machines, names missing.
fn dataset() -> (Vec<RequestRecord>, Vec<MachineRecord>) {
    let mut requests = Vec::with_capacity(REQUESTS);
    let mut machines = Vec::with_capacity(REQUESTS * MACHINES_PER_REQUEST);
    for i in 0..REQUESTS {
        let kind = if i % 10 == 9 { RequestKind::Return } else { RequestKind::Provision };
        let mut request = RequestRecord::new(kind, &format!("Template-{}", i % 7), "awsinst", 5, T0 + i as i64);
        request.version = 1 + (i % 4) as u64;
        // HostFactory polled these (a tenth still unclaimed: claims migrate too).
        request.unclaimed = kind == RequestKind::Provision && i % 10 == 4;
        match i % 3 {
            0 => request.finish(RequestPhase::Complete, "all running", T0 + 600, Duration::from_secs(86_400)),
            1 => {
                request.status = RequestPhase::InProgress;
                request.fleet_id = Some(format!("fleet-{i}"));
                request.provider_api = Some("EC2Fleet".into());
            }
            _ => request.launch_template_id = Some(format!("lt-{i:017x}")),
        }
        for j in 0..MACHINES_PER_REQUEST {
            let n = i * MACHINES_PER_REQUEST + j;
            machines.push(MachineRecord {
                machine_id: format!("i-{n:017x}"),
                request_id: request.request_id.clone(),
                return_request_id: n.is_multiple_of(11).then(|| format!("ret-{n}")),
                template_id: request.template_id.clone(),
                provider: "awsinst".into(),
                name: if n.is_multiple_of(13) {
                    String::new()
                } else {
                    format!("ip-10-0-{}-{}.ec2.internal", n / 250, n % 250)
                },
                private_ip_address: format!("10.0.{}.{}", n / 250, n % 250),
                public_ip_address: String::new(),
                state: if n.is_multiple_of(11) { "terminated".into() } else { "running".into() },
                result: if n.is_multiple_of(5) { MachineResult::Executing } else { MachineResult::Succeed },
                launchtime: T0 + n as i64,
                lifecycle: if n.is_multiple_of(2) { Lifecycle::Spot } else { Lifecycle::Ondemand },
                interrupted_at: n.is_multiple_of(17).then_some(T0 + 900),
                units: 1,
                reclaimed_at: n.is_multiple_of(17).then_some(T0 + 900),
                message: String::new(),
                version: 1 + (n % 3) as u64,
                updated_at: T0 + n as i64,
                expires_at: n.is_multiple_of(11).then_some(T0 + 86_400),
                fleet_held: n.is_multiple_of(7).then_some(false),
                actions: Vec::new(),
            });
        }
        requests.push(request);
    }
    (requests, machines)
}

async fn seed(store: &Store, requests: &[RequestRecord], machines: &[MachineRecord]) {
    for chunk in requests.chunks(500) {
        store.requests.upsert_batch(chunk).await.unwrap();
    }
    for chunk in machines.chunks(500) {
        store.machines.upsert_batch(chunk).await.unwrap();
    }
}

/// Runs a migration, checking that progress reaches the total.
async fn run(source: &Store, target: &Store) -> shared::store::migrate::Fingerprint {
    let mut last = None;
    let result = migrate(source.records.as_ref(), target, &mut |p| {
        if let Progress::Copied { done, total } = p {
            last = Some((done, total));
        }
    })
    .await
    .unwrap();
    let total = result.requests + result.machines;
    assert_eq!(last, Some((total, total)), "the progress bar ends full");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_dynamodb_and_back_keeps_every_record() {
    let sdk = sdk_config().await;
    let (requests, machines) = dataset();
    let (sqlite, _folder) = new_sqlite_store();
    seed(&sqlite, &requests, &machines).await;
    let original = fingerprint(sqlite.records.as_ref(), &mut |_| {}).await.unwrap();
    assert_eq!((original.requests, original.machines), (REQUESTS as u64, (REQUESTS * MACHINES_PER_REQUEST) as u64));

    let dynamo = new_dynamo_store(&sdk).await;
    let there = run(&sqlite, &dynamo).await;
    assert_eq!(there, original);

    // Safe to re-run: same counts, same checksum, nothing duplicated.
    let again = run(&sqlite, &dynamo).await;
    assert_eq!(again, original);

    let (back, _back_folder) = new_sqlite_store();
    let back_again = run(&dynamo, &back).await;
    assert_eq!(back_again, original);

    // The copies answer the service's queries too (indexes populated, not only the rows).
    let sample = &requests[1];
    assert_eq!(dynamo.requests.get(&sample.request_id).await.unwrap().as_ref(), Some(sample));
    assert_eq!(dynamo.machines.list_by_request(&sample.request_id).await.unwrap().len(), MACHINES_PER_REQUEST);
    let active = requests.iter().filter(|r| r.is_active()).count();
    assert_eq!(dynamo.requests.list_active().await.unwrap().len(), active);
    assert_eq!(back.requests.list_active().await.unwrap().len(), active);
}

#[tokio::test]
async fn verification_fails_when_the_target_holds_other_records() {
    let (requests, machines) = dataset();
    let (source, _a) = new_sqlite_store();
    seed(&source, &requests[..10], &machines[..50]).await;
    let (target, _b) = new_sqlite_store();
    let stranger = RequestRecord::new(RequestKind::Provision, "T", "awsinst", 1, T0);
    target.requests.put_if_absent(&stranger).await.unwrap();

    let err = migrate(source.records.as_ref(), &target, &mut |_| {}).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("verification failed") && message.contains("10 requests"), "{message}");
}

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/orb/request_database.json"))
}

#[tokio::test]
async fn an_orb_json_database_is_imported() {
    let retention = Duration::from_secs(7 * 86_400);
    let orb = Arc::new(OrbDatabase::load(fixture(), "awsinst", retention).unwrap());
    let (target, _folder) = new_sqlite_store();

    let result = migrate(orb.as_ref(), &target, &mut |_| {}).await.unwrap();
    assert_eq!((result.requests, result.machines), (4, 4));
    assert_eq!(result, fingerprint(orb.as_ref(), &mut |_| {}).await.unwrap());
    // Idempotent.
    assert_eq!(migrate(orb.as_ref(), &target, &mut |_| {}).await.unwrap(), result);

    let done = target.requests.get("req-3f1c9a52-0c5e-4d0e-9a43-1b2f7d6a8e01").await.unwrap().unwrap();
    assert_eq!(done.kind, RequestKind::Provision);
    assert_eq!(done.status, RequestPhase::Complete);
    assert_eq!(done.template_id, "OnDemand-Minimal-Template-VM");
    assert_eq!(done.provider, "aws-default");
    assert_eq!(done.machine_count, 2);
    assert_eq!(done.message, "Request completed successfully", "status_message when message is null");
    assert_eq!((done.created_at, done.updated_at), (1_751_274_000, 1_751_274_150));
    // Imported history is kept for the retention period counted from the import.
    let imported = shared::store::now();
    let kept_a_week = |expires: Option<i64>| expires.is_some_and(|e| (imported + 7 * 86_400 - 60..=imported + 7 * 86_400).contains(&e));
    assert!(kept_a_week(done.expires_at), "{:?}", done.expires_at);
    assert_eq!(done.version, 4);
    assert_eq!(done.provider_api.as_deref(), Some("RunInstances"));
    assert_eq!(done.launch_template_id.as_deref(), Some("lt-0123456789abcdef0"));
    assert_eq!(done.fleet_id, None);

    let fleet = target.requests.get("req-8d2e4b61-7f3a-4c1d-b5e9-2a6c0f9d3b02").await.unwrap().unwrap();
    assert_eq!(fleet.status, RequestPhase::InProgress);
    assert_eq!(fleet.provider, "awsinst", "no provider_name: the importing instance");
    assert_eq!(fleet.fleet_id.as_deref(), Some("fleet-5b7c1e2a-3d4f-4a6b-8c9d-0e1f2a3b4c5d"));
    assert_eq!(fleet.message, "Fleet is launching instances");
    assert_eq!((fleet.created_at, fleet.updated_at), (1_751_278_500, 1_751_278_502), "naive times are UTC");
    assert_eq!(fleet.expires_at, None);

    let partial = target.requests.get("req-c4a7e9f0-1b2c-4d3e-8f5a-6b7c8d9e0f03").await.unwrap().unwrap();
    assert_eq!(partial.status, RequestPhase::CompleteWithError);
    let ret = target.requests.get("ret-1e2d3c4b-5a69-4788-9a0b-c1d2e3f40504").await.unwrap().unwrap();
    assert_eq!((ret.kind, ret.status), (RequestKind::Return, RequestPhase::Complete));

    let active: Vec<String> = target.requests.list_active().await.unwrap().into_iter().map(|r| r.request_id).collect();
    assert_eq!(active, ["req-8d2e4b61-7f3a-4c1d-b5e9-2a6c0f9d3b02"]);

    let running = target.machines.get("i-0aa1111111111111a").await.unwrap().unwrap();
    assert_eq!(running.name, "ip-10-0-1-11.ec2.internal");
    assert_eq!((running.state.as_str(), running.result), ("running", MachineResult::Succeed));
    assert_eq!(running.private_ip_address, "10.0.1.11");
    assert_eq!(running.public_ip_address, "");
    assert_eq!(running.launchtime, 1_751_274_005);
    assert_eq!(running.lifecycle, Lifecycle::Ondemand);
    assert_eq!(running.expires_at, None);

    let returned = target.machines.list_by_return_request("ret-1e2d3c4b-5a69-4788-9a0b-c1d2e3f40504").await.unwrap();
    assert_eq!(returned.len(), 1);
    let returned = &returned[0];
    assert_eq!(returned.name, "ip-10-0-1-12.ec2.internal", "private_dns_name over a name that is just the id");
    assert_eq!((returned.state.as_str(), returned.result), ("terminated", MachineResult::Succeed));
    assert_eq!(returned.message, "Returned by HostFactory");
    assert!(kept_a_week(returned.expires_at), "{:?}", returned.expires_at);

    let pending = target.machines.get("i-0bb3333333333333b").await.unwrap().unwrap();
    assert_eq!(pending.name, "", "no DNS name yet");
    assert_eq!((pending.state.as_str(), pending.result), ("pending", MachineResult::Executing));
    assert_eq!(pending.lifecycle, Lifecycle::Spot);
    assert_eq!(pending.launchtime, 1_751_278_504);

    let failed = target.machines.get("i-0cc4444444444444c").await.unwrap().unwrap();
    assert_eq!(failed.result, MachineResult::Fail);
    assert_eq!(failed.updated_at, 1_751_234_700);

    let by_name = target.machines.find_by_names(&["ip-10-0-2-40.ec2.internal".into()]).await.unwrap();
    assert_eq!(by_name.len(), 1);
}

#[tokio::test]
async fn an_orb_database_cannot_be_a_target_and_bad_files_name_the_problem() {
    let sdk = sdk_config().await;
    let location = shared::store::migrate::Location::parse("orb:/tmp/x.json", "hostfactory").unwrap();
    assert!(location.target(&sdk).is_err());

    let folder = tempfile::tempdir().unwrap();
    let broken = folder.path().join("request_database.json");
    std::fs::write(&broken, r#"{"requests": {"req-1": {"request_id": "req-1", "status": "completed"}}}"#).unwrap();
    let err = OrbDatabase::load(&broken, "awsinst", Duration::ZERO).err().expect("rejected");
    let message = err.to_string();
    assert!(message.contains("request_database.json") && message.contains("requests.req-1"), "{message}");
    let err = OrbDatabase::load(&folder.path().join("missing.json"), "awsinst", Duration::ZERO).err().unwrap();
    assert!(err.to_string().contains("missing.json"), "{err}");
}
