//! The change feed on SQLite: the `changes` table the requests' and machines' triggers fill in
//! the writing transaction, plus the template events the templates routes append; a template
//! write's intent waits in `template_intents` until its commit moves it there as its event.

use rusqlite::{Connection, params_from_iter};

use super::{SqliteStore, db, transaction};
use crate::error::{Error, Result};
use crate::store::{Change, ChangeFeed, ChangeKind, EventLog};

type Row = (i64, String, Option<String>, Option<String>, i64);

fn decode<T: serde::de::DeserializeOwned>(body: Option<String>) -> Result<Option<T>> {
    body.map(|b| serde_json::from_str(&b).map_err(|e| Error::store("reading a captured change", e))).transpose()
}

fn change((seq, kind, old, new, attempts): Row) -> Result<Change> {
    let kind = match kind.as_str() {
        "request" => ChangeKind::Request { old: decode(old)?, new: decode(new)? },
        "machine" => ChangeKind::Machine { old: decode(old)?, new: decode(new)? },
        _ => ChangeKind::Event(decode(new)?.unwrap_or_default()),
    };
    Ok(Change { seq, attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX), kind })
}

fn by_seq(c: &Connection, sql: &str, seqs: &[i64], context: &'static str) -> Result<()> {
    let marks = vec!["?"; seqs.len()].join(",");
    c.execute(&sql.replace("{seqs}", &marks), params_from_iter(seqs)).map(drop).map_err(db(context))
}

#[async_trait::async_trait]
impl ChangeFeed for SqliteStore {
    async fn next_changes(&self, limit: usize) -> Result<Vec<Change>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let sql = "SELECT seq, kind, old_body, new_body, attempts FROM changes ORDER BY seq LIMIT ?1";
            let mut statement = c.prepare_cached(sql).map_err(db("reading changes"))?;
            let rows = statement
                .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .map_err(db("reading changes"))?;
            rows.map(|row| change(row.map_err(db("reading changes"))?)).collect()
        })
        .await
    }

    async fn delivered(&self, seqs: &[i64]) -> Result<()> {
        let seqs = seqs.to_vec();
        self.run(move |c| by_seq(c, "DELETE FROM changes WHERE seq IN ({seqs})", &seqs, "forgetting delivered changes")).await
    }

    async fn failed(&self, seqs: &[i64]) -> Result<()> {
        let seqs = seqs.to_vec();
        let sql = "UPDATE changes SET attempts = attempts + 1 WHERE seq IN ({seqs})";
        self.run(move |c| by_seq(c, sql, &seqs, "counting a failed delivery")).await
    }
}

#[async_trait::async_trait]
impl EventLog for SqliteStore {
    async fn append_event(&self, event: &serde_json::Value) -> Result<()> {
        let body = event.to_string();
        self.run(move |c| {
            c.execute("INSERT INTO changes (kind, new_body) VALUES ('event', ?1)", [body]).map(drop).map_err(db("recording an event"))
        })
        .await
    }

    async fn intend(&self, id: &str, at: i64, intent: &serde_json::Value) -> Result<()> {
        let (id, body) = (id.to_owned(), intent.to_string());
        let sql = "INSERT INTO template_intents (id, created_at, body) VALUES (?1, ?2, ?3)";
        self.run(move |c| c.execute(sql, rusqlite::params![id, at, body]).map(drop).map_err(db("recording a template write intent"))).await
    }

    async fn commit_intent(&self, id: &str, event: &serde_json::Value) -> Result<()> {
        let (id, body) = (id.to_owned(), event.to_string());
        self.run(move |c| {
            transaction(c, |tx| {
                let context = "recording a template write's event";
                if tx.execute("DELETE FROM template_intents WHERE id = ?1", [&id]).map_err(db(context))? == 1 {
                    tx.execute("INSERT INTO changes (kind, new_body) VALUES ('event', ?1)", [&body]).map_err(db(context))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn forget_intent(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        let sql = "DELETE FROM template_intents WHERE id = ?1";
        self.run(move |c| c.execute(sql, [id]).map(drop).map_err(db("forgetting a template write intent"))).await
    }

    async fn stale_intents(&self, before: i64) -> Result<Vec<serde_json::Value>> {
        self.run(move |c| {
            let sql = "SELECT body FROM template_intents WHERE created_at < ?1 ORDER BY created_at";
            let mut statement = c.prepare_cached(sql).map_err(db("reading template write intents"))?;
            let rows = statement.query_map([before], |r| r.get::<_, String>(0)).map_err(db("reading template write intents"))?;
            rows.map(|row| decode(Some(row.map_err(db("reading template write intents"))?)).map(Option::unwrap_or_default)).collect()
        })
        .await
    }
}
