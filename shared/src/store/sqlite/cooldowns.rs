//! Pool cooldowns on SQLite: the `pool_cooldowns` table, one row per pool; a read filters on
//! `until`, a restart replaces the row.

use rusqlite::{params, params_from_iter};

use super::{SqliteStore, db, transaction};
use crate::error::Result;
use crate::store::{Cooldown, CooldownRepository};

#[async_trait::async_trait]
impl CooldownRepository for SqliteStore {
    async fn cooling(&self, pools: &[String], now: i64) -> Result<Vec<Cooldown>> {
        let pools = pools.to_vec();
        self.run(move |c| {
            let marks = vec!["?"; pools.len()].join(",");
            let sql = format!("SELECT pool, until, reason FROM pool_cooldowns WHERE until > ? AND pool IN ({marks})");
            let mut statement = c.prepare(&sql).map_err(db("reading pool cooldowns"))?;
            let values = std::iter::once(rusqlite::types::Value::from(now)).chain(pools.into_iter().map(Into::into));
            let rows = statement
                .query_map(params_from_iter(values), |row| Ok(Cooldown { pool: row.get(0)?, until: row.get(1)?, reason: row.get(2)? }))
                .map_err(db("reading pool cooldowns"))?;
            rows.map(|row| row.map_err(db("reading pool cooldowns"))).collect()
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
}
