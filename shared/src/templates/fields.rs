//! The lenient forms of template fields: lists as a string, a comma-separated string or an
//! array; `instanceTags` as `"k=v;k2=v2"` or an object, written back in IBM's string form.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serializer};

/// A string, an array of strings, or a comma-separated string → list (blank entries dropped).
pub(super) fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct StringList;

    impl<'de> Visitor<'de> for StringList {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, a comma-separated string or an array of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut list = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                let item = item.trim();
                if !item.is_empty() {
                    list.push(item.to_owned());
                }
            }
            Ok(list)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
    }

    deserializer.deserialize_any(StringList)
}

/// `"k=v;k2=v2"` or `{"k": "v"}` → ordered map.
pub(super) fn tags<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IndexMap<String, String>, D::Error> {
    struct Tags;

    impl<'de> Visitor<'de> for Tags {
        type Value = IndexMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(r#"tags as "key=value;key2=value2" or an object of strings"#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut tags = IndexMap::new();
            for pair in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(E::custom(format!("tag '{pair}' is not key=value")));
                };
                let key = key.trim();
                if key.is_empty() {
                    return Err(E::custom(format!("tag '{pair}' has an empty key")));
                }
                tags.insert(key.to_owned(), value.trim().to_owned());
            }
            Ok(tags)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut tags = IndexMap::new();
            while let Some((key, value)) = map.next_entry::<String, TagValue>()? {
                tags.insert(key, value.0);
            }
            Ok(tags)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(IndexMap::new())
        }
    }

    deserializer.deserialize_any(Tags)
}

/// A tag value: a string, or a number/boolean kept as its text (YAML writes `Cost: 42`).
struct TagValue(String);

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Ok(TagValue(s)),
            value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Ok(TagValue(value.to_string())),
            other => Err(de::Error::custom(format!("tag value {other} is not a string"))),
        }
    }
}

pub(super) fn tags_as_text<S: Serializer>(tags: &IndexMap<String, String>, serializer: S) -> Result<S::Ok, S::Error> {
    let text: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serializer.serialize_str(&text.join(";"))
}
