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

/// The most characters of a caller-supplied string (request id, path, template id, an error
/// message echoing input) that go into one log field.
pub const MAX_LOGGED_CHARS: usize = 256;

/// `value` cut to [`MAX_LOGGED_CHARS`] characters, with a `…(+N chars)` marker saying how much
/// was cut, so a caller cannot write a 100 KB log line.
pub fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(MAX_LOGGED_CHARS) {
        None => std::borrow::Cow::Borrowed(value),
        Some((end, _)) => {
            let cut = value[end..].chars().count();
            std::borrow::Cow::Owned(format!("{}…(+{cut} chars)", &value[..end]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_and_long_ones_cut_at_a_character_boundary() {
        assert_eq!(bounded("req-1"), "req-1");
        let exact = "x".repeat(MAX_LOGGED_CHARS);
        assert_eq!(bounded(&exact), exact);

        let long = "é".repeat(100_000);
        let cut = bounded(&long);
        assert_eq!(cut, format!("{}…(+{} chars)", "é".repeat(MAX_LOGGED_CHARS), 100_000 - MAX_LOGGED_CHARS));
        assert!(cut.chars().count() < MAX_LOGGED_CHARS + 20, "{}", cut.len());
    }
}
