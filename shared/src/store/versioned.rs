//! What both backends need of a stored record besides its body: its id, its optimistic-lock
//! version and its name in errors, so one generic table helper per backend serves requests and
//! machines alike.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{MachineRecord, RequestRecord};

pub trait Versioned: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The record's name in errors (`request`, `machine`).
    const WHAT: &'static str;

    fn id(&self) -> &str;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);

    /// This record as an update writes it: at the version after the one it was read at.
    fn next_version(&self) -> Self {
        let mut next = self.clone();
        next.set_version(self.version() + 1);
        next
    }
}

impl Versioned for RequestRecord {
    const WHAT: &'static str = "request";

    fn id(&self) -> &str {
        &self.request_id
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl Versioned for MachineRecord {
    const WHAT: &'static str = "machine";

    fn id(&self) -> &str {
        &self.machine_id
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}
