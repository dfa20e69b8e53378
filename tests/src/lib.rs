//! Test rig shared by the integration tests: AWS clients pointed at the moto server that
//! `infra/scripts/test` starts, and helpers to drive the routers in-process.
//!
//! A test that needs moto panics with instructions when `AWS_ENDPOINT_URL` is not set: nothing
//! skips silently.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// The moto endpoint exported by `infra/scripts/test`.
pub fn moto_endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:") => url,
        Ok(url) => panic!("AWS_ENDPOINT_URL={url} is not a loopback moto server; run tests with infra/scripts/test"),
        Err(_) => panic!("AWS_ENDPOINT_URL is not set: this test needs the moto server; run infra/scripts/test"),
    }
}

/// SDK configuration for moto: static dummy credentials, fixed region, endpoint override.
/// Nothing here consults the instance-metadata service.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::from_keys("testing", "testing", None))
        .load()
        .await
}

/// One AWS call as it went over the wire to moto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub uri: String,
    /// The `Action=` of query-protocol calls (EC2), e.g. `DescribeInstanceTypes`.
    pub action: Option<String>,
    pub status: u16,
}

/// Every call made through an SDK configuration from [`recording_sdk_config`].
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

    /// Calls of an EC2 action.
    pub fn actions(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action.as_deref() == Some(action)).count()
    }
}

/// Like [`sdk_config`], with an HTTP client that records every call and its status: tests
/// count what really went over the wire (S3 bodies vs 304s, EC2 calls).
pub async fn recording_sdk_config() -> (SdkConfig, CallLog) {
    let sdk = sdk_config().await;
    let tls = aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc);
    let inner = aws_smithy_http_client::Builder::new().tls_provider(tls).build_https();
    let log = CallLog::default();
    let sdk = sdk.to_builder().http_client(Recording { inner, log: log.clone() }).build();
    (sdk, log)
}

#[derive(Debug)]
struct Recording {
    inner: SharedHttpClient,
    log: CallLog,
}

impl HttpClient for Recording {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(RecordingConnector { inner, log: self.log.clone() })
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    log: CallLog,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let method = request.method().to_owned();
        let uri = request.uri().to_owned();
        let action = request.body().bytes().and_then(|body| {
            let body = String::from_utf8_lossy(body);
            body.split('&').find_map(|pair| pair.strip_prefix("Action=").map(str::to_owned))
        });
        let call = self.inner.call(request);
        let log = self.log.clone();
        HttpConnectorFuture::new(async move {
            let response = call.await?;
            let status = response.status().as_u16();
            log.0.lock().unwrap().push(Call { method, uri, action, status });
            Ok(response)
        })
    }
}

/// A name no other test uses (moto state is shared by every test of a run).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates a bucket with a unique name and returns the client and the name.
pub async fn new_bucket(sdk: &SdkConfig) -> (aws_sdk_s3::Client, String) {
    let s3 = shared::aws::s3_client(sdk);
    let bucket = unique("hf-test");
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket in moto");
    (s3, bucket)
}

pub async fn put_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put s3://{bucket}/{key}: {e:?}"));
}

/// Sends one request through a router in-process; returns the status, headers and JSON body.
pub async fn send<B>(router: &Router, request: Request<B>) -> Response
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let response = router.clone().oneshot(request).await.expect("routers are infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await.expect("read body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Response { status, headers, body }
}

/// `method uri` with a JSON body and optional headers.
pub async fn send_json(router: &Router, method: &str, uri: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(router, request.body(Body::from(body.to_string())).unwrap()).await
}

/// `GET uri` with optional headers.
pub async fn get(router: &Router, uri: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

/// Feeds an API Gateway event (as `sam local invoke -e` would) through a router, the way
/// `lambda_http::run` does.
pub async fn invoke_event(router: &Router, event_json: &str) -> Response {
    let request = lambda_http::request::from_str(event_json).expect("a valid API Gateway event");
    send(router, request).await
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Response {
    /// The `message` of an error body.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_else(|| panic!("no message in {}", self.body))
    }
}
