//! Embedded SQLite backend (the local default): one file, WAL mode, schema created or migrated
//! on open (`PRAGMA user_version`), one IMMEDIATE transaction per logical change.
//!
//! Records are kept as their JSON body plus the columns the queries need (ids, version, the
//! active flag), so the body is byte-for-byte what DynamoDB holds as attributes. rusqlite is
//! blocking: every call runs on `spawn_blocking` holding the one connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Describe, MAX_TRANSACTION_MACHINES, MachineRecord, MachineRepository, Page, RecordSource, RequestRecord,
    RequestRepository, exists, now, stale, too_many_machines,
};
use crate::error::{Error, Result};

mod capacity;
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
"#];

/// Ids per `IN (...)` query, well under SQLite's bound-parameter limit.
const IN_CHUNK: usize = 500;

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

fn db(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| Error::store(context, err)
}

fn encode<T: Serialize>(record: &T) -> Result<String> {
    serde_json::to_string(record).map_err(|e| Error::store("encoding a record", e))
}

fn decode<T: DeserializeOwned>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| Error::store("decoding a stored record", e))
}

/// Rows of `SELECT body ...` decoded.
fn bodies<T: DeserializeOwned>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<Vec<T>> {
    let mut statement = connection.prepare_cached(sql).map_err(db(context))?;
    let rows = statement.query_map(params, |row| row.get::<_, String>(0)).map_err(db(context))?;
    rows.map(|body| decode(&body.map_err(db(context))?)).collect()
}

/// `SELECT body FROM table WHERE column IN (ids)`, chunked.
fn bodies_in<T: DeserializeOwned>(
    connection: &Connection,
    table: &str,
    column: &str,
    ids: &[String],
    context: &'static str,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT body FROM {table} WHERE {column} IN ({marks})");
        out.extend(bodies(connection, &sql, params_from_iter(chunk), context)?);
    }
    Ok(out)
}

fn page<T: DeserializeOwned>(
    connection: &Connection,
    table: &str,
    key: &str,
    after: Option<String>,
    limit: usize,
) -> Result<Page<T>> {
    let sql = format!("SELECT body, {key} FROM {table} WHERE {key} > ?1 ORDER BY {key} LIMIT ?2");
    let mut statement = connection.prepare_cached(&sql).map_err(db("listing records"))?;
    let rows = statement
        .query_map(params![after.unwrap_or_default(), limit as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(db("listing records"))?;
    let mut items = Vec::new();
    let mut last = None;
    for row in rows {
        let (body, id) = row.map_err(db("listing records"))?;
        items.push(decode(&body)?);
        last = Some(id);
    }
    let next = if items.len() == limit { last } else { None };
    Ok(Page { items, next })
}

/// How a record is written.
#[derive(Clone, Copy)]
enum Write {
    /// Fails when the id exists.
    Insert,
    /// Replaces whatever is there (migration, recording instances).
    Upsert,
    /// Replaces the record only at this version, writing version + 1.
    Update(u64),
}

fn write_request(tx: &rusqlite::Transaction, request: &RequestRecord, mode: Write) -> Result<RequestRecord> {
    let mut request = request.clone();
    if let Write::Update(expected) = mode {
        request.version = expected + 1;
    }
    let body = encode(&request)?;
    let active = request.is_active();
    let id = &request.request_id;
    let changed = match mode {
        Write::Insert => tx.execute(
            "INSERT INTO requests (request_id, active, created_at, version, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (request_id) DO NOTHING",
            params![id, active, request.created_at, request.version as i64, request.expires_at, body],
        ),
        Write::Upsert => tx.execute(
            "INSERT OR REPLACE INTO requests (request_id, active, created_at, version, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, active, request.created_at, request.version as i64, request.expires_at, body],
        ),
        Write::Update(expected) => tx.execute(
            "UPDATE requests SET active = ?2, created_at = ?3, version = ?4, expires_at = ?5, body = ?6
             WHERE request_id = ?1 AND version = ?7",
            params![id, active, request.created_at, request.version as i64, request.expires_at, body, expected as i64],
        ),
    }
    .map_err(db("writing a request"))?;
    if changed == 0 {
        return Err(match mode {
            Write::Update(expected) if row_exists(tx, "requests", "request_id", id)? => stale("request", id, expected),
            Write::Update(_) => Error::not_found("request", id.as_str()),
            _ => exists("request", id),
        });
    }
    Ok(request)
}

fn write_machine(tx: &rusqlite::Transaction, machine: &MachineRecord, mode: Write) -> Result<MachineRecord> {
    let mut machine = machine.clone();
    if let Write::Update(expected) = mode {
        machine.version = expected + 1;
    }
    let body = encode(&machine)?;
    let id = &machine.machine_id;
    let values = params![
        id,
        machine.request_id,
        machine.return_request_id,
        machine.name,
        machine.version as i64,
        machine.expires_at,
        body
    ];
    let changed = match mode {
        Write::Insert => tx.execute(
            "INSERT INTO machines (machine_id, request_id, return_request_id, name, version, expires_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (machine_id) DO NOTHING",
            values,
        ),
        Write::Upsert => tx.execute(
            "INSERT OR REPLACE INTO machines (machine_id, request_id, return_request_id, name, version, expires_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            values,
        ),
        Write::Update(expected) => tx.execute(
            "UPDATE machines SET request_id = ?2, return_request_id = ?3, name = ?4, version = ?5, expires_at = ?6, body = ?7
             WHERE machine_id = ?1 AND version = ?8",
            params![
                id,
                machine.request_id,
                machine.return_request_id,
                machine.name,
                machine.version as i64,
                machine.expires_at,
                body,
                expected as i64
            ],
        ),
    }
    .map_err(db("writing a machine"))?;
    if changed == 0 {
        return Err(match mode {
            Write::Update(expected) if row_exists(tx, "machines", "machine_id", id)? => stale("machine", id, expected),
            Write::Update(_) => Error::not_found("machine", id.as_str()),
            _ => exists("machine", id),
        });
    }
    Ok(machine)
}

fn row_exists(connection: &Connection, table: &str, key: &str, id: &str) -> Result<bool> {
    connection
        .query_row(&format!("SELECT 1 FROM {table} WHERE {key} = ?1"), [id], |_| Ok(()))
        .optional()
        .map(|row| row.is_some())
        .map_err(db("reading a record"))
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

#[async_trait]
impl RequestRepository for SqliteStore {
    async fn get(&self, request_id: &str) -> Result<Option<RequestRecord>> {
        let id = request_id.to_owned();
        self.run(move |c| {
            let mut found = bodies(c, "SELECT body FROM requests WHERE request_id = ?1", [id], "reading a request")?;
            Ok(found.pop())
        })
        .await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<RequestRecord>> {
        let ids = ids.to_vec();
        self.run(move |c| bodies_in(c, "requests", "request_id", &ids, "reading requests")).await
    }

    async fn put_if_absent(&self, request: &RequestRecord) -> Result<()> {
        let request = request.clone();
        self.run(move |c| transaction(c, |tx| write_request(tx, &request, Write::Insert).map(drop))).await
    }

    async fn update(&self, request: &RequestRecord) -> Result<RequestRecord> {
        let request = request.clone();
        self.run(move |c| transaction(c, |tx| write_request(tx, &request, Write::Update(request.version)))).await
    }

    async fn list_active(&self) -> Result<Vec<RequestRecord>> {
        self.run(|c| {
            bodies(
                c,
                "SELECT body FROM requests WHERE active = 1 ORDER BY created_at, request_id",
                [],
                "listing active requests",
            )
        })
        .await
    }

    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>> {
        if machines.len() > MAX_TRANSACTION_MACHINES {
            return Err(too_many_machines(machines.len()));
        }
        let request = request.clone();
        let machines = machines.to_vec();
        self.run(move |c| {
            transaction(c, |tx| {
                write_request(tx, &request, Write::Insert)?;
                machines.iter().map(|m| write_machine(tx, m, Write::Update(m.version))).collect()
            })
        })
        .await
    }

    async fn delete(&self, request_id: &str) -> Result<()> {
        let id = request_id.to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM requests WHERE request_id = ?1", [id]).map(drop).map_err(db("deleting a request"))
        })
        .await
    }

    async fn upsert_batch(&self, requests: &[RequestRecord]) -> Result<()> {
        let requests = requests.to_vec();
        self.run(move |c| {
            transaction(c, |tx| requests.iter().try_for_each(|r| write_request(tx, r, Write::Upsert).map(drop)))
        })
        .await
    }
}

#[async_trait]
impl MachineRepository for SqliteStore {
    async fn get(&self, machine_id: &str) -> Result<Option<MachineRecord>> {
        let id = machine_id.to_owned();
        self.run(move |c| {
            let mut found = bodies(c, "SELECT body FROM machines WHERE machine_id = ?1", [id], "reading a machine")?;
            Ok(found.pop())
        })
        .await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<MachineRecord>> {
        let ids = ids.to_vec();
        self.run(move |c| bodies_in(c, "machines", "machine_id", &ids, "reading machines")).await
    }

    async fn put_if_absent(&self, machine: &MachineRecord) -> Result<()> {
        let machine = machine.clone();
        self.run(move |c| transaction(c, |tx| write_machine(tx, &machine, Write::Insert).map(drop))).await
    }

    async fn update(&self, machine: &MachineRecord) -> Result<MachineRecord> {
        let machine = machine.clone();
        self.run(move |c| transaction(c, |tx| write_machine(tx, &machine, Write::Update(machine.version)))).await
    }

    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>> {
        let id = request_id.to_owned();
        self.run(move |c| {
            bodies(c, "SELECT body FROM machines WHERE request_id = ?1", [id], "listing the machines of a request")
        })
        .await
    }

    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>> {
        let id = return_request_id.to_owned();
        self.run(move |c| {
            bodies(
                c,
                "SELECT body FROM machines WHERE return_request_id = ?1",
                [id],
                "listing the machines of a return request",
            )
        })
        .await
    }

    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>> {
        // An empty name means "not known yet", never a match (as in DynamoDB, where it is absent).
        let names: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
        self.run(move |c| bodies_in(c, "machines", "name", &names, "finding machines by name")).await
    }

    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>> {
        let provider = provider.to_owned();
        self.run(move |c| {
            bodies(
                c,
                "SELECT body FROM machines WHERE json_extract(body, '$.reclaimedAt') IS NOT NULL
                 AND json_extract(body, '$.provider') = ?1",
                [provider],
                "listing reclaimed machines",
            )
        })
        .await
    }

    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>> {
        let keys = [template_id.to_owned(), provider.to_owned()];
        self.run(move |c| {
            bodies(
                c,
                "SELECT body FROM machines WHERE json_extract(body, '$.templateId') = ?1
                 AND json_extract(body, '$.provider') = ?2",
                keys,
                "listing the machines of a template",
            )
        })
        .await
    }

    async fn upsert_batch(&self, machines: &[MachineRecord]) -> Result<()> {
        let machines = machines.to_vec();
        self.run(move |c| {
            transaction(c, |tx| machines.iter().try_for_each(|m| write_machine(tx, m, Write::Upsert).map(drop)))
        })
        .await
    }

    async fn delete(&self, machine_id: &str) -> Result<()> {
        let id = machine_id.to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM machines WHERE machine_id = ?1", [id]).map(drop).map_err(db("deleting a machine"))
        })
        .await
    }
}

#[async_trait]
impl RecordSource for SqliteStore {
    async fn page_requests(&self, after: Option<String>, limit: usize) -> Result<Page<RequestRecord>> {
        self.run(move |c| page(c, "requests", "request_id", after, limit)).await
    }

    async fn page_machines(&self, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        self.run(move |c| page(c, "machines", "machine_id", after, limit)).await
    }
}

#[cfg(test)]
mod tests {
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
