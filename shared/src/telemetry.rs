//! Logging setup: JSON lines in Lambda, readable lines locally.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::Runtime;

/// Installs the global `tracing` subscriber.
///
/// Level: `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`. Format: JSON in Lambda
/// unless `AWS_LAMBDA_LOG_FORMAT=Text`; compact text locally unless `AWS_LAMBDA_LOG_FORMAT=JSON`.
/// Logs go to stderr locally so that stdout stays free for command output.
pub fn init(runtime: Runtime) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|l| l.to_lowercase()))
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let format = std::env::var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default().to_ascii_lowercase();
    let json = match runtime {
        Runtime::Lambda => format != "text",
        Runtime::Local => format == "json",
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json {
        builder.json().with_current_span(true).with_span_list(false).flatten_event(true).try_init()
    } else {
        builder.compact().with_ansi(runtime == Runtime::Local && std::io::stderr().is_terminal()).try_init()
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    drop(result);
}
