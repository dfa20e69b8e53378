//! CloudWatch metrics as Embedded Metric Format (EMF) lines: one JSON document per HostFactory
//! call or reconciler pass, written to stdout, which Lambda ships to CloudWatch Logs where the
//! metrics are extracted. No SDK and no extra AWS call.
//!
//! Every line has the dimension `Operation` (the route's operationId, or `reconcile`).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::config::Config;

/// Machine figures of one HostFactory call, set by its handler as a response extension.
///
/// `requested`: requestMachines' `machineCount`; `launched`/`failed`: machines answered
/// `succeed`/`fail` by getRequestStatus in `req-` requests that finished (HostFactory stops
/// polling a finished request, so each is counted once); `returned`: machines named by
/// requestReturnMachines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineFigures {
    pub requested: u64,
    pub launched: u64,
    pub returned: u64,
    pub failed: u64,
    /// Templates getAvailableTemplates listed as resting (availableNumber 0 after failures).
    pub templates_resting: u64,
}

/// What one reconciler pass did (see `crate::reconcile::Report`); the reconciler emits it
/// with [`emit_reconcile`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileFigures {
    /// Unfinished requests looked at.
    pub requests_checked: u64,
    /// Requests moved to a final state.
    pub requests_completed: u64,
    /// Provisioning requests HostFactory never claimed, reaped (their machines terminated).
    pub requests_abandoned: u64,
    /// Requests still launching past `HOSTFACTORY_LAUNCH_TIMEOUT_SECS`, finished with an error
    /// (alarmed on: something is stuck).
    pub requests_timed_out: u64,
    /// Pending requests healed by adopting the instances tagged with their id (a crashed launch).
    pub requests_healed: u64,
    /// Tagged instances no record knew, adopted by their unfinished request.
    pub orphans_adopted: u64,
    /// Tagged instances of finished requests, terminated after the orphan grace period.
    pub orphans_terminated: u64,
    pub launch_templates_deleted: u64,
    /// Capacity counters the recount found disagreeing with the records and corrected
    /// (alarm-worthy: something lost or double-counted a change).
    pub capacity_repaired: u64,
    /// Steps of the pass that failed (the pass goes on; alarmed on).
    pub step_errors: u64,
    /// AWS calls the pass made (see [`crate::aws::count_aws_calls`]).
    pub aws_calls: u64,
    /// Wall time of the pass in milliseconds.
    pub duration_ms: u64,
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Where EMF lines go: nowhere (metrics off), stdout (Lambda), or any writer.
#[derive(Clone, Default)]
pub struct Metrics {
    namespace: String,
    sink: Option<Sink>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("namespace", &self.namespace).field("on", &self.sink.is_some()).finish()
    }
}

impl Metrics {
    /// `HOSTFACTORY_METRICS` on: stdout under `HOSTFACTORY_METRICS_NAMESPACE`; off: nothing.
    pub fn from_config(config: &Config) -> Metrics {
        if config.metrics {
            Metrics::to_writer(&config.metrics_namespace, std::io::stdout())
        } else {
            Metrics::default()
        }
    }

    pub fn to_writer(namespace: &str, writer: impl Write + Send + 'static) -> Metrics {
        Metrics { namespace: namespace.to_owned(), sink: Some(Arc::new(Mutex::new(Box::new(writer)))) }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// One line for a HostFactory (HTTP) call.
    pub fn emit_call(&self, call: &Call<'_>) {
        if self.enabled() {
            self.write(call_line(&self.namespace, call));
        }
    }

    fn write(&self, line: Value) {
        let Some(sink) = &self.sink else { return };
        let mut out = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A lost metric line must never fail the call it describes.
        if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::warn!(error = %err, "could not write a metrics line");
        }
    }
}

fn call_line(namespace: &str, call: &Call<'_>) -> Value {
    let mut values = vec![
        ("Calls", Unit::Count, 1.0),
        ("Errors", Unit::Count, if call.status >= 500 { 1.0 } else { 0.0 }),
        ("Latency", Unit::Milliseconds, call.latency.as_secs_f64() * 1000.0),
        ("AwsCalls", Unit::Count, call.aws_calls as f64),
    ];
    let m = call.machines;
    for (name, value) in [
        ("MachinesRequested", m.requested),
        ("MachinesLaunched", m.launched),
        ("MachinesReturned", m.returned),
        ("MachinesFailed", m.failed),
        ("TemplatesResting", m.templates_resting),
    ] {
        values.push((name, Unit::Count, value as f64));
    }
    let properties = [("Status", json!(call.status)), ("RequestId", json!(call.request_id))];
    emf_line(namespace, call.operation, &values, &properties)
}

/// What [`Metrics::emit_call`] records of one call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub operation: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub aws_calls: u64,
    pub machines: MachineFigures,
    pub request_id: &'a str,
}

/// One line for a reconciler pass, dimension `Operation=reconcile`.
pub fn emit_reconcile(metrics: &Metrics, figures: &ReconcileFigures) {
    if metrics.enabled() {
        metrics.write(reconcile_line(&metrics.namespace, figures));
    }
}

fn reconcile_line(namespace: &str, figures: &ReconcileFigures) -> Value {
    let f = figures;
    let counts = [
        ("RequestsChecked", f.requests_checked),
        ("RequestsCompleted", f.requests_completed),
        ("RequestsTimedOut", f.requests_timed_out),
        ("RequestsAbandoned", f.requests_abandoned),
        ("RequestsHealed", f.requests_healed),
        ("OrphansAdopted", f.orphans_adopted),
        ("OrphansTerminated", f.orphans_terminated),
        ("LaunchTemplatesDeleted", f.launch_templates_deleted),
        ("CapacityRepaired", f.capacity_repaired),
        ("StepErrors", f.step_errors),
        ("AwsCalls", f.aws_calls),
    ];
    let mut values: Vec<(&str, Unit, f64)> = counts.iter().map(|(name, v)| (*name, Unit::Count, *v as f64)).collect();
    values.push(("Duration", Unit::Milliseconds, f.duration_ms as f64));
    emf_line(namespace, "reconcile", &values, &[])
}

/// One line per domain events publication, dimension `Operation=events`: events published and
/// events that failed (their batch is retried; alarmed on as `EventsFailedAlarm`).
pub fn emit_events(metrics: &Metrics, published: u64, failed: u64) {
    if metrics.enabled() {
        let values = [("EventsPublished", Unit::Count, published as f64), ("EventsFailed", Unit::Count, failed as f64)];
        metrics.write(emf_line(&metrics.namespace, "events", &values, &[]));
    }
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The EMF document: `_aws` metadata naming the metrics, then each value as a top-level key.
fn emf_line(namespace: &str, operation: &str, values: &[(&str, Unit, f64)], properties: &[(&str, Value)]) -> Value {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let definitions: Vec<Value> =
        values.iter().map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.name() })).collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{ "Namespace": namespace, "Dimensions": [["Operation"]], "Metrics": definitions }],
        }),
    );
    line.insert("Operation".into(), json!(operation));
    for (name, _, value) in values {
        line.insert((*name).into(), json!(value));
    }
    for (name, value) in properties {
        line.insert((*name).into(), value.clone());
    }
    Value::Object(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_line_is_emf_with_every_figure() {
        let machines = MachineFigures { requested: 3, ..Default::default() };
        let call = Call {
            operation: "requestMachines",
            status: 502,
            latency: Duration::from_millis(1500),
            aws_calls: 4,
            machines,
            request_id: "r-1",
        };
        let line = call_line("HF-Test", &call);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "HF-Test");
        assert_eq!(directive["Dimensions"], json!([["Operation"]]));
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        let expected = ["Calls", "Errors", "Latency", "AwsCalls"];
        assert_eq!(names[..4], expected);
        assert_eq!(names[4..], ["MachinesRequested", "MachinesLaunched", "MachinesReturned", "MachinesFailed", "TemplatesResting"]);
        // Every declared metric has its value at the top level, as EMF requires.
        for name in names {
            assert!(line[name].is_number(), "{name} in {line}");
        }
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(line["Operation"], "requestMachines");
        assert_eq!([&line["Calls"], &line["Errors"], &line["Latency"], &line["AwsCalls"]], [1.0, 1.0, 1500.0, 4.0]);
        assert_eq!(
            (&line["MachinesRequested"], &line["Status"], &line["RequestId"]),
            (&json!(3.0), &json!(502), &json!("r-1"))
        );
    }

    #[test]
    fn a_reconcile_line_carries_the_pass_figures() {
        let figures = ReconcileFigures {
            requests_checked: 7,
            requests_timed_out: 2,
            orphans_terminated: 5,
            requests_abandoned: 3,
            aws_calls: 9,
            ..Default::default()
        };
        let line = reconcile_line("HF-Test", &figures);
        assert_eq!(line["Operation"], "reconcile");
        assert_eq!([&line["RequestsChecked"], &line["RequestsTimedOut"], &line["OrphansTerminated"]], [7.0, 2.0, 5.0]);
        assert_eq!([&line["AwsCalls"], &line["StepErrors"], &line["RequestsAbandoned"]], [9.0, 0.0, 3.0]);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 12);
    }
}
