//! `hostfactory serve` as a newcomer runs it: a real process on a real socket, embedded
//! defaults (sample templates folder), one JSON log line per request.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

fn start_server(data: &std::path::Path) -> Server {
    start_server_with(data, &[])
}

/// The binary on embedded defaults (the sample templates folder), logging JSON, with extra
/// environment variables.
fn start_server_with(data: &std::path::Path, env: &[(&str, &str)]) -> Server {
    common::start_server(|command| {
        command
            .envs(env.iter().copied())
            .env("HOSTFACTORY_STORE", format!("sqlite:{}", data.join("store.sqlite").display()))
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("RUST_LOG", "info")
            .env_remove("HOSTFACTORY_TEMPLATES")
            .stderr(Stdio::piped());
    })
}

/// A minimal HTTP/1.1 GET; returns the status code and the body.
fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the server");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

#[test]
fn serve_answers_get_available_templates_from_the_sample_folder_and_logs_the_request() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server(data.path());

    let (status, body) = http_get(&server.address, "/api/v1/templates");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let sample: Value = serde_json::from_str(include_str!("../../infra/templates/awsprov_templates.json")).unwrap();
    let ids = |v: &Value| v["templates"].as_array().unwrap().iter().map(|t| t["templateId"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&answer), ids(&sample));
    assert_eq!(answer["templates"][0]["attributes"]["ncpus"], serde_json::json!(["Numeric", "1"]));

    let (status, _) = http_get(&server.address, "/api/v1/nowhere");
    assert_eq!(status, 404);

    let logs = log_lines(&mut server);
    let requests = logged(&logs, "http request");
    assert_eq!(requests.len(), 2, "one log line per request:\n{logs:#?}");
    let first = &requests[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "/api/v1/templates");
    assert_eq!(first["status"], 200);
    assert!(first["latency_ms"].as_f64().is_some(), "{first}");
    assert!(first["span"]["request_id"].as_str().is_some_and(|id| id.len() >= 32), "{first}");
    assert_eq!(requests[1]["status"], 404);
}

/// Stops the server and returns its JSON log lines.
fn log_lines(server: &mut Server) -> Vec<String> {
    let _ = server.child.kill();
    let mut logs = String::new();
    server.child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    logs.lines().map(str::to_owned).collect()
}

/// The JSON log entries whose message is `message`.
fn logged(lines: &[String], message: &str) -> Vec<Value> {
    lines.iter().filter_map(|line| serde_json::from_str::<Value>(line).ok()).filter(|e| e["message"] == message).collect()
}

/// Sends `request` as is and reads until the server closes; returns the raw answer.
fn exchange(address: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("the server answers and closes");
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn caller_strings_are_bounded_in_every_log_line_and_a_long_request_id_is_replaced() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server(data.path());
    let long_id = "r".repeat(50_000);
    let template_id = "t".repeat(100_000);

    let body = serde_json::json!({"template": {"templateId": template_id, "machineCount": 1}}).to_string();
    let request = format!(
        "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nX-Request-Id: {long_id}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&server.address, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 404"), "{}", &answer[..200.min(answer.len())]);
    let echoed = answer.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("an X-Request-Id");
    assert_eq!(echoed.len(), 36, "a fresh UUID instead of 50 KB: {}", &echoed[..64.min(echoed.len())]);
    let path = format!("/api/v1/{}", "p".repeat(60_000));
    let (status, _) = http_get(&server.address, &path);
    assert_eq!(status, 404);

    let lines = log_lines(&mut server);
    let longest = lines.iter().map(String::len).max().unwrap_or_default();
    assert!(longest < 2_000, "a log line of {longest} bytes");
    let rejected = logged(&lines, "request rejected");
    assert_eq!(rejected.len(), 2, "{lines:?}");
    let error = rejected[0]["error"].as_str().unwrap();
    assert!(error.starts_with("template 'tttt") && error.contains("…(+"), "{error}");
    assert_eq!(rejected[0]["span"]["request_id"], echoed);
}

#[test]
fn a_slow_client_is_cut_off_within_the_header_and_body_timeouts() {
    let data = tempfile::tempdir().unwrap();
    let timeouts = [("HOSTFACTORY_HEADER_TIMEOUT_SECS", "1"), ("HOSTFACTORY_BODY_TIMEOUT_SECS", "1")];
    let server = start_server_with(data.path(), &timeouts);

    // Half the headers, then nothing: closed without an answer.
    let started = Instant::now();
    let answer = exchange(&server.address, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n");
    let waited = started.elapsed();
    assert_eq!(answer, "", "no answer to a request that never ended");
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&waited), "closed after {waited:?}");

    // Connected and silent: closed too.
    let started = Instant::now();
    assert_eq!(exchange(&server.address, b""), "");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());

    // Whole headers, a tenth of the body: 408, then closed.
    let started = Instant::now();
    let head = "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let answer = exchange(&server.address, format!("{head}{{\"template\"").as_bytes());
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body: not received within 1 s"), "{answer}");
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&waited), "closed after {waited:?}");

    // A client in time is served as before.
    let (status, body) = http_get(&server.address, "/api/v1/health");
    assert_eq!(status, 200, "{body}");
}
