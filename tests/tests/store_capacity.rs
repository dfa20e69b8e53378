//! Capacity counters on both backends (see `store.rs`): atomic against `maxNumber` under
//! concurrent callers, exactly once per operation id, never below what is held, and listed and
//! corrected on their version for the reconciler's recount.

use shared::Error;
use shared::store::{CapacityChange, Cooldown, Direction, Health, RequestKind, RequestRecord, Reservation, Rest, Store};

hostfactory_tests::both_backends!(
    capacity_is_never_exceeded_by_concurrent_reservations,
    unlimited_capacity_and_release,
    capacity_changes_apply_once_per_operation,
    counters_are_listed_and_corrected_on_their_version,
    a_reservation_records_its_request_in_the_same_write,
    pending_changes_apply_with_their_cleared_request_in_one_write,
    pool_cooldowns_are_read_until_they_end,
    failed_launches_rest_a_template_and_a_success_ends_it,
);

async fn capacity_is_never_exceeded_by_concurrent_reservations(store: Store) {
    let reserve_concurrently = |key: &'static str, count: u32, max: i64| {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let capacity = store.capacity.clone();
                let op_id = uuid::Uuid::new_v4().to_string();
                tokio::spawn(async move { capacity.reserve(key, &op_id, count, max).await })
            })
            .collect();
        async move {
            let mut granted = 0;
            for task in tasks {
                match task.await.unwrap().unwrap() {
                    Reservation::Reserved => granted += 1,
                    Reservation::Insufficient { available } => {
                        assert!(available < count, "refused with {available} free")
                    }
                }
            }
            granted
        }
    };

    assert_eq!(reserve_concurrently("awsinst/one-by-one", 1, 10).await, 10);
    assert_eq!(store.capacity.in_use("awsinst/one-by-one").await.unwrap(), 10);
    assert_eq!(reserve_concurrently("awsinst/by-three", 3, 10).await, 3);
    assert_eq!(store.capacity.in_use("awsinst/by-three").await.unwrap(), 9);

    let key = "awsinst/one-by-one";
    assert_eq!(store.capacity.reserve(key, "r-1", 1, 10).await.unwrap(), Reservation::Insufficient { available: 0 });
    store.capacity.release(key, "rel-1", 4).await.unwrap();
    assert_eq!(store.capacity.reserve(key, "r-2", 5, 10).await.unwrap(), Reservation::Insufficient { available: 4 });
    assert_eq!(store.capacity.reserve(key, "r-3", 4, 10).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 10);
    assert_eq!(
        store.capacity.reserve("awsinst/fresh", "r-4", 11, 10).await.unwrap(),
        Reservation::Insufficient { available: 10 }
    );
    assert_eq!(
        store.capacity.reserve("awsinst/none", "r-5", 1, 0).await.unwrap(),
        Reservation::Insufficient { available: 0 }
    );
}

async fn unlimited_capacity_and_release(store: Store) {
    let key = "awsinst/unlimited";
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let capacity = store.capacity.clone();
            let op_id = uuid::Uuid::new_v4().to_string();
            tokio::spawn(async move { capacity.reserve(key, &op_id, 2, -1).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Reservation::Reserved);
    }
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 100);

    store.capacity.release(key, "release-30", 30).await.unwrap();
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 70);
    // More than is held would take units other requests hold: refused, nothing changes.
    let refused = store.capacity.release(key, "release-500", 500).await.unwrap_err();
    assert!(matches!(&refused, Error::CapacityUnderflow { held: 70, released: 500, .. }), "{refused:?}");
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 70, "other reservations intact");
    let refused = store.capacity.release("awsinst/never-used", "release-1", 1).await.unwrap_err();
    assert!(matches!(refused, Error::CapacityUnderflow { held: 0, released: 1, .. }), "{refused:?}");
    assert_eq!(store.capacity.in_use("awsinst/never-used").await.unwrap(), 0);
}

async fn capacity_changes_apply_once_per_operation(store: Store) {
    let key = "awsinst/once";
    assert_eq!(store.capacity.reserve(key, "reserve:req-1", 3, 4).await.unwrap(), Reservation::Reserved);
    // The same operation again (a retry whose answer was lost): applied already, even though
    // there is no room for it any more.
    assert_eq!(store.capacity.reserve(key, "reserve:req-1", 3, 4).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 3);
    assert_eq!(
        store.capacity.reserve(key, "reserve:req-2", 2, 4).await.unwrap(),
        Reservation::Insufficient { available: 1 }
    );
    // A refused reservation leaves no trace: the same op id is granted once there is room.
    store.capacity.release(key, "release:req-1:finish", 2).await.unwrap();
    store.capacity.release(key, "release:req-1:finish", 2).await.unwrap();
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 1, "released once");
    assert_eq!(store.capacity.reserve(key, "reserve:req-2", 2, 4).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 3);
    // A refused release neither: once enough is held, the same op id applies.
    assert!(matches!(store.capacity.release(key, "release:big", 5).await, Err(Error::CapacityUnderflow { .. })));
    store.capacity.reserve(key, "overshoot:req-2:launch", 2, -1).await.unwrap();
    store.capacity.release(key, "release:big", 5).await.unwrap();
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 0);
}

async fn counters_are_listed_and_corrected_on_their_version(store: Store) {
    store.capacity.reserve("awsinst/a", "r-a", 2, -1).await.unwrap();
    store.capacity.reserve("awsinst/b", "r-b", 5, -1).await.unwrap();
    store.capacity.release("awsinst/b", "rel-b", 1).await.unwrap();
    let mut counters = store.capacity.counters().await.unwrap();
    counters.sort_by(|x, y| x.key.cmp(&y.key));
    let summary: Vec<(&str, u64, u64)> = counters.iter().map(|c| (c.key.as_str(), c.in_use, c.version)).collect();
    assert_eq!(summary, [("awsinst/a", 2, 1), ("awsinst/b", 4, 2)], "no operation marker is listed");
    assert!(counters.iter().all(|c| c.updated_at >= shared::store::now() - 60));

    let b = counters[1].clone();
    store.capacity.reserve("awsinst/b", "r-b2", 1, -1).await.unwrap();
    assert!(!store.capacity.correct(&b, 9).await.unwrap(), "the counter moved on: not corrected");
    assert_eq!(store.capacity.in_use("awsinst/b").await.unwrap(), 5);
    let current = store.capacity.counters().await.unwrap().into_iter().find(|c| c.key == "awsinst/b").unwrap();
    assert!(store.capacity.correct(&current, 9).await.unwrap());
    assert_eq!(store.capacity.in_use("awsinst/b").await.unwrap(), 9);
    assert!(!store.capacity.correct(&current, 1).await.unwrap(), "a correction is a change too");
}

async fn a_reservation_records_its_request_in_the_same_write(store: Store) {
    let key = "awsinst/with-request";
    let request = RequestRecord::new(RequestKind::Provision, "with-request", "awsinst", 3, shared::store::now());
    let op = format!("reserve:{}", request.request_id);
    assert_eq!(store.capacity.reserve_for(&request, key, &op, 4).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 3);
    assert_eq!(store.requests.get(&request.request_id).await.unwrap(), Some(request.clone()));
    // A retry of the same write (its answer lost) is the reservation already made.
    assert_eq!(store.capacity.reserve_for(&request, key, &op, 4).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 3, "reserved once");

    // No room: neither the units nor the request are written.
    let refused = RequestRecord::new(RequestKind::Provision, "with-request", "awsinst", 2, shared::store::now());
    let op = format!("reserve:{}", refused.request_id);
    assert_eq!(store.capacity.reserve_for(&refused, key, &op, 4).await.unwrap(), Reservation::Insufficient { available: 1 });
    assert_eq!(store.requests.get(&refused.request_id).await.unwrap(), None);
    // A request id that is taken: a conflict, and nothing reserved.
    let err = store.capacity.reserve_for(&request, key, "reserve:another-op", -1).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict(message) if message.contains(&request.request_id)), "{err:?}");
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 3, "nothing reserved for a taken id");
}

fn change(op_id: &str, key: &str, direction: Direction, units: u32) -> CapacityChange {
    CapacityChange { op_id: op_id.into(), key: key.into(), direction, units, decided_at: shared::store::now() }
}

async fn pending_changes_apply_with_their_cleared_request_in_one_write(store: Store) {
    let (a, b) = ("awsinst/settle-a", "awsinst/settle-b");
    store.capacity.reserve(a, "reserve:settle", 5, 10).await.unwrap();
    let request = RequestRecord::new(RequestKind::Provision, "settle-a", "awsinst", 5, shared::store::now());
    store.requests.put_if_absent(&request).await.unwrap();
    let changes = [change("release:settle:finish", a, Direction::Release, 2), change("overshoot:settle", b, Direction::Reserve, 1)];
    let written = store.capacity.apply_with(&request, &changes).await.unwrap().expect("applied in one write");
    assert_eq!(written.version, request.version + 1);
    assert_eq!(store.requests.get(&request.request_id).await.unwrap(), Some(written.clone()));
    let in_use = store.capacity.availability_of(&[a.into(), b.into()]).await.unwrap();
    assert_eq!((in_use[a].in_use, in_use[b].in_use), (3, 1));

    // The request moved on (the same call at its old version): nothing is written.
    let again = [change("release:settle:again", a, Direction::Release, 1)];
    assert_eq!(store.capacity.apply_with(&request, &again).await.unwrap(), None);
    // A release beyond what is held: nothing is written, not even the other change.
    let beyond = [change("overshoot:settle:2", b, Direction::Reserve, 4), change("release:settle:big", a, Direction::Release, 9)];
    assert_eq!(store.capacity.apply_with(&written, &beyond).await.unwrap(), None);
    let in_use = store.capacity.availability_of(&[a.into(), b.into()]).await.unwrap();
    assert_eq!((in_use[a].in_use, in_use[b].in_use), (3, 1), "nothing applied");
    assert_eq!(store.requests.get(&request.request_id).await.unwrap(), Some(written.clone()));
    // Each change still applies once on its own afterwards (the caller's fallback).
    store.capacity.release(a, "release:settle:big", 3).await.unwrap();
    assert_eq!(store.capacity.in_use(a).await.unwrap(), 0);
}

async fn pool_cooldowns_are_read_until_they_end(store: Store) {
    let now = shared::store::now();
    let cool = |pool: &str, until: i64| Cooldown {
        pool: pool.into(),
        until,
        reason: "InsufficientInstanceCapacity".into(),
        capacity_at: None,
        kept_until: until + 50,
    };
    store.capacity.reserve("awsinst/beside-cooldowns", "reserve:beside", 1, -1).await.unwrap();
    let records = [cool("c5.large@subnet-1", now + 100), cool("c5.large@subnet-2", now - 51), cool("m5.large@subnet-1", now + 100)];
    store.cooldowns.remember(&records).await.unwrap();
    let pools: Vec<String> = ["c5.large@subnet-1", "c5.large@subnet-2", "c5.large@subnet-3"].map(String::from).into();
    let kept = |pools: &[String], at: i64| {
        let store = store.clone();
        let pools = pools.to_vec();
        async move { store.cooldowns.remembered(&pools, "awsinst/beside-cooldowns", at).await.unwrap().0 }
    };
    assert_eq!(kept(&pools, now).await, [cool("c5.large@subnet-1", now + 100)], "the one no longer kept and other pools are not listed");
    assert_eq!(store.cooldowns.pools_remembered(&pools, now).await.unwrap(), [cool("c5.large@subnet-1", now + 100)]);
    // Restarted with a later end; kept past it, then gone.
    store.cooldowns.remember(&[cool("c5.large@subnet-1", now + 200)]).await.unwrap();
    assert_eq!(kept(&pools, now + 150).await, [cool("c5.large@subnet-1", now + 200)]);
    let over = kept(&pools, now + 220).await;
    assert_eq!(over, [cool("c5.large@subnet-1", now + 200)], "over but kept");
    assert!(!over[0].cooling(now + 220));
    assert!(kept(&pools, now + 250).await.is_empty());
    assert!(kept(&[], now).await.is_empty());
    // Capacity seen ends the cooldown, and says when.
    let seen = Cooldown::capacity_seen("c5.large@subnet-1", now + 10, now + 600);
    store.cooldowns.remember(std::slice::from_ref(&seen)).await.unwrap();
    assert_eq!(store.cooldowns.pools_remembered(&pools, now + 20).await.unwrap(), [seen]);
    // Counters are not cooldowns, nor the other way round.
    let counters: Vec<String> = store.capacity.counters().await.unwrap().into_iter().map(|c| c.key).collect();
    assert_eq!(counters, ["awsinst/beside-cooldowns"]);
}

async fn failed_launches_rest_a_template_and_a_success_ends_it(store: Store) {
    let key = "awsinst/resting";
    store.capacity.reserve(key, "reserve:resting", 2, 10).await.unwrap();
    let rest = Rest { since: 4_400, until: 5_000 };
    let health = |failures: u32, rest: Option<Rest>| Health { failures, rest };
    assert_eq!(store.cooldowns.launch_failed(key, 3, rest).await.unwrap(), health(1, None));
    assert_eq!(store.cooldowns.launch_failed(key, 3, rest).await.unwrap(), health(2, None));
    // The third in a row rests it, and the count starts over.
    assert_eq!(store.cooldowns.launch_failed(key, 3, rest).await.unwrap(), health(0, Some(rest)));
    let listed = store.capacity.availability_of(&[key.into()]).await.unwrap()[key];
    assert_eq!((listed.in_use, listed.health), (2, health(0, Some(rest))), "one read gives units and health");
    assert_eq!(store.cooldowns.remembered(&[], key, 0).await.unwrap().1, health(0, Some(rest)));
    // A launch that started something ends the rest.
    store.cooldowns.launch_succeeded(key).await.unwrap();
    assert_eq!(store.capacity.availability_of(&[key.into()]).await.unwrap()[key].health, Health::default());
    assert_eq!(store.capacity.in_use(key).await.unwrap(), 2, "units untouched");
    // A template without a counter has nothing to rest.
    store.cooldowns.launch_succeeded("awsinst/never").await.unwrap();
    assert_eq!(store.capacity.availability_of(&["awsinst/never".into()]).await.unwrap()["awsinst/never"], Default::default());
}
