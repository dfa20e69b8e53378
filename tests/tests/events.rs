//! Every API Gateway event in `events/` (what `sam local invoke -e events/<file>` sends) goes
//! through the router of the function that serves its route, in-process against moto, with
//! templates in S3 and the store in DynamoDB as deployed. Files named `reconcile-*` and `ec2-*`
//! are reconciler events, tested with the reconciler.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use http::Method;
use serde_json::{Value, json};
use shared::api::routes;
use shared::api::{Group, function_router};
use shared::app::AppState;
use shared::config::{Config, Runtime};
use shared::metrics::Metrics;

use hostfactory_tests::{Response, invoke_event, new_bucket, new_network, put_object, sdk_config, unique};

type Check = fn(&Response);

/// The API events in the order a session sends them, with the status and what the body must say.
const EXPECTED: &[(&str, u16, Check)] = &[
    ("health.json", 200, |r| assert_eq!(r.body["status"], "ok")),
    ("openapi.json", 200, |r| assert!(r.body["openapi"].as_str().unwrap().starts_with("3."))),
    ("get-available-templates.json", 200, |r| {
        let ids: Vec<&str> =
            r.body["templates"].as_array().unwrap().iter().map(|t| t["templateId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["Spot-Template-VM", "OnDemand-Minimal-Template-VM"]);
        assert_eq!(r.body["templates"][0]["availableNumber"], 20);
    }),
    ("validate-templates.json", 200, |r| assert_eq!(r.body["ok"], true)),
    ("get-template.json", 200, |r| {
        assert_eq!(r.body["template"]["templateId"], "Spot-Template-VM");
        assert!(r.headers.contains_key("etag"));
    }),
    ("put-template.json", 201, |r| assert_eq!(r.body["created"], true)),
    ("delete-template.json", 200, |r| assert!(r.body["message"].as_str().unwrap().contains("deleted"), "{}", r.body)),
    ("template-cache.json", 200, |r| assert!(r.body["source"].as_str().unwrap().starts_with("s3://"), "{}", r.body)),
    ("request-machines.json", 200, |r| {
        assert!(r.body["requestId"].as_str().unwrap().starts_with("req-"), "{}", r.body)
    }),
    ("get-request-status.json", 200, |r| {
        let statuses: Vec<&Value> = r.body["requests"].as_array().unwrap().iter().map(|q| &q["status"]).collect();
        assert_eq!(statuses, [&json!("complete_with_error"); 2], "unknown ids: {}", r.body);
    }),
    ("request-return-machines.json", 200, |r| {
        assert!(r.body["requestId"].as_str().unwrap().starts_with("ret-"));
        assert_eq!(r.body["message"], "No active VM.");
    }),
    ("list-machines.json", 200, |r| {
        let machines = r.body["machines"].as_array().unwrap();
        assert!(!machines.is_empty(), "the machines request-machines.json launched: {}", r.body);
        assert!(machines.iter().all(|m| m["templateId"] == "Spot-Template-VM"), "{}", r.body);
        assert!(machines[0]["allowedActions"].is_array() && machines[0]["machineState"].is_string(), "{}", r.body);
    }),
    ("machine-action.json", 404, |r| assert_eq!(r.body["message"], "machine 'i-0b662ef9931388ba0' not found")),
    ("get-return-requests.json", 200, |r| {
        assert_eq!(
            r.body["requests"],
            json!([{"machine": "ip-10-0-57-7.ec2.internal", "gracePeriod": 0}]),
            "EC2 does not know it"
        );
    }),
];

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// Every API event file: reconciler events (`reconcile-*`, `ec2-*`) are not API events.
fn api_event_files() -> BTreeSet<String> {
    std::fs::read_dir(events_dir())
        .expect("events/")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json") && !name.starts_with("reconcile-") && !name.starts_with("ec2-"))
        .collect()
}

fn method_of(event: &Value) -> Method {
    let route_key = event["routeKey"].as_str().expect("routeKey");
    Method::from_bytes(route_key.split_once(' ').expect("METHOD path").0.as_bytes()).unwrap()
}

fn path_of(event: &Value) -> &str {
    event["routeKey"].as_str().and_then(|key| key.split_once(' ')).expect("METHOD path").1
}

/// The function that serves an event's `routeKey` (`POST /api/v1/requests`).
fn group_of(event: &Value) -> Group {
    let route = routes::find(&method_of(event), path_of(event))
        .unwrap_or_else(|| panic!("{} is no route of the API", event["routeKey"]));
    route.group.unwrap_or(Group::Templates)
}

/// Lambda configuration (templates in S3, DynamoDB tables as `create-tables` makes them) over the
/// spec's two sample templates.
async fn deployed_state() -> AppState {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    let (subnet, sg) = new_network(&aws_sdk_ec2::Client::new(&sdk)).await;
    let attributes = json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "1024"]});
    let templates = json!({"templates": [
        {"templateId": "Spot-Template-VM", "maxNumber": 20, "priceType": "spot", "imageId": "ami-12c6146b",
         "vmType": "t3.micro", "subnetId": subnet, "securityGroupIds": [sg], "attributes": attributes},
        {"templateId": "OnDemand-Minimal-Template-VM", "maxNumber": 10, "imageId": "ami-12c6146b",
         "vmType": "t3.micro", "subnetId": subnet, "securityGroupIds": [sg], "attributes": attributes},
    ]});
    put_object(&s3, &bucket, "hf/awsprov_templates.json", templates.to_string()).await;
    let prefix = unique("hfe");
    shared::store::dynamo::create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &prefix).await.expect("tables");
    let env = [("HOSTFACTORY_TEMPLATES", format!("s3://{bucket}/hf/")), ("HOSTFACTORY_TABLE_PREFIX", prefix)];
    let config =
        Config::from_lookup(Runtime::Lambda, |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
            .expect("Lambda configuration");
    let mut state = AppState::new(config, &sdk);
    // Lambda writes EMF lines to stdout, which the test harness does not capture (tests/tests/metrics.rs reads them).
    state.metrics = Metrics::default();
    state
}

#[tokio::test]
async fn every_api_event_is_answered_by_its_function() {
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(name, _, _)| (*name).to_owned()).collect();
    assert_eq!(api_event_files(), expected, "every API event file has an expected answer here, and no more");

    let state = deployed_state().await;
    for (name, status, check) in EXPECTED {
        let text = std::fs::read_to_string(events_dir().join(name)).unwrap();
        let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let group = group_of(&event);
        let response = invoke_event(&function_router(group, state.clone()), &text).await;
        assert_eq!(response.status.as_u16(), *status, "{name}: {}", response.body);
        assert!(response.headers.contains_key("x-request-id"), "{name}");
        check(&response);
        // Each function serves its own group (and the routes of every function) only.
        if routes::find(&method_of(&event), path_of(&event)).is_some_and(|r| r.group.is_some()) {
            for other in Group::ALL.into_iter().filter(|g| *g != group) {
                let response = invoke_event(&function_router(other, state.clone()), &text).await;
                assert!([404, 405].contains(&response.status.as_u16()), "{name} on {other:?}: {}", response.status);
            }
        }
    }
}

#[test]
fn each_event_names_a_route_served_by_one_function() {
    for name in api_event_files() {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(events_dir().join(&name)).unwrap()).unwrap();
        assert_eq!(event["version"], "2.0", "{name}: HTTP API payload 2.0");
        assert_eq!(event["routeKey"], event["requestContext"]["routeKey"], "{name}");
        group_of(&event);
    }
}
