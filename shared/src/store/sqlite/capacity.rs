//! Capacity counters on SQLite, exactly once per operation: the counter change and the
//! operation's row in `applied_ops` are written in one IMMEDIATE transaction, and an operation
//! found there is answered as applied without changing anything (rows expire with
//! [`OP_MARKER_TTL`], purged on open).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::table::{Write, write};
use super::{SqliteStore, db, transaction};
use crate::error::{Error, Result};
use crate::store::{
    Availability, CapacityChange, CapacityRepository, Counter, Direction, Health, OP_MARKER_TTL, RequestRecord, Reservation, Rest, Versioned, expiry, limit,
    now, underflow,
};

pub(super) fn read_in_use(connection: &Connection, key: &str) -> Result<u64> {
    let in_use: Option<i64> = connection
        .query_row("SELECT in_use FROM capacity WHERE template_key = ?1", [key], |row| row.get(0))
        .optional()
        .map_err(db("reading capacity"))?;
    Ok(in_use.map_or(0, |n| n.max(0) as u64))
}

/// A template's units in use and health (all zero without a counter row; a rest written
/// before `rested_since` existed counts from its end).
pub(super) fn read_availability(connection: &Connection, key: &str) -> Result<Availability> {
    let sql = "SELECT in_use, failures, rested_since, rested_until FROM capacity WHERE template_key = ?1";
    let row: Option<(i64, i64, Option<i64>, Option<i64>)> = connection
        .query_row(sql, [key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .optional()
        .map_err(db("reading capacity"))?;
    Ok(row.map_or_else(Availability::default, |(in_use, failures, since, until)| Availability {
        in_use: in_use.max(0) as u64,
        health: Health {
            failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
            rest: until.map(|until| Rest { since: since.unwrap_or(until), until }),
        },
    }))
}

/// Whether `op_id` was applied already (a repeat of a change).
fn applied(tx: &rusqlite::Transaction, op_id: &str) -> Result<bool> {
    let found = tx
        .query_row("SELECT 1 FROM applied_ops WHERE op_id = ?1", [op_id], |_| Ok(()))
        .optional()
        .map_err(db("reading applied capacity operations"))?;
    if found.is_some() {
        tracing::info!(op_id, "capacity change already applied");
    }
    Ok(found.is_some())
}

/// Adds `delta` to the counter (creating it), bumping its version, and records `op_id`.
fn apply(tx: &rusqlite::Transaction, key: &str, op_id: &str, delta: i64) -> Result<()> {
    let now = now();
    tx.execute(
        "INSERT INTO applied_ops (op_id, expires_at) VALUES (?1, ?2)",
        params![op_id, expiry(now, OP_MARKER_TTL)],
    )
    .map_err(db("recording a capacity operation"))?;
    // A release only follows a read of enough in use, so its row exists (and the CHECK on
    // `in_use >= 0` rules out inserting a negative one).
    let sql = if delta < 0 {
        "UPDATE capacity SET in_use = in_use + ?2, version = version + 1, updated_at = ?3 WHERE template_key = ?1"
    } else {
        "INSERT INTO capacity (template_key, in_use, version, updated_at) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (template_key) DO UPDATE SET in_use = in_use + excluded.in_use, version = version + 1,
         updated_at = excluded.updated_at"
    };
    tx.execute(sql, params![key, delta, now]).map(drop).map_err(db("changing capacity"))
}

/// Adds `count` to `key` unless that would exceed `max`, once per `op_id`.
fn reserve(tx: &rusqlite::Transaction, key: &str, op_id: &str, count: u32, max: i64) -> Result<Reservation> {
    if applied(tx, op_id)? {
        return Ok(Reservation::Reserved);
    }
    let in_use = read_in_use(tx, key)?;
    if let Some(max) = limit(max)
        && in_use + u64::from(count) > max
    {
        let available = u32::try_from(max.saturating_sub(in_use)).unwrap_or(u32::MAX);
        return Ok(Reservation::Insufficient { available });
    }
    apply(tx, key, op_id, i64::from(count))?;
    Ok(Reservation::Reserved)
}

/// `change` unless its op id was applied; a release beyond what is held is refused.
fn apply_once(tx: &rusqlite::Transaction, change: &CapacityChange) -> Result<()> {
    if applied(tx, &change.op_id)? {
        return Ok(());
    }
    let delta = match change.direction {
        Direction::Reserve => i64::from(change.units),
        Direction::Release => {
            let in_use = read_in_use(tx, &change.key)?;
            if in_use < u64::from(change.units) {
                return Err(underflow(&change.key, in_use, change.units));
            }
            -i64::from(change.units)
        }
    };
    apply(tx, &change.key, &change.op_id, delta)
}

#[async_trait::async_trait]
impl CapacityRepository for SqliteStore {
    async fn reserve(&self, key: &str, op_id: &str, count: u32, max: i64) -> Result<Reservation> {
        let (key, op_id) = (key.to_owned(), op_id.to_owned());
        self.run(move |c| transaction(c, |tx| reserve(tx, &key, &op_id, count, max))).await
    }

    async fn reserve_for(&self, request: &RequestRecord, key: &str, op_id: &str, max: i64) -> Result<Reservation> {
        let (request, key, op_id) = (request.clone(), key.to_owned(), op_id.to_owned());
        self.run(move |c| {
            transaction(c, |tx| {
                if applied(tx, &op_id)? {
                    // Applied with its request, in one transaction.
                    return Ok(Reservation::Reserved);
                }
                let reservation = reserve(tx, &key, &op_id, request.machine_count, max)?;
                if reservation == Reservation::Reserved {
                    write(tx, &request, Write::Insert)?;
                }
                Ok(reservation)
            })
        })
        .await
    }

    async fn release(&self, key: &str, op_id: &str, count: u32) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let (key, op_id) = (key.to_owned(), op_id.to_owned());
        self.run(move |c| {
            transaction(c, |tx| {
                if applied(tx, &op_id)? {
                    return Ok(());
                }
                let in_use = read_in_use(tx, &key)?;
                if in_use < u64::from(count) {
                    return Err(underflow(&key, in_use, count));
                }
                apply(tx, &key, &op_id, -i64::from(count))
            })
        })
        .await
    }

    async fn apply_with(&self, request: &RequestRecord, changes: &[CapacityChange]) -> Result<Option<RequestRecord>> {
        let (request, changes) = (request.clone(), changes.to_vec());
        let applied = self
            .run(move |c| {
                transaction(c, |tx| {
                    for change in &changes {
                        apply_once(tx, change)?;
                    }
                    write(tx, &request, Write::Update(request.version()))
                })
            })
            .await;
        match applied {
            Ok(written) => Ok(Some(written)),
            Err(Error::CapacityUnderflow { .. } | Error::Stale { .. } | Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn availability_of(&self, keys: &[String]) -> Result<HashMap<String, Availability>> {
        let keys = keys.to_vec();
        self.run(move |c| keys.into_iter().map(|key| Ok((read_availability(c, &key)?, key)).map(|(a, k)| (k, a))).collect())
            .await
    }

    async fn counters(&self) -> Result<Vec<Counter>> {
        self.run(|c| {
            let mut statement = c
                .prepare_cached("SELECT template_key, in_use, version, updated_at FROM capacity ORDER BY template_key")
                .map_err(db("listing counters"))?;
            let rows = statement
                .query_map([], |row| {
                    Ok(Counter {
                        key: row.get(0)?,
                        in_use: row.get::<_, i64>(1)?.max(0) as u64,
                        version: row.get::<_, i64>(2)?.max(0) as u64,
                        updated_at: row.get(3)?,
                    })
                })
                .map_err(db("listing counters"))?;
            rows.collect::<rusqlite::Result<_>>().map_err(db("listing counters"))
        })
        .await
    }

    async fn correct(&self, counter: &Counter, in_use: u64) -> Result<bool> {
        let counter = counter.clone();
        self.run(move |c| {
            c.execute(
                "UPDATE capacity SET in_use = ?2, version = version + 1, updated_at = ?3
                 WHERE template_key = ?1 AND version = ?4",
                params![counter.key, in_use as i64, now(), counter.version as i64],
            )
            .map(|changed| changed == 1)
            .map_err(db("correcting capacity"))
        })
        .await
    }
}
