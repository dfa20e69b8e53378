//! What a [`super::Wire`] does to the calls it carries: scheduled faults ([`Fault`]), seeded
//! random faults ([`Chaos`]), one crash ([`Crash`]) and the replay of idempotency tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// What an injected error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The error `code` given to [`Fault::once`] (HTTP 400 unless `status` is changed).
    Client,
    /// AWS throttling, which the SDK retries: EC2 `RequestLimitExceeded` (503), DynamoDB
    /// `ThrottlingException` (400).
    Throttle,
    /// DynamoDB `ProvisionedThroughputExceededException` (400); on EC2 `RequestLimitExceeded`.
    ThroughputExceeded,
    /// EC2 `InternalError`, DynamoDB `InternalServerError` (500): the SDK retries.
    Internal,
}

/// When an injected error is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Before the call reaches moto: nothing is applied.
    Before,
    /// After moto executed the call: it was applied, its answer is lost (the SDK retries a 5xx
    /// or throttle, so the call is applied again unless it is idempotent).
    AfterExecuting,
}

/// One scheduled failure: the next `times` calls of `operation` fail.
#[derive(Debug, Clone)]
pub struct Fault {
    pub operation: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub times: usize,
    /// Calls of `operation` let through before the fault hits ([`Fault::after_calls`]).
    pub skip: usize,
    pub kind: Kind,
    pub mode: Mode,
    /// Form parameters (`SubnetId=subnet-1`) a call must carry for the fault to hit it; any
    /// call of `operation` when empty ([`Fault::when`]).
    pub matching: Vec<String>,
}

impl Fault {
    /// A client error (HTTP 400) the SDK does not retry, e.g. `InsufficientInstanceCapacity`.
    pub fn once(operation: &str, code: &str, message: &str) -> Fault {
        Fault {
            operation: operation.into(),
            status: 400,
            code: code.into(),
            message: message.into(),
            times: 1,
            skip: 0,
            kind: Kind::Client,
            mode: Mode::Before,
            matching: Vec::new(),
        }
    }

    /// Hits only calls carrying the form parameter `pair` (`SubnetId=subnet-1`,
    /// `InstanceType=c5.large`): a fault of one pool. Calls without it neither take the fault
    /// nor count towards [`Fault::after_calls`].
    pub fn when(mut self, pair: &str) -> Fault {
        self.matching.push(pair.to_owned());
        self
    }

    /// The protocol's throttling error (see [`Kind::Throttle`]), before executing.
    pub fn throttle(operation: &str) -> Fault {
        Fault { kind: Kind::Throttle, ..Fault::once(operation, "", "") }
    }

    /// A 500 before executing (see [`Kind::Internal`]).
    pub fn internal(operation: &str) -> Fault {
        Fault { kind: Kind::Internal, ..Fault::once(operation, "", "") }
    }

    /// A 500 after moto executed the call: applied, answer lost.
    pub fn after_executing(operation: &str) -> Fault {
        Fault::internal(operation).executed()
    }

    /// This fault, answered after moto executed the call ([`Mode::AfterExecuting`]).
    pub fn executed(mut self) -> Fault {
        self.mode = Mode::AfterExecuting;
        self
    }

    /// The first `calls` calls of the operation pass; the fault hits the ones after.
    pub fn after_calls(mut self, calls: usize) -> Fault {
        self.skip = calls;
        self
    }

    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }

    /// How the call log names what this fault did.
    pub fn label(&self) -> &'static str {
        match (self.mode, self.kind) {
            (Mode::AfterExecuting, _) => "after-executing",
            (Mode::Before, Kind::Client) => "client-error",
            (Mode::Before, Kind::Throttle | Kind::ThroughputExceeded) => "throttle",
            (Mode::Before, Kind::Internal) => "internal-before",
        }
    }

    /// The status, code and message AWS would send for this fault in `protocol`.
    fn document(&self, protocol: Protocol) -> (u16, &str, &str) {
        let dynamo = protocol == Protocol::Json;
        match self.kind {
            Kind::Client => (self.status, &self.code, &self.message),
            Kind::Throttle if dynamo => (400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
            Kind::ThroughputExceeded if dynamo => (
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            ),
            Kind::Throttle | Kind::ThroughputExceeded if protocol == Protocol::AwsQuery => (400, "Throttling", "Rate exceeded"),
            Kind::Throttle | Kind::ThroughputExceeded => (503, "RequestLimitExceeded", "Request limit exceeded."),
            Kind::Internal if dynamo => (500, "InternalServerError", "Internal server error"),
            Kind::Internal => (500, "InternalError", "An internal error has occurred."),
        }
    }

    pub(super) fn response(&self, protocol: Protocol) -> HttpResponse {
        let (status, code, message) = self.document(protocol);
        let body = match protocol {
            Protocol::Query => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-injected</RequestID></Response>",
            ),
            Protocol::AwsQuery => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-injected</RequestId></ErrorResponse>",
            ),
            Protocol::Json => {
                serde_json::json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": message})
                    .to_string()
            }
        };
        let mut response = HttpResponse::new(StatusCode::try_from(status).expect("a valid status"), SdkBody::from(body));
        let content_type = match protocol {
            Protocol::Query | Protocol::AwsQuery => "text/xml",
            Protocol::Json => "application/x-amz-json-1.0",
        };
        response.headers_mut().insert("content-type", content_type);
        response
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// EC2: form body `Action=RunInstances&...`, XML errors in `<Response><Errors>`.
    Query,
    /// Auto Scaling: form body `Action=...&Version=2011-01-01`, XML errors in `<ErrorResponse>`.
    AwsQuery,
    /// DynamoDB: `X-Amz-Target: DynamoDB_20120810.PutItem`, JSON errors.
    Json,
}

/// Random faults at `rate` (0..=1) of the calls of `operations` (every operation when empty),
/// each of a kind drawn from `kinds`; the same seed makes the same draws.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub seed: u64,
    pub rate: f64,
    pub kinds: Vec<(Kind, Mode)>,
    pub operations: Vec<String>,
}

impl Chaos {
    /// Every retried kind, before and after executing, on every operation.
    pub fn retried(seed: u64, rate: f64) -> Chaos {
        let kinds = vec![
            (Kind::Throttle, Mode::Before),
            (Kind::ThroughputExceeded, Mode::Before),
            (Kind::Internal, Mode::Before),
            (Kind::Internal, Mode::AfterExecuting),
            (Kind::Throttle, Mode::AfterExecuting),
        ];
        Chaos { seed, rate, kinds, operations: Vec::new() }
    }
}

/// The wire stops answering at the `index`th call (0-based, counted from when it is armed) of
/// `operation` (of any operation when `None`), before or after moto executed it: a process
/// killed at that step. Await [`Faults::crashed`], then abort the calling task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub operation: Option<String>,
    pub index: usize,
    pub mode: Mode,
}

impl Crash {
    pub fn at(index: usize, mode: Mode) -> Crash {
        Crash { operation: None, index, mode }
    }
}

/// What the wire does with one call.
pub(super) enum Plan {
    Forward,
    Answer(Fault),
    Crash(Mode),
    Replay(Remembered),
}

/// An answer remembered for an idempotency token.
#[derive(Debug, Clone)]
pub(super) struct Remembered {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Fault>,
    chaos: Option<(Chaos, SplitMix)>,
    crash: Option<(Crash, usize)>,
    replay: bool,
    remembered: HashMap<(String, String), Remembered>,
}

/// The faults a [`super::Wire`] injects; shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    crashed: Arc<tokio::sync::Notify>,
}

impl Faults {
    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().pending.push(fault);
    }

    /// Drops every scheduled fault not triggered yet.
    pub fn clear(&self) {
        self.state.lock().unwrap().pending.clear();
    }

    /// Scheduled faults not triggered yet (a test can assert its fault was hit).
    pub fn remaining(&self) -> usize {
        self.state.lock().unwrap().pending.iter().map(|f| f.times).sum()
    }

    /// Starts random faults (replacing any); [`Faults::calm`] stops them.
    pub fn chaos(&self, chaos: Chaos) {
        let rng = SplitMix(chaos.seed);
        self.state.lock().unwrap().chaos = Some((chaos, rng));
    }

    pub fn calm(&self) {
        self.state.lock().unwrap().chaos = None;
    }

    /// Arms one crash (replacing any not hit yet).
    pub fn crash(&self, crash: Crash) {
        self.state.lock().unwrap().crash = Some((crash, 0));
    }

    /// Resolves once the armed crash was hit.
    pub async fn crashed(&self) {
        self.crashed.notified().await
    }

    /// Answers a repeated `ClientToken` (EC2) or `ClientRequestToken` (DynamoDB) with the first
    /// 2xx answer to it, without forwarding, as AWS does (moto does not).
    pub fn replay_tokens(&self) {
        self.state.lock().unwrap().replay = true;
    }

    pub(super) fn remembers(&self) -> bool {
        self.state.lock().unwrap().replay
    }

    pub(super) fn remember(&self, key: (String, String), answer: Remembered) {
        self.state.lock().unwrap().remembered.entry(key).or_insert(answer);
    }

    pub(super) fn signal_crash(&self) {
        self.crashed.notify_one();
    }

    /// What to do with one call of `operation` carrying `token`: a crash first, then a
    /// scheduled fault, a random one, a replayed answer, else forward.
    pub(super) fn plan(&self, operation: &str, token: Option<&(String, String)>, form: &[String]) -> Plan {
        let mut state = self.state.lock().unwrap();
        if let Some((crash, seen)) = state.crash.as_mut()
            && crash.operation.as_deref().is_none_or(|op| op == operation)
        {
            *seen += 1;
            if *seen > crash.index {
                let mode = crash.mode;
                state.crash = None;
                return Plan::Crash(mode);
            }
        }
        let fault = take_scheduled(&mut state.pending, operation, form).or_else(|| draw(state.chaos.as_mut(), operation));
        let remembered = token.filter(|_| state.replay).and_then(|key| state.remembered.get(key));
        match (fault, remembered) {
            // AWS answers a repeated token from what it did the first time: a lost answer is lost
            // again, but nothing is applied twice.
            (Some(fault), Some(_)) => Plan::Answer(Fault { mode: Mode::Before, ..fault }),
            (Some(fault), None) => Plan::Answer(fault),
            (None, Some(answer)) => Plan::Replay(answer.clone()),
            (None, None) => Plan::Forward,
        }
    }
}

/// The next scheduled fault of `operation` whose parameters the call's `form` carries, counted
/// down.
fn take_scheduled(pending: &mut Vec<Fault>, operation: &str, form: &[String]) -> Option<Fault> {
    let hits = |f: &Fault| f.operation == operation && f.times > 0 && f.matching.iter().all(|p| form.contains(p));
    let index = pending.iter().position(hits)?;
    if pending[index].skip > 0 {
        pending[index].skip -= 1;
        return None;
    }
    pending[index].times -= 1;
    let fault = pending[index].clone();
    if pending[index].times == 0 {
        pending.remove(index);
    }
    Some(fault)
}

/// A random fault for this call of `operation`, if the draw says so.
fn draw(chaos: Option<&mut (Chaos, SplitMix)>, operation: &str) -> Option<Fault> {
    let (chaos, rng) = chaos?;
    let chosen = chaos.operations.is_empty() || chaos.operations.iter().any(|op| op == operation);
    if !chosen || chaos.kinds.is_empty() || rng.unit() >= chaos.rate {
        return None;
    }
    let (kind, mode) = chaos.kinds[rng.below(chaos.kinds.len())];
    Some(Fault { kind, mode, ..Fault::once(operation, "", "") })
}

/// splitmix64: a small seeded generator, enough to draw faults reproducibly.
#[derive(Debug, Default)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
