//! HostFactory wire types: the JSON documents of the five provider calls, exactly as
//! `hostfactory-spec.md` §2 describes them.
//!
//! Input is read leniently where real traffic varies (attribute values as tuples or plain values,
//! `requests`/`machines` as an array or a single object, unknown fields ignored); output is always
//! written in the one canonical form (tuples, arrays, lower-case `launchtime`).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// The type half of an attribute tuple (`["Numeric","4"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeType {
    String,
    Numeric,
    Boolean,
}

/// One template attribute. Always written as `[type, "value"]`; read from a tuple
/// (`["Numeric","4"]`, `["Numeric",4]`) or a plain value (`4`, `"X86_64"`, `true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub kind: AttributeType,
    pub value: String,
}

impl Attribute {
    pub fn string(value: impl Into<String>) -> Self {
        Self { kind: AttributeType::String, value: value.into() }
    }

    pub fn numeric(value: impl fmt::Display) -> Self {
        Self { kind: AttributeType::Numeric, value: value.to_string() }
    }
}

impl Serialize for Attribute {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.kind, &self.value).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AttributeVisitor)
    }
}

struct AttributeVisitor;

impl<'de> Visitor<'de> for AttributeVisitor {
    type Value = Attribute;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an attribute: a ["Type","value"] tuple or a plain string, number or boolean"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Attribute, E> {
        Ok(Attribute::string(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Attribute, E> {
        Ok(Attribute::numeric(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Attribute, E> {
        Ok(Attribute::numeric(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Attribute, E> {
        Ok(Attribute::numeric(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Attribute, E> {
        Ok(Attribute { kind: AttributeType::Boolean, value: if v { "1" } else { "0" }.to_owned() })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Attribute, A::Error> {
        let kind: AttributeType =
            seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &"a [type, value] pair"))?;
        let value: TupleValue =
            seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &"a [type, value] pair"))?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &"a [type, value] pair"));
        }
        Ok(Attribute { kind, value: value.0 })
    }
}

/// The value half of a tuple: a string, or a number/boolean that is kept as its text.
struct TupleValue(String);

impl<'de> Deserialize<'de> for TupleValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let attribute = deserializer.deserialize_any(ScalarOnly)?;
        Ok(TupleValue(attribute.value))
    }
}

/// Like [`AttributeVisitor`] but refuses nested tuples.
struct ScalarOnly;

impl<'de> Visitor<'de> for ScalarOnly {
    type Value = Attribute;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute value: a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Attribute, E> {
        AttributeVisitor.visit_str(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Attribute, E> {
        AttributeVisitor.visit_u64(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Attribute, E> {
        AttributeVisitor.visit_i64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Attribute, E> {
        AttributeVisitor.visit_f64(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Attribute, E> {
        AttributeVisitor.visit_bool(v)
    }
}

/// Attribute map of a template (`type`, `ncpus`, `ncores`, `nram`, ...).
pub type Attributes = BTreeMap<String, Attribute>;

// ---------------------------------------------------------------------------------------------
// One-or-many lists
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// getAvailableTemplates
// ---------------------------------------------------------------------------------------------

/// One entry of getAvailableTemplates' answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    pub template_id: String,
    pub max_number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_number: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_machines: Option<Vec<String>>,
    pub attributes: Attributes,
    /// Provider-specific keys (priceType, vmType, sourceFile, ...); HostFactory ignores them.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GetAvailableTemplatesResponse {
    pub message: String,
    pub templates: Vec<TemplateInfo>,
    /// Templates or files skipped as unusable (extra key; HostFactory ignores it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// requestMachines
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestMachinesInput {
    pub template: RequestedTemplate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedTemplate {
    pub template_id: String,
    /// Signed so that `-1` or `0` reach validation and get a clear message.
    pub machine_count: i64,
}

impl RequestMachinesInput {
    /// Checks what serde cannot: a non-blank id and a count of at least one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.template.template_id.trim().is_empty() {
            return Err(Error::invalid("template.templateId", "must not be empty"));
        }
        if self.template.machine_count < 1 {
            return Err(Error::invalid(
                "template.machineCount",
                format!("must be at least 1, got {}", self.template.machine_count),
            ));
        }
        Ok(())
    }
}

/// Answer of requestMachines and requestReturnMachines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAccepted {
    pub message: String,
    pub request_id: String,
}

// ---------------------------------------------------------------------------------------------
// getRequestStatus
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestStatusInput {
    #[serde(deserialize_with = "one_or_many")]
    pub requests: Vec<RequestRef>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRef {
    pub request_id: String,
}

impl RequestStatusInput {
    pub fn validate(&self) -> Result<(), Error> {
        if self.requests.is_empty() {
            return Err(Error::invalid("requests", "must list at least one request"));
        }
        for (i, request) in self.requests.iter().enumerate() {
            if request.request_id.trim().is_empty() {
                return Err(Error::invalid(format!("requests[{i}].requestId"), "must not be empty"));
            }
        }
        Ok(())
    }
}

/// Request `status`: `running` (keep polling), `complete`, `complete_with_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Running,
    Complete,
    CompleteWithError,
}

/// Machine `result`: `executing`, `succeed`, `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineResult {
    Executing,
    Succeed,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    pub machine_id: String,
    pub name: String,
    pub result: MachineResult,
    pub status: String,
    pub private_ip_address: String,
    pub public_ip_address: String,
    /// Epoch seconds (UTC). Lower-case on the wire, by the spec.
    #[serde(rename = "launchtime")]
    pub launchtime: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    pub request_id: String,
    pub status: RequestState,
    pub message: String,
    pub machines: Vec<MachineStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestStatusResponse {
    pub requests: Vec<RequestStatus>,
}

// ---------------------------------------------------------------------------------------------
// requestReturnMachines / getReturnRequests
// ---------------------------------------------------------------------------------------------

/// A host named by HostFactory: `machineId` is matched when present, otherwise `name`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineRef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub machine_id: Option<String>,
}

fn validate_machine_refs(machines: &[MachineRef]) -> Result<(), Error> {
    for (i, machine) in machines.iter().enumerate() {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        if blank(&machine.name) && blank(&machine.machine_id) {
            return Err(Error::invalid(format!("machines[{i}]"), "needs a name or a machineId"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReturnMachinesInput {
    #[serde(deserialize_with = "one_or_many")]
    pub machines: Vec<MachineRef>,
}

impl ReturnMachinesInput {
    pub fn validate(&self) -> Result<(), Error> {
        validate_machine_refs(&self.machines)
    }
}

/// getReturnRequests input: `{}` or the hosts HostFactory holds from this provider instance.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ReturnRequestsInput {
    #[serde(default, deserialize_with = "one_or_many")]
    pub machines: Vec<MachineRef>,
}

impl ReturnRequestsInput {
    pub fn validate(&self) -> Result<(), Error> {
        validate_machine_refs(&self.machines)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnRequest {
    /// Host name (PrivateDnsName).
    pub machine: String,
    /// Seconds left before the cloud takes the host.
    pub grace_period: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnRequestsResponse {
    /// Always `complete`: seen in every real output, though not in IBM's schema.
    pub status: String,
    pub message: String,
    pub requests: Vec<ReturnRequest>,
}

#[cfg(test)]
mod tests;
