//! `POST /api/v1/machines/{id}/{action}`: EC2 is read, the machine's state machine decides
//! ([`crate::store::decide`]), the action is recorded on the machine with a conditional write
//! (of two concurrent actions one wins, the other is answered 409 and calls nothing), then EC2
//! is called once. `terminate` is the HostFactory return path.

use super::{MachineView, managed};
use crate::app::AppState;
use crate::calls::return_machines::terminate_by_operator;
use crate::cloud::Power;
use crate::error::{Error, Result};
use crate::store::{Action, Effect, InstanceState, MachineRecord, MachineState, Refusal, decide, now};

/// Does `action` to machine `id` of `provider` for `by` (an IAM principal, or `local`) and
/// answers the machine as it is afterwards.
pub async fn act(state: &AppState, provider: &str, id: &str, action: Action, by: &str) -> Result<MachineView> {
    let (mut machine, observed) = managed(state, provider, id).await?;
    let ec2_state = observed.as_ref().map_or(InstanceState::Terminated, |o| o.state.clone());
    let current = MachineState::of(&ec2_state, machine.last_action());
    let hibernating = observed.as_ref().is_some_and(|o| o.hibernation);
    let effect = decide(&current, action, hibernating).map_err(|refusal| refused(id, action, &current, refusal))?;
    if effect == Effect::Terminate {
        terminate_by_operator(state, machine, by).await?;
        let after = state.store.machines.get(id).await?.ok_or_else(|| Error::not_found("machine", id))?;
        return Ok(MachineView::of(settled(state, after).await));
    }
    machine.state = ec2_state;
    machine.record_action(action, by, now());
    machine.updated_at = now();
    let claimed = state.store.machines.update(&machine).await.map_err(|err| concurrent(id, err))?;
    let Some(power) = power_of(effect) else {
        tracing::info!(machine_id = id, %action, by, "action recorded");
        return Ok(MachineView::of(claimed));
    };
    if let Err(err) = state.cloud.power(id, power).await {
        undo(state, claimed).await;
        return Err(err);
    }
    tracing::info!(machine_id = id, %action, by, "action done");
    Ok(MachineView::of(settled(state, claimed).await))
}

/// The EC2 call of an effect (`None`: recorded only).
fn power_of(effect: Effect) -> Option<Power> {
    match effect {
        Effect::Start => Some(Power::Start),
        Effect::Stop { hibernate: false } => Some(Power::Stop),
        Effect::Stop { hibernate: true } => Some(Power::Hibernate),
        Effect::Reboot => Some(Power::Reboot),
        Effect::RecordOnly | Effect::Terminate => None,
    }
}

/// The 409 of a refused action: why, the state, and what is allowed in it.
fn refused(id: &str, action: Action, current: &MachineState, refusal: Refusal) -> Error {
    let allowed: Vec<&'static str> = current.allowed().iter().map(|a| a.as_str()).collect();
    let message = match (refusal, current) {
        (Refusal::Busy, MachineState::Busy(ec2)) => format!("machine {id} is busy ({ec2}): retry when it has settled"),
        (Refusal::NotHibernating, _) => {
            format!("machine {id} cannot pause: it was not launched hibernation-capable (template key `hibernate: true`)")
        }
        _ if allowed.is_empty() => format!("machine {id} is {}: no action is allowed", current.name()),
        _ => format!("machine {id} is {}: {action} is not allowed; allowed: {}", current.name(), allowed.join(", ")),
    };
    Error::Refused { message, state: current.name(), allowed }
}

/// A lost conditional write: another action or change came first.
fn concurrent(id: &str, err: Error) -> Error {
    match err {
        Error::Stale { .. } | Error::Conflict(_) => {
            Error::Conflict(format!("machine {id} was changed by another action at the same time: read it again and retry"))
        }
        other => other,
    }
}

/// EC2 refused the call: the action recorded for it is taken back (best effort; logged).
async fn undo(state: &AppState, mut machine: MachineRecord) {
    machine.actions.pop();
    machine.updated_at = now();
    if let Err(err) = state.store.machines.update(&machine).await {
        tracing::warn!(machine_id = %machine.machine_id, error = %err, "failed action still recorded on the machine");
    }
}

/// The machine with EC2's state after the call, recorded when it moved (best effort: EC2
/// events and the next reads record it too).
async fn settled(state: &AppState, mut machine: MachineRecord) -> MachineRecord {
    let id = machine.machine_id.clone();
    let seen = match state.cloud.describe(std::slice::from_ref(&id)).await {
        Ok(mut found) => found.remove(&id),
        Err(err) => {
            tracing::warn!(machine_id = %id, error = %err, "state after the action not read");
            return machine;
        }
    };
    match seen {
        Some(seen) if seen.state != machine.state => {
            machine.state = seen.state;
            machine.updated_at = now();
            state.store.machines.update(&machine).await.unwrap_or(machine)
        }
        _ => machine,
    }
}
