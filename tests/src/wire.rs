//! The wire between the AWS SDK and moto, instrumented for tests:
//! - every call is recorded with its status, so tests count what really went over the wire
//!   (S3 bodies vs 304s, EC2 calls);
//! - faults are injected: moto never runs out of capacity, never throttles and never rejects a
//!   launch, so failure paths get a real AWS error document for chosen operations (the SDK
//!   parses it as it would from AWS). A faulted call never reaches moto, so nothing is created;
//!   except a lost answer ([`Fault::after_executing`]): the call is forwarded to moto and
//!   executed, then its answer is replaced by a server error, so the SDK retries a call that
//!   was applied.

use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// One injected failure: the next `times` calls of `operation` fail with `code`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub operation: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub times: usize,
    /// Forward the call to moto first and answer the error instead of moto's answer.
    pub after_executing: bool,
}

impl Fault {
    /// A client error (HTTP 400) the SDK does not retry, e.g. `InsufficientInstanceCapacity`.
    pub fn once(operation: &str, code: &str, message: &str) -> Fault {
        Fault {
            operation: operation.into(),
            status: 400,
            code: code.into(),
            message: message.into(),
            times: 1,
            after_executing: false,
        }
    }

    /// A lost answer: the call is executed by moto, then answered HTTP 500
    /// `InternalServerError` instead, which the SDK retries (so the call arrives twice).
    pub fn after_executing(operation: &str) -> Fault {
        Fault {
            status: 500,
            after_executing: true,
            ..Fault::once(operation, "InternalServerError", "the answer was lost after the call was executed")
        }
    }

    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }

    fn response(&self, protocol: Protocol) -> HttpResponse {
        let body = match protocol {
            Protocol::Query => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>fault-injected</RequestID></Response>",
                self.code, self.message
            ),
            Protocol::Json => serde_json::json!({"__type": self.code, "message": self.message}).to_string(),
        };
        let mut response =
            HttpResponse::new(StatusCode::try_from(self.status).expect("a valid status"), SdkBody::from(body));
        let content_type = match protocol {
            Protocol::Query => "text/xml",
            Protocol::Json => "application/x-amz-json-1.0",
        };
        response.headers_mut().insert("content-type", content_type);
        response
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    /// EC2, Auto Scaling: form body `Action=RunInstances&...`, XML errors.
    Query,
    /// DynamoDB: `X-Amz-Target: DynamoDB_20120810.PutItem`, JSON errors.
    Json,
}

/// The operation a request calls, and its protocol.
fn operation_of(request: &HttpRequest) -> Option<(String, Protocol)> {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().map(|op| (op.to_owned(), Protocol::Json));
    }
    let body = std::str::from_utf8(request.body().bytes()?).ok()?;
    body.split('&').find_map(|pair| pair.strip_prefix("Action=")).map(|op| (op.to_owned(), Protocol::Query))
}

/// The faults still to be injected by a [`Wire`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pending: Arc<Mutex<Vec<Fault>>>,
}

impl Faults {
    pub fn inject(&self, fault: Fault) {
        self.pending.lock().unwrap().push(fault);
    }

    /// Faults not triggered yet (a test can assert its fault was hit).
    pub fn remaining(&self) -> usize {
        self.pending.lock().unwrap().iter().map(|f| f.times).sum()
    }

    fn take(&self, operation: &str) -> Option<Fault> {
        let mut pending = self.pending.lock().unwrap();
        let index = pending.iter().position(|f| f.operation == operation && f.times > 0)?;
        pending[index].times -= 1;
        let fault = pending[index].clone();
        if pending[index].times == 0 {
            pending.remove(index);
        }
        Some(fault)
    }
}

/// One AWS call as it went over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub uri: String,
    /// The operation of query- and JSON-protocol calls (EC2 `Action=`, DynamoDB target).
    pub action: Option<String>,
    pub status: u16,
    /// Answered by an injected fault instead of moto.
    pub injected: bool,
}

/// Every call made through a [`Wire`].
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// S3 GetObject calls of keys ending in `suffix`, as (bodies transferred, 304 answers).
    pub fn get_objects(&self, suffix: &str) -> (usize, usize) {
        let gets: Vec<Call> = self
            .calls()
            .into_iter()
            .filter(|c| c.method == "GET" && c.uri.split('?').next().unwrap_or_default().ends_with(suffix))
            .collect();
        (gets.iter().filter(|c| c.status == 200).count(), gets.iter().filter(|c| c.status == 304).count())
    }

    /// Calls of an operation (`DescribeInstanceTypes`, `RunInstances`, `PutItem`).
    pub fn actions(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action.as_deref() == Some(action)).count()
    }
}

/// Records every call and injects faults; attach it to an SDK configuration.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    pub log: CallLog,
    pub faults: Faults,
}

impl Wire {
    /// `sdk` with its HTTP client wrapped by this wire.
    pub fn sdk_config(&self, sdk: &SdkConfig) -> SdkConfig {
        let inner = aws_smithy_http_client::Builder::new().build_http();
        sdk.to_builder().http_client(SharedHttpClient::new(WireClient { inner, wire: self.clone() })).build()
    }
}

#[derive(Debug)]
struct WireClient {
    inner: SharedHttpClient,
    wire: Wire,
}

impl HttpClient for WireClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(WireConnector { inner, wire: self.wire.clone() })
    }
}

#[derive(Debug)]
struct WireConnector {
    inner: SharedHttpConnector,
    wire: Wire,
}

impl HttpConnector for WireConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let method = request.method().to_owned();
        let uri = request.uri().to_owned();
        let operation = operation_of(&request);
        let action = operation.as_ref().map(|(name, _)| name.clone());
        let log = self.wire.log.clone();
        let record = move |status: u16, injected: bool| {
            log.0.lock().unwrap().push(Call { method, uri, action, status, injected });
        };
        if let Some((name, protocol)) = &operation
            && let Some(fault) = self.wire.faults.take(name)
        {
            let response = fault.response(*protocol);
            if fault.after_executing {
                let call = self.inner.call(request);
                return HttpConnectorFuture::new(async move {
                    call.await?;
                    record(response.status().as_u16(), true);
                    Ok(response)
                });
            }
            record(response.status().as_u16(), true);
            return HttpConnectorFuture::ready(Ok(response));
        }
        let call = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = call.await?;
            record(response.status().as_u16(), false);
            Ok(response)
        })
    }
}
