//! The one batched write of a status call: every machine record it changed, every request it
//! finished and every claim, in one [`crate::store::RequestRepository::update_all`] (each
//! request with its machines), then the capacity of the finishes that won.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;

use crate::app::AppState;
use crate::hostfactory::{RequestReport, RequestState};
use crate::store::{MachineRecord, RequestRecord, Written};

use super::super::capacity;
use super::super::outcome::machine_status;

/// What a status call makes of one unfinished request, before anything is written.
#[derive(Debug)]
pub(super) struct Decision {
    /// Its finished record when `status` is final, else the record as read.
    pub request: RequestRecord,
    /// Its machines as EC2 shows them now.
    pub machines: Vec<MachineRecord>,
    /// Those of `machines` whose record changed.
    pub changed: Vec<MachineRecord>,
    pub status: RequestState,
    /// The message as stored before: the answer while the request is not finished.
    pub message: String,
}

impl Decision {
    fn finishes(&self) -> bool {
        self.status != RequestState::Running
    }
}

/// Writes the decisions and `claims` (requests whose `unclaimed` was cleared, finished or not
/// launched ones included) and answers each decision. A request answers final only when its
/// finished record and its machines were written: a finish that loses to another writer, or a
/// write that fails, answers `running` (the outcome that stands is answered by the next poll,
/// and finishing over machine records not written would leave, e.g., a returned machine
/// `executing` under a finished return, holding units the release gave back).
pub(super) async fn write(state: &AppState, decisions: Vec<Decision>, claims: Vec<RequestRecord>) -> Vec<RequestReport> {
    let mut requests: Vec<RequestRecord> = decisions.iter().filter(|d| d.finishes()).map(|d| d.request.clone()).collect();
    let finishing = requests.len();
    let finishing_ids: HashSet<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
    let claims: Vec<RequestRecord> = claims.into_iter().filter(|c| !finishing_ids.contains(c.request_id.as_str())).collect();
    requests.extend(claims);
    let mut seen = HashSet::new();
    let machines: Vec<MachineRecord> =
        decisions.iter().flat_map(|d| &d.changed).filter(|m| seen.insert(m.machine_id.clone())).cloned().collect();
    let finished = match update(state, &requests, &machines).await {
        Some(written) => won(written, &requests, finishing),
        None => Vec::new(),
    };
    let settled: HashMap<String, RequestRecord> = join_all(finished.into_iter().map(|r| capacity::settle(state, r)))
        .await
        .into_iter()
        .map(|r| (r.request_id.clone(), r))
        .collect();
    decisions.into_iter().map(|d| report(d, &settled)).collect()
}

/// The batched update; `None` (logged) when it failed.
async fn update(state: &AppState, requests: &[RequestRecord], machines: &[MachineRecord]) -> Option<Written> {
    if requests.is_empty() && machines.is_empty() {
        return Some(Written::default());
    }
    match state.store.requests.update_all(requests, machines).await {
        Ok(written) => Some(written),
        Err(err) => {
            let (requests, machines) = (requests.len(), machines.len());
            tracing::warn!(error = %err, requests, machines, "status write failed; the requests finish on a later poll");
            None
        }
    }
}

/// The finished records written (the first `finishing` of `requests`); the claims lost are logged.
fn won(written: Written, requests: &[RequestRecord], finishing: usize) -> Vec<RequestRecord> {
    let mut finished = Vec::with_capacity(finishing);
    for (i, outcome) in written.requests.into_iter().enumerate() {
        match outcome {
            Some(record) if i < finishing => finished.push(record),
            Some(_) => {}
            None if i < finishing => {}
            None => {
                let request_id = &requests[i].request_id;
                tracing::warn!(%request_id, "request not claimed (written meanwhile); the next poll retries");
            }
        }
    }
    finished
}

fn report(decision: Decision, settled: &HashMap<String, RequestRecord>) -> RequestReport {
    let Decision { request, machines, status, message, .. } = decision;
    let (status, message) = match settled.get(&request.request_id) {
        Some(written) => {
            tracing::info!(request_id = %request.request_id, status = ?written.status, "request finished");
            (status, written.message.clone())
        }
        None => (RequestState::Running, message),
    };
    RequestReport { request_id: request.request_id, status, message, machines: machines.iter().map(machine_status).collect() }
}
