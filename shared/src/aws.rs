//! AWS SDK configuration and clients, built once per process.

use aws_config::meta::region::RegionProviderChain;
use std::cell::Cell;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{ConnectorBuilder, tls};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use crate::config::Runtime;

/// Loads the SDK configuration from the standard AWS environment (`AWS_REGION`,
/// `AWS_ENDPOINT_URL`, `AWS_PROFILE`, credentials chain).
///
/// Locally the region falls back to `us-east-1` without asking the instance-metadata service,
/// so a laptop or CI machine never probes 169.254.169.254 for it.
pub async fn load_sdk_config(runtime: Runtime) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    let loader = match runtime {
        Runtime::Lambda => loader,
        Runtime::Local => loader.region(
            RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
                .or_else(aws_config::profile::ProfileFileRegionProvider::new())
                .or_else(Region::from_static("us-east-1")),
        ),
    };
    loader.load().await
}

/// S3 client; path-style addressing when the endpoint is overridden (moto, LocalStack, VPC
/// endpoints), where `bucket.host` names do not resolve.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build();
    aws_sdk_s3::Client::from_conf(config)
}

tokio::task_local! {
    /// AWS calls made inside the current [`count_aws_calls`] scope.
    static AWS_CALLS: Cell<u64>;
}

/// Runs `future` and counts the AWS calls (HTTP attempts, retries included) it makes through
/// clients built from a [`counting`] configuration.
pub async fn count_aws_calls<F: Future>(future: F) -> (F::Output, u64) {
    AWS_CALLS
        .scope(Cell::new(0), async {
            let output = future.await;
            (output, AWS_CALLS.with(Cell::get))
        })
        .await
}

/// `sdk` with its HTTP client wrapped so that every client built from it counts its calls in
/// [`count_aws_calls`]: one place, so clients added later are counted too.
pub fn counting(sdk: &SdkConfig) -> SdkConfig {
    let inner = sdk.http_client().unwrap_or_else(default_https_client);
    sdk.to_builder().http_client(SharedHttpClient::new(CountingClient { inner })).build()
}

/// What the SDK uses when no client is set (`default-https-client`): hyper 1 with rustls and
/// aws-lc, proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`).
fn default_https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[derive(Debug)]
struct CountingClient {
    inner: SharedHttpClient,
}

impl HttpClient for CountingClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector { inner: self.inner.http_connector(settings, components) })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        // Outside a counting scope (CLI commands, background work) there is nothing to count.
        let _ = AWS_CALLS.try_with(|calls| calls.set(calls.get() + 1));
        self.inner.call(request)
    }
}
