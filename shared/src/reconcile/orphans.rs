//! Instances tagged `hostfactory:managed=true` that no machine record knows: launched by a
//! call that died before recording them, or seen by EC2 only after their request gave up on
//! them. One whose request is still unfinished is adopted by it; one whose request is finished
//! is terminated once older than the grace period (a launch being recorded right now must not
//! lose its instances).
//!
//! Every request is written before EC2 is called, so an instance whose request this store has
//! never heard of was not launched through it: another deployment in the same account and
//! region (or a copy of the store, as `hostfactory reconcile` run with a local store against
//! real AWS). Those are logged and left alone, as are untagged instances.

use std::collections::{HashMap, HashSet};

use crate::app::AppState;
use crate::error::Result;
use crate::cloud::Observed;
use crate::cloud::tags;
use crate::calls::machine_record;
use crate::store::{MachineRecord, RequestKind, RequestRecord};

use super::{Report, seconds};

pub(super) async fn sweep(state: &AppState, now: i64, report: &mut Report) -> Result<()> {
    let managed = state.cloud.find_managed().await?;
    if managed.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = managed.iter().map(|i| i.instance_id.clone()).collect();
    let known: HashSet<String> =
        state.store.machines.batch_get(&ids).await?.into_iter().map(|m| m.machine_id).collect();
    let unknown: Vec<&Observed> = managed.iter().filter(|i| !known.contains(&i.instance_id)).collect();
    if unknown.is_empty() {
        return Ok(());
    }

    let request_ids: Vec<String> = unknown
        .iter()
        .filter_map(|i| i.tags.get(tags::REQUEST_ID).cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let requests: HashMap<String, RequestRecord> =
        state.store.requests.batch_get(&request_ids).await?.into_iter().map(|r| (r.request_id.clone(), r)).collect();

    let grace = seconds(state.config.reconcile.orphan_grace);
    let mut adopted: Vec<MachineRecord> = Vec::new();
    let mut doomed: Vec<String> = Vec::new();
    let mut foreign: Vec<&str> = Vec::new();
    for instance in unknown {
        match instance.tags.get(tags::REQUEST_ID).and_then(|id| requests.get(id)) {
            Some(request) if request.kind == RequestKind::Provision && !request.is_finished() => {
                adopted.push(machine_record(instance, request))
            }
            Some(_) if now.saturating_sub(instance.launch_time) >= grace => doomed.push(instance.instance_id.clone()),
            Some(_) => {}
            None => foreign.push(&instance.instance_id),
        }
    }
    if !foreign.is_empty() {
        report.foreign_instances += foreign.len();
        tracing::warn!(?foreign, "tagged instances of requests this store does not know; left alone");
    }
    if !adopted.is_empty() {
        state.store.machines.upsert_batch(&adopted).await?;
        report.orphans_adopted += adopted.len();
        let adopted: Vec<&str> = adopted.iter().map(|m| m.machine_id.as_str()).collect();
        tracing::warn!(?adopted, "unrecorded instances adopted by their unfinished request");
    }
    if !doomed.is_empty() {
        state.cloud.terminate(&doomed).await?;
        report.orphans_terminated += doomed.len();
        tracing::warn!(terminated = ?doomed, "orphaned tagged instances terminated");
    }
    Ok(())
}
