//! Pool cooldowns on SQLite: the `pool_cooldowns` table, one row per pool; a read filters on
//! `until`, a restart replaces the row.

use rusqlite::{params, params_from_iter};

use super::capacity::read_availability;
use super::{SqliteStore, db, transaction};
use crate::error::Result;
use crate::store::{Cooldown, CooldownRepository, Health};

#[async_trait::async_trait]
impl CooldownRepository for SqliteStore {
    async fn cooling(&self, pools: &[String], template: &str, now: i64) -> Result<(Vec<Cooldown>, Health)> {
        let (pools, template) = (pools.to_vec(), template.to_owned());
        self.run(move |c| {
            let health = read_availability(c, &template)?.health;
            let marks = vec!["?"; pools.len()].join(",");
            let sql = format!("SELECT pool, until, reason FROM pool_cooldowns WHERE until > ? AND pool IN ({marks})");
            let mut statement = c.prepare(&sql).map_err(db("reading pool cooldowns"))?;
            let values = std::iter::once(rusqlite::types::Value::from(now)).chain(pools.into_iter().map(Into::into));
            let rows = statement
                .query_map(params_from_iter(values), |row| Ok(Cooldown { pool: row.get(0)?, until: row.get(1)?, reason: row.get(2)? }))
                .map_err(db("reading pool cooldowns"))?;
            let cooling = rows.map(|row| row.map_err(db("reading pool cooldowns"))).collect::<Result<_>>()?;
            Ok((cooling, health))
        })
        .await
    }

    async fn cool(&self, cooldowns: &[Cooldown]) -> Result<()> {
        let cooldowns = cooldowns.to_vec();
        self.run(move |c| {
            transaction(c, |tx| {
                for cooldown in &cooldowns {
                    tx.execute(
                        "INSERT OR REPLACE INTO pool_cooldowns (pool, until, reason) VALUES (?1, ?2, ?3)",
                        params![cooldown.pool, cooldown.until, cooldown.reason],
                    )
                    .map_err(db("cooling a pool down"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn launch_failed(&self, template: &str, limit: u32, until: i64) -> Result<Health> {
        let template = template.to_owned();
        self.run(move |c| {
            transaction(c, |tx| {
                let counted = "UPDATE capacity SET failures = failures + 1 WHERE template_key = ?1";
                tx.execute(counted, [&template]).map_err(db("counting a failed launch"))?;
                let health = read_availability(tx, &template)?.health;
                if limit == 0 || health.failures < limit {
                    return Ok(health);
                }
                let rest = "UPDATE capacity SET failures = 0, rested_until = ?2 WHERE template_key = ?1";
                tx.execute(rest, params![template, until]).map_err(db("resting a template"))?;
                Ok(Health { failures: 0, rested_until: Some(until) })
            })
        })
        .await
    }

    async fn launch_succeeded(&self, template: &str) -> Result<()> {
        let template = template.to_owned();
        self.run(move |c| {
            let sql = "UPDATE capacity SET failures = 0, rested_until = NULL WHERE template_key = ?1";
            c.execute(sql, [template]).map(drop).map_err(db("ending a template's failures"))
        })
        .await
    }
}
