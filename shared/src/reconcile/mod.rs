//! The reconciler: one pass ([`run_once`]) drives every unfinished request to a final state and
//! clears up what no record accounts for. It runs on an EventBridge schedule (see [`events`])
//! or as `hostfactory reconcile`.
//!
//! Each step re-reads a request by key before acting on it and writes on the version it read,
//! so a pass racing HostFactory calls (or another pass) never overwrites their outcome. A step
//! that fails is logged and listed in [`Report::errors`]; the other steps still run.
//!
//! An idle pass (no unfinished request) costs one DescribeInstances and one
//! DescribeLaunchTemplates, and in the store the active listing, the counter listing, the
//! listing of stale template write intents, and when a counter is quiet the active listing once
//! more and one machine query per quiet counter (see [`recount`]).

mod abandoned;
pub mod events;
mod launch_templates;
mod orphans;
mod pending;
mod recount;
mod timeouts;

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::RequestState;
use crate::metrics::ReconcileFigures;
use crate::store::{RequestRecord, RequestPhase, now, unless_stale};

/// What one pass did, in counts (and the errors it met).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Unfinished requests listed.
    pub active: usize,
    /// Pending provisioning requests healed by adopting the instances tagged with their id.
    pub pending_adopted: usize,
    /// Pending provisioning requests with nothing launched: finished with an error.
    pub pending_failed: usize,
    /// Pending return requests whose machines were sent to termination again.
    pub returns_resent: usize,
    /// Requests whose status was refreshed from EC2, and how many of them finished.
    pub refreshed: usize,
    pub finished: usize,
    /// Provisioning requests finished with an error after the launch timeout.
    pub timed_out: usize,
    /// Tagged instances no machine record knew, recorded under their unfinished request.
    pub orphans_adopted: usize,
    /// Unrecorded tagged instances of finished requests, terminated after the grace.
    pub orphans_terminated: usize,
    /// Tagged instances of requests this store never had (another deployment's): left alone.
    pub foreign_instances: usize,
    pub launch_templates_deleted: usize,
    /// Provisioning requests HostFactory never claimed, reaped after `HOSTFACTORY_UNCLAIMED_SECS`.
    pub abandoned: usize,
    /// Capacity changes left pending on requests (a failed release) that this pass applied.
    pub capacity_settled: usize,
    /// Capacity counters that disagreed with the records and were corrected (the recount).
    pub capacity_repaired: usize,
    /// Template writes whose event a crash left as an intent: recorded now (the write was made)
    /// or dropped (it was not).
    pub template_events_recovered: usize,
    pub template_intents_dropped: usize,
    /// One line per failed step; the pass goes on after a failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Report {
    /// The pass as metrics figures.
    pub fn figures(&self, aws_calls: u64, duration_ms: u64) -> ReconcileFigures {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        ReconcileFigures {
            requests_checked: count(self.active),
            requests_completed: count(self.finished + self.pending_failed + self.timed_out),
            requests_abandoned: count(self.abandoned),
            requests_timed_out: count(self.timed_out),
            requests_healed: count(self.pending_adopted),
            orphans_adopted: count(self.orphans_adopted),
            orphans_terminated: count(self.orphans_terminated),
            launch_templates_deleted: count(self.launch_templates_deleted),
            capacity_repaired: count(self.capacity_repaired),
            step_errors: count(self.errors.len()),
            aws_calls,
            duration_ms,
        }
    }

    fn failed(&mut self, step: &str, err: Error) {
        tracing::error!(step, error = %err, "reconcile step failed");
        self.errors.push(format!("{step}: {err}"));
    }
}

/// One reconciliation pass. Fails only when the unfinished requests cannot be listed.
pub async fn run_once(state: &AppState) -> Result<Report> {
    let timings = state.config.reconcile;
    let mut report = Report::default();
    let listed = state.store.requests.list_active().await?;
    report.active = listed.len();

    let now = now();
    // Requests EC2 is working on: getRequestStatus observes them.
    let mut launching: Vec<&RequestRecord> = listed.iter().filter(|r| r.status == RequestPhase::InProgress).collect();
    for request in
        listed.iter().filter(|r| r.status == RequestPhase::Pending && older(r, now, timings.pending_timeout))
    {
        match pending::heal(state, &request.request_id, now, &mut report).await {
            Ok(true) => launching.push(request),
            Ok(false) => {}
            Err(err) => report.failed(&format!("healing pending request {}", request.request_id), err),
        }
    }
    if let Err(err) = orphans::sweep(state, now, &mut report).await {
        report.failed("checking tagged instances", err);
    }
    if let Err(err) = refresh(state, &launching, &mut report).await {
        report.failed("refreshing request status", err);
    }
    let now = crate::store::now();
    for request in launching.iter().filter(|r| older(r, now, timings.launch_timeout)) {
        if let Err(err) = timeouts::expire(state, &request.request_id, now, &mut report).await {
            report.failed(&format!("timing out request {}", request.request_id), err);
        }
    }
    for request in listed.iter().filter(|r| abandoned::due(state, r, now)) {
        if let Err(err) = abandoned::reap(state, &request.request_id, now, &mut report).await {
            report.failed(&format!("reaping abandoned request {}", request.request_id), err);
        }
    }
    let referenced: HashSet<&str> = listed.iter().filter_map(|r| r.launch_template_id.as_deref()).collect();
    if let Err(err) = launch_templates::clean(state, &referenced, now, &mut report).await {
        report.failed("cleaning up launch templates", err);
    }
    // Last: the requests this pass finished have given their capacity back.
    if let Err(err) = recount::settle(state, &listed, &mut report).await {
        report.failed("applying pending capacity changes", err);
    }
    if let Err(err) = recount::recount(state, &mut report).await {
        report.failed("recounting capacity", err);
    }
    match crate::calls::template_writes::settle_due(state).await {
        Ok(settled) => (report.template_events_recovered, report.template_intents_dropped) = (settled.committed, settled.forgotten),
        Err(err) => report.failed("settling template write intents", err),
    }
    tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "reconcile pass done");
    Ok(report)
}

/// Refreshes every listed request ([`crate::calls::refresh`]): observes EC2, records what
/// changed and finishes what is final (releasing capacity), as getRequestStatus does.
async fn refresh(state: &AppState, launching: &[&RequestRecord], report: &mut Report) -> Result<()> {
    let reports = crate::calls::refresh(state, launching).await?;
    report.refreshed += launching.len();
    report.finished += reports.iter().filter(|r| r.status != RequestState::Running).count();
    Ok(())
}

/// Whether `request` was written at least `age` before `now`.
fn older(request: &RequestRecord, now: i64, age: Duration) -> bool {
    now.saturating_sub(request.created_at) >= seconds(age)
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The request as stored now, if it is still in `status` (the active listing may be stale).
async fn reread(state: &AppState, request_id: &str, status: &[RequestPhase]) -> Result<Option<RequestRecord>> {
    Ok(state.store.requests.get(request_id).await?.filter(|r| status.contains(&r.status)))
}

/// Writes `request` on the version it was read at; `false` when someone else moved it first.
async fn write(state: &AppState, request: &RequestRecord) -> Result<bool> {
    Ok(write_back(state, request).await?.is_some())
}

/// [`write`], returning the request as written.
async fn write_back(state: &AppState, request: &RequestRecord) -> Result<Option<RequestRecord>> {
    let written = unless_stale(state.store.requests.update(request).await)?;
    if written.is_none() {
        tracing::info!(request_id = %request.request_id, "request changed concurrently; left to the other writer");
    }
    Ok(written)
}
