//! The library's one error type. [`crate::api`] maps it to HTTP in one place
//! (`Error::status`), always with a `{"message": ...}` body that HostFactory reads.

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed cause of an AWS or storage failure, kept for logs and the message.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input: names the field and what is wrong with it (400).
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },

    /// An id the caller named does not exist (404).
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },

    /// A concurrent change won or the resource already exists (409).
    #[error("{0}")]
    Conflict(String),

    /// Optimistic locking: the record changed since it was read at version `expected` (409).
    #[error("{what} '{id}' was changed concurrently (expected version {expected})")]
    Stale { what: &'static str, id: String, expected: u64 },

    /// An operator action the machine's state does not allow now (409): the body carries the
    /// state and the actions allowed in it.
    #[error("{message}")]
    Refused { message: String, state: &'static str, allowed: Vec<&'static str> },

    /// The client did not send its request in time (408); the local server closes the connection.
    #[error("{0}")]
    TimedOut(String),
    /// A capacity release larger than what the counter holds: refused (it would take units other
    /// requests hold), logged, and left to the reconciler's recount (500: never user input).
    #[error("releasing {released} unit(s) of {key} refused: only {held} in use")]
    CapacityUnderflow { key: String, held: u64, released: u32 },

    /// The request is understood but cannot be granted now, e.g. over `maxNumber` (422).
    #[error("{0}")]
    Unprocessable(String),

    /// Configuration (environment, template files) is unusable; an operator must fix it (500).
    #[error("configuration error: {0}")]
    Config(String),

    /// An AWS call failed; `context` says what we were doing (502, or 503 when throttled).
    /// `refused`: AWS answered the last attempt with a client error other than throttling, so
    /// with the call's idempotency token no attempt was applied (a retry of an applied call
    /// answers its first outcome); otherwise (a 5xx, a timeout, throttling after an attempt
    /// whose answer was lost) it may have been applied. `code`: the AWS error code, when AWS
    /// answered one.
    #[error("{context}: {message}")]
    Aws { context: String, message: String, code: Option<String>, throttled: bool, refused: bool, source: Cause },

    /// AWS answered, but without what its answer must carry (no fleet id, a fleet short of its
    /// target): `context` says what we were doing (502, as a failed AWS call).
    #[error("{context}: {message}")]
    Upstream { context: String, message: String },

    /// The embedded store failed (500).
    #[error("{context}: {source}")]
    Store { context: String, source: Cause },
}

impl Error {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), problem: problem.into() }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound { what, id: id.into() }
    }

    /// Wraps an AWS SDK error with what we were doing, keeping the service's code and message.
    pub fn aws<E>(context: impl Into<String>, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let (message, throttled) = describe_sdk_error(&err);
        let client_error = err.raw_response().is_some_and(|r| r.status().is_client_error());
        let refused = client_error && !throttled;
        let code = err.as_service_error().and_then(ProvideErrorMetadata::code).map(str::to_owned);
        Error::Aws { context: context.into(), message, code, throttled, refused, source: Box::new(err) }
    }

    /// The AWS error code of a failed AWS call (`InsufficientInstanceCapacity`, ...).
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether the failed call may have been applied all the same (see [`Error::Aws`]): a
    /// launch that fails so must not give its capacity back before EC2 is looked at.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, Error::Aws { refused: false, .. })
    }

    pub fn upstream(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Upstream { context: context.into(), message: message.into() }
    }

    pub fn store(context: impl Into<String>, source: impl Into<Cause>) -> Self {
        Error::Store { context: context.into(), source: source.into() }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Stale { .. } | Error::Refused { .. } => StatusCode::CONFLICT,
            Error::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Config(_) | Error::Store { .. } | Error::CapacityUnderflow { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Aws { throttled: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Aws { .. } | Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Error codes AWS uses for throttling across S3, DynamoDB and EC2.
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "TooManyRequestsException",
];

fn describe_sdk_error<E>(err: &SdkError<E, HttpResponse>) -> (String, bool)
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown");
            let message = inner.message().map(str::to_owned).unwrap_or_else(|| inner.to_string());
            (format!("{code}: {message}"), THROTTLE_CODES.contains(&code))
        }
        SdkError::TimeoutError(_) => ("timed out".to_owned(), true),
        other => (DisplayErrorContext(other).to_string(), false),
    }
}
