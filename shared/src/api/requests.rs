//! Requests resource group: requestMachines and getRequestStatus.

use axum::Extension;
use axum::extract::State;
use axum::response::Json;

use super::{HfJson, Provider};
use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::{
    MachineResult, RequestAccepted, RequestMachinesInput, RequestState, RequestStatusInput, RequestStatusResponse,
};
use crate::metrics::MachineFigures;
use crate::calls;

pub(super) async fn request_machines(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<RequestMachinesInput>,
) -> (Extension<MachineFigures>, Result<Json<RequestAccepted>>) {
    // Counted whether or not the launch succeeds: it is what HostFactory asked for.
    let requested = u64::try_from(input.template.machine_count).unwrap_or_default();
    let accepted = calls::request_machines(&state, &provider, input).await.map(Json);
    (Extension(MachineFigures { requested, ..Default::default() }), accepted)
}

pub(super) async fn get_request_status(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<RequestStatusInput>,
) -> Result<(Extension<MachineFigures>, Json<RequestStatusResponse>)> {
    let answer = calls::get_request_status(&state, &provider, input).await?;
    Ok((Extension(launch_figures(&answer)), Json(answer)))
}

/// Machines of finished `req-` requests by result: HostFactory stops polling a request once it
/// is finished, so each launch is counted once.
fn launch_figures(answer: &RequestStatusResponse) -> MachineFigures {
    let machines = answer
        .requests
        .iter()
        .filter(|r| r.request_id.starts_with("req-") && r.status != RequestState::Running)
        .flat_map(|r| &r.machines);
    let mut figures = MachineFigures::default();
    for machine in machines {
        match machine.result {
            MachineResult::Succeed => figures.launched += 1,
            MachineResult::Fail => figures.failed += 1,
            MachineResult::Executing => {}
        }
    }
    figures
}
