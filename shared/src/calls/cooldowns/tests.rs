use super::*;

fn pool(instance_type: &str, subnet: &str) -> Pool {
    Pool { instance_type: instance_type.into(), subnet: Some(subnet.into()) }
}

fn cooldown(pool: &str, until: i64, capacity_at: Option<i64>) -> Cooldown {
    Cooldown { pool: pool.into(), until, reason: "InsufficientInstanceCapacity".into(), capacity_at, kept_until: until + 600 }
}

const T: Times = Times { now: 1_000, cooldown: 180, keep: 600 };

#[test]
fn a_launch_leaves_cooldowns_for_refusals_and_ends_the_cooldowns_of_pools_that_started() {
    let a = pool("c5.large", "subnet-a");
    let b = pool("c5.large", "subnet-b");
    let refused = Launched { refused: vec![(a.clone(), "InsufficientInstanceCapacity".into())], ..Launched::default() };
    let started_in_b = Launched { succeeded: vec![b.clone()], ..Launched::default() };
    let cooled_a = Cooldown {
        pool: a.key(),
        until: 1_180,
        reason: "InsufficientInstanceCapacity".into(),
        capacity_at: None,
        kept_until: 1_780,
    };
    let seen_b = Cooldown::capacity_seen(&b.key(), 1_000, 1_600);
    let cases: [(&str, &Launched, Vec<Cooldown>, Vec<Cooldown>); 5] = [
        ("a refusal cools its pool", &refused, vec![], vec![cooled_a]),
        ("a success in a pool nobody remembers writes nothing", &started_in_b, vec![], vec![]),
        ("a success in a cooling pool ends its cooldown", &started_in_b, vec![cooldown(&b.key(), 1_100, None)], vec![seen_b.clone()]),
        ("a success after a cooldown ran out is capacity seen", &started_in_b, vec![cooldown(&b.key(), 900, None)], vec![seen_b]),
        ("a pool already seen with capacity is not written again", &started_in_b, vec![cooldown(&b.key(), 900, Some(950))], vec![]),
    ];
    for (case, launched, remembered, expected) in cases {
        assert_eq!(records_after(launched, &remembered, T), expected, "{case}");
    }
}

#[test]
fn a_resting_template_is_offered_again_once_one_of_its_pools_found_capacity_since_its_rest_began() {
    let rest = Rest { since: 1_000, until: 1_600 };
    let mine = ["c5.large@subnet-a".to_owned(), "c5.large@subnet-b".to_owned()];
    let cases = [
        ("nothing known", vec![], false),
        ("its pool still cooling", vec![cooldown("c5.large@subnet-a", 1_180, None)], false),
        ("capacity seen before the rest", vec![cooldown("c5.large@subnet-a", 990, Some(990))], false),
        ("capacity seen in its pool since", vec![cooldown("c5.large@subnet-b", 1_200, Some(1_200))], true),
        ("capacity seen in another template's pool", vec![cooldown("m5.large@subnet-a", 1_200, Some(1_200))], false),
    ];
    for (case, records, expected) in cases {
        assert_eq!(capacity_since(rest, &mine, &records), expected, "{case}");
    }
}
