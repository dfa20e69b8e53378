//! Caller-supplied text as it is echoed in log fields and answers: bounded, so a caller cannot
//! write a 100 KB log line (used by the API's logging, its error answers and the configuration's
//! name checks, below all of them).

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
