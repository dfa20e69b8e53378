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
