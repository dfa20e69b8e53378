//! Lifecycle domain events: every change to a template, request or machine, published once to
//! EventBridge (or a JSON Lines file). The store captures each change of its records in the
//! writing transaction (its change feed); [`drain`] derives the events of each change
//! ([`derive`]), publishes them and only then forgets the change, so a crash anywhere loses no
//! event and a change published twice carries the same `eventId` both times. Nothing here runs
//! on a HostFactory call's path: the local server drains in the background.

mod derive;
pub mod publish;
pub mod stream;
pub mod templates;

use crate::error::Result;
use crate::metrics::{Metrics, emit_events};
use crate::store::{Change, ChangeFeed, ChangeKind, Store};

pub use derive::{DETAIL_TYPES, DomainEvent, SCHEMA_VERSION, event_id, machine_events, request_events};
pub use publish::Publisher;

/// Changes one drain round reads.
const BATCH: usize = 100;
/// Failed deliveries of a change before it is dead-lettered (logged with its events, and
/// forgotten, so one poisoned change cannot hold back the others).
pub const MAX_ATTEMPTS: u32 = 5;

/// What a [`drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub changes: usize,
    pub events: usize,
}

/// The events of one captured change.
pub fn events_of(change: &Change) -> Vec<DomainEvent> {
    match &change.kind {
        ChangeKind::Request { old, new } => request_events(old.as_ref(), new.as_ref()),
        ChangeKind::Machine { old, new } => machine_events(old.as_ref(), new.as_ref()),
        ChangeKind::Event(value) => {
            let known = DETAIL_TYPES.iter().find(|(name, _)| value["detailType"] == *name).map(|(name, _)| *name);
            known.map(|detail_type| DomainEvent { detail_type, detail: value["detail"].clone() }).into_iter().collect()
        }
    }
}

/// Publishes the events of every captured change, oldest first, until none is left; a batch
/// that fails stays (its attempts counted) for the next drain, and the error is answered.
pub async fn drain(store: &Store, publisher: &Publisher, metrics: &Metrics) -> Result<Drained> {
    let Some(feed) = &store.changes else { return Ok(Drained::default()) };
    let mut drained = Drained::default();
    loop {
        let changes = feed.next_changes(BATCH).await?;
        if changes.is_empty() {
            return Ok(drained);
        }
        let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
        let events: Vec<DomainEvent> = changes.iter().flat_map(events_of).collect();
        if let Err(err) = publisher.publish(&events).await {
            emit_events(metrics, 0, events.len() as u64);
            feed.failed(&seqs).await?;
            dead_letter(feed.as_ref(), &changes).await?;
            tracing::warn!(changes = changes.len(), events = events.len(), error = %err, "events not published; retried later");
            return Err(err);
        }
        feed.delivered(&seqs).await?;
        emit_events(metrics, events.len() as u64, 0);
        drained.changes += changes.len();
        drained.events += events.len();
    }
}

/// Forgets the changes that failed [`MAX_ATTEMPTS`] times, logging each event (the log is the
/// dead-letter record locally).
async fn dead_letter(feed: &dyn ChangeFeed, changes: &[Change]) -> Result<()> {
    let dead: Vec<&Change> = changes.iter().filter(|c| c.attempts + 1 >= MAX_ATTEMPTS).collect();
    for change in &dead {
        for event in events_of(change) {
            tracing::error!(detail_type = event.detail_type, detail = %event.detail, "event dead-lettered after {MAX_ATTEMPTS} attempts");
        }
    }
    let seqs: Vec<i64> = dead.iter().map(|c| c.seq).collect();
    if !seqs.is_empty() {
        feed.delivered(&seqs).await?;
    }
    Ok(())
}
