//! Request extractors that turn every bad input into [`Error::Invalid`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::config::validate_provider_name;
use crate::error::Error;
use crate::hostfactory::parse_input;

/// A HostFactory JSON document in the body; errors name the field (`template.machineCount`).
pub struct HfJson<T>(pub T);

/// When the body must have arrived, set by the local server as it starts a request (API Gateway
/// hands Lambda whole bodies). A body still incomplete then is 408 and the connection is closed.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub at: tokio::time::Instant,
    pub limit: std::time::Duration,
}

impl BodyDeadline {
    pub fn after(limit: std::time::Duration) -> Self {
        BodyDeadline { at: tokio::time::Instant::now() + limit, limit }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for HfJson<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let deadline = request.extensions().get::<BodyDeadline>().copied();
        let read = Bytes::from_request(request, state);
        let body = match deadline {
            None => read.await,
            Some(BodyDeadline { at, limit }) => tokio::time::timeout_at(at, read).await.map_err(|_| {
                Error::TimedOut(format!("body: not received within {} s; the connection is closed", limit.as_secs()))
            })?,
        };
        let body = body.map_err(|err| Error::invalid("body", err.body_text()))?;
        parse_input(&body).map(HfJson)
    }
}

/// Header carrying Symphony's `HF_PROVIDER_NAME` (the HostFactory-side client sends it).
pub const PROVIDER_HEADER: &str = "x-hf-provider-name";

/// The provider instance of a call: `?provider=`, else the `X-HF-Provider-Name` header,
/// else the configured default.
pub struct Provider(pub String);

#[derive(Deserialize)]
struct ProviderQuery {
    provider: Option<String>,
}

impl FromRequestParts<AppState> for Provider {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let query =
            Query::<ProviderQuery>::try_from_uri(&parts.uri).map_err(|err| Error::invalid("query", err.body_text()))?;
        let (field, name) = match (query.0.provider, parts.headers.get(PROVIDER_HEADER)) {
            (Some(name), _) => ("provider", name),
            (None, Some(header)) => {
                let name =
                    header.to_str().map_err(|_| Error::invalid(PROVIDER_HEADER, "must be visible ASCII"))?.to_owned();
                (PROVIDER_HEADER, name)
            }
            (None, None) => return Ok(Provider(state.config.default_provider.clone())),
        };
        validate_provider_name(&name).map_err(|problem| Error::invalid(field, problem))?;
        Ok(Provider(name))
    }
}

/// Who calls: the caller's IAM principal (ARN) from API Gateway's request context; `local` on
/// the local server, which has none. Recorded with every operator action.
pub struct Caller(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        use lambda_http::request::RequestContext;
        let principal = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(context)) => context.identity.user_arn.clone().or(context.identity.caller.clone()),
            Some(RequestContext::ApiGatewayV2(context)) => {
                context.authorizer.as_ref().and_then(|a| a.iam.as_ref()).and_then(|iam| iam.user_arn.clone())
            }
            Some(_) => None,
            None => return Ok(Caller("local".to_owned())),
        };
        Ok(Caller(principal.unwrap_or_else(|| "unknown".to_owned())))
    }
}
