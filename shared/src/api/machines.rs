//! Machines resource group: requestReturnMachines and getReturnRequests.

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::post;

use super::{AppState, HfJson, Provider};
use crate::error::Result;
use crate::hostfactory::{RequestAccepted, ReturnMachinesInput, ReturnRequestsInput, ReturnRequestsResponse};
use crate::service;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/machines/return", post(request_return_machines))
        .route("/api/v1/machines/return-requests", post(get_return_requests))
}

async fn request_return_machines(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<ReturnMachinesInput>,
) -> Result<Json<RequestAccepted>> {
    service::request_return_machines(&state, &provider, input).await.map(Json)
}

async fn get_return_requests(
    State(state): State<AppState>,
    Provider(provider): Provider,
    HfJson(input): HfJson<ReturnRequestsInput>,
) -> Result<Json<ReturnRequestsResponse>> {
    service::get_return_requests(&state, &provider, input).await.map(Json)
}
