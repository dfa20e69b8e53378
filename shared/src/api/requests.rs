//! Requests resource group: requestMachines and getRequestStatus.

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::post;

use super::{AppState, HfJson, Provider};
use crate::error::Result;
use crate::hostfactory::{RequestAccepted, RequestMachinesInput, RequestStatusInput, RequestStatusResponse};
use crate::service;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/requests", post(request_machines))
        .route("/api/v1/requests/status", post(get_request_status))
}

async fn request_machines(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<RequestMachinesInput>,
) -> Result<Json<RequestAccepted>> {
    service::request_machines(&state, &provider, input).await.map(Json)
}

async fn get_request_status(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<RequestStatusInput>,
) -> Result<Json<RequestStatusResponse>> {
    service::get_request_status(&state, &provider, input).await.map(Json)
}
