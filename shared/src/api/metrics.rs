//! One EMF metrics line per HostFactory call: count, errors, latency, AWS calls made and the
//! machine figures the handler attached to its response ([`MachineFigures`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use super::logging::REQUEST_ID_HEADER;
use super::routes;
use crate::metrics::{Call, MachineFigures};

pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().and_then(|path| routes::find(request.method(), path.as_str()));
    // Unknown routes (404/405 answers) are no HostFactory call.
    let Some(route) = route.filter(|_| state.metrics.enabled()) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let (response, aws_calls) = crate::aws::count_aws_calls(next.run(request)).await;
    let request_id = response.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    state.metrics.emit_call(&Call {
        operation: route.operation,
        status: response.status().as_u16(),
        latency: started.elapsed(),
        aws_calls,
        machines: response.extensions().get::<MachineFigures>().copied().unwrap_or_default(),
        request_id,
    });
    response
}
