//! `hostfactory serve` as a newcomer runs it: a real process on a real socket, embedded
//! defaults (sample templates folder), one JSON log line per request.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::Server;
use serde_json::Value;

/// The binary on embedded defaults (the sample templates folder), logging JSON.
fn start_server(data: &std::path::Path) -> Server {
    common::start_server(|command| {
        command
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

    let _ = server.child.kill();
    let mut logs = String::new();
    server.child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    let requests: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "http request")
        .collect();
    assert_eq!(requests.len(), 2, "one log line per request:\n{logs}");
    let first = &requests[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "/api/v1/templates");
    assert_eq!(first["status"], 200);
    assert!(first["latency_ms"].as_f64().is_some(), "{first}");
    assert!(first["span"]["request_id"].as_str().is_some_and(|id| id.len() >= 32), "{first}");
    assert_eq!(requests[1]["status"], 404);
}
