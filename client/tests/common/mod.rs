//! Shared by the client's integration tests: a HostFactory plugin folder as an admin installs it,
//! the local server on moto, and the scripts run as HostFactory runs them.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_config::SdkConfig;
use serde_json::{Value, json};
use shared::api::local_router;
use shared::app::AppState;
use shared::config::{Config, Runtime, StoreLocation, TemplatesLocation};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// HostFactory's plugin folder: the five scripts with the client binary beside them.
pub fn install_plugin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("infra/hostfactory/scripts")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy(env!("CARGO_BIN_EXE_hostfactory-client"), dir.path().join("hostfactory-client")).unwrap();
    dir
}

/// The local server (every route, as `hostfactory serve`) over the templates in `folder` and a
/// fresh SQLite store, on a free loopback port. Returns its URL and the store's folder guard.
pub async fn serve_locally(sdk: &SdkConfig, folder: &Path) -> (String, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let mut config = Config::from_lookup(Runtime::Local, |_| None).unwrap();
    config.templates = TemplatesLocation::Folder(folder.into());
    config.store = StoreLocation::Sqlite(store.path().join("hf.sqlite"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = local_router(AppState::new(config, sdk));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, store)
}

/// Runs `<call>.sh -f <file holding input>` as HostFactory does; returns exit code and document.
pub async fn hf(plugin: &Path, url: &str, call: &str, input: Value) -> (i32, Value) {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("hf_in");
    std::fs::write(&file, input.to_string()).unwrap();
    let mut command = Command::new("sh");
    command.arg(plugin.join(format!("{call}.sh"))).arg("-f").arg(&file).env_clear();
    command
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOSTFACTORY_API_URL", url)
        .env("HF_PROVIDER_NAME", "awsinst")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "{call}: one JSON document on stdout: {stdout:?}");
    (output.status.code().unwrap(), serde_json::from_str(stdout.trim()).unwrap())
}

/// Polls getRequestStatus until the request leaves `running`.
pub async fn status_until_done(plugin: &Path, url: &str, request_id: &str) -> Value {
    for _ in 0..30 {
        let (code, answer) =
            hf(plugin, url, "getRequestStatus", json!({"requests": [{"requestId": request_id}]})).await;
        assert_eq!(code, 0, "{answer}");
        let request = answer["requests"][0].clone();
        if request["status"] != "running" {
            return request;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{request_id} still running");
}
