//! Where template files live: a local folder or an S3 prefix. One listing (ListObjectsV2, or a
//! directory read) tells which files exist and their stamps, so only files whose stamp changed
//! are read; writes are conditional on the version read.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use aws_config::SdkConfig;
use sha2::{Digest, Sha256};

use super::EXTENSIONS;
use crate::config::TemplatesLocation;
use crate::error::{Error, Result};

#[derive(Clone)]
pub enum TemplateSource {
    Folder(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

/// What a listing shows of a file without reading it: S3's ETag (the same quoted ETag
/// GetObject answers), a folder file's modification time and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    ETag(String),
    Modified(SystemTime, u64),
}

/// The template files present (`.json`, `.yaml`, `.yml` names directly in the folder or under
/// the prefix), each with its stamp; `None` when the folder cannot tell a modification time
/// (the file is then always read).
pub type Listing = HashMap<String, Option<Stamp>>;

/// What a file looked like when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// S3: the object's ETag; folder: `sha256:<hex>` of the content. Writes are conditional on it
    /// and the HTTP API hands it out as the `ETag` header.
    pub etag: String,
    /// The stamp the file had when read, compared with a listing's to skip reading it again.
    stamp: Option<Stamp>,
}

impl Version {
    /// Whether a listing that shows `listed` shows this version: the file need not be read.
    pub fn is_listed_as(&self, listed: Option<&Stamp>) -> bool {
        self.stamp.is_some() && self.stamp.as_ref() == listed
    }
}

/// The outcome of a read.
pub enum Fetch {
    Missing,
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

    /// The template files present and their stamps: one directory read (and a `stat` of each
    /// template file, following links), or ListObjectsV2 of the prefix (one page of 1,000 keys
    /// unless the prefix holds more). A missing folder lists nothing.
    pub async fn list(&self) -> Result<Listing> {
        match self {
            TemplateSource::Folder(folder) => list_folder(folder).await,
            TemplateSource::S3 { client, bucket, prefix } => {
                let mut listing = Listing::new();
                // The delimiter keeps keys of sub-folders out: template names hold no '/'.
                let mut pages =
                    client.list_objects_v2().bucket(bucket).prefix(prefix).delimiter("/").into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|err| Error::aws(format!("listing s3://{bucket}/{prefix}"), err))?;
                    for object in page.contents() {
                        let name = object.key().and_then(|key| key.strip_prefix(prefix.as_str()));
                        if let Some(name) = name.filter(|name| is_template_name(name)) {
                            listing.insert(name.to_owned(), object.e_tag().map(|etag| Stamp::ETag(etag.to_owned())));
                        }
                    }
                }
                Ok(listing)
            }
        }
    }

    /// Reads file `name` whole, with its version.
    pub async fn fetch(&self, name: &str) -> Result<Fetch> {
        match self {
            TemplateSource::Folder(folder) => {
                let path = folder.join(name);
                let metadata = match tokio::fs::metadata(&path).await {
                    Ok(metadata) => metadata,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Fetch::Missing),
                    Err(err) => return Err(folder_error("read", name, &path, err)),
                };
                let stamp = modified(&metadata);
                match tokio::fs::read(&path).await {
                    Ok(body) => Ok(Fetch::Body { version: Version { etag: content_hash(&body), stamp }, body }),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Fetch::Missing),
                    Err(err) => Err(folder_error("read", name, &path, err)),
                }
            }
            TemplateSource::S3 { client, bucket, prefix } => {
                let key = format!("{prefix}{name}");
                let output = match client.get_object().bucket(bucket).key(&key).send().await {
                    Ok(output) => output,
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(Fetch::Missing),
                    Err(err) => return Err(Error::aws(format!("reading s3://{bucket}/{key}"), err)),
                };
                let etag = output.e_tag.clone().unwrap_or_default();
                let body = output.body.collect().await.map_err(|err| Error::Aws {
                    context: format!("reading s3://{bucket}/{key}"),
                    message: err.to_string(),
                    code: None,
                    throttled: false,
                    refused: false,
                    source: Box::new(err),
                })?;
                let stamp = Some(Stamp::ETag(etag.clone()));
                Ok(Fetch::Body { body: body.to_vec(), version: Version { etag, stamp } })
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

/// The folder's template files with their stamps (see [`TemplateSource::list`]).
async fn list_folder(folder: &std::path::Path) -> Result<Listing> {
    let unreadable = |err: std::io::Error| {
        tracing::error!(path = %folder.display(), error = %err, "cannot list the templates folder");
        Error::Config(format!("cannot list the templates folder: {}", err.kind()))
    };
    let mut listing = Listing::new();
    let mut entries = match tokio::fs::read_dir(folder).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(err) => return Err(unreadable(err)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !is_template_name(&name) {
            continue;
        }
        // Links count as the file they point at (mounted configuration often is links).
        match tokio::fs::metadata(entry.path()).await {
            Ok(metadata) if metadata.is_file() => {
                listing.insert(name, modified(&metadata));
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(folder_error("read", &name, &entry.path(), err)),
        }
    }
    Ok(listing)
}

/// A name with a template extension (the hierarchy's names are all such; other files are
/// not worth a `stat`).
fn is_template_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, extension)| EXTENSIONS.contains(&extension))
}

/// A folder file's stamp: its modification time and length.
fn modified(metadata: &std::fs::Metadata) -> Option<Stamp> {
    metadata.modified().ok().map(|at| Stamp::Modified(at, metadata.len()))
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
