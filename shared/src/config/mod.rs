//! Configuration from environment variables, parsed once into [`Config`].
//! Every name and default is documented in README.md ("Configuration").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where the code runs; only changes defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The `hostfactory serve` local server: sample templates, embedded store.
    Local,
    /// An AWS Lambda function: templates in S3, DynamoDB store.
    Lambda,
}

/// `HOSTFACTORY_TEMPLATES`: where the template files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatesLocation {
    Folder(PathBuf),
    /// `s3://bucket/prefix`; `prefix` is empty or ends with `/`.
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl std::fmt::Display for TemplatesLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplatesLocation::Folder(path) => write!(f, "{}", path.display()),
            TemplatesLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// `HOSTFACTORY_STORE`: where requests and machines are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    DynamoDb,
    Sqlite(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub runtime: Runtime,
    pub templates: TemplatesLocation,
    pub store: StoreLocation,
    pub table_prefix: String,
    pub listen: SocketAddr,
    /// The local server's limits on a slow client (Lambda gets whole requests from API Gateway).
    pub local_timeouts: LocalTimeouts,
    /// Provider instance used when a call does not name one (`HF_PROVIDER_NAME`).
    pub default_provider: String,
    pub templates_cache_ttl: Duration,
    /// How long finished requests and machines are kept (`HOSTFACTORY_RETENTION_DAYS`): the
    /// DynamoDB TTL attribute `expiresAt`, and the SQLite store's purge on open.
    pub retention: Duration,
    /// How long after a Spot Fleet's `spotFleetRequestExpiry` a `heterogeneous` request waits
    /// before launching its On-Demand remainder (`HOSTFACTORY_SPOT_FALLBACK_MARGIN_SECS`).
    pub spot_fallback_margin: Duration,
    /// `HOSTFACTORY_METRICS`: write CloudWatch EMF lines to stdout (on in Lambda, off locally).
    pub metrics: bool,
    /// `HOSTFACTORY_METRICS_NAMESPACE`: their CloudWatch namespace.
    pub metrics_namespace: String,
    /// The reconciler's timings.
    pub reconcile: ReconcileTimings,
    /// `HOSTFACTORY_CALL_BUDGET_SECS`: how long a getRequestStatus (and each refresh of a
    /// reconcile pass) may spend; it then answers with what it refreshed and leaves the rest
    /// `running` for the next poll. Under API Gateway's 29 s, so an answer always arrives.
    pub call_budget: Duration,
    /// `HOSTFACTORY_POOL_COOLDOWN_SECS`: how long a pool (an instance type in a subnet) that
    /// answered a capacity error is skipped by every launch of every function (0: never).
    pub pool_cooldown: Duration,
    /// `HOSTFACTORY_TEMPLATE_FAILURE_LIMIT`: requests of one template in a row that launched
    /// nothing before it rests (0: never).
    pub template_failure_limit: u32,
    /// `HOSTFACTORY_TEMPLATE_REST_SECS`: how long a template rests (availableNumber 0).
    pub template_rest: Duration,
    /// `HOSTFACTORY_EVENTS`: where domain events go.
    pub events: EventsTarget,
    /// `HOSTFACTORY_EVENTS_SOURCE`: their EventBridge `Source` (default `hostfactory-aws`).
    pub events_source: String,
}

/// Where domain events are published (`HOSTFACTORY_EVENTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsTarget {
    /// `off`: none.
    Off,
    /// `file:<path>`: JSON Lines appended to the file (local default `.data/events.jsonl`).
    File(PathBuf),
    /// `eventbridge:<bus name or ARN>`: PutEvents to that bus.
    EventBridge(String),
}

/// How long `hostfactory serve` waits for a client before it closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTimeouts {
    /// From accepting a connection (or the end of the previous response) to the end of the
    /// request's headers: `HOSTFACTORY_HEADER_TIMEOUT_SECS`.
    pub headers: Duration,
    /// From the end of the headers to the end of the body: `HOSTFACTORY_BODY_TIMEOUT_SECS`.
    pub body: Duration,
}

/// How long the reconciler waits before it heals something (all from `HOSTFACTORY_*_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileTimings {
    /// A request still `pending` this long after it was written lost its launch (a crash
    /// between the store write and EC2's answer): `HOSTFACTORY_PENDING_TIMEOUT_SECS`.
    pub pending_timeout: Duration,
    /// A provisioning request whose machines are not all running this long after it was
    /// written is finished with an error: `HOSTFACTORY_LAUNCH_TIMEOUT_SECS`.
    pub launch_timeout: Duration,
    /// A tagged instance no record knows is terminated once it is this old (it may belong to
    /// a launch whose answer is still being recorded): `HOSTFACTORY_ORPHAN_GRACE_SECS`.
    pub orphan_grace: Duration,
    /// An unused `hostfactory-*` launch template is deleted once it is this old:
    /// `HOSTFACTORY_LAUNCH_TEMPLATE_GRACE_SECS`.
    pub launch_template_grace: Duration,
    /// A provisioning request no getRequestStatus has named this long after it was written was
    /// never learned of by HostFactory (it polls every ~30 s): it is abandoned and its machines
    /// are terminated. `HOSTFACTORY_UNCLAIMED_SECS`.
    pub unclaimed: Duration,
    /// The capacity recount corrects only a counter no change touched for this long, so it
    /// never races a reservation or release whose records it may not see yet:
    /// `HOSTFACTORY_CAPACITY_QUIET_SECS`.
    pub capacity_quiet: Duration,
}

/// The repository root (parent of `shared/`), for local defaults that point into the checkout.
fn repo_root() -> PathBuf {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    shared.parent().unwrap_or(shared).to_path_buf()
}

impl Config {
    pub fn from_env(runtime: Runtime) -> Result<Self> {
        Self::from_lookup(runtime, |name| std::env::var(name).ok())
    }

    /// Parses configuration from any key lookup (the environment in production, a map in tests).
    pub fn from_lookup(runtime: Runtime, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let templates = match get("HOSTFACTORY_TEMPLATES") {
            Some(value) => parse_templates_location(&value)?,
            None if runtime == Runtime::Local => TemplatesLocation::Folder(repo_root().join("infra/templates")),
            None => {
                return Err(Error::Config(
                    "HOSTFACTORY_TEMPLATES must be set to s3://bucket/prefix or a folder".into(),
                ));
            }
        };
        let store = match get("HOSTFACTORY_STORE") {
            Some(value) => parse_store_location(&value)?,
            None if runtime == Runtime::Local => StoreLocation::Sqlite(repo_root().join(".data/hostfactory.sqlite")),
            None => StoreLocation::DynamoDb,
        };
        let table_prefix = parse_table_prefix(&get)?;
        let listen = parse_listen(&get)?;
        let local_timeouts = parse_local_timeouts(&get)?;
        let default_provider = get("HF_PROVIDER_NAME").unwrap_or_else(|| "awsinst".into());
        validate_provider_name(&default_provider).map_err(|e| Error::Config(format!("HF_PROVIDER_NAME: {e}")))?;
        let templates_cache_ttl = Duration::from_secs(parse_seconds(&get, "HOSTFACTORY_TEMPLATES_CACHE_TTL_SECS", 60)?);

        let retention = parse_retention(&get)?;

        let spot_fallback_margin =
            Duration::from_secs(parse_seconds(&get, "HOSTFACTORY_SPOT_FALLBACK_MARGIN_SECS", 60)?);
        let reconcile = parse_reconcile_timings(&get)?;
        let metrics = parse_metrics_switch(&get, runtime)?;
        let metrics_namespace = get("HOSTFACTORY_METRICS_NAMESPACE").unwrap_or_else(|| "HostFactory".into());
        let call_budget = parse_call_budget(&get)?;
        let pool_cooldown = Duration::from_secs(parse_seconds(&get, "HOSTFACTORY_POOL_COOLDOWN_SECS", 180)?);
        let template_failure_limit = parse_failure_limit(&get)?;
        let template_rest = Duration::from_secs(parse_seconds(&get, "HOSTFACTORY_TEMPLATE_REST_SECS", 600)?);
        let events = parse_events(&get, runtime, &store)?;
        let events_source = get("HOSTFACTORY_EVENTS_SOURCE").unwrap_or_else(|| "hostfactory-aws".into());

        Ok(Config {
            runtime,
            templates,
            store,
            table_prefix,
            listen,
            local_timeouts,
            default_provider,
            templates_cache_ttl,
            retention,
            spot_fallback_margin,
            reconcile,
            metrics,
            metrics_namespace,
            call_budget,
            pool_cooldown,
            template_failure_limit,
            template_rest,
            events,
            events_source,
        })
    }
}

/// `HOSTFACTORY_EVENTS`: `eventbridge:<bus>`, `file:<path>` or `off`; locally `file:` under
/// `.data/` by default, else `off` (template.yaml names the stack's bus).
fn parse_events(get: &impl Fn(&str) -> Option<String>, runtime: Runtime, store: &StoreLocation) -> Result<EventsTarget> {
    let bad = |value: &str| Error::Config(format!("HOSTFACTORY_EVENTS '{value}' is not eventbridge:<bus>, file:<path> or off"));
    Ok(match get("HOSTFACTORY_EVENTS") {
        None if runtime == Runtime::Local && matches!(store, StoreLocation::Sqlite(_)) => {
            EventsTarget::File(repo_root().join(".data/events.jsonl"))
        }
        None => EventsTarget::Off,
        Some(value) if value == "off" => EventsTarget::Off,
        Some(value) => match value.split_once(':') {
            Some(("file", path)) if !path.is_empty() => EventsTarget::File(PathBuf::from(path)),
            Some(("eventbridge", bus)) if !bus.is_empty() => EventsTarget::EventBridge(bus.to_owned()),
            _ => return Err(bad(&value)),
        },
    })
}

/// `HOSTFACTORY_LISTEN` (default 127.0.0.1:8080).
fn parse_listen(get: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr> {
    match get("HOSTFACTORY_LISTEN") {
        Some(value) => value.parse().map_err(|_| {
            Error::Config(format!("HOSTFACTORY_LISTEN '{value}' is not an address such as 127.0.0.1:8080"))
        }),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
    }
}

/// `HOSTFACTORY_TEMPLATE_FAILURE_LIMIT` (a whole number, default 3).
fn parse_failure_limit(get: &impl Fn(&str) -> Option<String>) -> Result<u32> {
    let Some(value) = get("HOSTFACTORY_TEMPLATE_FAILURE_LIMIT") else { return Ok(3) };
    value.parse().map_err(|_| {
        Error::Config(format!("HOSTFACTORY_TEMPLATE_FAILURE_LIMIT '{value}' is not a whole number of requests"))
    })
}

/// `HOSTFACTORY_TABLE_PREFIX` (default `hostfactory`): letters, digits, `_`, `-`, `.`.
fn parse_table_prefix(get: &impl Fn(&str) -> Option<String>) -> Result<String> {
    let table_prefix = get("HOSTFACTORY_TABLE_PREFIX").unwrap_or_else(|| "hostfactory".into());
    if !table_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) || table_prefix.len() > 200 {
        return Err(Error::Config(format!(
            "HOSTFACTORY_TABLE_PREFIX '{table_prefix}' may only hold letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(table_prefix)
}

/// `HOSTFACTORY_CALL_BUDGET_SECS` (at least 1, default 20).
fn parse_call_budget(get: &impl Fn(&str) -> Option<String>) -> Result<Duration> {
    match parse_seconds(get, "HOSTFACTORY_CALL_BUDGET_SECS", 20)? {
        0 => Err(Error::Config("HOSTFACTORY_CALL_BUDGET_SECS must be at least 1 (seconds)".into())),
        secs => Ok(Duration::from_secs(secs)),
    }
}

/// `HOSTFACTORY_RETENTION_DAYS` (1 to 3650, default 30) as a duration.
fn parse_retention(get: &impl Fn(&str) -> Option<String>) -> Result<Duration> {
    let days = match get("HOSTFACTORY_RETENTION_DAYS") {
        None => 30,
        Some(value) => value.parse::<u64>().ok().filter(|days| (1..=3650).contains(days)).ok_or_else(|| {
            Error::Config(format!("HOSTFACTORY_RETENTION_DAYS '{value}' must be 1 to 3650 (days)"))
        })?,
    };
    Ok(Duration::from_secs(days * 24 * 3600))
}

fn parse_reconcile_timings(get: &impl Fn(&str) -> Option<String>) -> Result<ReconcileTimings> {
    let seconds = |name: &str, default: u64| parse_seconds(get, name, default).map(Duration::from_secs);
    Ok(ReconcileTimings {
        pending_timeout: seconds("HOSTFACTORY_PENDING_TIMEOUT_SECS", 300)?,
        launch_timeout: seconds("HOSTFACTORY_LAUNCH_TIMEOUT_SECS", 900)?,
        orphan_grace: seconds("HOSTFACTORY_ORPHAN_GRACE_SECS", 600)?,
        launch_template_grace: seconds("HOSTFACTORY_LAUNCH_TEMPLATE_GRACE_SECS", 3600)?,
        unclaimed: seconds("HOSTFACTORY_UNCLAIMED_SECS", 600)?,
        capacity_quiet: seconds("HOSTFACTORY_CAPACITY_QUIET_SECS", 30)?,
    })
}

/// `HOSTFACTORY_METRICS`: on by default in Lambda, off locally.
fn parse_metrics_switch(get: &impl Fn(&str) -> Option<String>, runtime: Runtime) -> Result<bool> {
    match get("HOSTFACTORY_METRICS").map(|v| v.to_ascii_lowercase()) {
        None => Ok(runtime == Runtime::Lambda),
        Some(v) if ["1", "true", "on", "yes"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "off", "no"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(Error::Config(format!("HOSTFACTORY_METRICS '{v}' must be true or false"))),
    }
}

fn parse_seconds(get: &impl Fn(&str) -> Option<String>, name: &str, default: u64) -> Result<u64> {
    match get(name) {
        None => Ok(default),
        Some(value) => {
            value.parse().map_err(|_| Error::Config(format!("{name} '{value}' is not a whole number of seconds")))
        }
    }
}

fn parse_local_timeouts(get: &impl Fn(&str) -> Option<String>) -> Result<LocalTimeouts> {
    let positive = |name: &str, default: u64| match parse_seconds(get, name, default)? {
        0 => Err(Error::Config(format!("{name} must be at least 1 (seconds)"))),
        secs => Ok(Duration::from_secs(secs)),
    };
    Ok(LocalTimeouts {
        headers: positive("HOSTFACTORY_HEADER_TIMEOUT_SECS", 10)?,
        body: positive("HOSTFACTORY_BODY_TIMEOUT_SECS", 30)?,
    })
}

fn parse_templates_location(value: &str) -> Result<TemplatesLocation> {
    let Some(rest) = value.strip_prefix("s3://") else {
        return Ok(TemplatesLocation::Folder(PathBuf::from(value)));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Config(format!("HOSTFACTORY_TEMPLATES '{value}' names no bucket")));
    }
    let prefix = match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    Ok(TemplatesLocation::S3 { bucket: bucket.to_owned(), prefix })
}

fn parse_store_location(value: &str) -> Result<StoreLocation> {
    if value.eq_ignore_ascii_case("dynamodb") {
        return Ok(StoreLocation::DynamoDb);
    }
    match value.strip_prefix("sqlite:") {
        Some(path) if !path.is_empty() => Ok(StoreLocation::Sqlite(PathBuf::from(path))),
        _ => Err(Error::Config(format!("HOSTFACTORY_STORE '{value}' must be 'dynamodb' or 'sqlite:<path>'"))),
    }
}

/// A provider instance name becomes part of file names, so it is held to a safe charset.
/// The message echoes at most [`crate::caller_text::MAX_LOGGED_CHARS`] characters of the name.
pub fn validate_provider_name(name: &str) -> std::result::Result<(), String> {
    let shown = crate::caller_text::bounded(name);
    if name.is_empty() || name.len() > 64 {
        return Err(format!("'{shown}' must be 1 to 64 characters long"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("'{shown}' may only hold letters, digits, '_' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
