//! Test rig shared by the integration tests: AWS clients pointed at the moto server that
//! `infra/scripts/test` starts, and helpers to drive the routers in-process.
//!
//! A test that needs moto panics with instructions when `AWS_ENDPOINT_URL` is not set: nothing
//! skips silently.

pub mod audit;
pub mod bus;
pub mod cycle;
pub mod hostfactory;
pub mod rig;
pub mod wire;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
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

/// Like [`sdk_config`], recording every call and its status (see [`wire`]).
pub async fn recording_sdk_config() -> (SdkConfig, wire::CallLog) {
    let wire = wire::Wire::default();
    (wire.sdk_config(&sdk_config().await), wire.log)
}

/// A subnet and security group in a fresh moto VPC (RunInstances checks they exist).
pub async fn new_network(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("create vpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
    let subnet = ec2.create_subnet().vpc_id(&vpc_id).cidr_block("10.0.0.0/20").send().await.expect("create subnet");
    let subnet_id = subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_owned();
    let sg = ec2
        .create_security_group()
        .group_name(unique("hf-sg"))
        .description("hostfactory test")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("create security group");
    (subnet_id, sg.group_id().expect("group id").to_owned())
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

/// A local configuration reading its templates from `templates` (the templates tests' services).
pub fn templates_config(templates: shared::config::TemplatesLocation) -> shared::config::Config {
    let mut config = shared::config::Config::from_lookup(shared::config::Runtime::Local, |_| None).unwrap();
    config.templates = templates;
    config
}

/// The `templateId`s of a getAvailableTemplates answer (or a template file), in order.
pub fn template_ids(body: &Value) -> Vec<&str> {
    body["templates"].as_array().unwrap().iter().map(|t| t["templateId"].as_str().unwrap()).collect()
}

/// A DynamoDB store on moto with its own uniquely prefixed tables, created as in production.
pub async fn new_dynamo_store(sdk: &SdkConfig) -> shared::store::Store {
    let prefix = unique("hft");
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let created = shared::store::dynamo::create_tables(&client, &prefix).await.expect("create tables in moto");
    assert_eq!(created.len(), 3, "{created:?}");
    let location = shared::store::migrate::Location::DynamoDb { prefix };
    location.target(sdk).expect("a DynamoDB store")
}

/// A SQLite store in a fresh temporary folder (kept alive by the returned guard).
pub fn new_sqlite_store() -> (shared::store::Store, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("data/hostfactory.sqlite");
    let store = shared::store::Store::sqlite(&path);
    (store, folder)
}

/// A writer for [`shared::metrics::Metrics::to_writer`] whose EMF lines a test reads back.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Takes the lines written so far, each parsed as one JSON document.
    pub fn take(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        let text = String::from_utf8(bytes).expect("UTF-8 metrics");
        text.lines().map(|line| serde_json::from_str(line).expect("every metrics line is one JSON document")).collect()
    }
}

/// Runs each case (`async fn case(store: Store)` in the calling file) against both backends:
/// DynamoDB on moto with fresh tables, and SQLite in a temporary file.
#[macro_export]
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let sdk = $crate::sdk_config().await;
                    super::$case($crate::new_dynamo_store(&sdk).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _folder) = $crate::new_sqlite_store();
                    super::$case(store).await;
                }
            )*
        }
    };
}
