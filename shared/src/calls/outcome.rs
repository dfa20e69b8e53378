//! EC2 state → HostFactory machine `result` and request `status`, per spec §2.4 (IBM's own
//! AWS plugin mapping).

use crate::hostfactory::{MachineResult, MachineStatus, RequestReport, RequestState};
use crate::cloud::Observed;
use crate::store::{InstanceState, MachineRecord};

/// Result of a machine in a **provisioning** request. `None` means EC2 does not know it.
/// A running instance counts as usable only once it has a host name and a private IP.
pub fn provisioning_result(observed: Option<&Observed>) -> (MachineResult, &'static str) {
    let Some(instance) = observed else {
        return (MachineResult::Fail, "instance not found in EC2");
    };
    match instance.state {
        InstanceState::Running if instance.private_dns_name.is_empty() || instance.private_ip_address.is_empty() => {
            (MachineResult::Executing, "")
        }
        InstanceState::Running => (MachineResult::Succeed, ""),
        InstanceState::Pending | InstanceState::ShuttingDown | InstanceState::Stopping => {
            (MachineResult::Executing, "")
        }
        InstanceState::Terminated => (MachineResult::Fail, "instance terminated before it was returned"),
        InstanceState::Stopped => (MachineResult::Fail, "instance stopped"),
        InstanceState::Other(_) => (MachineResult::Executing, ""),
    }
}

/// Result of a machine in a **return** request: gone (terminated, stopped, not found) is success.
pub fn return_result(observed: Option<&Observed>) -> (MachineResult, &'static str) {
    let Some(instance) = observed else {
        return (MachineResult::Succeed, "");
    };
    match instance.state {
        InstanceState::Terminated | InstanceState::Stopped => (MachineResult::Succeed, ""),
        InstanceState::Running => (MachineResult::Fail, "instance is still running"),
        _ => (MachineResult::Executing, ""),
    }
}

/// Request status from its machines' results: `running` while any machine is executing or the
/// target is not reached yet, then `complete_with_error` if any failed or the target was
/// missed, else `complete`.
pub fn request_state(results: impl IntoIterator<Item = MachineResult>, target_reached: bool, finished: bool) -> RequestState {
    let mut any_failed = false;
    for result in results {
        match result {
            MachineResult::Executing => return RequestState::Running,
            MachineResult::Fail => any_failed = true,
            MachineResult::Succeed => {}
        }
    }
    match (target_reached, finished) {
        (false, false) => RequestState::Running,
        (false, true) => RequestState::CompleteWithError,
        (true, _) if any_failed => RequestState::CompleteWithError,
        (true, _) => RequestState::Complete,
    }
}

/// A machine record as getRequestStatus answers it.
pub(super) fn machine_status(machine: &MachineRecord) -> MachineStatus {
    MachineStatus {
        machine_id: machine.machine_id.clone(),
        name: machine.name.clone(),
        result: machine.result,
        status: machine.state.to_string(),
        private_ip_address: machine.private_ip_address.clone(),
        public_ip_address: machine.public_ip_address.clone(),
        launchtime: machine.launchtime,
        message: machine.message.clone(),
    }
}

/// The answer for a request id this provider instance does not know.
pub(super) fn unknown_request(id: &str) -> RequestReport {
    RequestReport {
        request_id: id.to_owned(),
        status: RequestState::CompleteWithError,
        message: format!("request '{id}' not found"),
        machines: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: &str) -> Observed {
        Observed {
            instance_id: "i-1".into(),
            state: state.into(),
            private_dns_name: "ip-10-0-0-1.ec2.internal".into(),
            private_ip_address: "10.0.0.1".into(),
            public_ip_address: String::new(),
            launch_time: 1,
            lifecycle: crate::store::Lifecycle::Ondemand,
            state_reason: String::new(),
            tags: Default::default(),
            placement: String::new(),
            hibernation: false,
        }
    }

    #[test]
    fn the_spec_mapping_table() {
        use MachineResult::*;
        let table = [
            ("pending", Executing, Executing),
            ("running", Succeed, Fail),
            ("shutting-down", Executing, Executing),
            ("stopping", Executing, Executing),
            ("terminated", Fail, Succeed),
            ("stopped", Fail, Succeed),
        ];
        for (state, provisioning, returning) in table {
            assert_eq!(provisioning_result(Some(&instance(state))).0, provisioning, "{state} in a provisioning request");
            assert_eq!(return_result(Some(&instance(state))).0, returning, "{state} in a return request");
        }
        assert_eq!(provisioning_result(None).0, Fail);
        assert_eq!(return_result(None).0, Succeed);
    }

    #[test]
    fn a_running_instance_without_host_name_is_not_usable_yet() {
        let mut booting = instance("running");
        booting.private_dns_name.clear();
        assert_eq!(provisioning_result(Some(&booting)).0, MachineResult::Executing);
    }

    #[test]
    fn failures_carry_a_message() {
        assert!(!provisioning_result(None).1.is_empty());
        assert!(!provisioning_result(Some(&instance("terminated"))).1.is_empty());
        assert!(!return_result(Some(&instance("running"))).1.is_empty());
    }

    #[test]
    fn request_state_aggregation() {
        use MachineResult::*;
        assert_eq!(request_state([Succeed, Executing], true, false), RequestState::Running);
        assert_eq!(request_state([Succeed, Succeed], true, false), RequestState::Complete);
        assert_eq!(request_state([Succeed, Fail], true, false), RequestState::CompleteWithError);
        assert_eq!(request_state([Succeed], false, false), RequestState::Running, "fleet below target keeps running");
        assert_eq!(request_state([Succeed], false, true), RequestState::CompleteWithError, "expired short of target");
        assert_eq!(request_state([], true, true), RequestState::Complete);
    }
}
