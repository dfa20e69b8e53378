//! Where template files live: a local folder or an S3 prefix. Reads are conditional on the
//! version already held, writes are conditional on the version read.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use aws_config::SdkConfig;
use sha2::{Digest, Sha256};

use crate::config::TemplatesLocation;
use crate::error::{Error, Result};

#[derive(Clone)]
pub enum TemplateSource {
    Folder(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

/// What a file looked like when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// S3: the object's ETag; folder: `sha256:<hex>` of the content. Writes are conditional on it
    /// and the HTTP API hands it out as the `ETag` header.
    pub etag: String,
    /// Folder only: modification time and length, to skip reading a file that did not change.
    stamp: Option<(SystemTime, u64)>,
}

/// The outcome of a (conditional) read.
pub enum Fetch {
    Missing,
    /// Same version as the one given: nothing was transferred.
    NotModified,
    Body { body: Vec<u8>, version: Version },
}

/// Folder writes are serialized in the process so that the content-hash check and the rename
/// are atomic together. Another process writing the same folder is not covered by this lock.
static FOLDER_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

    /// Reads file `name`. With `known`, an unchanged file answers [`Fetch::NotModified`]
    /// without transferring it (S3 `If-None-Match`, folder mtime and length).
    pub async fn fetch(&self, name: &str, known: Option<&Version>) -> Result<Fetch> {
        match self {
            TemplateSource::Folder(folder) => {
                let path = folder.join(name);
                let metadata = match tokio::fs::metadata(&path).await {
                    Ok(metadata) => metadata,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Fetch::Missing),
                    Err(err) => return Err(folder_error("read", name, &path, err)),
                };
                let stamp = metadata.modified().ok().map(|modified| (modified, metadata.len()));
                if stamp.is_some() && known.is_some_and(|k| k.stamp == stamp) {
                    return Ok(Fetch::NotModified);
                }
                match tokio::fs::read(&path).await {
                    Ok(body) => Ok(Fetch::Body { version: Version { etag: content_hash(&body), stamp }, body }),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Fetch::Missing),
                    Err(err) => Err(folder_error("read", name, &path, err)),
                }
            }
            TemplateSource::S3 { client, bucket, prefix } => {
                let key = format!("{prefix}{name}");
                let request = client.get_object().bucket(bucket).key(&key);
                let request = match known {
                    Some(version) => request.if_none_match(&version.etag),
                    None => request,
                };
                let output = match request.send().await {
                    Ok(output) => output,
                    // The SDK surfaces 304 as an error without a modelled type: read the status.
                    Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                        return Ok(Fetch::NotModified);
                    }
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(Fetch::Missing),
                    Err(err) => return Err(Error::aws(format!("reading s3://{bucket}/{key}"), err)),
                };
                let etag = output.e_tag.clone().unwrap_or_default();
                let body = output.body.collect().await.map_err(|err| Error::Aws {
                    context: format!("reading s3://{bucket}/{key}"),
                    message: err.to_string(),
                    throttled: false,
                    refused: false,
                    source: Box::new(err),
                })?;
                Ok(Fetch::Body { body: body.to_vec(), version: Version { etag, stamp: None } })
            }
        }
    }

    /// Writes file `name` only if it is still at version `expected` (an ETag), or, with `None`,
    /// only if it does not exist yet. A lost race is [`Error::Conflict`]. Returns the new ETag.
    pub async fn write(&self, name: &str, body: Vec<u8>, expected: Option<&str>) -> Result<String> {
        let conflict = || {
            Error::Conflict(match expected {
                Some(etag) => format!("{name} changed since it was read (version {etag}); read it again and retry"),
                None => format!("{name} was created by someone else meanwhile; read it again and retry"),
            })
        };
        match self {
            TemplateSource::Folder(folder) => {
                let path = folder.join(name);
                let _guard = FOLDER_WRITES.lock().await;
                let current = match tokio::fs::read(&path).await {
                    Ok(current) => Some(content_hash(&current)),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                    Err(err) => return Err(folder_error("read", name, &path, err)),
                };
                if current.as_deref() != expected {
                    return Err(conflict());
                }
                let etag = content_hash(&body);
                // Write a sibling then rename: readers see the old or the new file, never half.
                let temp = folder.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
                let written = async {
                    tokio::fs::write(&temp, &body).await?;
                    tokio::fs::rename(&temp, &path).await
                };
                if let Err(err) = written.await {
                    let _ = tokio::fs::remove_file(&temp).await;
                    return Err(folder_error("write", name, &path, err));
                }
                Ok(etag)
            }
            TemplateSource::S3 { client, bucket, prefix } => {
                let key = format!("{prefix}{name}");
                let request = client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(body.into());
                let request = match expected {
                    Some(etag) => request.if_match(etag),
                    None => request.if_none_match("*"),
                };
                match request.send().await {
                    Ok(output) => Ok(output.e_tag.unwrap_or_default()),
                    // 412: the precondition failed; 409: a concurrent conditional write won;
                    // NoSuchKey: If-Match on an object deleted meanwhile.
                    Err(err)
                        if err.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412 | 404)) =>
                    {
                        Err(conflict())
                    }
                    Err(err) => Err(Error::aws(format!("writing s3://{bucket}/{key}"), err)),
                }
            }
        }
    }

    /// Removes file `name` only if it is still at version `expected` (an ETag): S3 `If-Match`
    /// on DeleteObject, or the content hash checked under the folder lock. A lost race is
    /// [`Error::Conflict`].
    pub async fn remove(&self, name: &str, expected: &str) -> Result<()> {
        let conflict = || {
            Error::Conflict(format!("{name} changed since it was read (version {expected}); read it again and retry"))
        };
        match self {
            TemplateSource::Folder(folder) => {
                let path = folder.join(name);
                let _guard = FOLDER_WRITES.lock().await;
                match tokio::fs::read(&path).await {
                    Ok(current) if content_hash(&current) == expected => {}
                    Ok(_) => return Err(conflict()),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(conflict()),
                    Err(err) => return Err(folder_error("read", name, &path, err)),
                }
                tokio::fs::remove_file(&path).await.map_err(|err| folder_error("remove", name, &path, err))
            }
            TemplateSource::S3 { client, bucket, prefix } => {
                let key = format!("{prefix}{name}");
                match client.delete_object().bucket(bucket).key(&key).if_match(expected).send().await {
                    Ok(_) => Ok(()),
                    // 412: changed meanwhile; 404: removed meanwhile.
                    Err(err) if err.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412 | 404)) => {
                        Err(conflict())
                    }
                    Err(err) => Err(Error::aws(format!("removing s3://{bucket}/{key}"), err)),
                }
            }
        }
    }
}

/// A folder file that cannot be read or written: the answer names the file, the log its path
/// (an HTTP answer never shows the server's folder).
fn folder_error(action: &str, name: &str, path: &std::path::Path, err: std::io::Error) -> Error {
    tracing::error!(path = %path.display(), error = %err, "cannot {action} a template file");
    Error::Config(format!("cannot {action} template file {name}: {}", err.kind()))
}

/// The folder's version token: a hash of the content (mtime alone is too coarse for races).
fn content_hash(body: &[u8]) -> String {
    format!("\"sha256:{}\"", hex::encode(Sha256::digest(body)))
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateSource::Folder(path) => write!(f, "{}", path.display()),
            TemplateSource::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}
