//! Reading HostFactory input leniently: an empty body as `{}`, errors naming the offending
//! field, and lists written as an array or a single object.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::Error;

/// Parses a HostFactory input document, naming the offending field in the error.
///
/// An empty body counts as `{}` because HostFactory sends `{}` to calls without input and
/// simple HTTP clients send nothing at all. Any other body must be a JSON object: serde would
/// otherwise fill a document's fields from an array by position (`[]` read as `{}`).
pub fn parse_input<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<de::IgnoredAny>(body).map_err(|err| input_error(None, err))?;
        return Err(Error::invalid("body", "must be a JSON object"));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        input_error(if path == "." { None } else { Some(path) }, err.into_inner())
    })?;
    json.end().map_err(|err| input_error(None, err))?;
    Ok(value)
}

/// Turns a serde error at `path` into [`Error::Invalid`] naming the most precise field:
/// a missing field is named itself (`template.machineCount: is required`).
fn input_error(path: Option<String>, err: serde_json::Error) -> Error {
    let message = err.to_string();
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(name, _)| name);
    let syntax = matches!(err.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof);
    let path = path.filter(|_| !syntax);
    match (path, missing) {
        (Some(path), Some(name)) => Error::invalid(format!("{path}.{name}"), "is required"),
        (None, Some(name)) => Error::invalid(name, "is required"),
        (Some(path), None) => Error::invalid(path, json_problem(&err)),
        (None, None) => Error::invalid("body", json_problem(&err)),
    }
}

fn json_problem(err: &serde_json::Error) -> String {
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("is not valid JSON ({err})")
        }
        _ => err.to_string(),
    }
}

/// Reads a JSON array or a single object as a list (IBM's schema pages draw single objects, real
/// HostFactory sends arrays). A hand-written visitor instead of an untagged enum so that an error
/// inside an element still names its path (`requests[1].requestId`).
pub fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of objects or a single object")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|one| vec![one])
        }
    }

    deserializer.deserialize_any(OneOrMany(PhantomData))
}
