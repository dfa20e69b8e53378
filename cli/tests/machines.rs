//! `hostfactory machines ...` as an operator runs it, on a SQLite store and moto's EC2: the
//! same use cases as the `/api/v1/machines` routes.

use std::process::Command;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use serde_json::{Value, json};
use shared::store::{MachineRecord, MachineRepository};

/// A region no other test launches in (the reconciler's tests sweep theirs).
const REGION: &str = "ca-west-1";

async fn ec2(endpoint: &str) -> aws_sdk_ec2::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::from_keys("testing", "testing", None))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&sdk)
}

/// A managed instance in moto, recorded in the store at `path` as a machine of `awsinst`.
async fn recorded_machine(ec2: &aws_sdk_ec2::Client, path: &std::path::Path) -> String {
    let tags = ["hostfactory:managed=true", "hostfactory:provider=awsinst"].map(|kv| {
        let (k, v) = kv.split_once('=').unwrap();
        Tag::builder().key(k).value(v).build()
    });
    let spec = TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags.to_vec())).build();
    let launched = ec2.run_instances().image_id("ami-12c6146b").min_count(1).max_count(1).tag_specifications(spec).send().await.unwrap();
    let id = launched.instances()[0].instance_id().unwrap().to_owned();
    let machine: MachineRecord = serde_json::from_value(json!({
        "machineId": id, "requestId": "req-cli", "templateId": "T", "provider": "awsinst", "name": "ip-10-9-0-1.internal",
        "privateIpAddress": "10.9.0.1", "publicIpAddress": "", "state": "running", "result": "succeed",
        "launchtime": 1, "lifecycle": "ondemand", "message": "", "version": 1, "updatedAt": 1
    }))
    .unwrap();
    shared::store::sqlite::SqliteStore::new(path).put_if_absent(&machine).await.unwrap();
    id
}

fn hostfactory(endpoint: &str, store: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hostfactory"))
        .arg("machines")
        .args(args)
        .env("HOSTFACTORY_STORE", format!("sqlite:{}", store.display()))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", REGION)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hostfactory machines");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn machines_are_listed_as_a_table_and_acted_on_from_the_command_line() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run through infra/scripts/test (moto)");
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("store.sqlite");
    let ec2 = ec2(&endpoint).await;
    let id = recorded_machine(&ec2, &store).await;

    let (ok, table, err) = hostfactory(&endpoint, &store, &["list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MACHINE") && lines[0].ends_with("ALLOWED"), "{table}");
    assert!(lines[1].starts_with(&id) && lines[1].ends_with("stop,restart,pause,terminate"), "{table}");

    let (ok, stopped, err) = hostfactory(&endpoint, &store, &["stop", &id, "--json"]);
    assert!(ok, "{err}");
    let stopped: Value = serde_json::from_str(&stopped).unwrap();
    assert_eq!((stopped["machineState"].as_str(), stopped["actions"][0]["by"].as_str()), (Some("STOPPED"), Some("local")));
    let described = ec2.describe_instances().instance_ids(&id).send().await.unwrap();
    let state = described.reservations()[0].instances()[0].state().and_then(|s| s.name()).unwrap().as_str().to_owned();
    assert_eq!(state, "stopped");

    // An invalid action fails with the reason, and the state and what it allows.
    let (ok, _, err) = hostfactory(&endpoint, &store, &["restart", &id]);
    assert!(!ok);
    assert!(err.contains("is STOPPED: restart is not allowed; allowed: start, terminate"), "{err}");
    let (ok, shown, err) = hostfactory(&endpoint, &store, &["show", &id, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&shown).unwrap()["allowedActions"], json!(["start", "terminate"]));
}
