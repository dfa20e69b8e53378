//! Fault injection for AWS calls: moto never runs out of capacity, never throttles and never
//! rejects a launch, so failure paths are tested by an HTTP client that answers chosen
//! operations with a real AWS error document (the SDK parses it as it would from AWS) and
//! forwards everything else to moto. A faulted call never reaches moto, so nothing is created.

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
}

impl Fault {
    /// A client error (HTTP 400) the SDK does not retry, e.g. `InsufficientInstanceCapacity`.
    pub fn once(operation: &str, code: &str, message: &str) -> Fault {
        Fault { operation: operation.into(), status: 400, code: code.into(), message: message.into(), times: 1 }
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
        let mut response = HttpResponse::new(StatusCode::try_from(self.status).expect("a valid status"), SdkBody::from(body));
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

/// The faults still to be injected; shared by every client built from [`Faults::sdk_config`].
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

    /// `sdk` with its HTTP client wrapped so that these faults apply.
    pub fn sdk_config(&self, sdk: &SdkConfig) -> SdkConfig {
        let inner = aws_smithy_http_client::Builder::new().build_http();
        let client = FaultyClient { inner, faults: self.clone() };
        sdk.to_builder().http_client(SharedHttpClient::new(client)).build()
    }
}

#[derive(Debug)]
struct FaultyClient {
    inner: SharedHttpClient,
    faults: Faults,
}

impl HttpClient for FaultyClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(FaultyConnector { inner, faults: self.faults.clone() })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    faults: Faults,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if let Some((operation, protocol)) = operation_of(&request)
            && let Some(fault) = self.faults.take(&operation)
        {
            return HttpConnectorFuture::ready(Ok(fault.response(protocol)));
        }
        self.inner.call(request)
    }
}
