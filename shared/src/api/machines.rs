//! Machines resource group: requestReturnMachines and getReturnRequests, and the operator
//! lifecycle routes (list, show, actions).

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Json;
use http::Uri;

use super::{Caller, HfJson, Provider};
use crate::calls::lifecycle::{self, ListQuery, MachineList, MachineView};
use crate::error::Error;
use crate::store::Action;
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

pub(super) async fn list_machines(State(state): State<AppState>, Provider(provider): Provider, uri: Uri) -> Result<Json<MachineList>> {
    let query = axum::extract::Query::<ListQuery>::try_from_uri(&uri).map_err(|err| Error::invalid("query", err.body_text()))?;
    lifecycle::list(&state, &provider, query.0).await.map(Json)
}

pub(super) async fn get_machine(
    State(state): State<AppState>,
    Provider(provider): Provider,
    Path(id): Path<String>,
) -> Result<Json<MachineView>> {
    lifecycle::show(&state, &provider, &id).await.map(Json)
}

pub(super) async fn machine_action(
    State(state): State<AppState>,
    Provider(provider): Provider,
    Caller(by): Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<MachineView>> {
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    let action = Action::parse(&action)
        .ok_or_else(|| Error::invalid("action", format!("'{action}' is not an action; one of {}", names.join(", "))))?;
    lifecycle::act(&state, &provider, &id, action, &by).await.map(Json)
}
