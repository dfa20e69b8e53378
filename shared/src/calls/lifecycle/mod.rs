//! The operator lifecycle of machines (`/api/v1/machines`): listing the machines this
//! deployment launched, showing one with the actions allowed now, and acting on one
//! ([`act`]). Only machines recorded in this deployment's store, of the caller's provider
//! instance and tagged `hostfactory:managed=true` in EC2, are ever touched.

mod act;

use serde::Serialize;

use crate::app::AppState;
use crate::cloud::{Observed, tags};
use crate::error::{Error, Result};
use crate::store::{Action, InstanceState, MachineFilter, MachineRecord, MachineState};

pub use act::act;

/// Most machines one page lists; and the default.
pub const MAX_PAGE: usize = 500;
pub const DEFAULT_PAGE: usize = 100;

/// A machine as the lifecycle routes answer it: its record, its lifecycle state and the
/// actions allowed in it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineView {
    #[serde(flatten)]
    pub machine: MachineRecord,
    pub machine_state: &'static str,
    pub allowed_actions: Vec<Action>,
}

impl MachineView {
    pub fn of(machine: MachineRecord) -> MachineView {
        let state = MachineState::of(&machine.state, machine.last_action());
        MachineView { machine_state: state.name(), allowed_actions: state.allowed().to_vec(), machine }
    }
}

/// One page of `GET /api/v1/machines`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineList {
    pub machines: Vec<MachineView>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The listing's query, as the caller wrote it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    pub request_id: Option<String>,
    pub template_id: Option<String>,
    pub state: Option<String>,
    pub limit: Option<usize>,
    pub next_token: Option<String>,
    /// Read by the provider extractor; listed here so it is not unknown.
    pub provider: Option<String>,
}

impl ListQuery {
    /// The store's filter and page size, each bad value a 400 naming its parameter.
    fn parse(self, provider: &str) -> Result<(MachineFilter, Option<String>, usize)> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be between 1 and {MAX_PAGE}, got {limit}")));
        }
        let state = match self.state.as_deref().map(InstanceState::parse) {
            Some(InstanceState::Other(name)) => {
                let known = "pending, running, stopping, stopped, shutting-down, terminated";
                return Err(Error::invalid("state", format!("'{name}' is not an EC2 state; one of {known}")));
            }
            state => state,
        };
        let filter = MachineFilter {
            provider: provider.to_owned(),
            request_id: nonblank("requestId", self.request_id)?,
            template_id: nonblank("templateId", self.template_id)?,
            state,
        };
        Ok((filter, token(self.next_token)?, limit))
    }
}

fn nonblank(field: &str, value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Error::invalid(field, "must not be empty")),
        other => Ok(other),
    }
}

/// The cursor: what a page's `nextToken` gave (an instance id), checked before it reaches the store.
fn token(value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(t) if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Err(Error::invalid("nextToken", "is not a token this API gave; start again without it"))
        }
        other => Ok(other),
    }
}

/// `GET /api/v1/machines`: one page from the store's indexes, no EC2 call.
pub async fn list(state: &AppState, provider: &str, query: ListQuery) -> Result<MachineList> {
    let (filter, after, limit) = query.parse(provider)?;
    let page = state.store.machines.list_page(&filter, after, limit).await?;
    Ok(MachineList { machines: page.items.into_iter().map(MachineView::of).collect(), next_token: page.next })
}

/// `GET /api/v1/machines/{id}`: the record with EC2's state now.
pub async fn show(state: &AppState, provider: &str, id: &str) -> Result<MachineView> {
    let (mut machine, observed) = managed(state, provider, id).await?;
    machine.state = observed.map_or(InstanceState::Terminated, |o| o.state);
    Ok(MachineView::of(machine))
}

/// The machine `id` of `provider` as recorded, and as EC2 describes it (`None`: EC2 no longer
/// knows it). 404 unless this deployment recorded it and EC2 tags it managed.
async fn managed(state: &AppState, provider: &str, id: &str) -> Result<(MachineRecord, Option<Observed>)> {
    let not_found = || Error::not_found("machine", id);
    let machine = state.store.machines.get(id).await?.filter(|m| m.provider == provider).ok_or_else(not_found)?;
    let observed = state.cloud.describe(&[id.to_owned()]).await?.remove(id);
    if let Some(seen) = &observed {
        let tag = |key: &str| seen.tags.get(key).map(String::as_str);
        if tag(tags::MANAGED) != Some("true") || tag(tags::PROVIDER).is_some_and(|p| p != provider) {
            tracing::warn!(machine_id = id, "recorded, but EC2 does not tag it as ours: not touched");
            return Err(not_found());
        }
    }
    Ok((machine, observed))
}

#[cfg(test)]
mod tests;
