//! The reconciler Lambda's events: the EventBridge schedule runs a pass, and EC2's own events
//! are recorded on the machine they concern, so getReturnRequests and getRequestStatus learn
//! of them without asking EC2.
//!
//! - `Scheduled Event` → [`run_once`];
//! - a batch of DynamoDB stream records → the domain events of its changes
//!   ([`crate::domain_events::stream`]);
//! - `EC2 Spot Instance Interruption Warning` → the machine's `interruptedAt` (the event's
//!   time), which getReturnRequests turns into gracePeriod 120 − seconds since;
//! - `EC2 Instance State-change Notification` (`stopped`, `shutting-down`, `terminated`) → the
//!   machine's `state`; a host of a finished request that EC2 terminated on its own is marked
//!   failed and gives its capacity back.
//!
//! Either marks a host HostFactory still holds `reclaimedAt`, so getReturnRequests `{}` reports
//! it. Anything else, and instances we have no record of, are logged and ignored.

use std::cell::Cell;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::MachineResult;
use crate::metrics::emit_reconcile;
use crate::calls::capacity;
use crate::store::{Direction, InstanceState, MachineRecord, capacity_key, now, unless_stale};

use super::{Report, run_once};

/// EC2 states a state-change notification is recorded for: the cloud taking the host back.
const RECORDED_STATES: [InstanceState; 3] =
    [InstanceState::ShuttingDown, InstanceState::Stopped, InstanceState::Terminated];

/// What [`dispatch`] did with an event (the Lambda's answer, in its log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Outcome {
    Reconciled { report: Report },
    /// A batch of DynamoDB stream records published as domain events (Lambda reads
    /// `batchItemFailures`).
    Published(crate::domain_events::stream::Published),
    Interrupted { machine_id: String, interrupted_at: i64 },
    StateRecorded { machine_id: String, state: String },
    Ignored { reason: String },
}

pub async fn dispatch(state: &AppState, event: Value) -> Result<Outcome> {
    if crate::domain_events::stream::is_stream_batch(&event) {
        return Ok(Outcome::Published(crate::domain_events::stream::publish_batch(&state.events, &state.metrics, &event).await));
    }
    let detail_type = event.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    let outcome = match detail_type {
        "Scheduled Event" => Outcome::Reconciled { report: metered_pass(state).await? },
        "EC2 Spot Instance Interruption Warning" => match instance_id(&event) {
            Some(id) => interrupted(state, id, event_time(&event)).await?,
            None => ignored("interruption warning without detail.instance-id"),
        },
        "EC2 Instance State-change Notification" => {
            match (instance_id(&event), event.pointer("/detail/state").and_then(Value::as_str)) {
                (Some(id), Some(ec2_state)) if RECORDED_STATES.contains(&InstanceState::parse(ec2_state)) => {
                    state_changed(state, id, ec2_state, event_time(&event)).await?
                }
                (Some(_), Some(other)) => ignored(&format!("state '{other}' is not recorded")),
                _ => ignored("state-change notification without detail.instance-id and detail.state"),
            }
        }
        other => ignored(&format!("unknown event detail-type '{other}'")),
    };
    tracing::info!(detail_type, outcome = ?outcome, "event handled");
    Ok(outcome)
}

/// One pass, with its figures, AWS calls and duration written as a metrics line.
async fn metered_pass(state: &AppState) -> Result<Report> {
    let started = std::time::Instant::now();
    let (report, aws_calls) = crate::aws::count_aws_calls(run_once(state)).await;
    let report = report?;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    emit_reconcile(&state.metrics, &report.figures(aws_calls, duration_ms));
    Ok(report)
}

async fn interrupted(state: &AppState, machine_id: &str, at: i64) -> Result<Outcome> {
    let recorded = change_machine(state, machine_id, |m| {
        // The first warning starts the two minutes; a repeat does not extend them.
        let first = m.interrupted_at.is_none();
        m.interrupted_at.get_or_insert(at);
        mark_reclaimed(m, at) || first
    })
    .await?;
    Ok(match recorded {
        Some(m) => Outcome::Interrupted { machine_id: m.machine_id, interrupted_at: m.interrupted_at.unwrap_or(at) },
        None => ignored(&format!("instance {machine_id} is not a machine we know")),
    })
}

async fn state_changed(state: &AppState, machine_id: &str, ec2_state: &str, at: i64) -> Result<Outcome> {
    let Some(machine) = state.store.machines.get(machine_id).await? else {
        return Ok(ignored(&format!("instance {machine_id} is not a machine we know")));
    };
    // A host of a finished request that EC2 terminated on its own no longer uses capacity, and
    // no one else gives it back: getRequestStatus no longer looks at the request, and
    // requestReturnMachines skips terminated hosts. (Hosts of unfinished requests are failed
    // and released by getRequestStatus; returned hosts by their return request.)
    let ec2_state = InstanceState::parse(ec2_state);
    let request_finished = machine.request_id.is_empty()
        || state.store.requests.get(&machine.request_id).await?.is_none_or(|request| request.is_finished());
    let released = Cell::new(false);
    let recorded = change_machine(state, machine_id, |m| {
        let marked = mark_reclaimed(m, at);
        let reclaimed = ec2_state == InstanceState::Terminated
            && request_finished
            && m.return_request_id.is_none()
            && m.result == MachineResult::Succeed;
        released.set(reclaimed);
        if reclaimed {
            m.result = MachineResult::Fail;
            m.message = "instance terminated by EC2".to_owned();
        }
        let changed = m.state != ec2_state || reclaimed || marked;
        m.state = ec2_state.clone();
        changed
    })
    .await?;
    let Some(machine) = recorded else {
        return Ok(ignored(&format!("instance {machine_id} is not a machine we know")));
    };
    if released.get() {
        // No request record to keep it pending on (the request may have expired): a failure is
        // left to the recount, which no longer counts this machine (failed, request finished).
        let op_id = format!("release:{}:reclaimed", machine.machine_id);
        let key = capacity_key(&machine.provider, &machine.template_id);
        capacity::apply_now(state, capacity::change(op_id, &key, Direction::Release, machine.units)).await;
        tracing::warn!(machine_id, request_id = %machine.request_id, "host terminated by EC2; capacity released");
    }
    Ok(Outcome::StateRecorded { machine_id: machine.machine_id, state: machine.state.to_string() })
}

/// Records that the cloud is taking back a host HostFactory holds (one it was given, not one
/// it returned), for getReturnRequests `{}`; whether that changed anything.
fn mark_reclaimed(machine: &mut MachineRecord, at: i64) -> bool {
    let held = machine.result == MachineResult::Succeed && machine.return_request_id.is_none();
    // An operator's stop or pause is not the cloud taking the host back.
    if !held || machine.reclaimed_at.is_some() || machine.held_by_operator() {
        return false;
    }
    machine.reclaimed_at = Some(at);
    true
}

/// Applies `change` (which says whether it changed anything) to the stored machine, re-reading
/// and retrying when a concurrent writer wins. `None` when there is no such machine.
async fn change_machine(
    state: &AppState,
    machine_id: &str,
    change: impl Fn(&mut MachineRecord) -> bool,
) -> Result<Option<MachineRecord>> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let Some(mut machine) = state.store.machines.get(machine_id).await? else {
            return Ok(None);
        };
        if !change(&mut machine) {
            return Ok(Some(machine));
        }
        machine.updated_at = now();
        if let Some(written) = unless_stale(state.store.machines.update(&machine).await)? {
            return Ok(Some(written));
        }
    }
    Err(Error::Conflict(format!("machine '{machine_id}' kept changing; event not recorded after {ATTEMPTS} tries")))
}

fn instance_id(event: &Value) -> Option<&str> {
    event.pointer("/detail/instance-id").and_then(Value::as_str).filter(|id| !id.is_empty())
}

/// The event's `time` (RFC 3339) as epoch seconds, never in the future; now when absent.
fn event_time(event: &Value) -> i64 {
    let now = now();
    event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map_or(now, |t| t.unix_timestamp().min(now))
}

fn ignored(reason: &str) -> Outcome {
    Outcome::Ignored { reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn event_time_is_parsed_and_never_in_the_future() {
        assert_eq!(event_time(&json!({"time": "2024-01-01T00:00:00Z"})), 1_704_067_200);
        assert!(event_time(&json!({"time": "2999-01-01T00:00:00Z"})) <= now());
        assert!(event_time(&json!({"time": "yesterday"})) >= now() - 1);
        assert!(event_time(&json!({})) >= now() - 1);
    }

    #[test]
    fn outcomes_serialize_with_their_name() {
        let outcome = Outcome::Interrupted { machine_id: "i-1".into(), interrupted_at: 5 };
        assert_eq!(
            serde_json::to_value(outcome).unwrap(),
            json!({"outcome": "interrupted", "machineId": "i-1", "interruptedAt": 5})
        );
    }
}
