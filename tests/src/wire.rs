//! The wire between the AWS SDK and moto, instrumented for tests:
//! - every call is recorded with its status, so tests count what really went over the wire
//!   (S3 listings and bodies, EC2 calls);
//! - faults are injected: moto never runs out of capacity, never throttles and never rejects a
//!   launch, so failure paths get a real AWS error document for chosen operations (the SDK
//!   parses it as it would from AWS). A fault answered [`Mode::Before`] never reaches moto, so
//!   nothing is created; one answered [`Mode::AfterExecuting`] was applied and its answer lost.
//!   Faults are scheduled per operation and count ([`Fault`]) or drawn at random from a seed
//!   ([`Chaos`]);
//! - a [`Crash`] stops answering at a chosen call, before or after moto executed it, so a test
//!   aborts the caller there: a process killed at that durable step;
//! - idempotency tokens are honoured as AWS does (moto does not), when asked
//!   ([`Faults::replay_tokens`]): a repeated `ClientToken` / `ClientRequestToken` gets the first
//!   2xx answer again without reaching moto.

mod faults;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

pub use faults::{Chaos, Crash, Fault, Faults, Kind, Mode};
use faults::{Plan, Protocol, Remembered};

/// The operation a request calls, and its protocol.
fn operation_of(request: &HttpRequest) -> Option<(String, Protocol)> {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().map(|op| (op.to_owned(), Protocol::Json));
    }
    let body = std::str::from_utf8(request.body().bytes()?).ok()?;
    // Auto Scaling's API version: its errors are wrapped otherwise than EC2's.
    let protocol = if body.split('&').any(|pair| pair == "Version=2011-01-01") { Protocol::AwsQuery } else { Protocol::Query };
    body.split('&').find_map(|pair| pair.strip_prefix("Action=")).map(|op| (op.to_owned(), protocol))
}

/// The idempotency token a call carries: EC2's `ClientToken` form parameter, DynamoDB's
/// `ClientRequestToken` (TransactWriteItems).
fn token_of(request: &HttpRequest, protocol: Protocol) -> Option<String> {
    let body = std::str::from_utf8(request.body().bytes()?).ok()?;
    match protocol {
        Protocol::Query | Protocol::AwsQuery => body.split('&').find_map(|pair| pair.strip_prefix("ClientToken=")).map(str::to_owned),
        Protocol::Json => {
            let json: serde_json::Value = serde_json::from_str(body).ok()?;
            json.get("ClientRequestToken")?.as_str().map(str::to_owned)
        }
    }
}

/// The form parameters (`Name=value`, as encoded) of a query-protocol call (EC2, Auto
/// Scaling); none for others.
fn form_of(request: &HttpRequest) -> Vec<String> {
    let Some(body) = request.body().bytes().and_then(|b| std::str::from_utf8(b).ok()) else { return Vec::new() };
    if body.starts_with('{') {
        return Vec::new();
    }
    body.split('&').map(str::to_owned).collect()
}

/// One AWS call as it went over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub uri: String,
    /// The operation of query- and JSON-protocol calls (EC2 `Action=`, DynamoDB target).
    pub action: Option<String>,
    /// The status answered to the SDK (moto's for a crash after executing; 0 for one before).
    pub status: u16,
    /// Answered by the wire instead of moto (an injected fault, a replayed token, a crash).
    pub injected: bool,
    /// What the wire did: a [`Fault::label`], `replayed`, `crash-before` or `crash-after`.
    pub fault: Option<&'static str>,
    /// Its form parameters (query-protocol calls), e.g. `SubnetId=subnet-1`.
    pub form: Vec<String>,
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

    /// S3 GetObject calls of keys ending in `suffix` (`""`: every key), as (bodies
    /// transferred, 304 answers).
    pub fn get_objects(&self, suffix: &str) -> (usize, usize) {
        let gets: Vec<Call> = self
            .calls()
            .into_iter()
            .filter(|c| c.method == "GET" && !is_listing(c) && c.uri.split('?').next().unwrap_or_default().ends_with(suffix))
            .collect();
        (gets.iter().filter(|c| c.status == 200).count(), gets.iter().filter(|c| c.status == 304).count())
    }

    /// S3 ListObjectsV2 calls (`GET /{bucket}?list-type=2...`).
    pub fn list_objects(&self) -> usize {
        self.calls().iter().filter(|c| is_listing(c)).count()
    }

    /// Calls of an operation (`DescribeInstanceTypes`, `RunInstances`, `PutItem`).
    pub fn actions(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action.as_deref() == Some(action)).count()
    }

    /// Calls the wire did something to, per [`Call::fault`] label.
    pub fn faults(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for fault in self.calls().iter().filter_map(|c| c.fault) {
            *counts.entry(fault).or_default() += 1;
        }
        counts
    }

    fn push(&self, call: Call) {
        self.0.lock().unwrap().push(call);
    }
}

/// Whether `call` is an S3 ListObjectsV2.
fn is_listing(call: &Call) -> bool {
    call.method == "GET" && call.uri.split_once('?').is_some_and(|(_, query)| query.split('&').any(|p| p == "list-type=2"))
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
        let operation = operation_of(&request);
        let token = operation.as_ref().and_then(|(name, protocol)| Some((name.clone(), token_of(&request, *protocol)?)));
        let form = form_of(&request);
        let plan = match &operation {
            Some((name, _)) => self.wire.faults.plan(name, token.as_ref(), &form),
            None => Plan::Forward,
        };
        let log = self.wire.log.clone();
        let (method, uri) = (request.method().to_owned(), request.uri().to_owned());
        let action = operation.as_ref().map(|(name, _)| name.clone());
        let record = move |status: u16, fault: Option<&'static str>| {
            let injected = fault.is_some_and(|f| f != "crash-after");
            log.push(Call { method, uri, action, status, injected, fault, form });
        };
        let protocol = operation.map_or(Protocol::Query, |(_, protocol)| protocol);
        let faults = self.wire.faults.clone();
        let after = match plan {
            Plan::Forward => None,
            Plan::Answer(fault) if fault.mode == Mode::Before => {
                let response = fault.response(protocol);
                record(response.status().as_u16(), Some(fault.label()));
                return HttpConnectorFuture::ready(Ok(response));
            }
            Plan::Replay(answer) => {
                record(answer.status, Some("replayed"));
                return HttpConnectorFuture::ready(Ok(answer.response()));
            }
            Plan::Crash(Mode::Before) => {
                record(0, Some("crash-before"));
                faults.signal_crash();
                return HttpConnectorFuture::new(std::future::pending());
            }
            Plan::Crash(Mode::AfterExecuting) => Some(Err(())),
            Plan::Answer(fault) => Some(Ok(fault)),
        };
        let remember = token.filter(|_| faults.remembers());
        forwarded(self.inner.call(request), Forwarded { remember, after, protocol, faults }, record)
    }
}

/// What happens to a forwarded call once moto answered it.
struct Forwarded {
    /// The token whose 2xx answer is remembered for replay.
    remember: Option<(String, String)>,
    /// A fault answered instead of moto's answer, or (`Err`) a crash.
    after: Option<Result<Fault, ()>>,
    protocol: Protocol,
    faults: Faults,
}

fn forwarded(
    call: HttpConnectorFuture,
    then: Forwarded,
    record: impl FnOnce(u16, Option<&'static str>) + Send + 'static,
) -> HttpConnectorFuture {
    HttpConnectorFuture::new(async move {
        let mut response = call.await?;
        if let Some(key) = then.remember
            && response.status().is_success()
        {
            let answer = Remembered::read(response).await?;
            response = answer.response();
            then.faults.remember(key, answer);
        }
        match then.after {
            None => record(response.status().as_u16(), None),
            Some(Ok(fault)) => {
                let lost = fault.response(then.protocol);
                record(lost.status().as_u16(), Some(fault.label()));
                return Ok(lost);
            }
            Some(Err(())) => {
                record(response.status().as_u16(), Some("crash-after"));
                then.faults.signal_crash();
                std::future::pending::<()>().await;
            }
        }
        Ok(response)
    })
}

impl Remembered {
    /// Reads moto's whole answer, to hand it out again.
    async fn read(response: HttpResponse) -> Result<Remembered, ConnectorError> {
        let status = response.status().as_u16();
        let headers = response.headers().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let body = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| ConnectorError::io(Box::new(e)))?
            .into_bytes()
            .to_vec();
        Ok(Remembered { status, headers, body })
    }

    fn response(&self) -> HttpResponse {
        let status = StatusCode::try_from(self.status).expect("a valid status");
        let mut response = HttpResponse::new(status, SdkBody::from(self.body.clone()));
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }
}
