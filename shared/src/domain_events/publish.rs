//! Where domain events go: EventBridge (PutEvents, 10 entries a call, failed entries retried
//! one by one with backoff), a JSON Lines file, or nowhere.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::DomainEvent;
use crate::config::{Config, EventsTarget};
use crate::error::{Error, Result};

/// PutEvents takes at most 10 entries.
pub const ENTRIES_PER_CALL: usize = 10;
/// Calls per chunk before its failed entries fail the publication.
const ATTEMPTS: u32 = 4;

pub enum Publisher {
    Off,
    File { path: PathBuf, source: String },
    Bus { client: aws_sdk_eventbridge::Client, bus: String, source: String },
}

impl Publisher {
    pub fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Publisher {
        match &config.events {
            EventsTarget::Off => Publisher::Off,
            EventsTarget::File(path) => Publisher::File { path: path.clone(), source: config.events_source.clone() },
            EventsTarget::EventBridge(bus) => Publisher::Bus {
                client: aws_sdk_eventbridge::Client::new(sdk),
                bus: bus.clone(),
                source: config.events_source.clone(),
            },
        }
    }

    /// Publishes every one of `events`, or fails (then some may have been published: each
    /// carries its `eventId`, so consumers drop a repeat).
    pub async fn publish(&self, events: &[DomainEvent]) -> Result<()> {
        match self {
            Publisher::Off => Ok(()),
            _ if events.is_empty() => Ok(()),
            Publisher::File { path, source } => append(path, source, events).await,
            Publisher::Bus { client, bus, source } => {
                for chunk in events.chunks(ENTRIES_PER_CALL) {
                    put_chunk(client, bus, source, chunk).await?;
                }
                Ok(())
            }
        }
    }
}

/// One line per event, in EventBridge's envelope (`source`, `detail-type`, `detail`).
async fn append(path: &PathBuf, source: &str, events: &[DomainEvent]) -> Result<()> {
    let context = || format!("appending events to {}", path.display());
    if let Some(folder) = path.parent() {
        tokio::fs::create_dir_all(folder).await.map_err(|e| Error::store(context(), e))?;
    }
    let mut text = String::new();
    for event in events {
        text.push_str(&json!({"source": source, "detail-type": event.detail_type, "detail": event.detail}).to_string());
        text.push('\n');
    }
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.map_err(|e| Error::store(context(), e))?;
    file.write_all(text.as_bytes()).await.map_err(|e| Error::store(context(), e))?;
    file.flush().await.map_err(|e| Error::store(context(), e))
}

/// PutEvents of up to 10 events; entries EventBridge failed are sent again, alone, after a
/// pause (50, 200, 800 ms), until all are in or the attempts run out.
async fn put_chunk(client: &aws_sdk_eventbridge::Client, bus: &str, source: &str, chunk: &[DomainEvent]) -> Result<()> {
    let mut left: Vec<&DomainEvent> = chunk.iter().collect();
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 * 4u64.pow(attempt - 1))).await;
        }
        let entries: Vec<PutEventsRequestEntry> = left
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder().event_bus_name(bus).source(source).detail_type(e.detail_type).detail(e.detail.to_string()).build()
            })
            .collect();
        let output = client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| Error::aws(format!("publishing {} event(s) to {bus}", left.len()), e))?;
        let failed = failed_entries(&output);
        if failed.is_empty() {
            return Ok(());
        }
        last = failed.iter().map(|(_, why)| why.as_str()).collect::<Vec<_>>().join("; ");
        tracing::warn!(bus, failed = failed.len(), attempt, "events refused by EventBridge; sending them again");
        left = failed.into_iter().map(|(i, _)| left[i]).collect();
    }
    Err(Error::upstream(format!("publishing events to {bus}"), format!("{} entries failed: {last}", left.len())))
}

/// The entries of a PutEvents answer that failed, by position, with EventBridge's reason.
fn failed_entries(output: &PutEventsOutput) -> Vec<(usize, String)> {
    if output.failed_entry_count() == 0 {
        return Vec::new();
    }
    output
        .entries()
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let code = entry.error_code()?;
            Some((i, format!("{code}: {}", entry.error_message().unwrap_or_default())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_eventbridge::types::PutEventsResultEntry;

    use super::*;

    #[test]
    fn only_the_entries_eventbridge_failed_are_sent_again() {
        let ok = PutEventsResultEntry::builder().event_id("e-1").build();
        let throttled = PutEventsResultEntry::builder().error_code("ThrottlingException").error_message("slow down").build();
        let output = PutEventsOutput::builder().failed_entry_count(1).entries(ok.clone()).entries(throttled).entries(ok.clone()).build();
        assert_eq!(failed_entries(&output), [(1, "ThrottlingException: slow down".to_owned())]);
        let all_in = PutEventsOutput::builder().failed_entry_count(0).entries(ok).build();
        assert!(failed_entries(&all_in).is_empty());
    }
}
