//! Pool cooldowns on SQLite: the `pool_cooldowns` table, one row per pool; a read filters on
//! `kept_until`, a new record replaces the row.

use rusqlite::{Connection, params, params_from_iter};

use super::capacity::read_availability;
use super::{SqliteStore, db, transaction};
use crate::error::Result;
use crate::store::{Cooldown, CooldownRepository, Health, Rest};

/// The rows of `pools` still kept at `now`.
fn read_pools(c: &Connection, pools: &[String], now: i64) -> Result<Vec<Cooldown>> {
    let marks = vec!["?"; pools.len()].join(",");
    let sql = format!("SELECT pool, until, reason, capacity_at, kept_until FROM pool_cooldowns WHERE kept_until > ? AND pool IN ({marks})");
    let mut statement = c.prepare(&sql).map_err(db("reading pool cooldowns"))?;
    let values = std::iter::once(rusqlite::types::Value::from(now)).chain(pools.iter().cloned().map(Into::into));
    let rows = statement
        .query_map(params_from_iter(values), |row| {
            Ok(Cooldown { pool: row.get(0)?, until: row.get(1)?, reason: row.get(2)?, capacity_at: row.get(3)?, kept_until: row.get(4)? })
        })
        .map_err(db("reading pool cooldowns"))?;
    rows.map(|row| row.map_err(db("reading pool cooldowns"))).collect()
}

#[async_trait::async_trait]
impl CooldownRepository for SqliteStore {
    async fn remembered(&self, pools: &[String], template: &str, now: i64) -> Result<(Vec<Cooldown>, Health)> {
        let (pools, template) = (pools.to_vec(), template.to_owned());
        self.run(move |c| Ok((read_pools(c, &pools, now)?, read_availability(c, &template)?.health))).await
    }

    async fn pools_remembered(&self, pools: &[String], now: i64) -> Result<Vec<Cooldown>> {
        let pools = pools.to_vec();
        self.run(move |c| read_pools(c, &pools, now)).await
    }

    async fn remember(&self, records: &[Cooldown]) -> Result<()> {
        let records = records.to_vec();
        self.run(move |c| {
            transaction(c, |tx| {
                for r in &records {
                    tx.execute(
                        "INSERT OR REPLACE INTO pool_cooldowns (pool, until, reason, capacity_at, kept_until) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![r.pool, r.until, r.reason, r.capacity_at, r.kept_until],
                    )
                    .map_err(db("remembering a pool"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn launch_failed(&self, template: &str, limit: u32, rest: Rest) -> Result<Health> {
        let template = template.to_owned();
        self.run(move |c| {
            transaction(c, |tx| {
                let counted = "UPDATE capacity SET failures = failures + 1 WHERE template_key = ?1";
                tx.execute(counted, [&template]).map_err(db("counting a failed launch"))?;
                let health = read_availability(tx, &template)?.health;
                if limit == 0 || health.failures < limit {
                    return Ok(health);
                }
                let sql = "UPDATE capacity SET failures = 0, rested_since = ?2, rested_until = ?3 WHERE template_key = ?1";
                tx.execute(sql, params![template, rest.since, rest.until]).map_err(db("resting a template"))?;
                Ok(Health { failures: 0, rest: Some(rest) })
            })
        })
        .await
    }

    async fn launch_succeeded(&self, template: &str) -> Result<()> {
        let template = template.to_owned();
        self.run(move |c| {
            let sql = "UPDATE capacity SET failures = 0, rested_since = NULL, rested_until = NULL WHERE template_key = ?1";
            c.execute(sql, [template]).map(drop).map_err(db("ending a template's failures"))
        })
        .await
    }
}
