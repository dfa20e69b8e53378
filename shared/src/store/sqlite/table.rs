//! The row boilerplate the requests and machines tables share: a record is its JSON `body`
//! plus the columns the queries need ([`Row`]); reads decode bodies, writes insert, replace or
//! update at a version, each in its own IMMEDIATE transaction unless the caller holds one. The
//! store's [`Table`] of every [`Row`].

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};
use serde::de::DeserializeOwned;

use super::{SqliteStore, db, decode, encode, transaction};
use crate::error::{Error, Result};
use crate::store::{Page, Table, Versioned, exists, stale};

/// Ids per `IN (...)` query, well under SQLite's bound-parameter limit.
const IN_CHUNK: usize = 500;

/// A record kept in a table of its own: key column, version, body and the indexed `COLUMNS`.
pub(super) trait Row: Versioned {
    const TABLE: &'static str;
    const KEY: &'static str;
    /// The columns besides the key, `version` and `body`.
    const COLUMNS: &'static [&'static str];

    /// The values of [`Row::COLUMNS`], in that order.
    fn values(&self) -> Vec<Value>;
}

/// How a record is written.
#[derive(Clone, Copy)]
pub(super) enum Write {
    /// Fails when the id exists.
    Insert,
    /// Replaces whatever is there (migration, recording instances).
    Upsert,
    /// Replaces the record only at this version, writing version + 1.
    Update(u64),
}

/// The statement of `mode` for `R`: parameters are the key (`?1`), the columns, version and
/// body, and for an update the expected version last.
fn statement<R: Row>(mode: Write) -> String {
    let columns: Vec<&str> = R::COLUMNS.iter().copied().chain(["version", "body"]).collect();
    let (table, key) = (R::TABLE, R::KEY);
    let marks: Vec<String> = (1..=columns.len() + 1).map(|i| format!("?{i}")).collect();
    let (columns, marks) = (columns.join(", "), marks.join(", "));
    match mode {
        Write::Insert => {
            format!("INSERT INTO {table} ({key}, {columns}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING")
        }
        // An update of an existing row (not REPLACE's delete and insert), so the change feed's
        // trigger sees the record before and after.
        Write::Upsert => {
            let set: Vec<String> = R::COLUMNS.iter().chain(&["version", "body"]).map(|c| format!("{c} = excluded.{c}")).collect();
            format!("INSERT INTO {table} ({key}, {columns}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {}", set.join(", "))
        }
        Write::Update(_) => {
            let set: Vec<String> =
                R::COLUMNS.iter().chain(&["version", "body"]).zip(2..).map(|(c, i)| format!("{c} = ?{i}")).collect();
            let expected = R::COLUMNS.len() + 4;
            format!("UPDATE {table} SET {} WHERE {key} = ?1 AND version = ?{expected}", set.join(", "))
        }
    }
}

/// Writes `record` as `mode` says and returns what was written (an update at version + 1).
pub(super) fn write<R: Row>(tx: &Transaction, record: &R, mode: Write) -> Result<R> {
    let mut record = record.clone();
    if let Write::Update(expected) = mode {
        record.set_version(expected + 1);
    }
    let mut values = vec![Value::from(record.id().to_owned())];
    values.extend(record.values());
    values.push(Value::from(record.version() as i64));
    values.push(Value::from(encode(&record)?));
    if let Write::Update(expected) = mode {
        values.push(Value::from(expected as i64));
    }
    let context = format!("writing a {}", R::WHAT);
    let changed = tx.execute(&statement::<R>(mode), params_from_iter(values)).map_err(db(&context))?;
    if changed == 0 {
        let id = record.id();
        return Err(match mode {
            Write::Update(expected) if row_exists::<R>(tx, id)? => stale(R::WHAT, id, expected),
            Write::Update(_) => Error::not_found(R::WHAT, id),
            _ => exists(R::WHAT, id),
        });
    }
    Ok(record)
}

fn row_exists<R: Row>(connection: &Connection, id: &str) -> Result<bool> {
    connection
        .query_row(&format!("SELECT 1 FROM {} WHERE {} = ?1", R::TABLE, R::KEY), [id], |_| Ok(()))
        .optional()
        .map(|row| row.is_some())
        .map_err(db("reading a record"))
}

/// Rows of `SELECT body ...` decoded.
pub(super) fn bodies<T: DeserializeOwned>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &str,
) -> Result<Vec<T>> {
    let mut statement = connection.prepare_cached(sql).map_err(db(context))?;
    let rows = statement.query_map(params, |row| row.get::<_, String>(0)).map_err(db(context))?;
    rows.map(|body| decode(&body.map_err(db(context))?)).collect()
}

/// `SELECT body FROM table WHERE column IN (ids)`, chunked.
fn bodies_in<R: Row>(connection: &Connection, column: &str, ids: &[String], context: &str) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT body FROM {} WHERE {column} IN ({marks})", R::TABLE);
        out.extend(bodies(connection, &sql, params_from_iter(chunk), context)?);
    }
    Ok(out)
}

/// Up to `limit` records after the key `after`, in key order.
fn page<R: Row>(connection: &Connection, after: Option<String>, limit: usize) -> Result<Page<R>> {
    let (table, key) = (R::TABLE, R::KEY);
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

impl SqliteStore {
    /// The records whose `column` is among `values`, for `context` in errors.
    pub(super) async fn rows_in<R: Row>(
        &self,
        column: &'static str,
        values: Vec<String>,
        context: &'static str,
    ) -> Result<Vec<R>> {
        self.run(move |c| bodies_in(c, column, &values, context)).await
    }

    /// The records `sql` (a `SELECT body ...`) finds with `params`.
    pub(super) async fn rows_where<R: Row>(
        &self,
        sql: &'static str,
        params: Vec<String>,
        context: &'static str,
    ) -> Result<Vec<R>> {
        self.run(move |c| bodies(c, sql, params_from_iter(params), context)).await
    }

    /// Inserts (fails when the id exists) or updates at the record's version.
    async fn write_row<R: Row>(&self, record: &R, mode: Write) -> Result<R> {
        let record = record.clone();
        self.run(move |c| transaction(c, |tx| write(tx, &record, mode))).await
    }
}

/// Both tables, on the blocking pool, each write in its own IMMEDIATE transaction.
#[async_trait]
impl<R: Row> Table<R> for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<R>> {
        let id = id.to_owned();
        self.run(move |c| {
            let sql = format!("SELECT body FROM {} WHERE {} = ?1", R::TABLE, R::KEY);
            Ok(bodies(c, &sql, [id], &format!("reading a {}", R::WHAT))?.pop())
        })
        .await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<R>> {
        let ids = ids.to_vec();
        self.run(move |c| bodies_in(c, R::KEY, &ids, &format!("reading {}s", R::WHAT))).await
    }

    async fn put_if_absent(&self, record: &R) -> Result<()> {
        self.write_row(record, Write::Insert).await.map(drop)
    }

    async fn put_all_if_absent(&self, records: &[R]) -> Result<Vec<bool>> {
        let records = records.to_vec();
        let insert = |tx: &Transaction, r: &R| match write(tx, r, Write::Insert) {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        };
        self.run(move |c| transaction(c, |tx| records.iter().map(|r| insert(tx, r)).collect())).await
    }

    async fn update(&self, record: &R) -> Result<R> {
        self.write_row(record, Write::Update(record.version())).await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.run(move |c| {
            let sql = format!("DELETE FROM {} WHERE {} = ?1", R::TABLE, R::KEY);
            c.execute(&sql, [id]).map(drop).map_err(db(&format!("deleting a {}", R::WHAT)))
        })
        .await
    }

    async fn upsert_batch(&self, records: &[R]) -> Result<()> {
        let records = records.to_vec();
        self.run(move |c| transaction(c, |tx| records.iter().try_for_each(|r| write(tx, r, Write::Upsert).map(drop))))
            .await
    }

    async fn page(&self, after: Option<String>, limit: usize) -> Result<Page<R>> {
        self.run(move |c| page(c, after, limit)).await
    }
}
