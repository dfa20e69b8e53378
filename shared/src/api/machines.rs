//! Machines resource group: requestReturnMachines and getReturnRequests.

use axum::Extension;
use axum::extract::State;
use axum::response::Json;

use super::{HfJson, Provider};
use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::{RequestAccepted, ReturnMachinesInput, ReturnRequestsInput, ReturnRequestsResponse};
use crate::metrics::MachineFigures;
use crate::calls;

pub(super) async fn request_return_machines(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<ReturnMachinesInput>,
) -> (Extension<MachineFigures>, Result<Json<RequestAccepted>>) {
    let returned = input.machines.len() as u64;
    let accepted = calls::request_return_machines(&state, &provider, input).await.map(Json);
    (Extension(MachineFigures { returned, ..Default::default() }), accepted)
}

pub(super) async fn get_return_requests(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<ReturnRequestsInput>,
) -> Result<Json<ReturnRequestsResponse>> {
    calls::get_return_requests(&state, &provider, input).await.map(Json)
}
