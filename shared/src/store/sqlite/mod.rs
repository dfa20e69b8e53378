//! Embedded SQLite backend (the local default): one file, WAL mode, schema created or migrated
//! on open (`PRAGMA user_version`), one IMMEDIATE transaction per logical change.
//!
//! Records are kept as their JSON body plus the columns the queries need (ids, version, the
//! active flag), so the body is byte-for-byte what DynamoDB holds as attributes. rusqlite is
//! blocking: every call runs on `spawn_blocking` holding the one connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Describe, now};
use crate::error::{Error, Result};

mod capacity;
mod changes;
mod cooldowns;
mod repositories;
mod table;
#[cfg(test)]
use capacity::read_in_use;

/// Schema versions in order; `PRAGMA user_version` counts how many are applied.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    active     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    expires_at INTEGER,
    body       TEXT NOT NULL
);
CREATE INDEX requests_active ON requests (created_at) WHERE active = 1;
CREATE TABLE machines (
    machine_id        TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL,
    return_request_id TEXT,
    name              TEXT NOT NULL,
    version           INTEGER NOT NULL,
    expires_at        INTEGER,
    body              TEXT NOT NULL
);
CREATE INDEX machines_request ON machines (request_id);
CREATE INDEX machines_return ON machines (return_request_id) WHERE return_request_id IS NOT NULL;
CREATE INDEX machines_name ON machines (name);
CREATE TABLE capacity (
    template_key TEXT PRIMARY KEY,
    in_use       INTEGER NOT NULL CHECK (in_use >= 0)
);
"#, r#"
CREATE INDEX machines_reclaimed ON machines (json_extract(body, '$.provider'))
    WHERE json_extract(body, '$.reclaimedAt') IS NOT NULL;
"#, r#"
ALTER TABLE capacity ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE capacity ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
CREATE TABLE applied_ops (
    op_id      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX machines_template ON machines (json_extract(body, '$.templateId'), json_extract(body, '$.provider'));
"#, r#"
CREATE TABLE pool_cooldowns (
    pool   TEXT PRIMARY KEY,
    until  INTEGER NOT NULL,
    reason TEXT NOT NULL
);
ALTER TABLE capacity ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE capacity ADD COLUMN rested_until INTEGER;
"#, r#"
ALTER TABLE pool_cooldowns ADD COLUMN capacity_at INTEGER;
ALTER TABLE pool_cooldowns ADD COLUMN kept_until INTEGER NOT NULL DEFAULT 0;
UPDATE pool_cooldowns SET kept_until = until;
ALTER TABLE capacity ADD COLUMN rested_since INTEGER;
"#, r#"
CREATE TABLE changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    old_body TEXT,
    new_body TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER requests_inserted AFTER INSERT ON requests
    BEGIN INSERT INTO changes (kind, new_body) VALUES ('request', NEW.body); END;
CREATE TRIGGER requests_updated AFTER UPDATE OF body ON requests WHEN OLD.body IS NOT NEW.body
    BEGIN INSERT INTO changes (kind, old_body, new_body) VALUES ('request', OLD.body, NEW.body); END;
CREATE TRIGGER machines_inserted AFTER INSERT ON machines
    BEGIN INSERT INTO changes (kind, new_body) VALUES ('machine', NEW.body); END;
CREATE TRIGGER machines_updated AFTER UPDATE OF body ON machines WHEN OLD.body IS NOT NEW.body
    BEGIN INSERT INTO changes (kind, old_body, new_body) VALUES ('machine', OLD.body, NEW.body); END;
"#, r#"
CREATE TABLE template_intents (
    id         TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);
"#];

pub struct SqliteStore {
    path: PathBuf,
    /// Opened on first use, so building the store (AppState::new) cannot fail.
    connection: Arc<Mutex<Option<Connection>>>,
}

impl SqliteStore {
    pub fn new(path: &Path) -> Self {
        SqliteStore { path: path.to_owned(), connection: Arc::new(Mutex::new(None)) }
    }

    /// Runs `work` on the blocking pool with the connection, opening it first if needed.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let connection = self.connection.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A panic cannot leave a transaction half-applied (it rolls back on drop), so a
            // poisoned lock still guards a consistent connection.
            let mut guard = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let connection = match &mut *guard {
                Some(connection) => connection,
                slot @ None => slot.insert(open(&path)?),
            };
            work(connection)
        })
        .await
        .map_err(|err| Error::store("SQLite worker", err))?
    }
}

impl Describe for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// Opens (creating the folder and file) and brings the schema up to date; drops records whose
/// retention ran out, as DynamoDB's TTL does.
fn open(path: &Path) -> Result<Connection> {
    let context = |what: &str| format!("{what} {}", path.display());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::store(context("creating the folder of"), e))?;
    }
    let mut connection = Connection::open(path).map_err(|e| Error::store(context("opening"), e))?;
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
        .map_err(|e| Error::store(context("configuring"), e))?;
    migrate(&mut connection).map_err(|e| Error::store(context("migrating the schema of"), e))?;
    let now = now();
    let purged = connection
        .execute("DELETE FROM requests WHERE expires_at < ?1", [now])
        .and_then(|r| Ok(r + connection.execute("DELETE FROM machines WHERE expires_at < ?1", [now])?))
        .and_then(|r| Ok(r + connection.execute("DELETE FROM applied_ops WHERE expires_at < ?1", [now])?))
        .map_err(|e| Error::store(context("purging expired records from"), e))?;
    tracing::info!(path = %path.display(), purged, "SQLite store open");
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tracing::info!(version = index + 1, "SQLite schema migrated");
    }
    tx.commit()
}

fn db(context: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |err| Error::store(context, err)
}

fn encode<T: Serialize>(record: &T) -> Result<String> {
    serde_json::to_string(record).map_err(|e| Error::store("encoding a record", e))
}

fn decode<T: DeserializeOwned>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| Error::store("decoding a stored record", e))
}

/// One IMMEDIATE transaction (the write lock is taken up front, so concurrent writers from
/// other processes wait on busy_timeout instead of failing mid-way).
fn transaction<T>(connection: &mut Connection, work: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
    let tx =
        connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db("starting a transaction"))?;
    let out = work(&tx)?;
    tx.commit().map_err(db("committing a transaction"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    #[test]
    fn schema_is_created_once_and_reopening_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/hf.sqlite");
        let connection = open(&path).unwrap();
        let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mode: String = connection.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        connection.execute("INSERT INTO capacity (template_key, in_use) VALUES ('k', 3)", []).unwrap();
        drop(connection);
        let connection = open(&path).unwrap();
        assert_eq!(read_in_use(&connection, "k").unwrap(), 3);
    }

    #[test]
    fn expired_records_are_purged_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hf.sqlite");
        let connection = open(&path).unwrap();
        for (id, expires) in [("old", Some(1_i64)), ("kept", None), ("later", Some(i64::MAX))] {
            connection.execute("INSERT INTO requests VALUES (?1, 0, 0, 1, ?2, '{}')", params![id, expires]).unwrap();
        }
        drop(connection);
        let connection = open(&path).unwrap();
        let mut ids: Vec<String> = connection
            .prepare("SELECT request_id FROM requests")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, ["kept", "later"]);
    }
}
