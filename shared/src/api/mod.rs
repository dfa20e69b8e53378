//! HTTP API: one axum router per resource group. The same routers serve Lambda
//! (`lambda_http::run`) and the local server, so local runs exercise the production path.

mod extract;
mod logging;
mod machines;
mod metrics;
pub mod openapi;
mod requests;
pub mod routes;
mod templates;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::app::AppState;
use crate::error::Error;

pub use extract::{BodyDeadline, Caller, HfJson, Provider};

/// The resource groups, one Lambda function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Templates,
    Requests,
    Machines,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Templates, Group::Requests, Group::Machines];
}

/// The router one Lambda function serves: its group's routes plus those of every function.
pub fn function_router(group: Group, state: AppState) -> Router {
    build(|route| route.group.is_none_or(|g| g == group), state)
}

/// Every route on one router: the local server.
pub fn local_router(state: AppState) -> Router {
    build(|_| true, state)
}

fn build(serves: impl Fn(&routes::Route) -> bool, state: AppState) -> Router {
    let routes = routes::ROUTES
        .iter()
        .filter(|route| serves(route))
        .fold(Router::new(), |router, route| router.route(route.path, route.method_router()));
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(logging::log_request))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn no_route(request: Request) -> Error {
    Error::not_found("route", format!("{} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!("method {} is not allowed on {}", request.method(), request.uri().path());
    (http::StatusCode::METHOD_NOT_ALLOWED, Json(json!({ "message": message }))).into_response()
}

/// The one place errors become HTTP: status from [`Error::status`], body `{"message": ...}`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // Messages may echo caller input (ids, paths, values): bounded in the log.
        let message = self.to_string();
        let logged = crate::caller_text::bounded(&message);
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %logged, cause = ?std::error::Error::source(&self), "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %logged, "request rejected");
        }
        let body = match &self {
            Error::Refused { state, allowed, .. } => json!({ "message": message, "state": state, "allowedActions": allowed }),
            _ => json!({ "message": message }),
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: Error) -> (u16, serde_json::Value) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_map_to_status_and_a_message_body() {
        let cases = [
            (
                Error::invalid("template.machineCount", "must be at least 1, got 0"),
                400,
                "template.machineCount: must be at least 1, got 0",
            ),
            (Error::not_found("template", "Nope"), 404, "template 'Nope' not found"),
            (
                Error::Conflict("template X changed since it was read".into()),
                409,
                "template X changed since it was read",
            ),
            (Error::Unprocessable("only 3 machines available".into()), 422, "only 3 machines available"),
            (Error::Config("no templates".into()), 500, "configuration error: no templates"),
            (
                Error::upstream("creating a request EC2 fleet", "EC2 answered without a fleet id"),
                502,
                "creating a request EC2 fleet: EC2 answered without a fleet id",
            ),
            (
                Error::store("saving request req-1", std::io::Error::other("disk full")),
                500,
                "saving request req-1: disk full",
            ),
        ];
        for (error, status, message) in cases {
            assert_eq!(answer(error).await, (status, json!({ "message": message })));
        }
    }

    #[tokio::test]
    async fn a_refused_action_answers_409_with_the_state_and_the_allowed_actions() {
        let refused = Error::Refused { message: "no".into(), state: "STOPPED", allowed: vec!["start", "terminate"] };
        let expected = json!({ "message": "no", "state": "STOPPED", "allowedActions": ["start", "terminate"] });
        assert_eq!(answer(refused).await, (409, expected));
    }

    #[tokio::test]
    async fn bad_input_documents_answer_400_naming_the_field() {
        let err = crate::hostfactory::parse_input::<crate::hostfactory::RequestMachinesInput>(
            br#"{"template": {"templateId": "t"}}"#,
        )
        .unwrap_err();
        assert_eq!(answer(err).await, (400, json!({ "message": "template.machineCount: is required" })));
    }
}
