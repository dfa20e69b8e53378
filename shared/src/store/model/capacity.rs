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

/// A pool (an instance type in a subnet, by its key) skipped by every launch until `until`
/// (epoch seconds), because it answered `reason` (an EC2 capacity error code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cooldown {
    pub pool: String,
    pub until: i64,
    pub reason: String,
}

/// How a template's recent launches went: requests in a row that launched nothing, and until
/// when it rests (epoch seconds) after too many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub failures: u32,
    pub rested_until: Option<i64>,
}

impl Health {
    /// Whether the template rests at `now`.
    pub fn resting(&self, now: i64) -> bool {
        self.rested_until.is_some_and(|until| until > now)
    }
}

/// A template's units in use and its [`Health`], as one read gives both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Availability {
    pub in_use: u64,
    pub health: Health,
}
