//! getRequestStatus' decisions on plain records: what EC2 shows mapped onto each machine, when
//! a request is final, and what its finish gives back (each change once, by its op id).

use std::collections::HashMap;

use super::*;
use super::finish::capacity_changes;
use crate::store::{Direction, capacity_key};
use crate::calls::request_machines::machine_record;
use crate::cloud::Found;

fn request(kind: RequestKind, count: u32) -> RequestRecord {
    RequestRecord::new(kind, "T", "awsinst", count, 1_000)
}

fn machine(request: &RequestRecord, id: &str, result: MachineResult, units: u32) -> MachineRecord {
    MachineRecord { result, units, launchtime: 1_000, ..machine_record(&Observed::launching(id), request) }
}

fn seen(id: &str, state: InstanceState) -> (String, Observed) {
    let named = Observed { state, private_dns_name: format!("ip-{id}"), private_ip_address: "10.0.0.1".into(), ..Observed::launching(id) };
    (id.to_owned(), Observed { launch_time: 1_000, ..named })
}

fn fleet(instances: &[(&str, u32)], given_up: bool) -> filling::FleetProgress {
    let instances = instances.iter().map(|(id, u)| ((*id).to_owned(), *u)).collect();
    filling::FleetProgress { found: Found { instances, gone: false }, given_up, claimed: None }
}

#[test]
fn what_ec2_shows_is_mapped_onto_each_machine() {
    let provision = request(RequestKind::Provision, 1);
    let ret = request(RequestKind::Return, 1);
    // (request, EC2 state seen (None: not listed), seconds since launch, result, record state, changed)
    let cases = [
        (&provision, Some(InstanceState::Running), 5, MachineResult::Succeed, InstanceState::Running, true),
        (&provision, Some(InstanceState::Pending), 5, MachineResult::Executing, InstanceState::Pending, true),
        (&provision, None, 5, MachineResult::Executing, InstanceState::Pending, false),
        (&provision, None, LAUNCH_VISIBILITY_SECS, MachineResult::Fail, InstanceState::Terminated, true),
        (&provision, Some(InstanceState::Terminated), 5, MachineResult::Fail, InstanceState::Terminated, true),
        (&provision, Some(InstanceState::Stopped), 5, MachineResult::Fail, InstanceState::Stopped, true),
        (&ret, Some(InstanceState::Running), 5, MachineResult::Fail, InstanceState::Running, true),
        (&ret, Some(InstanceState::ShuttingDown), 5, MachineResult::Executing, InstanceState::ShuttingDown, true),
        (&ret, Some(InstanceState::Terminated), 5, MachineResult::Succeed, InstanceState::Terminated, true),
        (&ret, None, 5, MachineResult::Succeed, InstanceState::Terminated, true),
    ];
    for (request, state, age, result, recorded, changes) in cases {
        let mut machines = vec![machine(request, "i-1", MachineResult::Executing, 1)];
        let observed: HashMap<String, Observed> = state.clone().map(|s| seen("i-1", s)).into_iter().collect();
        let changed = observe(request, &mut machines, &observed, 1_000 + age);
        let case = format!("{:?} seen {state:?} after {age} s", request.kind);
        assert_eq!((machines[0].result, &machines[0].state), (result, &recorded), "{case}");
        assert_eq!(changed.len(), usize::from(changes), "{case}");
    }
}

#[test]
fn a_machine_handed_back_to_a_return_is_left_to_it() {
    let provision = request(RequestKind::Provision, 1);
    let mut returned = machine(&provision, "i-1", MachineResult::Succeed, 1);
    returned.return_request_id = Some("ret-1".into());
    let mut machines = vec![returned.clone()];
    let observed: HashMap<String, Observed> = [seen("i-1", InstanceState::Terminated)].into();
    assert!(observe(&provision, &mut machines, &observed, 1_005).is_empty());
    assert_eq!(machines, [returned]);
}

#[test]
fn the_target_is_machines_or_a_fleets_units() {
    let r = request(RequestKind::Provision, 4);
    let ok = |id| machine(&r, id, MachineResult::Succeed, 1);
    let failed = |id| machine(&r, id, MachineResult::Fail, 1);
    let ret = request(RequestKind::Return, 9);
    // (request, machines, fleet, (reached, given up, shortfall, extra))
    let cases = [
        (&r, vec![ok("a"), ok("b"), ok("c"), ok("d")], None, (true, true, 0, 0)),
        (&r, vec![ok("a"), ok("b")], None, (false, true, 0, 0)),
        (&ret, vec![ok("a")], None, (true, true, 0, 0)),
        (&r, vec![], Some(fleet(&[("a", 2), ("b", 2)], false)), (true, false, 0, 0)),
        (&r, vec![], Some(fleet(&[("a", 2)], false)), (false, false, 2, 0)),
        (&r, vec![], Some(fleet(&[("a", 2)], true)), (false, true, 2, 0)),
        (&r, vec![failed("x")], Some(fleet(&[("a", 2)], true)), (false, true, 1, 0)),
        (&r, vec![], Some(fleet(&[("a", 3), ("b", 3)], false)), (true, false, 0, 2)),
    ];
    for (request, machines, fleet, expected) in cases {
        assert_eq!(target(request, &machines, fleet.as_ref()), expected, "{machines:?}");
    }
}

#[test]
fn a_finish_gives_back_what_is_gone_once_per_stage_and_template() {
    let r = request(RequestKind::Provision, 4);
    let ret = request(RequestKind::Return, 2);
    let mut other = machine(&ret, "i-o", MachineResult::Succeed, 3);
    other.template_id = "U".into();
    let own = capacity_key("awsinst", "T");
    let release = |req: &RequestRecord, key: &str, units| (format!("release:{}:finish:{key}", req.request_id), Direction::Release, units);
    // (request, machines, (shortfall, extra), expected (op id, direction, units))
    let cases = [
        (&r, vec![machine(&r, "a", MachineResult::Succeed, 1)], (0, 0), vec![]),
        (&r, vec![machine(&r, "a", MachineResult::Fail, 2)], (0, 0), vec![release(&r, &own, 2)]),
        (&r, vec![machine(&r, "a", MachineResult::Fail, 1)], (3, 0), vec![release(&r, &own, 4)]),
        (&r, vec![], (0, 2), vec![(format!("overshoot:{}:finish", r.request_id), Direction::Reserve, 2)]),
        (&ret, vec![machine(&ret, "a", MachineResult::Succeed, 1), machine(&ret, "b", MachineResult::Fail, 1)], (0, 0), vec![release(&ret, &own, 1)]),
        (&ret, vec![machine(&ret, "a", MachineResult::Succeed, 1), other], (0, 0), vec![release(&ret, &own, 1), release(&ret, &capacity_key("awsinst", "U"), 3)]),
    ];
    for (request, machines, fill, expected) in cases {
        let changes = capacity_changes(request, &machines, fill, "finish");
        let got: Vec<(String, Direction, u32)> = changes.iter().map(|c| (c.op_id.clone(), c.direction, c.units)).collect();
        assert_eq!(got, expected, "{machines:?}");
    }
}
