//! Claims: a provisioning request is `unclaimed` from its creation until a getRequestStatus of
//! HostFactory names it. One that stays unclaimed was never learned of (the requestMachines
//! answer was lost, or the call died after launching) and is reaped by the reconciler
//! ([`crate::reconcile`]); a claimed one never is.

use std::collections::HashMap;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::{RequestRecord, now};

/// Who asks for a status: HostFactory's poll claims the requests it names; the reconciler's
/// own refresh does not (it would keep every abandoned request alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    HostFactory,
    Reconciler,
}

/// How often a claim is retried after losing to a concurrent writer.
const CLAIM_ATTEMPTS: usize = 3;

/// Clears `unclaimed` on every record that has it (one conditional write each, first poll
/// only), replacing the records with what was written. A claim that cannot be written is
/// logged, and the next poll tries again: HostFactory polls every ~30 s, far inside
/// `HOSTFACTORY_UNCLAIMED_SECS`, so the status answer does not fail for it.
pub(super) async fn claim(state: &AppState, records: &mut HashMap<String, RequestRecord>) {
    let unclaimed: Vec<RequestRecord> = records.values().filter(|r| r.unclaimed).cloned().collect();
    for request in unclaimed {
        let request_id = request.request_id.clone();
        match claim_one(state, request).await {
            Ok(written) => {
                records.insert(request_id, written);
            }
            Err(err) => tracing::error!(%request_id, error = %err, "request not claimed; the next poll retries"),
        }
    }
}

async fn claim_one(state: &AppState, mut request: RequestRecord) -> Result<RequestRecord> {
    for _ in 0..CLAIM_ATTEMPTS {
        request.unclaimed = false;
        request.updated_at = now();
        match state.store.requests.update(&request).await {
            Ok(written) => return Ok(written),
            Err(Error::Stale { .. }) => match state.store.requests.get(&request.request_id).await? {
                Some(current) if current.unclaimed => request = current,
                Some(current) => return Ok(current),
                None => return Err(Error::not_found("request", &request.request_id)),
            },
            Err(err) => return Err(err),
        }
    }
    Err(Error::Conflict(format!("request '{}' kept changing while being claimed", request.request_id)))
}
