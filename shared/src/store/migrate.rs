//! Copying every request and machine from one store to another (`hostfactory migrate`):
//! batches of idempotent upserts (safe to re-run), then a verification that the target holds
//! exactly what the source does, by counts and a content checksum.

use std::path::PathBuf;
use std::sync::Arc;

use aws_config::SdkConfig;
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    MachineRecord, Page, RecordSource, RequestRecord, Store, Versioned, dynamo::DynamoStore, orb::OrbDatabase,
    sqlite::SqliteStore,
};
use crate::config::Config;
use crate::error::{Error, Result};

/// Records read or written per page.
pub const BATCH: usize = 500;

/// A store named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sqlite:<path>`
    Sqlite(PathBuf),
    /// `dynamodb` or `dynamodb:<prefix>`
    DynamoDb { prefix: String },
    /// `orb:<path to request_database.json>`; a source only.
    Orb(PathBuf),
}

impl Location {
    /// Parses `sqlite:<path>`, `dynamodb[:prefix]` (default: `default_prefix`) or `orb:<path>`.
    pub fn parse(value: &str, default_prefix: &str) -> Result<Self> {
        let (scheme, rest) = value.split_once(':').unwrap_or((value, ""));
        match (scheme, rest) {
            ("sqlite", path) if !path.is_empty() => Ok(Location::Sqlite(PathBuf::from(path))),
            ("orb", path) if !path.is_empty() => Ok(Location::Orb(PathBuf::from(path))),
            ("dynamodb", "") => Ok(Location::DynamoDb { prefix: default_prefix.to_owned() }),
            ("dynamodb", prefix) => Ok(Location::DynamoDb { prefix: prefix.to_owned() }),
            _ => Err(Error::invalid(
                "store",
                format!("'{value}' must be sqlite:<path>, dynamodb[:<table prefix>] or orb:<request_database.json>"),
            )),
        }
    }

    /// Opens the location for reading.
    pub fn source(&self, config: &Config, sdk: &SdkConfig) -> Result<Arc<dyn RecordSource>> {
        Ok(match self {
            Location::Orb(path) => Arc::new(OrbDatabase::load(path, &config.default_provider, config.retention)?),
            other => other.target(sdk)?.records,
        })
    }

    /// Opens the location for writing.
    pub fn target(&self, sdk: &SdkConfig) -> Result<Store> {
        match self {
            Location::Sqlite(path) => Ok(Store::from_backend(Arc::new(SqliteStore::new(path)))),
            Location::DynamoDb { prefix } => {
                Ok(Store::from_backend(Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), prefix))))
            }
            Location::Orb(_) => Err(Error::invalid("to", "an ORB database can only be migrated from")),
        }
    }
}

/// What a store holds: counts and a SHA-256 over the canonical JSON of every record, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub requests: u64,
    pub machines: u64,
    pub checksum: String,
}

/// Progress of a migration, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Reading the source: records counted so far.
    Counted(u64),
    /// Copying: the total and how many are written.
    Copied { done: u64, total: u64 },
    /// Reading the target back: records checked so far.
    Verified(u64),
}

/// Reads everything once and fingerprints it.
pub async fn fingerprint(source: &dyn RecordSource, progress: &mut dyn FnMut(u64)) -> Result<Fingerprint> {
    let mut requests = digests::<RequestRecord>(source, 0, progress).await?;
    let mut machines = digests::<MachineRecord>(source, requests.len(), progress).await?;
    requests.sort();
    machines.sort();
    let mut hasher = Sha256::new();
    for (section, records) in [("requests", &requests), ("machines", &machines)] {
        hasher.update(section.as_bytes());
        for (id, record) in records {
            hasher.update(id.as_bytes());
            hasher.update(record);
        }
    }
    Ok(Fingerprint {
        requests: requests.len() as u64,
        machines: machines.len() as u64,
        checksum: hex::encode(hasher.finalize()),
    })
}

/// A record kind the migration lists (from any source) and copies (to a store).
trait Migrated: Versioned {
    fn page(source: &dyn RecordSource, after: Option<String>) -> BoxFuture<'_, Result<Page<Self>>>;
    fn upsert<'a>(target: &'a Store, records: &'a [Self]) -> BoxFuture<'a, Result<()>>;
}

impl Migrated for RequestRecord {
    fn page(source: &dyn RecordSource, after: Option<String>) -> BoxFuture<'_, Result<Page<Self>>> {
        source.page_requests(after, BATCH)
    }

    fn upsert<'a>(target: &'a Store, records: &'a [Self]) -> BoxFuture<'a, Result<()>> {
        target.requests.upsert_batch(records)
    }
}

impl Migrated for MachineRecord {
    fn page(source: &dyn RecordSource, after: Option<String>) -> BoxFuture<'_, Result<Page<Self>>> {
        source.page_machines(after, BATCH)
    }

    fn upsert<'a>(target: &'a Store, records: &'a [Self]) -> BoxFuture<'a, Result<()>> {
        target.machines.upsert_batch(records)
    }
}

/// The id and digest of every `R` of `source`, reporting `counted` plus those read so far
/// after each page.
async fn digests<R: Migrated>(
    source: &dyn RecordSource,
    counted: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<(String, [u8; 32])>> {
    let mut digests = Vec::new();
    let mut after = None;
    loop {
        let page = R::page(source, after).await?;
        for record in &page.items {
            digests.push((record.id().to_owned(), digest(record)?));
        }
        progress((counted + digests.len()) as u64);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(digests)
}

/// Upserts every `R` of `source` into `target`, page by page, counting them into `done`.
async fn copy<R: Migrated>(
    source: &dyn RecordSource,
    target: &Store,
    done: &mut u64,
    total: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mut after = None;
    loop {
        let page = R::page(source, after).await?;
        R::upsert(target, &page.items).await?;
        *done += page.items.len() as u64;
        progress(Progress::Copied { done: *done, total });
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}

fn digest<T: Serialize>(record: &T) -> Result<[u8; 32]> {
    // Struct fields serialize in declaration order and absent options are left out, so equal
    // records give equal bytes whichever backend they were read from.
    let json = serde_json::to_vec(record).map_err(|e| Error::store("encoding a record for the checksum", e))?;
    Ok(Sha256::digest(&json).into())
}

/// Copies every request and machine from `source` to `target` with upserts (re-running is
/// safe), then checks that the target's fingerprint equals the source's. The target must not
/// hold other records, or the verification fails and says so.
pub async fn migrate(
    source: &dyn RecordSource,
    target: &Store,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fingerprint> {
    let expected = fingerprint(source, &mut |n| progress(Progress::Counted(n))).await?;
    let total = expected.requests + expected.machines;
    let mut done = 0;
    progress(Progress::Copied { done, total });

    copy::<RequestRecord>(source, target, &mut done, total, progress).await?;
    copy::<MachineRecord>(source, target, &mut done, total, progress).await?;
    tracing::info!(requests = expected.requests, machines = expected.machines, target = %target.location, "copied");

    let actual = fingerprint(target.records.as_ref(), &mut |n| progress(Progress::Verified(n))).await?;
    if actual != expected {
        return Err(Error::Conflict(format!(
            "verification failed: the source holds {} requests and {} machines (checksum {}), {} holds {} and {} (checksum {}); \
             the target must hold nothing else, and nothing may write to either store during a migration",
            expected.requests,
            expected.machines,
            expected.checksum,
            target.location,
            actual.requests,
            actual.machines,
            actual.checksum
        )));
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(Location::parse("sqlite:/tmp/a.db", "hf").unwrap(), Location::Sqlite("/tmp/a.db".into()));
        assert_eq!(Location::parse("dynamodb", "hf").unwrap(), Location::DynamoDb { prefix: "hf".into() });
        assert_eq!(Location::parse("dynamodb:grid", "hf").unwrap(), Location::DynamoDb { prefix: "grid".into() });
        assert_eq!(Location::parse("orb:db.json", "hf").unwrap(), Location::Orb("db.json".into()));
        for bad in ["sqlite:", "postgres:x", "orb:", ""] {
            assert!(Location::parse(bad, "hf").is_err(), "{bad}");
        }
    }
}
