//! AWS SDK configuration and clients, built once per process.

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};

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

/// Counts AWS API calls per operation (`DescribeInstances`, `GetObject`, ...) made by the
/// clients it is attached to: the figures for metrics and for tests that bound AWS calls.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl CallCounter {
    /// Calls made so far to `operation`.
    pub fn count(&self, operation: &str) -> u64 {
        self.counts.lock().map(|c| c.get(operation).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Every operation with its count.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(metadata) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            && let Ok(mut counts) = self.counts.lock()
        {
            *counts.entry(metadata.name().to_owned()).or_default() += 1;
        }
        Ok(())
    }
}

/// EC2 client whose calls (every attempt, retries included) are counted by `counter`.
pub fn ec2_client(sdk: &SdkConfig, counter: &CallCounter) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::config::Builder::from(sdk).interceptor(counter.clone()).build();
    aws_sdk_ec2::Client::from_conf(config)
}
