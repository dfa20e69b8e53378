//! `hostfactory reconcile` as an operator runs it: one pass against the configured store and
//! AWS (moto here), its report as JSON on stdout.

use std::process::Command;

use serde_json::{Value, json};

#[test]
fn reconcile_prints_the_report_of_one_pass() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run through infra/scripts/test (moto)");
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hostfactory"))
        .arg("reconcile")
        .env("HOSTFACTORY_STORE", format!("sqlite:{}", data.path().join("store.sqlite").display()))
        .env("AWS_ENDPOINT_URL", endpoint)
        // A region no other test launches in: the pass sees no tagged instance.
        .env("AWS_REGION", "af-south-1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hostfactory reconcile");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        report,
        json!({
            "active": 0, "pendingAdopted": 0, "pendingFailed": 0, "returnsResent": 0, "refreshed": 0, "finished": 0,
            "timedOut": 0, "orphansAdopted": 0, "orphansTerminated": 0,
            "foreignInstances": 0, "launchTemplatesDeleted": 0, "abandoned": 0, "capacitySettled": 0,
            "capacityRepaired": 0, "templateEventsRecovered": 0, "templateIntentsDropped": 0
        })
    );
}
