//! Requests, machines and per-template capacity behind small repository traits, with two
//! backends: DynamoDB (production, [`dynamo`]) and embedded SQLite (local default, [`sqlite`]).
//!
//! Every update names the `version` it read and fails with [`Error::Stale`] when someone else
//! wrote in between; nothing is ever overwritten blindly (only migration upserts). On DynamoDB a
//! write whose answer was lost and that the SDK retried finds its own first attempt applied (by
//! the `writeId` it carries) and succeeds. Capacity reservations are atomic in both backends,
//! so `maxNumber` holds under concurrent callers, and every counter change is applied once per
//! operation id (an operation marker written in the same transaction), so a retried change is
//! not counted twice.
//!
//! A backend implements the generic [`Table`] once for both record kinds (SQLite:
//! `sqlite/table.rs`; DynamoDB: `dynamo/items.rs` and `dynamo/batch.rs`) plus the queries of
//! each kind ([`RequestQueries`], [`MachineQueries`]); `table.rs` assembles the repositories
//! from them.

mod changes;
pub mod dynamo;
pub mod migrate;
mod model;
pub mod orb;
pub mod sqlite;
mod table;
mod versioned;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;

use crate::config::{Config, StoreLocation};
use crate::error::{Error, Result};

pub use model::{
    Action, ActionRecord, Availability, CapacityChange, Cooldown, Counter, Direction, Health, InstanceState, Lifecycle, MachineRecord, Owner, PROVISION_PREFIX, Page,
    RETURN_PREFIX, RequestKind, RequestRecord, RequestPhase, Reservation, Rest, Effect, MachineState, Refusal, decide, expiry, limit, now,
};
pub use changes::Written;
pub use table::{MachineQueries, RequestQueries, Table};
pub use versioned::Versioned;

#[async_trait]
pub trait RequestRepository: Send + Sync {
    async fn get(&self, request_id: &str) -> Result<Option<RequestRecord>>;

    /// The requests that exist among `ids`, in no particular order; any number of ids.
    async fn batch_get(&self, ids: &[String]) -> Result<Vec<RequestRecord>>;

    /// Writes a new request; [`Error::Conflict`] when the id exists.
    async fn put_if_absent(&self, request: &RequestRecord) -> Result<()>;

    /// Replaces the stored request if it is still at `request.version`, and returns what was
    /// written (version + 1). [`Error::Stale`] when it moved on, [`Error::NotFound`] when absent.
    async fn update(&self, request: &RequestRecord) -> Result<RequestRecord>;

    /// Requests the reconciler has work on ([`RequestRecord::is_active`]: unfinished, finished
    /// but never claimed, or finished with capacity changes still to apply), oldest first (sparse
    /// index; never a scan). On DynamoDB the index is eventually consistent: a request finished a
    /// moment ago may still be listed, so callers re-read by key ([`RequestRepository::get`])
    /// before acting on one.
    async fn list_active(&self) -> Result<Vec<RequestRecord>>;

    /// Writes a new request and updates `machines` (each on its version) in one transaction:
    /// all or nothing. For a return request and the machines it returns. At most
    /// [`MAX_TRANSACTION_MACHINES`] machines.
    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>>;

    /// Records a launch: writes `machines` as they are (new records; a repeat replaces them)
    /// and replaces `request` if it is still at its version, in one transaction (DynamoDB: the
    /// first [`MAX_TRANSACTION_MACHINES`] with the request, any others batched before it).
    /// Returns the request as written. [`Error::Stale`] when the request moved on (the
    /// machines are written all the same).
    async fn update_launched(&self, request: &RequestRecord, machines: &[MachineRecord]) -> Result<RequestRecord>;

    /// Replaces each request and machine still at its version, in as few writes as the backend
    /// allows: DynamoDB TransactWriteItems of up to 100 records, each request in the one that
    /// writes its machines or after them (`changes::plan`), SQLite one transaction. A record
    /// another writer moved on (or removed) first is `None` in the answer and the rest are
    /// written; an error means that some may not be. Record ids are distinct.
    async fn update_all(&self, requests: &[RequestRecord], machines: &[MachineRecord]) -> Result<Written>;

    async fn delete(&self, request_id: &str) -> Result<()>;

    /// Writes requests as they are, replacing any with the same id (migration).
    async fn upsert_batch(&self, requests: &[RequestRecord]) -> Result<()>;
}

/// DynamoDB's TransactWriteItems takes 100 actions: one request and 99 machines.
pub const MAX_TRANSACTION_MACHINES: usize = 99;

#[async_trait]
pub trait MachineRepository: Send + Sync {
    async fn get(&self, machine_id: &str) -> Result<Option<MachineRecord>>;

    /// The machines that exist among `ids`; any number of ids.
    async fn batch_get(&self, ids: &[String]) -> Result<Vec<MachineRecord>>;

    /// Writes a new machine; [`Error::Conflict`] when the id exists.
    async fn put_if_absent(&self, machine: &MachineRecord) -> Result<()>;

    /// Writes each machine whose id does not exist yet, in as few writes as the backend allows
    /// (DynamoDB: TransactWriteItems of 100 conditional puts; SQLite: one transaction); `false`
    /// for one that existed, which is left as it was (a concurrent caller recorded it first).
    async fn put_all_if_absent(&self, machines: &[MachineRecord]) -> Result<Vec<bool>>;

    /// Replaces the stored machine if it is still at `machine.version`; returns it at version + 1.
    async fn update(&self, machine: &MachineRecord) -> Result<MachineRecord>;

    /// Machines launched for a provisioning request.
    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>>;

    /// Machines a return request covers.
    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>>;

    /// Machines of `template_id` in `provider`, whatever their state (index `template-index`;
    /// the reconciler's capacity recount, never a request path).
    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>>;

    /// Machines whose host name (PrivateDnsName) is among `names`.
    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>>;

    /// Machines of `provider` the cloud is taking back (`reclaimedAt` set), from a sparse
    /// index: never a scan.
    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>>;

    /// One page of the machines `filter` selects, in machine id order after the cursor
    /// `after` (the `next` of the page before), from an index (never a scan): at most `limit`,
    /// fewer when `filter.state` drops some (DynamoDB filters after reading); `next` is `None`
    /// on the last page.
    async fn list_page(&self, filter: &MachineFilter, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>>;

    /// Writes machines as they are, replacing any with the same id: recording a launch's
    /// instances and migration. Batched (25 per DynamoDB call), safe to repeat.
    async fn upsert_batch(&self, machines: &[MachineRecord]) -> Result<()>;

    async fn delete(&self, machine_id: &str) -> Result<()>;
}

/// The capacity counter key of a template within its provider instance.
pub fn capacity_key(provider: &str, template_id: &str) -> String {
    format!("{provider}/{template_id}")
}

/// How long an operation marker is kept (DynamoDB TTL / SQLite purge): a change is
/// idempotent by its op id for this long.
pub const OP_MARKER_TTL: Duration = Duration::from_secs(24 * 3600);

/// Pending capacity changes older than this are left to the recount (their marker may expire
/// before the change would be applied).
pub const PENDING_CHANGE_LIFETIME: Duration = Duration::from_secs(23 * 3600);

/// Per-template counters of capacity units in use, so `maxNumber` holds across concurrent
/// requests. `key` identifies the template within its provider instance, e.g.
/// `awsinst/Template-1`. Every change names its operation (`op_id`, unique per logical change,
/// the same on every retry of it) and is applied at most once per op id within
/// [`OP_MARKER_TTL`].
#[async_trait]
pub trait CapacityRepository: Send + Sync {
    /// Atomically adds `count` unless that would exceed `max` (negative = unlimited). A repeat
    /// of an applied `op_id` (a retry whose answer was lost) answers `Reserved` and changes
    /// nothing.
    async fn reserve(&self, key: &str, op_id: &str, count: u32, max: i64) -> Result<Reservation>;

    /// [`reserve`](Self::reserve) of `request.machine_count` for the new `request`, recorded in
    /// the same transaction (a taken request id is [`Error::Conflict`] and reserves nothing):
    /// a reservation never stands without the request that holds it, and requestMachines
    /// writes both at once. `Insufficient` records nothing.
    async fn reserve_for(&self, request: &RequestRecord, key: &str, op_id: &str, max: i64) -> Result<Reservation>;

    /// Gives `count` back, once per `op_id` (a repeat is `Ok` and changes nothing). Never below
    /// what is held: releasing more than is in use is refused with
    /// [`Error::CapacityUnderflow`] and changes nothing (the recount settles it).
    async fn release(&self, key: &str, op_id: &str, count: u32) -> Result<()>;

    /// Applies every one of `changes` (reservations beyond any limit, releases never below what
    /// is held) and writes `request` (still at its stored version) at its next version, all in
    /// one transaction: the request that carried them pending, cleared of them, so a finish
    /// costs one write for its capacity and its record. `None` when any condition refused it (a
    /// change applied before, a release beyond what is held, the request moved on, or changes
    /// the store cannot apply in one transaction): nothing is written, and the caller applies
    /// them one at a time.
    async fn apply_with(&self, request: &RequestRecord, changes: &[CapacityChange]) -> Result<Option<RequestRecord>>;

    async fn in_use(&self, key: &str) -> Result<u64> {
        Ok(self.availability_of(&[key.to_owned()]).await?.remove(key).unwrap_or_default().in_use)
    }

    /// Units in use (absent counters are 0) and [`Health`] of each of `keys`: one read for all
    /// of them (DynamoDB BatchGetItem per 100 keys: both live on the counter item; SQLite one
    /// query), as getAvailableTemplates lists every template's.
    async fn availability_of(&self, keys: &[String]) -> Result<HashMap<String, Availability>>;

    /// Every counter (DynamoDB: the sparse `counter-index`; never a scan). Reconciler only.
    async fn counters(&self) -> Result<Vec<Counter>>;

    /// Sets the counter to `in_use` if it is still at `counter.version`; `false` when it moved.
    async fn correct(&self, counter: &Counter, in_use: u64) -> Result<bool>;
}

/// Which machines a listing selects: always of one provider instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineFilter {
    pub provider: String,
    pub request_id: Option<String>,
    pub template_id: Option<String>,
    pub state: Option<InstanceState>,
}

/// What launches remember for the next ones, shared by every function and process on the
/// store: pools that answered a capacity error ([`Cooldown`]s: DynamoDB items with a TTL in the
/// capacity table, a SQLite table; keyed `<type>@<subnet>`), and each template's [`Health`]
/// (on its capacity counter).
#[async_trait]
pub trait CooldownRepository: Send + Sync {
    /// The records of `pools` still kept at `now` (cooling or not), and the health of
    /// `template` (its capacity key): one read for all of them.
    async fn remembered(&self, pools: &[String], template: &str, now: i64) -> Result<(Vec<Cooldown>, Health)>;

    /// The records of `pools` still kept at `now` (getAvailableTemplates, for resting templates).
    async fn pools_remembered(&self, pools: &[String], now: i64) -> Result<Vec<Cooldown>>;

    /// Writes each of `records`, replacing what the pool had.
    async fn remember(&self, records: &[Cooldown]) -> Result<()>;

    /// One more request of `template` launched nothing: `limit` in a row rest it from `rest.since`
    /// until `rest.until`, and the count starts over. Answers its health now.
    async fn launch_failed(&self, template: &str, limit: u32, rest: Rest) -> Result<Health>;

    /// A request of `template` launched something: its count and rest end.
    async fn launch_succeeded(&self, template: &str) -> Result<()>;
}

/// One change the store captured, in the order written (SQLite: triggers on the requests and
/// machines tables fill a `changes` table in the writing transaction).
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: i64,
    /// Failed deliveries so far.
    pub attempts: u32,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone)]
pub enum ChangeKind {
    Request { old: Option<RequestRecord>, new: Option<RequestRecord> },
    Machine { old: Option<MachineRecord>, new: Option<MachineRecord> },
    /// A domain event of a change the store does not hold (a template file's), as
    /// `{"detailType", "detail"}`.
    Event(serde_json::Value),
}

/// Where the events of changes the store does not hold (a template file's) are recorded:
/// SQLite's change feed, or DynamoDB `event#<id>` items, which the capacity table's stream
/// delivers. A file write's intent is kept first, unpublished, and replaced by its event after
/// the write, so a crash between the two leaves an intent to judge, not a lost event.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Records `event` (`{"detailType", "detail"}`) for publication.
    async fn append_event(&self, event: &serde_json::Value) -> Result<()>;
    /// Keeps `intent` (opaque JSON) under `id` until it is committed or forgotten.
    async fn intend(&self, id: &str, at: i64, intent: &serde_json::Value) -> Result<()>;
    /// Replaces intent `id` with `event` in one write; nothing when the intent is gone.
    async fn commit_intent(&self, id: &str, event: &serde_json::Value) -> Result<()>;
    /// Drops intent `id` (its write was not made).
    async fn forget_intent(&self, id: &str) -> Result<()>;
    /// The intents kept since before `before` (epoch seconds).
    async fn stale_intents(&self, before: i64) -> Result<Vec<serde_json::Value>>;
}

/// The store's own feed of its changes, drained by the events publisher: a change stays until
/// it is delivered, so a crash between a write and its publication loses nothing (SQLite;
/// DynamoDB's is its streams).
#[async_trait]
pub trait ChangeFeed: EventLog {
    /// The oldest `limit` changes not delivered yet.
    async fn next_changes(&self, limit: usize) -> Result<Vec<Change>>;
    /// Forgets the delivered changes `seqs`.
    async fn delivered(&self, seqs: &[i64]) -> Result<()>;
    /// Counts one more failed delivery of each of `seqs`.
    async fn failed(&self, seqs: &[i64]) -> Result<()>;
}

/// Full listings for migration only (DynamoDB answers them with a Scan, so no request path may
/// use them). Pages are of up to `limit` records after the cursor `after`.
#[async_trait]
pub trait RecordSource: Send + Sync {
    async fn page_requests(&self, after: Option<String>, limit: usize) -> Result<Page<RequestRecord>>;
    async fn page_machines(&self, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>>;
}

/// The store as the service sees it: one handle per repository, all on the same backend.
#[derive(Clone)]
pub struct Store {
    pub requests: Arc<dyn RequestRepository>,
    pub machines: Arc<dyn MachineRepository>,
    pub capacity: Arc<dyn CapacityRepository>,
    pub cooldowns: Arc<dyn CooldownRepository>,
    /// Full listings (migration, admin commands): never from a request path.
    pub records: Arc<dyn RecordSource>,
    /// The store's feed of its changes for domain events (SQLite; `None` on DynamoDB, whose
    /// streams deliver them).
    pub changes: Option<Arc<dyn ChangeFeed>>,
    pub event_log: Arc<dyn EventLog>,
    /// Where the records live, for logs and messages.
    pub location: String,
}

impl Store {
    /// The store `config` names. SQLite opens (and creates or migrates its file) on first use.
    pub fn new(config: &Config, sdk: &SdkConfig) -> Self {
        match &config.store {
            StoreLocation::DynamoDb => Store::from_backend(Arc::new(dynamo::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.table_prefix,
            ))),
            StoreLocation::Sqlite(path) => Store::sqlite(path),
        }
    }

    /// The SQLite store at `path`, with its change feed.
    pub fn sqlite(path: &std::path::Path) -> Self {
        let backend = Arc::new(sqlite::SqliteStore::new(path));
        Store { changes: Some(backend.clone()), ..Store::from_backend(backend) }
    }

    pub fn from_backend<B>(backend: Arc<B>) -> Self
    where
        B: RequestRepository + MachineRepository + CapacityRepository + CooldownRepository + RecordSource + EventLog + Describe + 'static,
    {
        Store {
            location: backend.describe(),
            requests: backend.clone(),
            machines: backend.clone(),
            capacity: backend.clone(),
            cooldowns: backend.clone(),
            event_log: backend.clone(),
            records: backend,
            changes: None,
        }
    }
}

/// A backend's one-line description (table names, file path).
pub trait Describe {
    fn describe(&self) -> String;
}

/// The outcome of a conditional write, with losing to a concurrent writer as `None`: the other
/// writer's outcome stands.
pub fn unless_stale<T>(written: Result<T>) -> Result<Option<T>> {
    match written {
        Ok(value) => Ok(Some(value)),
        Err(Error::Stale { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// As [`unless_stale`], and a record removed meanwhile is lost the same way.
fn unless_lost<T>(written: Result<T>) -> Result<Option<T>> {
    match written {
        Err(Error::NotFound { .. }) => Ok(None),
        other => unless_stale(other),
    }
}

fn stale(what: &'static str, id: &str, expected: u64) -> Error {
    Error::Stale { what, id: id.to_owned(), expected }
}

fn exists(what: &'static str, id: &str) -> Error {
    Error::Conflict(format!("{what} '{id}' already exists"))
}

fn underflow(key: &str, held: u64, released: u32) -> Error {
    Error::CapacityUnderflow { key: key.to_owned(), held, released }
}

/// The marker key of an applied capacity operation, beside the counters.
fn op_marker(op_id: &str) -> String {
    format!("op#{op_id}")
}

/// Refuses more machines than one [`RequestRepository::put_with_machines`] transaction takes.
fn check_transaction_size(machines: &[MachineRecord]) -> Result<()> {
    let count = machines.len();
    if count > MAX_TRANSACTION_MACHINES {
        return Err(Error::invalid(
            "machines",
            format!("{count} machines in one transaction; at most {MAX_TRANSACTION_MACHINES}"),
        ));
    }
    Ok(())
}
