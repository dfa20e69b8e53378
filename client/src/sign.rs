//! AWS Signature Version 4 for API Gateway's IAM authorization, with credentials from the
//! standard AWS chain (environment, profile, or the HostFactory host's instance profile).

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::ClientError;

/// The service name API Gateway checks in the credential scope.
const SERVICE: &str = "execute-api";

/// Resolves credentials once from the default chain.
pub async fn load_identity(region: &str) -> Result<Identity, ClientError> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| ClientError::Credentials("no AWS credentials provider is configured".into()))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|err| ClientError::Credentials(crate::error_chain(&err)))?;
    Ok(credentials.into())
}

/// Adds `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token`) to `request`, signing the
/// method, path, query, every header already set, and the body's SHA-256.
pub fn sign_request(
    request: &mut http::Request<Vec<u8>>,
    identity: &Identity,
    region: &str,
    time: SystemTime,
) -> Result<(), ClientError> {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|err| ClientError::Signing(err.to_string()))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<_, http::header::ToStrError>>()
        .map_err(|err| ClientError::Signing(format!("header value is not ASCII: {err}")))?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(request.method().as_str(), &uri, headers.into_iter(), SignableBody::Bytes(request.body()))
        .map_err(|err| ClientError::Signing(err.to_string()))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|err| ClientError::Signing(err.to_string()))?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
