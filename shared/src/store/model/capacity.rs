//! The capacity counters' records: a reservation's outcome, a counter change named by its
//! operation, and a counter as the recount reads it.

use serde::{Deserialize, Serialize};

/// Outcome of a capacity reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// Not enough room: `available` is what could be reserved now.
    Insufficient {
        available: u32,
    },
}

/// Whether a [`CapacityChange`] takes units or gives them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Units counted beyond `maxNumber` (a fleet's overshoot): never refused.
    Reserve,
    Release,
}

/// One change of a capacity counter, named by an operation id that is unique per logical
/// change and stable across its retries, so it is applied once however often it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityChange {
    pub op_id: String,
    /// The counter ([`crate::store::capacity_key`]).
    pub key: String,
    pub direction: Direction,
    pub units: u32,
    /// Epoch seconds it was decided; one older than the operation markers live is no longer
    /// applied (its marker may be gone), the recount settles it instead.
    pub decided_at: i64,
}

/// A per-template counter as the reconciler's recount reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub in_use: u64,
    /// Bumped by every change; a correction is written only on the version it read.
    pub version: u64,
    /// Epoch seconds of the last change (0 when never recorded).
    pub updated_at: i64,
}

/// `maxNumber` of a template: `-1` (any negative value) is unlimited.
pub fn limit(max: i64) -> Option<u64> {
    u64::try_from(max).ok()
}

/// What the store remembers of a pool (an instance type in a subnet, by its key) that answered
/// a capacity error: every launch skips it until `until` (epoch seconds) because it answered
/// `reason` (an EC2 capacity error code), unless a launch found capacity in it again at
/// `capacity_at` (which ends the cooldown). The record is kept until `kept_until`, past the
/// cooldown, so that a template resting since then learns its pool has capacity again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cooldown {
    pub pool: String,
    pub until: i64,
    pub reason: String,
    pub capacity_at: Option<i64>,
    pub kept_until: i64,
}

impl Cooldown {
    /// Whether launches skip the pool at `now`.
    pub fn cooling(&self, now: i64) -> bool {
        self.until > now
    }

    /// The record of a launch that found capacity in `pool` at `now`: its cooldown is over.
    pub fn capacity_seen(pool: &str, now: i64, kept_until: i64) -> Cooldown {
        Cooldown { pool: pool.to_owned(), until: now, reason: String::new(), capacity_at: Some(now), kept_until }
    }
}

/// How a template's recent launches went: requests in a row that launched nothing, and its
/// [`Rest`] after too many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub failures: u32,
    pub rest: Option<Rest>,
}

/// When a template's rest began and ends (epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rest {
    pub since: i64,
    pub until: i64,
}

impl Health {
    /// The rest not over at `now`.
    pub fn resting(&self, now: i64) -> Option<Rest> {
        self.rest.filter(|rest| rest.until > now)
    }
}

/// A template's units in use and its [`Health`], as one read gives both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Availability {
    pub in_use: u64,
    pub health: Health,
}
