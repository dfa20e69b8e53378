//! Import from awslabs/open-resource-broker's (ORB, formerly open-hostfactory-plugin) default
//! JSON database, `request_database.json`: one object with `requests`, `machines` (and
//! `templates`, which we do not import: templates live in the template files) mapping an id to
//! a snake_case record (ORB schema 2.0.0).
//!
//! Mapping into our records:
//!
//! | ORB request | our [`RequestRecord`] |
//! |---|---|
//! | `request_id` | `requestId` (kept as is, so HostFactory's ids still resolve) |
//! | `request_type` `acquire` / `return` | `kind` `provision` / `return` (absent: from the `ret-` prefix) |
//! | `template_id`, `provider_name` | `templateId`, `provider` (absent provider: the importing instance's) |
//! | `machine_count` (or `requested_count`) | `machineCount` |
//! | `status` `pending` / `in_progress` | `pending` / `in_progress` (HostFactory `running`) |
//! | `status` `completed` | `complete` |
//! | `status` `partial`, `failed`, `cancelled`, `timeout` | `complete_with_error` |
//! | `message`, else `status_message` | `message` |
//! | `created_at` (ISO 8601, or epoch seconds) | `createdAt`; `updatedAt` = `completed_at` / `started_at` / `created_at` |
//! | `version` | `version` |
//! | `provider_api` + first `resource_ids` | `providerApi`; `fleetId` for `EC2Fleet`/`SpotFleet`, `asgName` for `ASG` |
//! | `provider_data.launch_template_id` | `launchTemplateId` |
//!
//! | ORB machine | our [`MachineRecord`] |
//! |---|---|
//! | `machine_id` | `machineId` (the EC2 instance id) |
//! | `request_id`, `return_request_id`, `template_id`, `provider_name` | same fields |
//! | `private_dns_name`, else `name` unless it is just the id | `name` |
//! | `private_ip`, `public_ip` | `privateIpAddress`, `publicIpAddress` |
//! | `status` (EC2 state names; `returned` = terminated after a return) | `state` (`returned` → `terminated`) |
//! | `status` with `return_request_id` | `result`: `succeed` once terminated, else `executing` |
//! | `status` without it | `result`: `running` → `succeed`, `pending`/`unknown` → `executing`, else `fail` |
//! | `launch_time` | `launchtime` |
//! | `price_type` or `metadata.price_type` `spot` | `lifecycle` `spot`, else `ondemand` (ORB does not always record it) |
//! | `status_reason` | `message` |
//! | `version`, `updated_at` | `version`, `updatedAt` |
//!
//! Finished requests and terminated machines get `expiresAt` = retention counted from the
//! import (or from `updatedAt` when that is later), so imported history is kept for the full
//! retention period instead of being purged at once.
//! ORB's counters (`successful_count`, ...), tags, metadata and `provider_data` have no
//! counterpart: the machines themselves carry that state.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Lifecycle, MachineRecord, Page, RETURN_PREFIX, RecordSource, RequestKind, RequestRecord, RequestPhase, expiry,
};
use crate::error::{Error, Result};
use crate::hostfactory::MachineResult;

#[derive(Debug, Deserialize)]
struct Database {
    #[serde(default)]
    requests: BTreeMap<String, OrbRequest>,
    #[serde(default)]
    machines: BTreeMap<String, OrbMachine>,
}

#[derive(Debug, Deserialize)]
struct OrbRequest {
    request_id: String,
    #[serde(default)]
    request_type: Option<String>,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    provider_name: Option<String>,
    #[serde(default)]
    provider_api: Option<String>,
    #[serde(default)]
    resource_ids: Vec<String>,
    #[serde(default, alias = "requested_count")]
    machine_count: Option<u32>,
    status: String,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(default)]
    message: Option<String>,
    created_at: Value,
    #[serde(default)]
    started_at: Option<Value>,
    #[serde(default)]
    completed_at: Option<Value>,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    provider_data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OrbMachine {
    machine_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    private_dns_name: Option<String>,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    return_request_id: Option<String>,
    #[serde(default)]
    provider_name: Option<String>,
    #[serde(default)]
    private_ip: Option<String>,
    #[serde(default)]
    public_ip: Option<String>,
    status: String,
    #[serde(default)]
    status_reason: Option<String>,
    #[serde(default)]
    launch_time: Option<Value>,
    #[serde(default)]
    price_type: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    created_at: Option<Value>,
    #[serde(default)]
    updated_at: Option<Value>,
}

/// Expiry of a finished record imported now.
fn imported_expiry(updated_at: i64, retention: Duration) -> i64 {
    expiry(updated_at.max(super::model::now()), retention)
}

/// An ORB database converted to our records, sorted by id; a migration source.
pub struct OrbDatabase {
    requests: Vec<RequestRecord>,
    machines: Vec<MachineRecord>,
}

impl OrbDatabase {
    /// Reads and converts `request_database.json`. `provider` fills records that name no
    /// provider instance; `retention` sets `expiresAt` on finished ones.
    pub fn load(path: &Path, provider: &str, retention: Duration) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read ORB database {}: {e}", path.display())))?;
        Self::parse(&text, provider, retention).map_err(|e| match e {
            Error::Invalid { field, problem } => {
                Error::Config(format!("ORB database {}: {field}: {problem}", path.display()))
            }
            other => other,
        })
    }

    pub fn parse(text: &str, provider: &str, retention: Duration) -> Result<Self> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let database: Database = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| Error::invalid(e.path().to_string(), e.inner().to_string()))?;
        let requests = database
            .requests
            .into_values()
            .map(|r| convert_request(r, provider, retention))
            .collect::<Result<Vec<_>>>()?;
        let machines = database
            .machines
            .into_values()
            .map(|m| convert_machine(m, provider, retention))
            .collect::<Result<Vec<_>>>()?;
        Ok(OrbDatabase { requests: sorted(requests, |r| &r.request_id), machines: sorted(machines, |m| &m.machine_id) })
    }
}

fn sorted<T>(mut records: Vec<T>, id: impl Fn(&T) -> &String) -> Vec<T> {
    records.sort_by(|a, b| id(a).cmp(id(b)));
    records
}

fn convert_request(orb: OrbRequest, provider: &str, retention: Duration) -> Result<RequestRecord> {
    let field = |name: &str| format!("requests.{}.{name}", orb.request_id);
    let kind = match orb.request_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("acquire") => RequestKind::Provision,
        Some("return") => RequestKind::Return,
        None if orb.request_id.starts_with(RETURN_PREFIX) => RequestKind::Return,
        None => RequestKind::Provision,
        Some(other) => return Err(Error::invalid(field("request_type"), format!("unknown request type '{other}'"))),
    };
    let status = match orb.status.to_ascii_lowercase().as_str() {
        "pending" => RequestPhase::Pending,
        "in_progress" => RequestPhase::InProgress,
        "completed" => RequestPhase::Complete,
        "partial" | "failed" | "cancelled" | "timeout" => RequestPhase::CompleteWithError,
        other => return Err(Error::invalid(field("status"), format!("unknown status '{other}'"))),
    };
    let created_at = epoch(&orb.created_at).ok_or_else(|| Error::invalid(field("created_at"), "not a time"))?;
    let updated_at = [&orb.completed_at, &orb.started_at].into_iter().flatten().find_map(epoch).unwrap_or(created_at);
    let resource = orb.resource_ids.first().cloned();
    let api = orb.provider_api.clone();
    let (fleet_id, asg_name) = match api.as_deref() {
        Some("EC2Fleet" | "SpotFleet") => (resource, None),
        Some("ASG") => (None, resource),
        _ => (None, None),
    };
    let launch_template_id =
        orb.provider_data.as_ref().and_then(|d| d.get("launch_template_id")).and_then(Value::as_str).map(str::to_owned);
    Ok(RequestRecord {
        kind,
        template_id: orb.template_id.unwrap_or_default(),
        provider: orb.provider_name.filter(|p| !p.is_empty()).unwrap_or_else(|| provider.to_owned()),
        machine_count: orb.machine_count.unwrap_or(0),
        status,
        message: orb.message.filter(|m| !m.is_empty()).or(orb.status_message).unwrap_or_default(),
        created_at,
        updated_at,
        version: orb.version,
        fleet_id,
        asg_name,
        launch_template_id,
        provider_api: api,
        fleet_type: None,
        expires_at: status.is_finished().then(|| imported_expiry(updated_at, retention)),
        // HostFactory knew the ORB plugin's requests: it polls them as before.
        unclaimed: false,
        request_id: orb.request_id,
        pending_capacity: Vec::new(),
        // Listed by the index: the ORB database does not say which machines are all of them.
        machine_ids: None,
    })
}

fn convert_machine(orb: OrbMachine, provider: &str, retention: Duration) -> Result<MachineRecord> {
    let status = orb.status.to_ascii_lowercase().replace('_', "-");
    let state = if status == "returned" { "terminated".to_owned() } else { status.clone() };
    let result = match (&orb.return_request_id, state.as_str()) {
        (Some(_), "terminated") => MachineResult::Succeed,
        (Some(_), _) => MachineResult::Executing,
        (None, "running") => MachineResult::Succeed,
        (None, "pending" | "unknown") => MachineResult::Executing,
        (None, _) => MachineResult::Fail,
    };
    let name = orb
        .private_dns_name
        .filter(|n| !n.is_empty())
        .or(orb.name.filter(|n| !n.is_empty() && *n != orb.machine_id))
        .unwrap_or_default();
    let price_type = orb
        .price_type
        .or_else(|| orb.metadata.as_ref().and_then(|m| m.get("price_type")).and_then(Value::as_str).map(str::to_owned));
    let launchtime = orb.launch_time.as_ref().and_then(epoch).unwrap_or(0);
    let updated_at = [&orb.updated_at, &orb.created_at].into_iter().flatten().find_map(epoch).unwrap_or(launchtime);
    Ok(MachineRecord {
        request_id: orb.request_id.unwrap_or_default(),
        return_request_id: orb.return_request_id.filter(|r| !r.is_empty()),
        template_id: orb.template_id.unwrap_or_default(),
        provider: orb.provider_name.filter(|p| !p.is_empty()).unwrap_or_else(|| provider.to_owned()),
        name,
        private_ip_address: orb.private_ip.unwrap_or_default(),
        public_ip_address: orb.public_ip.unwrap_or_default(),
        result,
        launchtime,
        lifecycle: if price_type.as_deref() == Some("spot") { Lifecycle::Spot } else { Lifecycle::Ondemand },
        interrupted_at: None,
        units: 1,
        reclaimed_at: None,
        message: orb.status_reason.unwrap_or_default(),
        version: orb.version,
        updated_at,
        expires_at: (state == "terminated").then(|| imported_expiry(updated_at, retention)),
        fleet_held: None,
        actions: Vec::new(),
        state: state.as_str().into(),
        machine_id: orb.machine_id,
    })
}

/// Epoch seconds from ORB's times: ISO 8601 with or without an offset (naive means UTC, as
/// ORB writes `datetime.utcnow()`), or a number of seconds.
fn epoch(value: &Value) -> Option<i64> {
    use time::format_description::well_known::Iso8601;
    match value {
        Value::Number(number) => number.as_i64().or_else(|| number.as_f64().map(|f| f as i64)),
        Value::String(text) => time::OffsetDateTime::parse(text, &Iso8601::DEFAULT)
            .or_else(|_| time::PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|t| t.assume_utc()))
            .ok()
            .map(|t| t.unix_timestamp()),
        _ => None,
    }
}

/// The page of `records` (sorted by id) after `after`.
fn page_of<T: Clone>(records: &[T], id: impl Fn(&T) -> &str, after: Option<String>, limit: usize) -> Page<T> {
    let start = after.map_or(0, |after| records.partition_point(|r| id(r) <= after.as_str()));
    let items: Vec<T> = records[start..].iter().take(limit).cloned().collect();
    let next = (start + items.len() < records.len()).then(|| items.last().map(|r| id(r).to_owned())).flatten();
    Page { items, next }
}

#[async_trait]
impl RecordSource for OrbDatabase {
    async fn page_requests(&self, after: Option<String>, limit: usize) -> Result<Page<RequestRecord>> {
        Ok(page_of(&self.requests, |r| &r.request_id, after, limit))
    }

    async fn page_machines(&self, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        Ok(page_of(&self.machines, |m| &m.machine_id, after, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_orb_writes() {
        assert_eq!(epoch(&Value::from("2025-03-01T10:18:51+00:00")), Some(1_740_824_331));
        assert_eq!(epoch(&Value::from("2025-03-01T10:18:51.123456")), Some(1_740_824_331));
        assert_eq!(epoch(&Value::from("2025-03-01T10:18:51.5Z")), Some(1_740_824_331));
        assert_eq!(epoch(&Value::from(1_740_824_331)), Some(1_740_824_331));
        assert_eq!(epoch(&Value::from("yesterday")), None);
    }

    #[test]
    fn unknown_statuses_name_the_record() {
        let text = r#"{"requests": {"req-1": {"request_id": "req-1", "status": "weird", "created_at": 1}}}"#;
        let err = OrbDatabase::parse(text, "awsinst", Duration::ZERO).err().expect("rejected");
        assert!(err.to_string().contains("requests.req-1.status") && err.to_string().contains("weird"), "{err}");
        let err =
            OrbDatabase::parse(r#"{"machines": {"i-1": {"status": 3}}}"#, "awsinst", Duration::ZERO).err().unwrap();
        assert!(err.to_string().starts_with("machines.i-1"), "{err}");
    }

    #[test]
    fn pages_follow_the_cursor() {
        let ids: Vec<String> = (0..5).map(|i| format!("id-{i}")).collect();
        let first = page_of(&ids, |s| s, None, 2);
        assert_eq!((first.items.len(), first.next.as_deref()), (2, Some("id-1")));
        let last = page_of(&ids, |s| s, Some("id-3".into()), 2);
        assert_eq!((last.items, last.next), (vec!["id-4".to_owned()], None));
        assert!(page_of(&ids, |s| s, Some("id-1".into()), 3).next.is_none());
    }
}
