//! The HostFactory scripts and hostfactory-client exactly as Symphony runs them:
//! `<scriptPath>/<call>.sh -f <file>`, one JSON document on stdout, exit code 0 or 1.

use std::collections::HashMap;
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use serde_json::{Value, json};
use shared::api::local_router;
use shared::app::AppState;
use shared::config::{Config, Runtime};

use common::{install_plugin, root};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

async fn local_server() -> String {
    let sdk = hostfactory_tests::sdk_config().await;
    serve(local_router(AppState::new(Config::from_lookup(Runtime::Local, |_| None).unwrap(), &sdk))).await
}

struct Run {
    code: i32,
    stdout: String,
    document: Value,
}

/// Runs `<plugin>/<call>.sh -f <input>` in a clean environment plus `env`.
async fn run_script(plugin: &Path, call: &str, input: &str, env: &[(&str, &str)]) -> Run {
    let work = tempfile::tempdir().unwrap();
    let input_file = work.path().join("hf_in");
    std::fs::write(&input_file, input).unwrap();
    let mut command = Command::new("sh");
    command.arg(plugin.join(format!("{call}.sh"))).arg("-f").arg(&input_file).env_clear();
    command.env("PATH", std::env::var("PATH").unwrap()).env("AWS_EC2_METADATA_DISABLED", "true");
    command.envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let document = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout:?}\nstderr: {}", String::from_utf8_lossy(&output.stderr)));
    Run { code: output.status.code().unwrap(), stdout, document }
}

#[tokio::test]
async fn get_available_templates_script_prints_the_templates_and_logs_to_the_log_dir() {
    let url = local_server().await;
    let plugin = install_plugin();
    let logs = tempfile::tempdir().unwrap();
    let log_dir = logs.path().to_str().unwrap();

    let run = run_script(
        plugin.path(),
        "getAvailableTemplates",
        "{}",
        &[("HOSTFACTORY_API_URL", &url), ("HF_PROVIDER_NAME", "awsinst"), ("HF_PROVIDER_LOGDIR", log_dir)],
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout.trim().lines().count(), 1, "exactly one JSON document: {}", run.stdout);
    let sample: Value = serde_json::from_str(include_str!("../../infra/templates/awsprov_templates.json")).unwrap();
    assert_eq!(run.document["templates"].as_array().unwrap().len(), sample["templates"].as_array().unwrap().len());
    assert_eq!(run.document["templates"][0]["attributes"]["type"], json!(["String", "X86_64"]));
    let log = std::fs::read_to_string(logs.path().join("hostfactory-client.log")).unwrap();
    assert!(log.contains("api call") && log.contains("getAvailableTemplates"), "{log}");
}

#[tokio::test]
async fn failures_exit_non_zero_with_a_message_on_stdout() {
    let url = local_server().await;
    let plugin = install_plugin();
    let path = plugin.path();

    let rejected = run_script(path, "getAvailableTemplates", "{}", &[("HOSTFACTORY_API_URL", &url), ("HF_PROVIDER_NAME", "bad name")]).await;
    assert_eq!(rejected.code, 1);
    assert!(rejected.document["message"].as_str().unwrap().starts_with("x-hf-provider-name:"), "{}", rejected.stdout);

    let not_json = run_script(path, "requestMachines", "{oops", &[("HOSTFACTORY_API_URL", &url)]).await;
    assert_eq!(not_json.code, 1);
    assert!(not_json.document["message"].as_str().unwrap().contains("is not JSON"), "{}", not_json.stdout);

    let unconfigured = run_script(path, "getRequestStatus", "{}", &[]).await;
    assert_eq!(unconfigured.code, 1);
    assert!(unconfigured.document["message"].as_str().unwrap().contains("HOSTFACTORY_API_URL"), "{}", unconfigured.stdout);

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = run_script(path, "requestMachines", r#"{"template":{"templateId":"t","machineCount":1}}"#, &[("HOSTFACTORY_API_URL", &dead)]).await;
    assert_eq!(unreachable.code, 1);
    assert!(unreachable.document["message"].as_str().unwrap().contains("requestMachines"), "{}", unreachable.stdout);

    let wrong_call = Command::new(plugin.path().join("hostfactory-client")).args(["launchRockets", "-f", "/dev/null"]).output().unwrap();
    assert_eq!(wrong_call.status.code(), Some(1));
    let document: Value = serde_json::from_slice(&wrong_call.stdout).unwrap();
    assert!(document["message"].as_str().unwrap().contains("launchRockets"), "{document}");
}

type Captured = Arc<Mutex<Vec<(String, String, HashMap<String, String>, Vec<u8>)>>>;

/// A server that records every request and answers `{"ok": true}`.
async fn capture_server() -> (String, Captured) {
    let captured: Captured = Arc::default();
    let sink = captured.clone();
    let router = Router::new().fallback(move |request: Request| {
        let sink = sink.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
            let headers = parts.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
            sink.lock().unwrap().push((parts.method.to_string(), parts.uri.to_string(), headers, body));
            axum::Json(json!({"ok": true}))
        }
    });
    (serve(router).await, captured)
}

#[tokio::test]
async fn requests_are_signed_with_sigv4_and_the_signature_verifies_independently() {
    let (url, captured) = capture_server().await;
    let plugin = install_plugin();
    let input = r#"{"template": {"templateId": "OnDemand-C5Large", "machineCount": 2}}"#;

    let run = run_script(
        plugin.path(),
        "requestMachines",
        input,
        &[
            ("HOSTFACTORY_API_URL", &url),
            ("HOSTFACTORY_AUTH", "sigv4"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            ("HF_PROVIDER_NAME", "awsinst"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stdout);

    let (method, uri, headers, body) = captured.lock().unwrap().pop().expect("the request reached the server");
    assert_eq!((method.as_str(), uri.as_str()), ("POST", "/api/v1/requests"));
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), serde_json::from_str::<Value>(input).unwrap());
    let authorization = &headers["authorization"];
    let amz_date = &headers["x-amz-date"];
    let scope = format!("Credential=AKIDEXAMPLE/{}/eu-west-1/execute-api/aws4_request", &amz_date[..8]);
    assert!(authorization.starts_with(&format!("AWS4-HMAC-SHA256 {scope}, SignedHeaders=")), "{authorization}");
    let signed: Vec<&str> = authorization.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap().split(';').collect();
    for header in ["host", "x-amz-date", "x-hf-provider-name", "content-type"] {
        assert!(signed.contains(&header), "{header} is signed: {authorization}");
    }
    let signature = authorization.split("Signature=").nth(1).unwrap();
    assert_eq!(signature.len(), 64);

    let expected = botocore_signature(&method, &format!("{url}{uri}"), &headers, &signed, &body, "eu-west-1");
    assert_eq!(signature, expected, "botocore computes the same SigV4 signature");
}

/// Recomputes the signature with botocore (installed with moto in the project venv): an
/// independent SigV4 implementation.
fn botocore_signature(method: &str, url: &str, headers: &HashMap<String, String>, signed: &[&str], body: &[u8], region: &str) -> String {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run the tests with infra/scripts/test", python.display());
    let signed_headers: HashMap<&str, &str> = signed.iter().map(|h| (*h, headers[*h].as_str())).collect();
    let request = json!({
        "method": method, "url": url, "headers": signed_headers,
        "body": String::from_utf8(body.to_vec()).unwrap(), "region": region,
        "timestamp": headers["x-amz-date"],
    });
    let script = r#"
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
r = json.load(sys.stdin)
request = AWSRequest(method=r["method"], url=r["url"], data=r["body"].encode(), headers=r["headers"])
request.context["timestamp"] = r["timestamp"]
auth = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "execute-api", r["region"])
canonical = auth.canonical_request(request)
print(auth.signature(auth.string_to_sign(request, canonical), request))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "botocore failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
