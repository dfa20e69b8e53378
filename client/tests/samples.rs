//! Every sample template of `infra/templates/` through the full HostFactory cycle, as
//! `infra/scripts/serve` offers them: the emulator seeded by `infra/scripts/seed_emulator.py`,
//! the five scripts run by `-f <file>` against the local server.

mod common;

use std::process::Command;

use common::{hf, install_plugin, root, serve_locally, status_until_done};
use serde_json::{Value, json};

/// Seeds moto with what the sample templates name and returns the folder of rendered copies.
fn seeded_samples() -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    let output = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("infra/scripts/seed_emulator.py"))
        .arg(root().join("infra/templates"))
        .arg(folder.path())
        .output()
        .expect("the project venv (infra/scripts/test creates it)");
    assert!(output.status.success(), "seeding failed: {}", String::from_utf8_lossy(&output.stderr));
    folder
}

/// `available` of `template_id` in getAvailableTemplates.
async fn available(plugin: &std::path::Path, url: &str, template_id: &str) -> (i64, i64) {
    let (code, listed) = hf(plugin, url, "getAvailableTemplates", json!({})).await;
    assert_eq!(code, 0, "{listed}");
    let template = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["templateId"] == template_id)
        .unwrap_or_else(|| panic!("{template_id} not listed: {listed}"))
        .clone();
    (template["availableNumber"].as_i64().unwrap(), template["maxNumber"].as_i64().unwrap())
}

/// Requests two units of the sample, waits for them, returns every machine and waits for the
/// return; the instances end terminated in EC2 and the template's capacity is whole again.
async fn full_cycle(template_id: &str) {
    let sdk = hostfactory_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let samples = seeded_samples();
    let (url, _store) = serve_locally(&sdk, samples.path()).await;
    let plugin = install_plugin();
    let plugin = plugin.path();

    let (code, accepted) =
        hf(plugin, &url, "requestMachines", json!({"template": {"templateId": template_id, "machineCount": 2}})).await;
    assert_eq!(code, 0, "{template_id}: {accepted}");
    let request_id = accepted["requestId"].as_str().unwrap().to_owned();
    let done = status_until_done(plugin, &url, &request_id).await;
    assert_eq!(done["status"], "complete", "{template_id}: {done}");
    let machines = done["machines"].as_array().unwrap().clone();
    assert!(!machines.is_empty(), "{template_id}: {done}");
    assert!(machines.iter().all(|m| m["result"] == "succeed" && m["status"] == "running"), "{done}");
    let (left, max) = available(plugin, &url, template_id).await;
    assert!(left < max, "{template_id}: capacity is in use while machines run ({left} of {max})");

    let hosts: Vec<Value> = machines.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
    let (code, returned) = hf(plugin, &url, "requestReturnMachines", json!({"machines": hosts})).await;
    assert_eq!(code, 0, "{template_id}: {returned}");
    let return_id = returned["requestId"].as_str().unwrap().to_owned();
    let gone = status_until_done(plugin, &url, &return_id).await;
    assert_eq!(gone["status"], "complete", "{template_id}: {gone}");

    let ids: Vec<String> = machines.iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let observed = shared::cloud::instances::describe(&ec2, &ids).await.unwrap();
    for id in &ids {
        let state = observed.get(id).map(|o| o.state.as_str()).unwrap_or("gone");
        assert!(matches!(state, "terminated" | "shutting-down" | "gone"), "{template_id}: {id} is {state}");
    }
    let (left, max) = available(plugin, &url, template_id).await;
    assert_eq!(left, max, "{template_id}: capacity whole again after the return");
}

#[tokio::test]
async fn sample_on_demand_run_instances() {
    full_cycle("OnDemand-C5Large").await;
}

#[tokio::test]
async fn sample_spot_fleet() {
    full_cycle("Spot-Compute-Mixed").await;
}

#[tokio::test]
async fn sample_heterogeneous() {
    full_cycle("Heterogeneous-Compute").await;
}

#[tokio::test]
async fn sample_ec2_fleet_instant() {
    full_cycle("EC2Fleet-Instant").await;
}

#[tokio::test]
async fn sample_auto_scaling_group() {
    full_cycle("ASG-OnDemand-Arm").await;
}
