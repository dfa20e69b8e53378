//! One log line per HTTP request: method, route, status, latency and request id. Caller strings
//! are bounded (`crate::caller_text::bounded`); a caller's request id that is too long or not
//! printable is replaced by a fresh one.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::Instrument;

use crate::caller_text::{MAX_LOGGED_CHARS, bounded};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| bounded(request.uri().path()).into_owned());
    let request_id = request_id(&request);
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "http request"
        );
    });
    response
}

/// The caller's `X-Request-Id` when it is 1 to [`MAX_LOGGED_CHARS`] visible ASCII characters,
/// else API Gateway's request id, else the Lambda invocation id, else a fresh UUID.
fn request_id(request: &Request) -> String {
    let from_header = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|v| usable_id(v));
    if let Some(id) = from_header {
        return id.to_owned();
    }
    let from_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| request.lambda_context_ref().map(|context| context.request_id.clone()))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Echoed in a header and carried by every log line of the request: short and printable only.
fn usable_id(id: &str) -> bool {
    (1..=MAX_LOGGED_CHARS).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_request_ids_are_taken_from_the_caller() {
        assert!(usable_id("Jv5m8hXXIAMEVGA="));
        assert!(usable_id(&"a".repeat(MAX_LOGGED_CHARS)));
        for bad in [String::new(), "a".repeat(MAX_LOGGED_CHARS + 1), "two words".into(), "tab\there".into()] {
            assert!(!usable_id(&bad), "{bad:?}");
        }
    }
}
