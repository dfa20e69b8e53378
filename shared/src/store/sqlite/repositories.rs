//! The requests and machines tables as [`Row`]s (their common operations are the generic
//! [`crate::store::Table`] of [`super::table`]), and the queries of each.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::table::{Row, Write, bodies, write};
use super::{SqliteStore, transaction};
use crate::error::{Error, Result};
use crate::store::{MachineFilter, MachineQueries, MachineRecord, Page, RequestQueries, RequestRecord, Written, unless_lost};

impl Row for RequestRecord {
    const TABLE: &'static str = "requests";
    const KEY: &'static str = "request_id";
    const COLUMNS: &'static [&'static str] = &["active", "created_at", "expires_at"];

    fn values(&self) -> Vec<Value> {
        vec![self.is_active().into(), self.created_at.into(), self.expires_at.into()]
    }
}

impl Row for MachineRecord {
    const TABLE: &'static str = "machines";
    const KEY: &'static str = "machine_id";
    const COLUMNS: &'static [&'static str] = &["request_id", "return_request_id", "name", "expires_at"];

    fn values(&self) -> Vec<Value> {
        let (request, returned) = (self.request_id.clone(), self.return_request_id.clone());
        vec![request.into(), returned.into(), self.name.clone().into(), self.expires_at.into()]
    }
}

#[async_trait]
impl RequestQueries for SqliteStore {
    async fn list_active(&self) -> Result<Vec<RequestRecord>> {
        let sql = "SELECT body FROM requests WHERE active = 1 ORDER BY created_at, request_id";
        self.rows_where(sql, Vec::new(), "listing active requests").await
    }

    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>> {
        let request = request.clone();
        let machines = machines.to_vec();
        self.run(move |c| {
            transaction(c, |tx| {
                write(tx, &request, Write::Insert)?;
                machines.iter().map(|m| write(tx, m, Write::Update(m.version))).collect()
            })
        })
        .await
    }

    async fn update_launched(&self, request: &RequestRecord, machines: &[MachineRecord]) -> Result<RequestRecord> {
        let (request, machines) = (request.clone(), machines.to_vec());
        self.run(move |c| {
            let written = transaction(c, |tx| {
                machines.iter().try_for_each(|m| write(tx, m, Write::Upsert).map(drop))?;
                write(tx, &request, Write::Update(request.version))
            });
            match written {
                // The machines are recorded whatever became of the request.
                Err(err @ Error::Stale { .. }) => {
                    transaction(c, |tx| machines.iter().try_for_each(|m| write(tx, m, Write::Upsert).map(drop)))?;
                    Err(err)
                }
                other => other,
            }
        })
        .await
    }

    async fn update_all(&self, requests: &[RequestRecord], machines: &[MachineRecord]) -> Result<Written> {
        let (requests, machines) = (requests.to_vec(), machines.to_vec());
        self.run(move |c| {
            transaction(c, |tx| {
                Ok(Written {
                    machines: machines.iter().map(|m| unless_lost(write(tx, m, Write::Update(m.version)))).collect::<Result<_>>()?,
                    requests: requests.iter().map(|r| unless_lost(write(tx, r, Write::Update(r.version)))).collect::<Result<_>>()?,
                })
            })
        })
        .await
    }
}

#[async_trait]
impl MachineQueries for SqliteStore {
    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>> {
        let sql = "SELECT body FROM machines WHERE request_id = ?1";
        self.rows_where(sql, vec![request_id.to_owned()], "listing the machines of a request").await
    }

    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>> {
        let sql = "SELECT body FROM machines WHERE return_request_id = ?1";
        self.rows_where(sql, vec![return_request_id.to_owned()], "listing the machines of a return request").await
    }

    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>> {
        let sql = "SELECT body FROM machines WHERE json_extract(body, '$.templateId') = ?1
                 AND json_extract(body, '$.provider') = ?2";
        let keys = vec![template_id.to_owned(), provider.to_owned()];
        self.rows_where(sql, keys, "listing the machines of a template").await
    }

    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>> {
        // An empty name means "not known yet", never a match (as in DynamoDB, where it is absent).
        let names: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
        self.rows_in("name", names, "finding machines by name").await
    }

    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>> {
        let sql = "SELECT body FROM machines WHERE json_extract(body, '$.reclaimedAt') IS NOT NULL
                 AND json_extract(body, '$.provider') = ?1";
        self.rows_where(sql, vec![provider.to_owned()], "listing reclaimed machines").await
    }

    /// One query in `machine_id` order, one row more than `limit` to tell whether a page follows.
    async fn list_page(&self, filter: &MachineFilter, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        let sql = "SELECT body FROM machines WHERE json_extract(body, '$.provider') = ?1
                 AND (?2 IS NULL OR request_id = ?2) AND (?3 IS NULL OR json_extract(body, '$.templateId') = ?3)
                 AND (?4 IS NULL OR json_extract(body, '$.state') = ?4) AND machine_id > ?5
                 ORDER BY machine_id LIMIT ?6";
        let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
        let params = vec![
            Value::Text(filter.provider.clone()),
            text(filter.request_id.clone()),
            text(filter.template_id.clone()),
            text(filter.state.as_ref().map(|s| s.as_str().to_owned())),
            Value::Text(after.unwrap_or_default()),
            Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)),
        ];
        let mut items: Vec<MachineRecord> =
            self.run(move |c| bodies(c, sql, params_from_iter(params), "listing machines")).await?;
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|m| m.machine_id.clone()).unwrap_or_default()
        });
        Ok(Page { items, next })
    }
}
