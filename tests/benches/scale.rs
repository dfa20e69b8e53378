//! The scale figure of `infra/scripts/bench` (section 4): getRequestStatus over
//! `REQUESTS x MACHINES` machines (default 100 x 100 = 10,000), through the real router and the
//! real store, with EC2 answered in process by [`InstantEc2`] (every launch fills at once, every
//! instance describes `running`). moto cannot serve this case: it launches one instance per
//! RunInstances and describes 1,000 ids in seconds once it holds thousands, so the figure would
//! be moto's; this one is ours (the status call's decisions, reads and writes) with EC2 at zero
//! latency.
//!
//! `cargo bench -p hostfactory-tests --bench scale -- [--store sqlite|dynamodb] [--requests N]
//! [--machines N] [--polls N]` prints one JSON line. `dynamodb` is the store on the moto server at
//! `AWS_ENDPOINT_URL` (infra/scripts/bench starts it).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Value, json};
use shared::Result;
use shared::api::local_router;
use shared::app::AppState;
use shared::cloud::{Cloud, Cooling, Found, Launched, ManagedLaunchTemplate, Observed, Owner, Power};
use hostfactory_tests::Captured;
use shared::config::{Config, Runtime, TemplatesLocation};
use shared::metrics::Metrics;
use shared::store::{InstanceState, Lifecycle};
use shared::templates::Template;

/// EC2 that launches at once: every instance it started describes `running`.
#[derive(Default)]
struct InstantEc2 {
    launched: Mutex<HashSet<String>>,
}

fn running(instance_id: &str, request_id: &str) -> Observed {
    let n = u32::from_str_radix(&instance_id[2..], 16).unwrap_or(0);
    let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    Observed {
        instance_id: instance_id.to_owned(),
        state: InstanceState::Running,
        private_dns_name: format!("ip-{}.ec2.internal", ip.replace('.', "-")),
        private_ip_address: ip,
        public_ip_address: String::new(),
        launch_time: shared::store::now(),
        lifecycle: Lifecycle::Ondemand,
        state_reason: String::new(),
        tags: HashMap::from([("hostfactory:request-id".to_owned(), request_id.to_owned())]),
        placement: "t3.micro in us-east-1a".into(),
        hibernation: false,
    }
}

#[async_trait]
impl Cloud for InstantEc2 {
    async fn launch(&self, _: &Template, _: &str, request_id: &str, count: u32, _: &Cooling) -> Result<Launched> {
        let mut launched = self.launched.lock().unwrap();
        let first = launched.len();
        let ids: Vec<String> = (first..first + count as usize).map(|n| format!("i-{n:017x}")).collect();
        launched.extend(ids.iter().cloned());
        Ok(Launched { instances: ids.iter().map(|id| running(id, request_id)).collect(), ..Launched::default() })
    }
    async fn launch_on_demand(&self, template: &Template, provider: &str, request_id: &str, count: u32) -> Result<Launched> {
        self.launch(template, provider, request_id, count, &Cooling::new()).await
    }
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, Observed>> {
        let launched = self.launched.lock().unwrap();
        let known = ids.iter().filter(|id| launched.contains(*id));
        Ok(known.map(|id| (id.clone(), running(id, ""))).collect())
    }
    async fn find_tagged(&self, _: &str, _: &str) -> Result<Vec<Observed>> {
        Ok(Vec::new())
    }
    async fn find_managed(&self) -> Result<Vec<Observed>> {
        Ok(Vec::new())
    }
    async fn terminate(&self, _: &[String]) -> Result<()> {
        Ok(())
    }
    async fn power(&self, _: &str, _: Power) -> Result<()> {
        Ok(())
    }
    async fn tag_request_id(&self, _: &[String], _: &str) -> Result<()> {
        Ok(())
    }
    async fn fleet_instances(&self, _: &Owner, _: Option<&Template>) -> Result<Found> {
        Ok(Found::default())
    }
    async fn group_instances(&self, groups: &[(&str, Option<&Template>)]) -> Result<Vec<Found>> {
        Ok(vec![Found::default(); groups.len()])
    }
    async fn ended_fleets(&self, _: &[&Owner]) -> Result<HashSet<String>> {
        Ok(HashSet::new())
    }
    async fn shrink(&self, _: &Owner, _: Option<&Template>, _: &[String], _: bool) -> Result<()> {
        Ok(())
    }
    async fn stop_filling(&self, _: &Owner, _: u32) -> Result<()> {
        Ok(())
    }
    async fn managed_launch_templates(&self) -> Result<Vec<ManagedLaunchTemplate>> {
        Ok(Vec::new())
    }
    async fn delete_launch_template(&self, _: &str) -> Result<()> {
        Ok(())
    }
}

struct Args {
    store: String,
    requests: usize,
    machines: usize,
    polls: usize,
}

fn args() -> Args {
    let mut args = Args { store: "sqlite".into(), requests: 100, machines: 100, polls: 5 };
    let given: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    for pair in given.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        let number = || value.parse().unwrap_or_else(|_| panic!("{} takes a number, not {value:?}", pair[0]));
        match pair[0].as_str() {
            "--store" => args.store = value.clone(),
            "--requests" => args.requests = number(),
            "--machines" => args.machines = number(),
            "--polls" => args.polls = number(),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// The template of the status case, and of the reconcile pass's requests.
const STATUS: &str = "Scale";
const RECONCILE: &str = "ScaleReconcile";

/// The state over two RunInstances templates of `maxNumber` 10,000, EC2 in process, its metrics
/// (the AWS calls of each HostFactory call) written to `metrics`.
async fn state(args: &Args, folder: &std::path::Path, metrics: Captured) -> AppState {
    let template = |id: &str| json!({
        "templateId": id, "maxNumber": 10_000, "imageId": "ami-12c6146b", "vmType": "t3.micro",
        "subnetId": "subnet-0123456789abcdef0", "securityGroupIds": ["sg-0123456789abcdef0"],
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "1024"]}
    });
    let template = json!({"templates": [template(STATUS), template(RECONCILE)]});
    std::fs::write(folder.join("awsprov_templates.json"), template.to_string()).unwrap();
    let mut config = Config::from_lookup(Runtime::Local, |_| None).unwrap();
    config.templates = TemplatesLocation::Folder(folder.into());
    // SQLite makes no AWS call at all (EC2 is in process): no emulator needed.
    let sdk = match args.store.as_str() {
        "dynamodb" => hostfactory_tests::sdk_config().await,
        _ => aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::from_static("us-east-1"))
            .build(),
    };
    let mut state = AppState::new(config, &sdk);
    state.cloud = Arc::new(InstantEc2::default());
    state.store = match args.store.as_str() {
        "sqlite" => shared::store::Store::from_backend(Arc::new(shared::store::sqlite::SqliteStore::new(
            &folder.join("data/hostfactory.sqlite"),
        ))),
        // Counted as the deployed store's calls are (AppState::new's clients).
        "dynamodb" => hostfactory_tests::new_dynamo_store(&shared::aws::counting(&sdk)).await,
        other => panic!("--store is sqlite or dynamodb, not {other}"),
    };
    state.metrics = Metrics::to_writer("HF-Bench", metrics);
    state
}

/// The AWS calls of the last HostFactory call the metrics recorded.
fn aws_calls(metrics: &Captured) -> u64 {
    let lines = metrics.take();
    lines.iter().rev().find_map(|line| line["AwsCalls"].as_f64()).map_or(0, |n| n as u64)
}

/// `args.requests` requests of `args.machines` machines of `template`: their ids.
async fn launch(router: &axum::Router, template: &str, args: &Args) -> Vec<String> {
    let mut ids = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let body = json!({"template": {"templateId": template, "machineCount": args.machines}});
        let accepted = hostfactory_tests::send_json(router, "POST", "/api/v1/requests", &body, &[]).await;
        assert_eq!(accepted.status, 200, "{}", accepted.body);
        ids.push(accepted.body["requestId"].as_str().unwrap().to_owned());
    }
    ids
}

/// One status call over `ids`: (wall ms, request statuses, machines answered).
async fn poll(router: &axum::Router, ids: &[String]) -> (f64, Vec<String>, usize) {
    let body = json!({"requests": ids.iter().map(|id| json!({"requestId": id})).collect::<Vec<_>>()});
    let started = Instant::now();
    tracing::info!(requests = ids.len(), "status call");
    let answer = hostfactory_tests::send_json(router, "POST", "/api/v1/requests/status", &body, &[]).await;
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let requests = answer.body["requests"].as_array().cloned().unwrap_or_default();
    let statuses = requests.iter().map(|r| r["status"].as_str().unwrap_or_default().to_owned()).collect();
    let machines = requests.iter().map(|r| r["machines"].as_array().map_or(0, Vec::len)).sum();
    (wall, statuses, machines)
}

fn distinct(statuses: &[String]) -> Vec<String> {
    let mut distinct = statuses.to_vec();
    distinct.sort();
    distinct.dedup();
    distinct
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    if std::env::var_os("RUST_LOG").is_some() {
        shared::telemetry::init(Runtime::Local);
    }
    let folder = tempfile::tempdir().unwrap();
    let metrics = Captured::default();
    let state = state(&args, folder.path(), metrics.clone()).await;
    let router = local_router(state.clone());
    let started = Instant::now();
    let ids = launch(&router, STATUS, &args).await;
    let launch_s = started.elapsed().as_secs_f64();
    metrics.take();
    let (first_ms, first_statuses, first_machines) = poll(&router, &ids).await;
    let first_calls = aws_calls(&metrics);
    let (mut later, mut later_calls) = (Vec::new(), Vec::new());
    let mut last = (Vec::new(), 0);
    for _ in 0..args.polls {
        let (wall, statuses, machines) = poll(&router, &ids).await;
        later.push(wall);
        later_calls.push(aws_calls(&metrics));
        last = (statuses, machines);
    }
    later.sort_by(f64::total_cmp);
    // One reconcile pass over as many new, unpolled requests (it refreshes and finishes them).
    launch(&router, RECONCILE, &args).await;
    let started = Instant::now();
    let (report, reconcile_calls) = shared::aws::count_aws_calls(shared::reconcile::run_once(&state)).await;
    let reconcile_ms = started.elapsed().as_secs_f64() * 1000.0;
    let report = report.expect("the reconcile pass");
    let figure = |p: f64| later.get(((p * later.len() as f64).ceil() as usize).max(1) - 1).copied();
    let out: Value = json!({
        "store": args.store, "requests": args.requests, "machines_per_request": args.machines,
        "launch_s": (launch_s * 10.0).round() / 10.0,
        "first_poll_ms": first_ms.round(), "first_poll_aws_calls": first_calls,
        "first_poll_states": distinct(&first_statuses), "first_poll_machines": first_machines,
        "later_poll_ms_p50": figure(0.5).map(f64::round), "later_poll_ms_max": later.last().copied().map(f64::round),
        "later_polls": later.len(), "later_poll_aws_calls": later_calls,
        "reconcile_ms": reconcile_ms.round(), "reconcile_aws_calls": reconcile_calls,
        "reconcile_active": report.active, "reconcile_finished": report.finished, "later_poll_states": distinct(&last.0), "later_poll_machines": last.1,
    });
    println!("{out}");
}
