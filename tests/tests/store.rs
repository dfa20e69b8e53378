//! One suite, two backends: every case below runs against DynamoDB (moto, fresh tables per
//! test) and SQLite (a temp file), through the same `Store` handles the service uses.

use std::collections::BTreeSet;
use std::time::Duration;

use shared::Error;
use shared::hostfactory::MachineResult;
use shared::store::{
    CapacityChange, Direction, Lifecycle, MachineRecord, RequestKind, RequestRecord, RequestPhase, Store,
};

hostfactory_tests::both_backends!(
    put_if_absent_never_overwrites,
    stale_updates_are_refused,
    machines_are_found_by_request_return_request_and_name,
    a_return_is_recorded_all_or_nothing,
    finished_requests_leave_the_active_list,
    batch_get_reads_beyond_100_ids,
    batch_write_goes_beyond_25_items_and_repeats_safely,
    requests_with_capacity_changes_to_apply_stay_listed,
    machines_are_listed_by_template,
    batched_updates_write_what_is_current_and_leave_out_what_moved_on,
    new_machines_are_written_once_in_a_batch,
);

const T0: i64 = 1_750_000_000;

fn request(kind: RequestKind, created_at: i64) -> RequestRecord {
    RequestRecord::new(kind, "OnDemand-Template", "awsinst", 2, created_at)
}

fn machine(id: &str, request_id: &str) -> MachineRecord {
    MachineRecord {
        machine_id: id.to_owned(),
        request_id: request_id.to_owned(),
        return_request_id: None,
        template_id: "OnDemand-Template".into(),
        provider: "awsinst".into(),
        name: format!("ip-{id}.ec2.internal"),
        private_ip_address: "10.0.0.1".into(),
        public_ip_address: String::new(),
        state: "running".into(),
        result: MachineResult::Succeed,
        launchtime: T0,
        lifecycle: Lifecycle::Ondemand,
        interrupted_at: None,
        units: 1,
        reclaimed_at: None,
        message: String::new(),
        version: 1,
        updated_at: T0,
        expires_at: None,
        fleet_held: None,
        actions: Vec::new(),
    }
}

fn ids<T>(records: &[T], id: impl Fn(&T) -> &str) -> BTreeSet<String> {
    records.iter().map(|r| id(r).to_owned()).collect()
}

async fn put_if_absent_never_overwrites(store: Store) {
    let original = request(RequestKind::Provision, T0);
    store.requests.put_if_absent(&original).await.unwrap();
    assert_eq!(store.requests.get(&original.request_id).await.unwrap(), Some(original.clone()));

    let mut other = original.clone();
    other.message = "second writer".into();
    let err = store.requests.put_if_absent(&other).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(err.status(), 409);
    assert_eq!(store.requests.get(&original.request_id).await.unwrap(), Some(original.clone()));
    assert_eq!(store.requests.get("req-missing").await.unwrap(), None);

    let first = machine("i-0001", &original.request_id);
    store.machines.put_if_absent(&first).await.unwrap();
    let mut again = first.clone();
    again.state = "terminated".into();
    assert!(matches!(store.machines.put_if_absent(&again).await, Err(Error::Conflict(_))));
    assert_eq!(store.machines.get("i-0001").await.unwrap(), Some(first));

    store.requests.delete(&original.request_id).await.unwrap();
    assert_eq!(store.requests.get(&original.request_id).await.unwrap(), None);
    store.machines.delete("i-0001").await.unwrap();
    assert_eq!(store.machines.get("i-0001").await.unwrap(), None);
}

async fn stale_updates_are_refused(store: Store) {
    let created = request(RequestKind::Provision, T0);
    store.requests.put_if_absent(&created).await.unwrap();

    // Two workers read version 1; the first write wins, the second is refused.
    let mut first = created.clone();
    first.status = RequestPhase::InProgress;
    first.fleet_id = Some("fleet-1".into());
    let written = store.requests.update(&first).await.unwrap();
    assert_eq!(written.version, 2);
    let mut second = created.clone();
    second.message = "lost update".into();
    let err = store.requests.update(&second).await.unwrap_err();
    assert!(matches!(&err, Error::Stale { expected: 1, .. }), "{err:?}");
    assert_eq!(err.status(), 409);
    assert_eq!(store.requests.get(&created.request_id).await.unwrap(), Some(written.clone()));

    // Re-read and retry: accepted.
    let mut retry = written;
    retry.finish(RequestPhase::Complete, "done", T0 + 60, Duration::from_secs(3600));
    assert_eq!(store.requests.update(&retry).await.unwrap().version, 3);

    let missing = request(RequestKind::Provision, T0);
    assert!(matches!(store.requests.update(&missing).await, Err(Error::NotFound { .. })));

    let m = machine("i-0002", &created.request_id);
    store.machines.put_if_absent(&m).await.unwrap();
    let mut running = m.clone();
    running.state = "shutting-down".into();
    let running = store.machines.update(&running).await.unwrap();
    assert_eq!(running.version, 2);
    let err = store.machines.update(&m).await.unwrap_err();
    assert!(matches!(&err, Error::Stale { what: "machine", expected: 1, .. }), "{err:?}");
    assert_eq!(store.machines.get("i-0002").await.unwrap(), Some(running));
    assert!(matches!(store.machines.update(&machine("i-none", "r")).await, Err(Error::NotFound { .. })));
}

async fn machines_are_found_by_request_return_request_and_name(store: Store) {
    let a = request(RequestKind::Provision, T0);
    let b = request(RequestKind::Provision, T0);
    let mut machines: Vec<MachineRecord> = (0..3).map(|i| machine(&format!("i-a{i}"), &a.request_id)).collect();
    machines.extend((0..2).map(|i| machine(&format!("i-b{i}"), &b.request_id)));
    machines[4].name = String::new(); // no PrivateDnsName yet
    for m in &machines {
        store.machines.put_if_absent(m).await.unwrap();
    }

    let of_a = store.machines.list_by_request(&a.request_id).await.unwrap();
    assert_eq!(ids(&of_a, |m| &m.machine_id), BTreeSet::from(["i-a0".into(), "i-a1".into(), "i-a2".into()]));
    assert_eq!(store.machines.list_by_request(&b.request_id).await.unwrap().len(), 2);
    assert!(store.machines.list_by_request("req-none").await.unwrap().is_empty());

    let ret = request(RequestKind::Return, T0);
    let mut returned = machines[0].clone();
    returned.return_request_id = Some(ret.request_id.clone());
    store.machines.update(&returned).await.unwrap();
    let of_ret = store.machines.list_by_return_request(&ret.request_id).await.unwrap();
    assert_eq!(ids(&of_ret, |m| &m.machine_id), BTreeSet::from(["i-a0".into()]));
    assert_eq!(of_ret[0].version, 2);

    let names =
        vec!["ip-i-a1.ec2.internal".to_owned(), "ip-i-b0.ec2.internal".into(), "ip-unknown".into(), String::new()];
    let found = store.machines.find_by_names(&names).await.unwrap();
    assert_eq!(ids(&found, |m| &m.machine_id), BTreeSet::from(["i-a1".into(), "i-b0".into()]));
    assert_eq!(store.machines.get("i-b1").await.unwrap().unwrap().name, "", "an empty name round-trips");
}

async fn a_return_is_recorded_all_or_nothing(store: Store) {
    let provision = request(RequestKind::Provision, T0);
    let machines: Vec<MachineRecord> = (0..3).map(|i| machine(&format!("i-r{i}"), &provision.request_id)).collect();
    store.machines.upsert_batch(&machines).await.unwrap();

    // One machine changed since it was read: nothing is written, not even the request.
    let moved_on = store.machines.update(&machines[2]).await.unwrap();
    let ret = request(RequestKind::Return, T0);
    let marked: Vec<MachineRecord> = machines
        .iter()
        .map(|m| MachineRecord { return_request_id: Some(ret.request_id.clone()), ..m.clone() })
        .collect();
    let err = store.requests.put_with_machines(&ret, &marked).await.unwrap_err();
    assert!(matches!(&err, Error::Stale { what: "machine", id, .. } if id == "i-r2"), "{err:?}");
    assert_eq!(store.requests.get(&ret.request_id).await.unwrap(), None);
    assert!(store.machines.list_by_return_request(&ret.request_id).await.unwrap().is_empty());
    assert_eq!(store.machines.get("i-r0").await.unwrap(), Some(machines[0].clone()));

    // With fresh versions it goes through, atomically.
    let mut marked = marked;
    marked[2].version = moved_on.version;
    let written = store.requests.put_with_machines(&ret, &marked).await.unwrap();
    assert!(written.iter().zip(&marked).all(|(w, m)| w.version == m.version + 1));
    assert_eq!(store.requests.get(&ret.request_id).await.unwrap(), Some(ret.clone()));
    assert_eq!(store.machines.list_by_return_request(&ret.request_id).await.unwrap().len(), 3);

    // The same return id twice: refused as existing, machines untouched.
    let err = store.requests.put_with_machines(&ret, &written).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(store.machines.get("i-r0").await.unwrap(), Some(written[0].clone()));

    let too_many = vec![machines[0].clone(); shared::store::MAX_TRANSACTION_MACHINES + 1];
    let err = store.requests.put_with_machines(&request(RequestKind::Return, T0), &too_many).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}

async fn finished_requests_leave_the_active_list(store: Store) {
    let requests: Vec<RequestRecord> =
        [3, 1, 2].into_iter().map(|age| request(RequestKind::Provision, T0 - age * 100)).collect();
    for r in &requests {
        store.requests.put_if_absent(r).await.unwrap();
    }
    let ret = request(RequestKind::Return, T0);
    store.requests.put_if_absent(&ret).await.unwrap();

    let active = store.requests.list_active().await.unwrap();
    let order: Vec<&str> = active.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(
        order,
        [&requests[0].request_id, &requests[2].request_id, &requests[1].request_id, &ret.request_id],
        "oldest first"
    );

    let mut done = requests[2].clone();
    done.unclaimed = false;
    done.finish(RequestPhase::CompleteWithError, "1 of 2 failed", T0 + 10, Duration::from_secs(86_400));
    let done = store.requests.update(&done).await.unwrap();
    assert_eq!(done.expires_at, Some(T0 + 10 + 86_400));
    let mut in_progress = requests[0].clone();
    in_progress.status = RequestPhase::InProgress;
    store.requests.update(&in_progress).await.unwrap();
    // Finished, but HostFactory never claimed it: the reconciler still has to reap it.
    let mut unclaimed = requests[1].clone();
    unclaimed.finish(RequestPhase::Complete, "", T0 + 10, Duration::from_secs(86_400));
    store.requests.update(&unclaimed).await.unwrap();

    let active = store.requests.list_active().await.unwrap();
    assert_eq!(
        ids(&active, |r| &r.request_id),
        BTreeSet::from([requests[0].request_id.clone(), requests[1].request_id.clone(), ret.request_id.clone()])
    );
    assert_eq!(store.requests.get(&done.request_id).await.unwrap(), Some(done));
}

async fn batch_get_reads_beyond_100_ids(store: Store) {
    let parent = request(RequestKind::Provision, T0);
    let machines: Vec<MachineRecord> = (0..250).map(|i| machine(&format!("i-{i:05}"), &parent.request_id)).collect();
    store.machines.upsert_batch(&machines).await.unwrap();
    let requests: Vec<RequestRecord> = (0..130).map(|i| request(RequestKind::Provision, T0 + i)).collect();
    store.requests.upsert_batch(&requests).await.unwrap();

    let mut wanted: Vec<String> = machines.iter().map(|m| m.machine_id.clone()).collect();
    wanted.extend(["i-missing-1".into(), "i-missing-2".into(), "i-00007".into()]);
    let found = store.machines.batch_get(&wanted).await.unwrap();
    assert_eq!(found.len(), 250, "each existing machine once; missing ids are skipped");
    let mut found = found;
    found.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
    assert_eq!(found, machines);

    let request_ids: Vec<String> = requests.iter().map(|r| r.request_id.clone()).collect();
    let found = store.requests.batch_get(&request_ids).await.unwrap();
    assert_eq!(ids(&found, |r| &r.request_id), request_ids.iter().cloned().collect());
    assert!(store.requests.batch_get(&[]).await.unwrap().is_empty());
}

async fn batch_write_goes_beyond_25_items_and_repeats_safely(store: Store) {
    let parent = request(RequestKind::Provision, T0);
    let mut machines: Vec<MachineRecord> =
        (0..60).map(|i| machine(&format!("i-w{i:03}"), &parent.request_id)).collect();
    store.machines.upsert_batch(&machines).await.unwrap();
    assert_eq!(store.machines.list_by_request(&parent.request_id).await.unwrap().len(), 60);

    // Again, with changes and a duplicate in the same call: an upsert, the last copy wins.
    for m in &mut machines {
        m.state = "stopped".into();
    }
    let mut with_duplicate = machines.clone();
    let mut last = machines[0].clone();
    last.message = "last copy".into();
    with_duplicate.push(last.clone());
    store.machines.upsert_batch(&with_duplicate).await.unwrap();
    let listed = store.machines.list_by_request(&parent.request_id).await.unwrap();
    assert_eq!(listed.len(), 60);
    assert!(listed.iter().all(|m| m.state == "stopped"));
    assert_eq!(store.machines.get("i-w000").await.unwrap(), Some(last));

    let requests: Vec<RequestRecord> = (0..40).map(|i| request(RequestKind::Return, T0 + i)).collect();
    store.requests.upsert_batch(&requests).await.unwrap();
    store.requests.upsert_batch(&requests).await.unwrap();
    assert_eq!(store.requests.list_active().await.unwrap().len(), 40);
}

async fn requests_with_capacity_changes_to_apply_stay_listed(store: Store) {
    let mut request = request(RequestKind::Provision, T0);
    store.requests.put_if_absent(&request).await.unwrap();
    request.unclaimed = false;
    request.finish(RequestPhase::Complete, "done", T0 + 1, Duration::from_secs(3600));
    let change = CapacityChange {
        op_id: format!("release:{}:finish", request.request_id),
        key: "awsinst/OnDemand-Template".into(),
        direction: Direction::Release,
        units: 2,
        decided_at: T0,
    };
    request.pending_capacity.push(change.clone());
    let written = store.requests.update(&request).await.unwrap();
    let listed = store.requests.list_active().await.unwrap();
    assert_eq!(listed.len(), 1, "finished, with a change to apply: still listed");
    assert_eq!(listed[0].pending_capacity, [change]);
    let cleared = RequestRecord { pending_capacity: Vec::new(), ..written };
    store.requests.update(&cleared).await.unwrap();
    assert!(store.requests.list_active().await.unwrap().is_empty());
}

async fn machines_are_listed_by_template(store: Store) {
    let mut other_template = machine("i-t2", "req-t");
    other_template.template_id = "Other".into();
    let mut other_provider = machine("i-t3", "req-t");
    other_provider.provider = "elsewhere".into();
    store.machines.upsert_batch(&[machine("i-t1", "req-t"), other_template, other_provider]).await.unwrap();
    let listed = store.machines.list_by_template("awsinst", "OnDemand-Template").await.unwrap();
    assert_eq!(ids(&listed, |m| &m.machine_id), BTreeSet::from(["i-t1".to_owned()]));
}

/// 3 requests and 260 machines (one request owns 150: more than a transaction holds), written in
/// one batched update: what moved on meanwhile (a machine, a request) or vanished comes back
/// `None` and stays as it was; everything else is at its next version, requests included.
async fn batched_updates_write_what_is_current_and_leave_out_what_moved_on(store: Store) {
    let requests: Vec<RequestRecord> = (0..3).map(|i| request(RequestKind::Provision, T0 + i)).collect();
    let mut machines: Vec<MachineRecord> = Vec::new();
    for (request, count) in requests.iter().zip([150, 10, 0]) {
        machines.extend((0..count).map(|i| machine(&format!("i-{i}-{}", request.request_id), &request.request_id)));
    }
    machines.extend((0..100).map(|i| machine(&format!("i-loose-{i}"), "req-elsewhere")));
    for request in &requests {
        store.requests.put_if_absent(request).await.unwrap();
    }
    store.machines.upsert_batch(&machines).await.unwrap();
    let moved_on = store.machines.update(&machines[7]).await.unwrap();
    let request_moved_on = store.requests.update(&requests[1]).await.unwrap();
    store.machines.delete(&machines[200].machine_id).await.unwrap();

    let finished: Vec<RequestRecord> = requests
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.finish(RequestPhase::Complete, "done", T0 + 60, Duration::from_secs(3600));
            r.record_machine_ids(["i-a".to_owned(), "i-b".to_owned()]);
            r
        })
        .collect();
    let changed: Vec<MachineRecord> =
        machines.iter().map(|m| MachineRecord { result: MachineResult::Fail, ..m.clone() }).collect();
    let written = store.requests.update_all(&finished, &changed).await.unwrap();

    let lost_machines: Vec<usize> = (0..changed.len()).filter(|&i| written.machines[i].is_none()).collect();
    assert_eq!(lost_machines, vec![7, 200]);
    assert_eq!(written.requests.iter().map(Option::is_some).collect::<Vec<_>>(), vec![true, false, true]);
    assert_eq!(store.machines.get(&machines[7].machine_id).await.unwrap(), Some(moved_on));
    assert_eq!(store.machines.get(&machines[200].machine_id).await.unwrap(), None);
    assert_eq!(store.requests.get(&requests[1].request_id).await.unwrap(), Some(request_moved_on));
    let stored = store.machines.batch_get(&changed.iter().map(|m| m.machine_id.clone()).collect::<Vec<_>>()).await.unwrap();
    let failed_now = stored.iter().filter(|m| m.result == MachineResult::Fail && m.version == 2).count();
    assert_eq!(failed_now, changed.len() - 2, "every other machine written at its next version");
    let first = store.requests.get(&requests[0].request_id).await.unwrap().unwrap();
    assert_eq!((first.status, first.version), (RequestPhase::Complete, 2));
    assert_eq!(first.machine_ids, Some(vec!["i-a".to_owned(), "i-b".to_owned()]), "the machine ids round-trip");
    assert_eq!(written.requests[0].as_ref(), Some(&first));

    // Nothing to write is no error; writing the same versions again loses everything.
    assert_eq!(store.requests.update_all(&[], &[]).await.unwrap(), shared::store::Written::default());
    let again = store.requests.update_all(&finished[..1], &changed[..5]).await.unwrap();
    assert!(again.requests.iter().all(Option::is_none) && again.machines.iter().all(Option::is_none));
}

/// 150 adopted machines (more than one transaction) of which two were recorded first by someone
/// else: those two are left as they were, the rest written; a repeat writes nothing.
async fn new_machines_are_written_once_in_a_batch(store: Store) {
    let machines: Vec<MachineRecord> = (0..150).map(|i| machine(&format!("i-new-{i}"), "req-adopting")).collect();
    let first = [MachineRecord { name: "recorded-first".into(), ..machines[3].clone() }, machines[120].clone()];
    store.machines.upsert_batch(&first).await.unwrap();
    let written = store.machines.put_all_if_absent(&machines).await.unwrap();
    let existed: Vec<usize> = (0..machines.len()).filter(|&i| !written[i]).collect();
    assert_eq!(existed, vec![3, 120]);
    assert_eq!(store.machines.get("i-new-3").await.unwrap().unwrap().name, "recorded-first", "nothing replaced");
    assert_eq!(store.machines.list_by_request("req-adopting").await.unwrap().len(), 150);
    assert!(store.machines.put_all_if_absent(&machines).await.unwrap().iter().all(|w| !w), "a repeat writes nothing");
}
