//! Where template files are read from: a local folder or an S3 prefix.

use std::fmt;
use std::path::PathBuf;

use aws_config::SdkConfig;

use crate::config::TemplatesLocation;
use crate::error::{Error, Result};

pub enum TemplateSource {
    Folder(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

impl TemplateSource {
    pub fn new(location: &TemplatesLocation, sdk: &SdkConfig) -> Self {
        match location {
            TemplatesLocation::Folder(path) => TemplateSource::Folder(path.clone()),
            TemplatesLocation::S3 { bucket, prefix } => TemplateSource::S3 {
                client: crate::aws::s3_client(sdk),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            },
        }
    }

    /// The content of file `name`, or `None` when it does not exist.
    pub async fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            TemplateSource::Folder(folder) => {
                let path = folder.join(name);
                match tokio::fs::read(&path).await {
                    Ok(body) => Ok(Some(body)),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(err) => Err(Error::Config(format!("cannot read {}: {err}", path.display()))),
                }
            }
            TemplateSource::S3 { client, bucket, prefix } => {
                let key = format!("{prefix}{name}");
                let output = match client.get_object().bucket(bucket).key(&key).send().await {
                    Ok(output) => output,
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
                    Err(err) => return Err(Error::aws(format!("reading s3://{bucket}/{key}"), err)),
                };
                let body = output.body.collect().await.map_err(|err| Error::Aws {
                    context: format!("reading s3://{bucket}/{key}"),
                    message: err.to_string(),
                    throttled: false,
                    source: Box::new(err),
                })?;
                Ok(Some(body.to_vec()))
            }
        }
    }
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateSource::Folder(path) => write!(f, "{}", path.display()),
            TemplateSource::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}
