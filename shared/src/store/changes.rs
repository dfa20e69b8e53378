//! Versioned updates of many requests and machines in one call ([`super::RequestRepository::update_all`]):
//! what a getRequestStatus or reconcile pass changed goes out in as few writes as the backend
//! allows, each request together with its machines so that a request never reads finished
//! while the machine records behind its outcome are not written.

use super::{MachineRecord, RequestRecord};

/// What a batched update wrote: each record at its next version, in the order given, or `None`
/// where another writer moved it on (or removed it) first. The others are written all the same.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub requests: Vec<Option<RequestRecord>>,
    pub machines: Vec<Option<MachineRecord>>,
}

/// A record of a batched update, by its position in the slices given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ref {
    Request(usize),
    Machine(usize),
}

/// Transactions of at most `max` records for a batched update, in two phases applied one after
/// the other. Each request shares its transaction with as many of its machines as fit; the
/// rest of them go first, in phase 0, so that its record (phase 1) is only written after all of
/// them. Machines of no request in the batch fill the remaining room. Transactions are filled
/// in order, so n records take about n / `max` of them, and those of one phase are independent
/// (the backend may run them concurrently).
pub fn plan(requests: &[RequestRecord], machines: &[MachineRecord], max: usize) -> [Vec<Vec<Ref>>; 2] {
    let max = max.max(2);
    let mut owned = vec![false; machines.len()];
    let mut before: Vec<Ref> = Vec::new();
    let mut after: Vec<Vec<Ref>> = Vec::new();
    for (r, request) in requests.iter().enumerate() {
        let mine: Vec<usize> = (0..machines.len()).filter(|&m| !owned[m] && request.owns(&machines[m])).collect();
        mine.iter().for_each(|&m| owned[m] = true);
        let mine: Vec<Ref> = mine.into_iter().map(Ref::Machine).collect();
        let current = open(&mut after, max);
        let with_it = mine.len().min(max - current.len() - 1);
        current.extend_from_slice(&mine[..with_it]);
        current.push(Ref::Request(r));
        before.extend_from_slice(&mine[with_it..]);
    }
    for m in (0..machines.len()).filter(|&m| !owned[m]) {
        open(&mut after, max).push(Ref::Machine(m));
    }
    [before.chunks(max).map(<[Ref]>::to_vec).collect(), after]
}

/// The last transaction of `transactions` if it has room for one more record, else a new one.
fn open(transactions: &mut Vec<Vec<Ref>>, max: usize) -> &mut Vec<Ref> {
    if transactions.last().is_none_or(|t| t.len() >= max) {
        transactions.push(Vec::with_capacity(max));
    }
    let last = transactions.len() - 1;
    &mut transactions[last]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RequestKind;
    use crate::hostfactory::MachineResult;
    use crate::store::{InstanceState, Lifecycle};

    fn request(id: &str) -> RequestRecord {
        RequestRecord { request_id: id.to_owned(), ..RequestRecord::new(RequestKind::Provision, "T", "awsinst", 1, 1) }
    }

    fn machine(id: &str, request_id: &str) -> MachineRecord {
        MachineRecord {
            machine_id: id.to_owned(),
            request_id: request_id.to_owned(),
            return_request_id: None,
            template_id: "T".into(),
            provider: "awsinst".into(),
            name: String::new(),
            private_ip_address: String::new(),
            public_ip_address: String::new(),
            state: InstanceState::Running,
            result: MachineResult::Succeed,
            launchtime: 1,
            lifecycle: Lifecycle::Ondemand,
            interrupted_at: None,
            units: 1,
            reclaimed_at: None,
            message: String::new(),
            version: 1,
            updated_at: 1,
            expires_at: None,
            fleet_held: None,
            actions: Vec::new(),
        }
    }

    fn sizes(phase: &[Vec<Ref>]) -> Vec<usize> {
        phase.iter().map(Vec::len).collect()
    }

    /// Where each request's transaction is, and that all its machines are in it or before.
    fn check(requests: &[RequestRecord], machines: &[MachineRecord], phases: &[Vec<Vec<Ref>>; 2]) {
        let mut seen = vec![0; machines.len()];
        for t in phases.iter().flatten() {
            for r in t {
                if let Ref::Machine(m) = r {
                    seen[*m] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "every machine written once: {seen:?}");
        for (r, req) in requests.iter().enumerate() {
            let t = phases[1].iter().find(|t| t.contains(&Ref::Request(r))).expect("request planned once");
            for (m, _) in machines.iter().enumerate().filter(|(_, m)| req.owns(m)) {
                let with_it = t.contains(&Ref::Machine(m));
                let earlier = phases[0].iter().any(|t| t.contains(&Ref::Machine(m)));
                assert!(with_it || earlier, "machine {m} of request {r} is with it or before it");
            }
        }
    }

    /// (machines per request, machines of no request, max) → (phase 0 sizes, phase 1 sizes).
    type Case = (&'static [usize], usize, usize, &'static [usize], &'static [usize]);

    #[test]
    fn plans_pack_requests_with_their_machines() {
        // (machines per request, machines of no request, max) → (phase 0 sizes, phase 1 sizes)
        let cases: &[Case] = &[
            (&[10; 5], 0, 100, &[], &[55]),
            (&[50; 20], 0, 100, &[20], &[100; 10]),
            (&[100, 100], 0, 100, &[2], &[100, 100]),
            (&[150], 0, 100, &[51], &[100]),
            (&[], 250, 100, &[], &[100, 100, 50]),
            (&[3], 2, 4, &[], &[4, 2]),
            (&[0, 0], 0, 100, &[], &[2]),
        ];
        for (per_request, loose, max, phase0, phase1) in cases {
            let requests: Vec<RequestRecord> = (0..per_request.len()).map(|i| request(&format!("req-{i}"))).collect();
            let mut machines: Vec<MachineRecord> = Vec::new();
            for (i, n) in per_request.iter().enumerate() {
                machines.extend((0..*n).map(|m| machine(&format!("i-{i}-{m}"), &format!("req-{i}"))));
            }
            machines.extend((0..*loose).map(|m| machine(&format!("i-x-{m}"), "req-other")));
            let phases = plan(&requests, &machines, *max);
            assert_eq!((sizes(&phases[0]), sizes(&phases[1])), (phase0.to_vec(), phase1.to_vec()), "{per_request:?} {loose} {max}");
            check(&requests, &machines, &phases);
        }
    }

    #[test]
    fn a_return_request_takes_the_machines_it_returns() {
        let mut ret = request("ret-1");
        ret.kind = RequestKind::Return;
        let mut returned = machine("i-1", "req-0");
        returned.return_request_id = Some("ret-1".into());
        let machines = [machine("i-0", "req-0"), returned];
        let phases = plan(&[ret], &machines, 100);
        assert_eq!(phases, [vec![], vec![vec![Ref::Machine(1), Ref::Request(0), Ref::Machine(0)]]]);
    }
}
