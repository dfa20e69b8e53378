//! Template writes and validations (`PUT`/`DELETE /api/v1/templates/{id}`, `POST .../validate`)
//! with their domain events. A write is announced to the store before the file is written and
//! its event recorded after: a crash between the two leaves an intent, which [`settle_stale`]
//! (the reconciler, the local server's drain) commits when the file shows the write was made
//! and forgets when it was not, so no write goes unpublished.

use serde_json::{Value, json};

use crate::app::AppState;
use crate::config::EventsTarget;
use crate::domain_events::templates::{Current, Intent, judge, template_validated, template_written};
use crate::domain_events::DomainEvent;
use crate::error::{Error, Result};
use crate::store::now;
use crate::templates::{Found, Level, Problem, Written};

/// How old an intent must be before it is judged: longer than any write may take (API
/// Gateway ends a templates call after 29 s), so a write still in flight is never judged.
pub const INTENT_GRACE_SECS: i64 = 120;

/// Who writes which template.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub provider: &'a str,
    pub template_id: &'a str,
    /// The caller's IAM principal, or `local`.
    pub by: &'a str,
}

/// What [`settle_stale`] did with the intents it judged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Writes that were made: their events recorded.
    pub committed: usize,
    /// Writes that were not made (or that a later write replaced): dropped.
    pub forgotten: usize,
}

/// Creates or replaces template `entry` (validated by the caller) with its event.
pub async fn put_template(state: &AppState, writer: Writer<'_>, entry: Value, level: Option<Level>, if_match: Option<&str>) -> Result<Written> {
    let intent = announce(state, writer, Some(&entry)).await?;
    let written = state.catalog.put(writer.provider, writer.template_id, entry, level, if_match).await;
    conclude(state, intent.as_ref(), written).await
}

/// Deletes a template with its event.
pub async fn delete_template(state: &AppState, writer: Writer<'_>, if_match: Option<&str>) -> Result<Written> {
    let intent = announce(state, writer, None).await?;
    let written = state.catalog.delete(writer.provider, writer.template_id, if_match).await;
    conclude(state, intent.as_ref(), written).await
}

/// Records a validation's `Template Validated` event (nothing is written, so a failure to record
/// it is logged and the answer stands).
pub async fn record_validation(state: &AppState, provider: &str, by: &str, template_ids: &[String], problems: &[Problem]) {
    if !recorded(state) {
        return;
    }
    let problems: Vec<Value> = problems.iter().filter_map(|p| serde_json::to_value(p).ok()).collect();
    let call = uuid::Uuid::new_v4().to_string();
    let event = template_validated(provider, template_ids, &problems, by, now(), &call);
    if let Err(err) = state.store.event_log.append_event(&as_record(&event)).await {
        tracing::warn!(detail_type = event.detail_type, error = %err, "template event not recorded");
    }
}

/// The write's intent, recorded before it (`None` when events are off, or for a delete of a
/// template that does not exist, which the catalog refuses). A failure to record it refuses the
/// write: nothing is written without its event.
async fn announce(state: &AppState, writer: Writer<'_>, new: Option<&Value>) -> Result<Option<Intent>> {
    if !recorded(state) {
        return Ok(None);
    }
    let before = found(state, writer.provider, writer.template_id).await?;
    if new.is_none() && before.is_none() {
        return Ok(None);
    }
    let intent = Intent {
        id: uuid::Uuid::new_v4().to_string(),
        provider: writer.provider.to_owned(),
        template_id: writer.template_id.to_owned(),
        by: writer.by.to_owned(),
        old: before.as_ref().map(|f| f.raw.clone()),
        new: new.cloned(),
        file_before: before.map(|f| f.file),
        at: now(),
    };
    let body = serde_json::to_value(&intent).map_err(|e| Error::store("encoding a template write intent", e))?;
    state.store.event_log.intend(&intent.id, intent.at, &body).await?;
    Ok(Some(intent))
}

/// After the write: its event replaces the intent, or the intent goes when the write surely
/// was not made. Either failing is logged and left to [`settle_stale`]; the write's answer stands.
async fn conclude(state: &AppState, intent: Option<&Intent>, written: Result<Written>) -> Result<Written> {
    let Some(intent) = intent else { return written };
    let log = state.store.event_log.as_ref();
    let outcome = match &written {
        Ok(w) => log.commit_intent(&intent.id, &as_record(&template_written(intent, &w.file, w.etag.as_deref().unwrap_or_default()))).await,
        Err(err) if surely_unwritten(err) => log.forget_intent(&intent.id).await,
        Err(_) => Ok(()),
    };
    if let Err(err) = outcome {
        tracing::warn!(template_id = %intent.template_id, error = %err, "template event left as an intent: the reconciler settles it");
    }
    written
}

/// Settles the intents a crash left: those older than [`INTENT_GRACE_SECS`].
pub async fn settle_due(state: &AppState) -> Result<Settled> {
    settle_stale(state, now() - INTENT_GRACE_SECS).await
}

/// Judges every intent recorded before `before`: commits the event of each write that was made
/// (with the file's current ETag) and forgets the others.
pub async fn settle_stale(state: &AppState, before: i64) -> Result<Settled> {
    let mut settled = Settled::default();
    for body in state.store.event_log.stale_intents(before).await? {
        let intent: Intent = serde_json::from_value(body).map_err(|e| Error::store("reading a template write intent", e))?;
        state.catalog.load(&intent.provider, true).await?;
        let now_found = found(state, &intent.provider, &intent.template_id).await?;
        let current = now_found.as_ref().map(|f| Current { raw: &f.raw, file: &f.file, etag: &f.etag });
        match judge(&intent, current) {
            Some((file, etag)) => {
                state.store.event_log.commit_intent(&intent.id, &as_record(&template_written(&intent, &file, &etag))).await?;
                settled.committed += 1;
            }
            None => {
                state.store.event_log.forget_intent(&intent.id).await?;
                settled.forgotten += 1;
            }
        }
    }
    if settled != Settled::default() {
        tracing::info!(committed = settled.committed, forgotten = settled.forgotten, "stale template write intents settled");
    }
    Ok(settled)
}

/// The template as written now (`None`: there is none).
async fn found(state: &AppState, provider: &str, template_id: &str) -> Result<Option<Found>> {
    match state.catalog.find(provider, template_id).await {
        Ok(found) => Ok(Some(found)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Whether a failed write surely changed nothing: refused before or by the write, not an AWS
/// call whose answer was lost (which may have been applied).
fn surely_unwritten(err: &Error) -> bool {
    !matches!(err, Error::Aws { refused: false, .. } | Error::Upstream { .. } | Error::Store { .. })
}

fn as_record(event: &DomainEvent) -> Value {
    json!({"detailType": event.detail_type, "detail": event.detail})
}

/// Whether template events are recorded at all.
fn recorded(state: &AppState) -> bool {
    state.config.events != EventsTarget::Off
}
