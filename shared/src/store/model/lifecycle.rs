//! What operators may do to a machine, decided as plain data: the machine's lifecycle state
//! (EC2's state, plus whether an operator paused it), the actions each state allows, and what
//! an allowed action asks of EC2. The use case (`calls::lifecycle`) reads EC2, decides here,
//! records the action and makes the call.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{InstanceState, MachineRecord};

/// An operator action on one machine (`POST /api/v1/machines/{id}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
    Pause,
    Resume,
    Terminate,
}

impl Action {
    pub const ALL: [Action; 6] = [Action::Start, Action::Stop, Action::Restart, Action::Pause, Action::Resume, Action::Terminate];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Terminate => "terminate",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One action as the machine's record keeps it: what, when (epoch seconds), who (the caller's
/// IAM principal, or `local`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub action: Action,
    pub at: i64,
    pub by: String,
}

/// How many actions a machine's record keeps (the latest).
pub const KEPT_ACTIONS: usize = 20;

impl MachineRecord {
    /// The last operator action, if any.
    pub fn last_action(&self) -> Option<Action> {
        self.actions.last().map(|a| a.action)
    }

    /// Stopped or paused by an operator (not since started): not the cloud taking it back.
    pub fn held_by_operator(&self) -> bool {
        matches!(self.last_action(), Some(Action::Stop | Action::Pause))
    }

    /// Records `action` by `by` at `at`, keeping the last [`KEPT_ACTIONS`].
    pub fn record_action(&mut self, action: Action, by: &str, at: i64) {
        self.actions.push(ActionRecord { action, at, by: by.to_owned() });
        let extra = self.actions.len().saturating_sub(KEPT_ACTIONS);
        self.actions.drain(..extra);
    }
}

/// A machine's lifecycle state as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    Running,
    Stopped,
    /// Stopped with hibernation by an operator's `pause`.
    Paused,
    Terminated,
    /// EC2 is between states (`pending`, `stopping`, `shutting-down`): retry later.
    Busy(InstanceState),
}

impl MachineState {
    /// The state of a machine EC2 reports `ec2`, whose last operator action was `last`.
    pub fn of(ec2: &InstanceState, last: Option<Action>) -> MachineState {
        match ec2 {
            InstanceState::Running => MachineState::Running,
            InstanceState::Stopped if last == Some(Action::Pause) => MachineState::Paused,
            InstanceState::Stopped => MachineState::Stopped,
            InstanceState::Terminated => MachineState::Terminated,
            busy => MachineState::Busy(busy.clone()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            MachineState::Running => "RUNNING",
            MachineState::Stopped => "STOPPED",
            MachineState::Paused => "PAUSED",
            MachineState::Terminated => "TERMINATED",
            MachineState::Busy(_) => "BUSY",
        }
    }

    /// The actions allowed now.
    pub fn allowed(&self) -> &'static [Action] {
        use Action::*;
        match self {
            MachineState::Running => &[Stop, Restart, Pause, Terminate],
            MachineState::Stopped => &[Start, Terminate],
            MachineState::Paused => &[Resume, Stop, Terminate],
            MachineState::Terminated | MachineState::Busy(_) => &[],
        }
    }
}

/// What an allowed action asks of the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// StartInstances.
    Start,
    /// StopInstances; with hibernation for `pause`.
    Stop { hibernate: bool },
    /// RebootInstances.
    Reboot,
    /// Nothing: a paused machine is already stopped; `stop` only makes it a plain stopped one.
    RecordOnly,
    /// The HostFactory return path.
    Terminate,
}

/// Why an action is refused (each a 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// EC2 is between states.
    Busy,
    /// Not an action of this state.
    NotAllowed,
    /// `pause` of an instance not launched hibernation-capable.
    NotHibernating,
}

/// What `action` on a machine in `state` does; `hibernating`: launched hibernation-capable.
pub fn decide(state: &MachineState, action: Action, hibernating: bool) -> Result<Effect, Refusal> {
    if matches!(state, MachineState::Busy(_)) {
        return Err(Refusal::Busy);
    }
    if !state.allowed().contains(&action) {
        return Err(Refusal::NotAllowed);
    }
    Ok(match (action, state) {
        (Action::Pause, _) if !hibernating => return Err(Refusal::NotHibernating),
        (Action::Pause, _) => Effect::Stop { hibernate: true },
        (Action::Stop, MachineState::Paused) => Effect::RecordOnly,
        (Action::Stop, _) => Effect::Stop { hibernate: false },
        (Action::Start | Action::Resume, _) => Effect::Start,
        (Action::Restart, _) => Effect::Reboot,
        (Action::Terminate, _) => Effect::Terminate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    #[test]
    fn each_state_allows_exactly_its_actions() {
        let cases: [(&str, Option<Action>, &str, &[Action]); 8] = [
            ("running", None, "RUNNING", &[Stop, Restart, Pause, Terminate]),
            ("stopped", None, "STOPPED", &[Start, Terminate]),
            ("stopped", Some(Stop), "STOPPED", &[Start, Terminate]),
            ("stopped", Some(Pause), "PAUSED", &[Resume, Stop, Terminate]),
            ("terminated", Some(Terminate), "TERMINATED", &[]),
            ("pending", None, "BUSY", &[]),
            ("stopping", Some(Pause), "BUSY", &[]),
            ("shutting-down", None, "BUSY", &[]),
        ];
        for (ec2, last, name, allowed) in cases {
            let state = MachineState::of(&InstanceState::parse(ec2), last);
            assert_eq!((state.name(), state.allowed()), (name, allowed), "{ec2} after {last:?}");
        }
    }

    #[test]
    fn every_action_in_every_state_is_decided() {
        let (running, stopped, paused) = (MachineState::Running, MachineState::Stopped, MachineState::Paused);
        let busy = MachineState::Busy(InstanceState::Stopping);
        let cases = [
            (&running, Stop, true, Ok(Effect::Stop { hibernate: false })),
            (&running, Restart, true, Ok(Effect::Reboot)),
            (&running, Pause, true, Ok(Effect::Stop { hibernate: true })),
            (&running, Pause, false, Err(Refusal::NotHibernating)),
            (&running, Terminate, false, Ok(Effect::Terminate)),
            (&running, Start, true, Err(Refusal::NotAllowed)),
            (&running, Resume, true, Err(Refusal::NotAllowed)),
            (&stopped, Start, false, Ok(Effect::Start)),
            (&stopped, Terminate, false, Ok(Effect::Terminate)),
            (&stopped, Stop, false, Err(Refusal::NotAllowed)),
            (&stopped, Resume, true, Err(Refusal::NotAllowed)),
            (&stopped, Pause, true, Err(Refusal::NotAllowed)),
            (&paused, Resume, true, Ok(Effect::Start)),
            (&paused, Stop, true, Ok(Effect::RecordOnly)),
            (&paused, Terminate, true, Ok(Effect::Terminate)),
            (&paused, Start, true, Err(Refusal::NotAllowed)),
            (&MachineState::Terminated, Start, true, Err(Refusal::NotAllowed)),
            (&MachineState::Terminated, Terminate, true, Err(Refusal::NotAllowed)),
            (&busy, Start, true, Err(Refusal::Busy)),
            (&busy, Terminate, true, Err(Refusal::Busy)),
        ];
        for (state, action, hibernating, expected) in cases {
            assert_eq!(decide(state, action, hibernating), expected, "{action} when {}", state.name());
        }
    }

    #[test]
    fn actions_are_spelled_as_in_the_path() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
        assert_eq!(Action::parse("reboot"), None);
    }
}
