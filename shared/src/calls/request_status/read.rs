//! What a status call reads besides the requests: their machine records, in one batch read by
//! the ids the requests recorded (a request whose machines are not known up front, a fleet or
//! group still filling, is listed by its index), and what EC2 shows of the live ones.

use std::collections::{HashMap, HashSet};

use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt, stream};
use tokio::time::Instant;

use crate::app::AppState;
use crate::cloud::Observed;
use crate::error::Result;
use crate::store::{MachineRecord, RequestKind, RequestPhase, RequestRecord};

/// The machines of each request: its own (provisioning) or those it returns.
pub(super) async fn machines(
    state: &AppState,
    records: &HashMap<String, RequestRecord>,
) -> Result<HashMap<String, Vec<MachineRecord>>> {
    let (known, listed): (Vec<&RequestRecord>, Vec<&RequestRecord>) =
        records.values().partition(|r| r.machine_ids.is_some());
    let ids: Vec<String> = known.iter().flat_map(|r| r.machine_ids.iter().flatten().cloned()).collect();
    let (found, listings) = futures::try_join!(
        async {
            if ids.is_empty() { Ok(Vec::new()) } else { state.store.machines.batch_get(&ids).await }
        },
        try_join_all(listed.iter().map(|r| list(state, r)))
    )?;
    let found: HashMap<String, MachineRecord> = found.into_iter().map(|m| (m.machine_id.clone(), m)).collect();
    let mut machines: HashMap<String, Vec<MachineRecord>> = listings.into_iter().collect();
    for request in known {
        let mine = request.machine_ids.iter().flatten().filter_map(|id| found.get(id)).filter(|m| request.owns(m));
        machines.insert(request.request_id.clone(), mine.cloned().collect());
    }
    Ok(machines)
}

/// The machines of `request` from the store's index.
async fn list(state: &AppState, request: &RequestRecord) -> Result<(String, Vec<MachineRecord>)> {
    let machines = match request.kind {
        RequestKind::Provision => state.store.machines.list_by_request(&request.request_id).await?,
        RequestKind::Return => state.store.machines.list_by_return_request(&request.request_id).await?,
    };
    Ok((request.request_id.clone(), machines))
}

/// DescribeInstances takes 1,000 ids (by filter) per call.
const DESCRIBE_BATCH: usize = 1_000;
/// DescribeInstances calls in flight at once.
const DESCRIBE_FAN_OUT: usize = 4;

/// What EC2 showed in time, and the requests it did not answer for by `deadline`.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub observed: HashMap<String, Observed>,
    /// Unfinished requests whose machines were not all described in time: they stay `running`.
    pub late: HashSet<String>,
}

/// What EC2 shows of the machines of the unfinished requests: one DescribeInstances per 1,000,
/// a few at a time, each request's machines in as few calls as fit. The requests of a call not
/// answered by `deadline` are `late` (a slow EC2 or a very large call answers with the rest,
/// never past the budget).
pub(super) async fn observe_live(
    state: &AppState,
    records: &HashMap<String, RequestRecord>,
    machines: &HashMap<String, Vec<MachineRecord>>,
    deadline: Instant,
) -> Result<Seen> {
    let live: Vec<(String, Vec<String>)> = records
        .values()
        .filter(|r| r.status == RequestPhase::InProgress)
        .map(|r| (r.request_id.clone(), machines.get(&r.request_id).into_iter().flatten().map(|m| m.machine_id.clone()).collect()))
        .collect();
    let answers: Vec<(Batch, Option<HashMap<String, Observed>>)> = stream::iter(batches(live, DESCRIBE_BATCH))
        .map(|batch| async move {
            match tokio::time::timeout_at(deadline, state.cloud.describe(&batch.ids)).await {
                Ok(found) => found.map(|found| (batch, Some(found))),
                Err(_) => Ok((batch, None)),
            }
        })
        .buffer_unordered(DESCRIBE_FAN_OUT)
        .try_collect()
        .await?;
    let mut seen = Seen::default();
    for (batch, found) in answers {
        match found {
            Some(found) => seen.observed.extend(found),
            None => seen.late.extend(batch.requests),
        }
    }
    if !seen.late.is_empty() {
        tracing::warn!(late = seen.late.len(), "EC2 did not answer for every request within the call budget; they stay running");
    }
    Ok(seen)
}

/// One DescribeInstances call: the ids, and the requests whose machines are among them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Batch {
    pub requests: Vec<String>,
    pub ids: Vec<String>,
}

/// The requests' machine ids in calls of at most `max` ids, filled in order (pure); a request
/// without machines needs no call.
pub(super) fn batches(live: Vec<(String, Vec<String>)>, max: usize) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for (request, ids) in live {
        let mut ids = ids.as_slice();
        while !ids.is_empty() {
            if out.last().is_none_or(|b| b.ids.len() >= max) {
                out.push(Batch::default());
            }
            let last = out.len() - 1;
            let batch = &mut out[last];
            let take = ids.len().min(max - batch.ids.len());
            batch.ids.extend_from_slice(&ids[..take]);
            batch.requests.push(request.clone());
            ids = &ids[take..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (machines per request, max) → (ids per call, requests per call).
    type Case = (&'static [usize], usize, &'static [usize], &'static [usize]);

    #[test]
    fn machine_ids_are_described_in_as_few_calls_as_fit() {
        let ids = |n: usize, p: &str| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        // (machines per request, max) → (ids per call, requests per call)
        let cases: &[Case] = &[
            (&[10; 5], 1000, &[50], &[5]),
            (&[50; 20], 1000, &[1000], &[20]),
            (&[100; 100], 1000, &[1000; 10], &[10; 10]),
            (&[1500], 1000, &[1000, 500], &[1, 1]),
            (&[3, 0, 3], 4, &[4, 2], &[2, 1]),
            (&[], 1000, &[], &[]),
        ];
        for (per_request, max, sizes, requests) in cases {
            let live = per_request.iter().enumerate().map(|(i, n)| (format!("req-{i}"), ids(*n, &format!("i-{i}-")))).collect();
            let got = batches(live, *max);
            let got_sizes: Vec<usize> = got.iter().map(|b| b.ids.len()).collect();
            let got_requests: Vec<usize> = got.iter().map(|b| b.requests.len()).collect();
            assert_eq!((got_sizes, got_requests), (sizes.to_vec(), requests.to_vec()), "{per_request:?} by {max}");
        }
    }
}
