//! Template attributes: `[type, "value"]` tuples on the wire, read from a tuple or a plain value.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
