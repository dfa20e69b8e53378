//! Claims: a provisioning request is `unclaimed` from its creation until a getRequestStatus of
//! HostFactory names it. One that stays unclaimed was never learned of (the requestMachines
//! answer was lost, or the call died after launching) and is reaped by the reconciler
//! ([`crate::reconcile`]); a claimed one never is.

use std::collections::HashMap;

use crate::store::RequestRecord;

/// Who asks for a status: HostFactory's poll claims the requests it names; the reconciler's
/// own refresh does not (it would keep every abandoned request alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    HostFactory,
    Reconciler,
}

/// Clears `unclaimed` on every record that has it (first poll only) and answers their ids;
/// the status call writes the claims with everything else it changes. A claim that cannot be
/// written is logged, and the next poll tries again: HostFactory polls every ~30 s, far inside
/// `HOSTFACTORY_UNCLAIMED_SECS`, so the status answer does not fail for it.
pub(super) fn mark(records: &mut HashMap<String, RequestRecord>, now: i64) -> Vec<String> {
    let mut claimed = Vec::new();
    for record in records.values_mut().filter(|r| r.unclaimed) {
        record.unclaimed = false;
        record.updated_at = now;
        claimed.push(record.request_id.clone());
    }
    claimed
}
