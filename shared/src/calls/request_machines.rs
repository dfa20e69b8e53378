//! requestMachines (spec §2.2): reserve capacity and record the request (one write), then launch.
//!
//! The request record is written before EC2 is called and every instance carries the request
//! id in its launch tags, so a crash or a failed write never leaves a launched instance
//! unaccounted for: the reconciler adopts it. Once EC2 started something the request id is
//! answered; a request HostFactory then never polls (the answer was lost) is unclaimed and
//! reaped by the reconciler (`reconcile::abandoned`).

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::hostfactory::{MachineResult, RequestAccepted, RequestMachinesInput};
use crate::cloud::{Launched, Observed};
use crate::store::{MachineRecord, RequestKind, RequestRecord, RequestPhase, Reservation, capacity_key, now};

use super::{capacity, cooldowns};

pub async fn request_machines(
    state: &AppState,
    provider: &str,
    input: RequestMachinesInput,
) -> Result<RequestAccepted> {
    input.validate()?;
    let template_id = input.template.template_id.trim();
    let count = u32::try_from(input.template.machine_count)
        .map_err(|_| Error::invalid("template.machineCount", "is too large"))?;
    let loaded = state.catalog.load(provider, false).await?;
    let template = loaded.template(template_id).ok_or_else(|| Error::not_found("template", template_id))?;

    let key = capacity_key(provider, template_id);
    let max = template.effective_max_number();
    let mut request = RequestRecord::new(RequestKind::Provision, template_id, provider, count, now());
    request.provider_api = Some(template.provider_api().to_string());
    request.fleet_type = template.fleet_type();
    // The reservation and the request record in one write: neither stands without the other.
    let reserve = capacity::reserve_op(&request.request_id);
    if let Reservation::Insufficient { available } = state.store.capacity.reserve_for(&request, &key, &reserve, max).await? {
        return Err(Error::Unprocessable(format!(
            "template '{template_id}' has {available} machine(s) available (maxNumber {max}); {count} requested"
        )));
    }
    let before = cooldowns::before_launch(state, template, &key).await;
    let launched = match state.cloud.launch(template, provider, &request.request_id, count, &before.cooling(now())).await {
        Ok(launched) => launched,
        Err(err) => Launched::failed(err),
    };
    cooldowns::remember(state, &before, &launched).await;
    cooldowns::count_launch(state, &key, before.health, &launched).await;
    record_launch(state, request, launched).await
}

/// Records what the launch started and answers. Once EC2 started anything, the request id is
/// the answer whatever fails afterwards: HostFactory must learn it, or it would never poll the
/// request and its machines would run unwatched. A machine or request write that fails here
/// is healed by the reconciler (the request stays `pending`, or its tagged instances are
/// adopted) and by the status calls that follow; the capacity changes decided here carry op ids
/// the reconciler's healing uses too, so each applies once.
async fn record_launch(
    state: &AppState,
    mut request: RequestRecord,
    launched: Launched,
) -> Result<RequestAccepted> {
    let count = request.machine_count;
    let key = capacity_key(&request.provider, &request.template_id);
    let started = u32::try_from(launched.instances.len()).unwrap_or(count);
    let units = launched.units();
    if launched.error.as_ref().is_some_and(Error::may_have_applied) {
        return Ok(outcome_unknown(state, request, launched).await);
    }
    // A fleet or group that fills later keeps its reservation until getRequestStatus settles it.
    // The changes are written with the request's next update and applied after it.
    if units < count && !(launched.deferred && launched.error.is_none()) {
        request.pending_capacity.extend(capacity::unlaunched(&request, &key, count - units));
    }
    request.pending_capacity.extend(capacity::overshoot(&request, &key, "launch", units.saturating_sub(count)));
    if started == 0 && !launched.deferred {
        return finish_unlaunched(state, request, launched).await;
    }
    if launched.fleet_id.is_some() && units >= count {
        // A filled weighted fleet may hold fewer machines than units: from here on the request
        // expects the machines the fleet launched. (Short of target it keeps the units asked,
        // so it ends complete_with_error, as a short RunInstances launch does.)
        request.machine_count = started;
    }
    request.fleet_id = launched.fleet_id.clone();
    request.asg_name = launched.asg_name.clone();
    request.launch_template_id = launched.launch_template_id.clone();
    if !launched.deferred {
        // It fills no further: these are all its machines.
        request.record_machine_ids(launched.instances.iter().map(|i| i.instance_id.clone()));
    }
    let request_id = request.request_id.clone();
    let message = accepted_message(&request, &launched, started, count);
    request.status = RequestPhase::InProgress;
    request.message = message.clone();
    request.updated_at = now();
    // The machines and the request in one write. When it fails, each is tried on its own; what
    // still fails is healed by the reconciler (the request stays pending, or its unfinished
    // request adopts the instances by tag).
    match state.store.requests.update_launched(&request, &launched_machines(&request, &launched)).await {
        Ok(written) => drop(capacity::settle(state, written).await),
        Err(err @ Error::Stale { .. }) => tracing::warn!(%request_id, error = %err, "the request moved on while its launch was recorded"),
        Err(err) => {
            tracing::warn!(%request_id, started, error = %err, "launch not recorded in one write; recording its parts");
            record_machines(state, &request, &launched).await;
            write_and_settle(state, &request, "launched request left pending; the reconciler heals it").await;
        }
    }
    tracing::info!(%request_id, provider = %request.provider, template_id = %request.template_id, started, count, "machines requested");
    Ok(RequestAccepted { message, request_id })
}

/// Nothing started. A launch error is the answer (HostFactory may retry); when every pool
/// answered a capacity error, the request id is, with the request ended `complete_with_error`
/// naming each pool and its error code, so HostFactory reads why and asks elsewhere instead of
/// retrying into the same wall. Either way the reservation is given back.
async fn finish_unlaunched(state: &AppState, mut request: RequestRecord, launched: Launched) -> Result<RequestAccepted> {
    let (message, answer) = match launched.error {
        Some(err) => (err.to_string(), Err(err)),
        None => {
            let unused = cooldowns::unused_pools(&launched);
            let pools = if unused.is_empty() { "EC2 started nothing".to_owned() } else { unused.join("; ") };
            let message = format!("No capacity for template '{}' in any of its pools: {pools}.", request.template_id);
            let accepted = RequestAccepted { message: message.clone(), request_id: request.request_id.clone() };
            (message, Ok(accepted))
        }
    };
    tracing::warn!(request_id = %request.request_id, %message, "nothing launched");
    request.finish(RequestPhase::CompleteWithError, message, now(), state.config.retention);
    write_and_settle(state, &request, "failed launch not recorded; the reconciler finishes it").await;
    answer
}

/// The launch failed in a way that may have started instances all the same (an answer lost
/// on every attempt, a 5xx, a timeout), before or after others started. The machines known are
/// recorded, but the request stays `pending` with its whole reservation: the reconciler
/// resolves it from EC2 after `HOSTFACTORY_PENDING_TIMEOUT_SECS` (adopts every instance tagged
/// with its id and gives back what did not start). Releasing now could let instances run beyond
/// `maxNumber`; answering an error would hide them from HostFactory.
async fn outcome_unknown(state: &AppState, request: RequestRecord, launched: Launched) -> RequestAccepted {
    record_machines(state, &request, &launched).await;
    let err = launched.error.map(|e| e.to_string()).unwrap_or_default();
    let started = launched.instances.len();
    tracing::warn!(request_id = %request.request_id, started, error = %err, "launch outcome unknown; the reconciler resolves it from EC2");
    RequestAccepted {
        message: format!(
            "Launch outcome unknown after {started} machine(s) started ({err}); the request is resolved from EC2 shortly."
        ),
        request_id: request.request_id,
    }
}

/// The records of the machines the launch started.
fn launched_machines(request: &RequestRecord, launched: &Launched) -> Vec<MachineRecord> {
    launched
        .instances
        .iter()
        .map(|instance| MachineRecord {
            units: launched.units_of(&instance.instance_id),
            fleet_held: Some(launched.deferred),
            ..machine_record(instance, request)
        })
        .collect()
}

/// Records the machines the launch started; a failed write is logged (the reconciler adopts
/// them by tag).
async fn record_machines(state: &AppState, request: &RequestRecord, launched: &Launched) {
    let machines = launched_machines(request, launched);
    if machines.is_empty() {
        return;
    }
    if let Err(err) = state.store.machines.upsert_batch(&machines).await {
        let (request_id, started) = (&request.request_id, machines.len());
        tracing::error!(%request_id, started, error = %err, "launched machines not recorded; the reconciler adopts them by tag");
    }
}

/// Writes the request and applies the capacity changes it carries; a failed write is logged
/// with `healed`, for the answer is decided already.
async fn write_and_settle(state: &AppState, request: &RequestRecord, healed: &str) {
    match state.store.requests.update(request).await {
        Ok(written) => {
            capacity::settle(state, written).await;
        }
        Err(err) => tracing::error!(request_id = %request.request_id, error = %err, "{healed}"),
    }
}

fn accepted_message(request: &RequestRecord, launched: &Launched, started: u32, count: u32) -> String {
    match (&launched.error, &request.fleet_id, &request.asg_name) {
        (Some(err), _, _) => format!("Launched {started} of {count} machine(s); {err}"),
        (None, _, Some(group)) if launched.deferred => {
            format!("Request VM from AWS successful: Auto Scaling group {group} launching {count} unit(s).")
        }
        (None, Some(fleet), _) if launched.deferred => {
            format!("Request VM from AWS successful: fleet {fleet} launching {count} unit(s).")
        }
        (None, _, _) if launched.refused.is_empty() && launched.skipped.is_empty() => {
            format!("Request VM from AWS successful: {started} machine(s) launching.")
        }
        (None, _, _) => format!(
            "Request VM from AWS successful: {started} machine(s) launching (no capacity in {}).",
            cooldowns::unused_pools(launched).join("; ")
        ),
    }
}

pub(crate) fn machine_record(instance: &Observed, request: &RequestRecord) -> MachineRecord {
    MachineRecord {
        machine_id: instance.instance_id.clone(),
        request_id: request.request_id.clone(),
        return_request_id: None,
        template_id: request.template_id.clone(),
        provider: request.provider.clone(),
        name: instance.private_dns_name.clone(),
        private_ip_address: instance.private_ip_address.clone(),
        public_ip_address: instance.public_ip_address.clone(),
        state: instance.state.clone(),
        result: MachineResult::Executing,
        launchtime: instance.launch_time,
        lifecycle: instance.lifecycle,
        interrupted_at: None,
        units: 1,
        reclaimed_at: None,
        message: instance.placement.clone(),
        version: 1,
        updated_at: now(),
        expires_at: None,
        fleet_held: None,
        actions: Vec::new(),
    }
}
