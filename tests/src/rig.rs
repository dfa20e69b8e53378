//! A router over one generated template, on a fresh moto network, with a recording wire: the
//! rig the lifecycle, fleet and reconciler tests drive. Built with [`Rig::builder`]:
//! `Rig::builder().region("eu-west-3").max(5).dynamo().build().await`.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;

use serde_json::{Value, json};
use shared::api::local_router;
use shared::app::AppState;
use shared::config::{Config, ReconcileTimings, Runtime, TemplatesLocation};
use shared::metrics::Metrics;
use shared::cloud::{instances, tags};
use shared::store::capacity_key;

use crate::wire::{CallLog, Wire};
use crate::{Captured, Response, new_dynamo_store, new_sqlite_store, sdk_config, send_json, unique};

pub struct Rig {
    pub router: axum::Router,
    pub state: AppState,
    /// The SDK configuration on the wire, for a restarted state ([`Rig::restarted`]).
    pub sdk: aws_config::SdkConfig,
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling on the wire, counted as the state's clients are (`shared::aws::counting`).
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub log: CallLog,
    pub wire: Wire,
    pub template_id: String,
    pub _folders: (tempfile::TempDir, tempfile::TempDir),
}

/// Where a rig keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOn {
    Sqlite,
    /// DynamoDB on moto, its calls not recorded.
    Dynamo,
    /// DynamoDB on moto through the wire: every durable step is a recorded call that faults
    /// and crashes can hit.
    DynamoOnWire,
}

/// Reconciler timings (as environment variables) that make every wait already elapsed: time
/// cannot be faked in moto, so a test that judges one pass sets them to 0 ([`RigBuilder::env`]).
pub const ELAPSED: [(&str, &str); 5] = [
    ("HOSTFACTORY_PENDING_TIMEOUT_SECS", "0"),
    ("HOSTFACTORY_CAPACITY_QUIET_SECS", "0"),
    ("HOSTFACTORY_LAUNCH_TIMEOUT_SECS", "0"),
    ("HOSTFACTORY_ORPHAN_GRACE_SECS", "0"),
    ("HOSTFACTORY_UNCLAIMED_SECS", "0"),
];

/// How a [`Rig`] is built; every option has a default ([`Rig::builder`]).
pub struct RigBuilder {
    region: &'static str,
    max_number: i64,
    store: StoreOn,
    launch: Value,
    env: Vec<(&'static str, &'static str)>,
    fast_retries: bool,
    metrics: Option<Captured>,
    others: Vec<Value>,
}

impl RigBuilder {
    /// EC2 in `region` (default us-east-1): moto keeps each region apart, so a test that sweeps
    /// every tagged instance or launch template (the reconciler) sees only its own.
    pub fn region(mut self, region: &'static str) -> Self {
        self.region = region;
        self
    }

    /// The template's `maxNumber` (default 10).
    pub fn max(mut self, max_number: i64) -> Self {
        self.max_number = max_number;
        self
    }

    /// The template's launch keys, instead of the default `vmType` t3.micro.
    pub fn launch(mut self, launch: Value) -> Self {
        self.launch = launch;
        self
    }

    /// Where the records are kept (default SQLite in a temporary folder).
    pub fn store(mut self, store: StoreOn) -> Self {
        self.store = store;
        self
    }

    /// The records on DynamoDB (moto), its calls not recorded: [`StoreOn::Dynamo`].
    pub fn dynamo(self) -> Self {
        self.store(StoreOn::Dynamo)
    }

    /// Configuration variables as the environment would give them (reconciler timings, e.g.
    /// [`ELAPSED`]); unset ones take their defaults.
    pub fn env(mut self, vars: impl IntoIterator<Item = (&'static str, &'static str)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// SDK retries back off for milliseconds instead of up to seconds (for fault runs).
    pub fn fast_retries(mut self) -> Self {
        self.fast_retries = true;
        self
    }

    /// One more template after the rig's: the rig's own with `keys` over it (give it a
    /// `templateId`).
    pub fn also(mut self, keys: Value) -> Self {
        self.others.push(keys);
        self
    }

    /// The state and the router write their EMF metrics lines to `out` (namespace `HF-Test`).
    pub fn metrics(mut self, out: Captured) -> Self {
        self.metrics = Some(out);
        self
    }

    pub async fn build(self) -> Rig {
        let wire = Wire::default();
        let sdk = wire.sdk_config(&self.sdk_base().await);
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let template_id = unique("T");
        let folder = self.template_folder(&ec2, &template_id).await;
        let env = &self.env;
        let lookup = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
        let mut config = Config::from_lookup(Runtime::Local, lookup).unwrap();
        config.templates = TemplatesLocation::Folder(folder.path().into());
        let mut state = AppState::new(config, &sdk);
        let (store, store_folder) = new_sqlite_store();
        state.store = match self.store {
            StoreOn::Sqlite => store,
            StoreOn::Dynamo => new_dynamo_store(&sdk_config().await).await,
            StoreOn::DynamoOnWire => new_dynamo_store(&sdk).await,
        };
        if let Some(out) = self.metrics {
            state.metrics = Metrics::to_writer("HF-Test", out);
        }
        let router = local_router(state.clone());
        let autoscaling = aws_sdk_autoscaling::Client::new(&shared::aws::counting(&sdk));
        Rig {
            router,
            state,
            sdk,
            ec2,
            autoscaling,
            log: wire.log.clone(),
            wire,
            template_id,
            _folders: (folder, store_folder),
        }
    }

    /// The moto SDK configuration in the rig's region, with its retries.
    async fn sdk_base(&self) -> aws_config::SdkConfig {
        let mut base = sdk_config().await.to_builder().region(aws_config::Region::from_static(self.region));
        if self.fast_retries {
            let retries = RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(50));
            base = base.retry_config(retries);
        }
        base.build()
    }

    /// A folder holding the template `template_id` (and [`RigBuilder::also`]'s), on a fresh network.
    async fn template_folder(&self, ec2: &aws_sdk_ec2::Client, template_id: &str) -> tempfile::TempDir {
        let (subnet, sg) = crate::new_network(ec2).await;
        let mut template = json!({
            "templateId": template_id, "maxNumber": self.max_number, "imageId": "ami-12c6146b",
            "subnetId": subnet, "securityGroupIds": [sg], "instanceTags": "team=grid;cost-center=42",
            "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "1024"]}
        });
        template.as_object_mut().unwrap().extend(self.launch.as_object().unwrap().clone());
        let mut templates = vec![template.clone()];
        for keys in &self.others {
            let mut other = template.clone();
            other.as_object_mut().unwrap().extend(keys.as_object().unwrap().clone());
            templates.push(other);
        }
        let templates = json!({"templates": templates});
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("awsprov_templates.json"), templates.to_string()).unwrap();
        folder
    }
}

impl Rig {
    /// A rig in us-east-1 over a template of `maxNumber` 10 launching t3.micro, on SQLite,
    /// unless the builder's options say otherwise.
    pub fn builder() -> RigBuilder {
        RigBuilder {
            region: "us-east-1",
            max_number: 10,
            store: StoreOn::Sqlite,
            launch: json!({"vmType": "t3.micro"}),
            env: Vec::new(),
            fast_retries: false,
            metrics: None,
            others: Vec::new(),
        }
    }

    /// A process started afresh after a crash: a new state from the same configuration and
    /// SDK, on the same store (its handle holds no state of its own: the records are in
    /// DynamoDB or the SQLite file) and the same EC2.
    pub fn restarted(&self) -> AppState {
        let mut state = AppState::new((*self.state.config).clone(), &self.sdk);
        state.store = self.state.store.clone();
        state
    }

    /// The rig's state with other reconciler timings (waits a test cannot sit out in moto).
    pub fn with_timings(&self, change: impl FnOnce(&mut ReconcileTimings)) -> AppState {
        let mut config = (*self.state.config).clone();
        change(&mut config.reconcile);
        AppState { config: Arc::new(config), ..self.state.clone() }
    }

    pub async fn post(&self, uri: &str, body: Value) -> Response {
        send_json(&self.router, "POST", uri, &body, &[]).await
    }

    pub async fn request(&self, count: i64) -> Response {
        self.post("/api/v1/requests", json!({"template": {"templateId": self.template_id, "machineCount": count}}))
            .await
    }

    pub async fn status(&self, ids: &[&str]) -> Response {
        let requests: Vec<Value> = ids.iter().map(|id| json!({"requestId": id})).collect();
        let response = self.post("/api/v1/requests/status", json!({"requests": requests})).await;
        assert_eq!(response.status, 200, "{}", response.body);
        response
    }

    /// Polls until the request leaves `running` (moto settles at once; a few tries suffice).
    pub async fn settled(&self, id: &str) -> Value {
        for _ in 0..10 {
            let response = self.status(&[id]).await;
            let answer = response.body["requests"][0].clone();
            if answer["status"] != "running" {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("request {id} still running");
    }

    /// Requests `count` machines while the launch is refused (a fault injected beforehand): the
    /// call answers 502 with AWS's `message`, holds no capacity and launches nothing.
    pub async fn assert_launch_refused(&self, count: i64, message: &str) {
        let response = self.request(count).await;
        assert_eq!(response.status, 502, "{}", response.body);
        assert!(response.message().contains(message), "{}", response.message());
        assert_eq!(self.in_use().await, 0);
        assert!(self.tagged().await.is_empty());
    }

    /// Requests `count` machines and polls the request to `complete`, as HostFactory does: the
    /// ids of the machines it then holds.
    pub async fn granted(&self, count: i64) -> Vec<String> {
        let answer = self.settled(&request_id(&self.request(count).await)).await;
        assert_eq!(answer["status"], "complete", "{answer}");
        machine_ids(&answer)
    }

    pub async fn in_use(&self) -> u64 {
        self.state.store.capacity.in_use(&capacity_key("awsinst", &self.template_id)).await.unwrap()
    }

    /// The Auto Scaling group `name`, `None` once it is gone.
    pub async fn asg_describe(&self, name: &str) -> Option<aws_sdk_autoscaling::types::AutoScalingGroup> {
        let out = self.autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await;
        out.unwrap().auto_scaling_groups().first().cloned()
    }

    pub async fn tagged(&self) -> Vec<instances::Observed> {
        instances::find_tagged(&self.ec2, tags::TEMPLATE_ID, &self.template_id).await.unwrap()
    }
}

/// The ids of the machines of a getRequestStatus answer.
pub fn machine_ids(answer: &Value) -> Vec<String> {
    answer["machines"].as_array().unwrap().iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect()
}

/// The body of requestReturnMachines for `machines` (by id).
pub fn return_body(machines: &[String]) -> Value {
    json!({"machines": machines.iter().map(|id| json!({"machineId": id})).collect::<Vec<_>>()})
}

pub fn request_id(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.body);
    response.body["requestId"].as_str().expect("a requestId").to_owned()
}
