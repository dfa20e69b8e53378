//! Capacity changes, exactly once and never lost.
//!
//! Every change of a counter is named by an operation id derived from what it is for, so each
//! retry of the same logical change (an SDK retry after a lost answer, a status call or
//! reconcile pass finishing it again) is applied once by the store:
//!
//! | op id | change |
//! |---|---|
//! | `reserve:<req>` | requestMachines' reservation |
//! | `release:<req>:unlaunched` | units not launched (requestMachines, or the reconciler healing a pending request) |
//! | `overshoot:<req>:launch` / `overshoot:<req>:finish` | units a weighted fleet filled beyond its target |
//! | `release:<req>:finish:<key>` | what a finished request gives back (failed or returned machines, a fleet's shortfall) |
//! | `release:<machine>:reclaimed` | a host EC2 terminated after its request finished |
//!
//! A change a request decides is written on its record (`pendingCapacity`) in the same update
//! that decides it, applied after that write and cleared once applied ([`settle`]); one that
//! fails stays pending, and the next getRequestStatus of the request or reconcile pass applies
//! it. A release larger than what is held is refused by the store and left to the recount.

use std::collections::HashMap;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::{CapacityChange, Direction, PENDING_CHANGE_LIFETIME, RequestRecord, now};

/// The op id of requestMachines' reservation.
pub(crate) fn reserve_op(request_id: &str) -> String {
    format!("reserve:{request_id}")
}

/// A change of `units` (none when zero), decided now.
pub(crate) fn change(op_id: String, key: &str, direction: Direction, units: u32) -> Option<CapacityChange> {
    (units > 0).then(|| CapacityChange { op_id, key: key.to_owned(), direction, units, decided_at: now() })
}

/// Gives back the units a request did not launch (`release:<req>:unlaunched`).
pub(crate) fn unlaunched(request: &RequestRecord, key: &str, units: u32) -> Option<CapacityChange> {
    change(format!("release:{}:unlaunched", request.request_id), key, Direction::Release, units)
}

/// Counts units a weighted fleet filled beyond its target (`overshoot:<req>:<stage>`): they run,
/// so they hold capacity until returned, when each machine gives back its own units.
pub(crate) fn overshoot(request: &RequestRecord, key: &str, stage: &str, units: u32) -> Option<CapacityChange> {
    change(format!("overshoot:{}:{stage}", request.request_id), key, Direction::Reserve, units)
}

async fn apply(state: &AppState, change: &CapacityChange) -> Result<()> {
    let capacity = &state.store.capacity;
    match change.direction {
        // Beyond `maxNumber` by definition: never refused.
        Direction::Reserve => capacity.reserve(&change.key, &change.op_id, change.units, -1).await.map(drop),
        Direction::Release => capacity.release(&change.key, &change.op_id, change.units).await,
    }
}

/// Applies a change no record carries (nothing could be marked pending); a failure is logged
/// and left to the reconciler's recount.
pub(crate) async fn apply_now(state: &AppState, change: Option<CapacityChange>) {
    let Some(change) = change else { return };
    if let Err(err) = apply(state, &change).await {
        tracing::error!(op_id = %change.op_id, key = %change.key, units = change.units, error = %err,
            "capacity change failed; the reconciler's recount corrects the counter");
    }
}

/// Applies the changes pending on `request` (which was just written with them) and clears them
/// from it: in one write when the store can ([`CapacityRepository::apply_with`]), else one
/// change at a time and one more update. Returns the request as stored. A change that fails is
/// kept for the next status call or reconcile pass; one the store refuses (a release beyond
/// what is held) or one older than [`PENDING_CHANGE_LIFETIME`] is dropped and left to the
/// recount.
///
/// [`CapacityRepository::apply_with`]: crate::store::CapacityRepository::apply_with
pub(crate) async fn settle(state: &AppState, request: RequestRecord) -> RequestRecord {
    if request.pending_capacity.is_empty() {
        return request;
    }
    let now = now();
    let too_old = |change: &CapacityChange| now.saturating_sub(change.decided_at) > lifetime();
    if !request.pending_capacity.iter().any(too_old) {
        let cleared = RequestRecord { pending_capacity: Vec::new(), ..request.clone() };
        match state.store.capacity.apply_with(&cleared, &request.pending_capacity).await {
            Ok(Some(written)) => return written,
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(request_id = %request.request_id, error = %err, "capacity changes not applied in one write; one at a time");
            }
        }
    }
    let mut left = Vec::new();
    for change in &request.pending_capacity {
        let (op_id, key, units) = (&change.op_id, &change.key, change.units);
        if too_old(change) {
            tracing::warn!(%op_id, %key, units, "pending capacity change too old to apply; left to the recount");
            continue;
        }
        match apply(state, change).await {
            Ok(()) => {}
            Err(err @ Error::CapacityUnderflow { .. }) => {
                tracing::error!(%op_id, error = %err, "capacity release refused; left to the recount");
            }
            Err(err) => {
                tracing::warn!(%op_id, %key, units, error = %err, "capacity change failed; kept pending");
                left.push(change.clone());
            }
        }
    }
    if left.len() == request.pending_capacity.len() {
        return request;
    }
    let cleared = RequestRecord { pending_capacity: left, ..request.clone() };
    match state.store.requests.update(&cleared).await {
        Ok(written) => written,
        Err(err) => {
            // Applied but still listed: applying it again is a no-op (same op ids).
            tracing::warn!(request_id = %request.request_id, error = %err, "applied capacity changes not cleared");
            request
        }
    }
}

/// [`PENDING_CHANGE_LIFETIME`] in epoch seconds.
fn lifetime() -> i64 {
    i64::try_from(PENDING_CHANGE_LIFETIME.as_secs()).unwrap_or(i64::MAX)
}

/// [`settle`] for every record carrying pending changes.
pub(crate) async fn settle_all(state: &AppState, records: &mut HashMap<String, RequestRecord>) {
    for record in records.values_mut().filter(|r| !r.pending_capacity.is_empty()) {
        *record = settle(state, record.clone()).await;
    }
}
