//! hostfactory-client: what the five HostFactory provider scripts run on the HostFactory host.
//!
//! `hostfactory-client <call> -f <input-file>` reads HostFactory's input file, sends it to the
//! hostfactory-aws API (SigV4-signed unless the API is local), prints exactly one JSON document
//! on stdout, and exits 0 on success or 1 with `{"message": ...}` on any failure, so that
//! HostFactory retries (spec §1.2).

pub mod call;
pub mod settings;
pub mod sign;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use call::Call;
use settings::{Auth, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("input file {path}: {problem}")]
    Input { path: PathBuf, problem: String },
    #[error("AWS credentials: {0}")]
    Credentials(String),
    #[error("signing the request: {0}")]
    Signing(String),
    #[error("{0}")]
    Transport(String),
    /// The API answered with an error; `body` is its JSON answer when it had one.
    #[error("HTTP {status}: {message}")]
    Api { status: u16, message: String, body: Option<Value> },
}

/// What the process prints and how it exits.
pub struct Outcome {
    pub document: Value,
    pub success: bool,
}

impl Outcome {
    fn failure(err: &ClientError) -> Outcome {
        let document = match err {
            ClientError::Api { body: Some(body), .. } if body.get("message").is_some_and(Value::is_string) => body.clone(),
            other => json!({ "message": other.to_string() }),
        };
        Outcome { document, success: false }
    }
}

/// Runs one call with settings from `env`; never panics, always yields one document.
pub async fn run(call: Call, input: &Path, env: impl Fn(&str) -> Option<String>) -> Outcome {
    match execute(call, input, env).await {
        Ok(document) => Outcome { document, success: true },
        Err(err) => {
            tracing::error!(call = call.name(), error = %err, "call failed");
            Outcome::failure(&err)
        }
    }
}

async fn execute(call: Call, input: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Value, ClientError> {
    let body = read_input(input)?;
    let settings = Settings::load(call, env)?;
    let identity = match settings.auth {
        Auth::SigV4 => {
            let region = settings.region.as_deref().ok_or_else(|| {
                ClientError::Config("AWS_REGION is needed to sign requests to a custom API domain".into())
            })?;
            Some((sign::load_identity(region).await?, region.to_owned()))
        }
        Auth::None => None,
    };
    send_with_retries(call, &settings, &body, identity.as_ref()).await
}

/// The input file must hold one JSON document (HostFactory writes `{}` for calls without input).
fn read_input(path: &Path) -> Result<Vec<u8>, ClientError> {
    let problem = |problem: String| ClientError::Input { path: path.to_owned(), problem };
    let body = std::fs::read(path).map_err(|err| problem(err.to_string()))?;
    let document: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|err| problem(format!("is not JSON: {err}")))?
    };
    Ok(serde_json::to_vec(&document).expect("a JSON value always serializes"))
}

const BACKOFF: [Duration; 2] = [Duration::from_millis(300), Duration::from_millis(1200)];

/// Sends the call within `settings.timeout`. Read-only calls are retried on connection errors,
/// throttling and 5xx; calls that act on EC2 only when nothing was sent (connection refused).
async fn send_with_retries(
    call: Call,
    settings: &Settings,
    body: &[u8],
    identity: Option<&(aws_smithy_runtime_api::client::identity::Identity, String)>,
) -> Result<Value, ClientError> {
    let deadline = Instant::now() + settings.timeout;
    let client = reqwest::Client::builder()
        .user_agent(concat!("hostfactory-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| ClientError::Transport(format!("cannot build the HTTP client: {err}")))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let started = Instant::now();
        let result = send_once(&client, call, settings, body, identity, remaining).await;
        let retry = match &result {
            Ok(_) => false,
            Err(Failure::NotSent(_)) => true,
            Err(Failure::Sent(ClientError::Api { status, .. })) => {
                call.is_read_only() && (*status == 429 || *status >= 500)
            }
            Err(Failure::Sent(_)) => call.is_read_only(),
        };
        tracing::info!(
            call = call.name(),
            attempt,
            ok = result.is_ok(),
            latency_ms = started.elapsed().as_millis() as u64,
            "api call"
        );
        let pause = BACKOFF.get(attempt - 1).copied();
        match (result, pause) {
            (Ok(document), _) => return Ok(document),
            (Err(failure), Some(pause)) if retry && Instant::now() + pause < deadline => {
                tracing::warn!(call = call.name(), attempt, error = %failure.error(), "retrying");
                tokio::time::sleep(pause).await;
            }
            (Err(failure), _) => return Err(failure.into_error()),
        }
    }
}

enum Failure {
    /// The request never reached the server (connection refused, DNS): always safe to retry.
    NotSent(ClientError),
    Sent(ClientError),
}

impl Failure {
    fn error(&self) -> &ClientError {
        match self {
            Failure::NotSent(err) | Failure::Sent(err) => err,
        }
    }

    fn into_error(self) -> ClientError {
        match self {
            Failure::NotSent(err) | Failure::Sent(err) => err,
        }
    }
}

async fn send_once(
    client: &reqwest::Client,
    call: Call,
    settings: &Settings,
    body: &[u8],
    identity: Option<&(aws_smithy_runtime_api::client::identity::Identity, String)>,
    timeout: Duration,
) -> Result<Value, Failure> {
    let request = build_request(call, settings, body, identity).map_err(Failure::NotSent)?;
    let url = request.uri().to_string();
    let mut request = reqwest::Request::try_from(request)
        .map_err(|err| Failure::NotSent(ClientError::Transport(format!("invalid request to {url}: {err}"))))?;
    *request.timeout_mut() = Some(timeout);
    let response = client.execute(request).await.map_err(|err| {
        let error = ClientError::Transport(format!("{} {url}: {}", call.name(), error_chain(&err)));
        if err.is_connect() { Failure::NotSent(error) } else { Failure::Sent(error) }
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| Failure::Sent(ClientError::Transport(format!("reading the answer from {url}: {}", error_chain(&err)))))?;
    let document: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        return document.ok_or_else(|| {
            Failure::Sent(ClientError::Transport(format!("{url} answered {status} with a body that is not JSON")))
        });
    }
    let message = document
        .as_ref()
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| text.chars().take(300).collect());
    Err(Failure::Sent(ClientError::Api { status: status.as_u16(), message, body: document }))
}

fn build_request(
    call: Call,
    settings: &Settings,
    body: &[u8],
    identity: Option<&(aws_smithy_runtime_api::client::identity::Identity, String)>,
) -> Result<http::Request<Vec<u8>>, ClientError> {
    let (method, path) = call.route();
    let body = if method == http::Method::GET { Vec::new() } else { body.to_vec() };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", settings.api_url))
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(provider) = &settings.provider {
        builder = builder.header("x-hf-provider-name", provider);
    }
    let mut request = builder.body(body).map_err(|err| ClientError::Config(format!("invalid request: {err}")))?;
    let host = request.uri().authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let host = http::HeaderValue::from_str(&host).map_err(|err| ClientError::Config(format!("invalid host: {err}")))?;
    request.headers_mut().insert(http::header::HOST, host);
    if let Some((identity, region)) = identity {
        sign::sign_request(&mut request, identity, region, SystemTime::now())?;
    }
    Ok(request)
}

/// An error with all its causes, `a: b: c`.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Sends logs to `${HF_PROVIDER_LOGDIR}/hostfactory-client.log` (appended) or stderr; never stdout.
pub fn init_logging(log_dir: Option<&Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    let file = log_dir.and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("hostfactory-client.log")).ok()
    });
    let _ = match file {
        Some(file) => builder.with_writer(std::sync::Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
