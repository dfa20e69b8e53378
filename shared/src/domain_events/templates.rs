//! The events of the templates function's writes and validations: created, updated (with the
//! old and new value of every key that differs), deleted, validated (with the problems found).
//!
//! A write is recorded as an [`Intent`] before the file is written and committed with its event
//! after, so a crash between the two loses nothing: a stale intent is judged against the file
//! ([`judge`]) and committed when the write was made, forgotten when it was not.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::derive::{DomainEvent, base};

/// A template write about to be made, as the store keeps it until it is committed or forgotten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// Unique per write: the key of its record and the seed of its event's `eventId`.
    pub id: String,
    pub provider: String,
    pub template_id: String,
    /// The caller's IAM principal, or `local`.
    pub by: String,
    /// The template as written before (`None`: new) and after (`None`: deleted).
    pub old: Option<Value>,
    pub new: Option<Value>,
    /// The file the template resolved to before the write.
    pub file_before: Option<String>,
    pub at: i64,
}

/// Where the written template is now: its entry, file and the file's ETag.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub raw: &'a Value,
    pub file: &'a str,
    pub etag: &'a str,
}

/// Whether the write of a stale `intent` was made, judged from the template as it is now
/// (`None`: not found): `Some((file, etag))` to commit its event with, `None` to forget it. A
/// put was made when the entry is what it wrote; a delete when the template is gone from the
/// file it was in (a lower level's definition may show through). A write a later one replaced
/// before the judging is forgotten: the later write's own event carries its outcome.
pub fn judge(intent: &Intent, current: Option<Current<'_>>) -> Option<(String, String)> {
    match (&intent.new, current) {
        (Some(new), Some(now)) if now.raw == new => Some((now.file.to_owned(), now.etag.to_owned())),
        (Some(_), _) => None,
        (None, Some(now)) if Some(now.file) == intent.file_before.as_deref() => None,
        (None, _) => Some((intent.file_before.clone().unwrap_or_default(), String::new())),
    }
}

/// `Template Created`, `Template Updated` or `Template Deleted`: the event of `intent`'s write,
/// made to `file`, now at `etag` (empty when the write removed the file).
pub fn template_written(intent: &Intent, file: &str, etag: &str) -> DomainEvent {
    let detail_type = match (&intent.old, &intent.new) {
        (None, _) => "Template Created",
        (Some(_), Some(_)) => "Template Updated",
        (Some(_), None) => "Template Deleted",
    };
    let mut detail = base(detail_type, &[&intent.provider, &intent.template_id, &intent.id], &intent.provider, &intent.template_id, intent.at);
    detail.insert("sourceFile".into(), json!(file));
    detail.insert("etag".into(), json!(etag));
    detail.insert("by".into(), json!(intent.by));
    if detail_type == "Template Updated" {
        detail.insert("changes".into(), json!(changes(intent.old.as_ref(), intent.new.as_ref())));
    }
    DomainEvent { detail_type, detail: Value::Object(detail) }
}

/// `Template Validated`: what a validation found (`problems` empty when the document is valid).
pub fn template_validated(provider: &str, template_ids: &[String], problems: &[Value], by: &str, at: i64, call_id: &str) -> DomainEvent {
    let detail_type = "Template Validated";
    let mut detail = base(detail_type, &[provider, call_id], provider, template_ids.first().map_or("", String::as_str), at);
    detail.insert("templateIds".into(), json!(template_ids));
    detail.insert("problems".into(), json!(problems));
    detail.insert("valid".into(), json!(problems.is_empty()));
    detail.insert("by".into(), json!(by));
    DomainEvent { detail_type, detail: Value::Object(detail) }
}

/// Every key whose value differs, in key order, with its old and new value (`null`: absent).
fn changes(old: Option<&Value>, new: Option<&Value>) -> Vec<Value> {
    let empty = serde_json::Map::new();
    let (old, new) = (old.and_then(Value::as_object).unwrap_or(&empty), new.and_then(Value::as_object).unwrap_or(&empty));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| json!({"key": k, "old": old.get(k), "new": new.get(k)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(old: Option<Value>, new: Option<Value>) -> Intent {
        Intent {
            id: "w1".into(), provider: "awsinst".into(), template_id: "T".into(), by: "local".into(), old, new,
            file_before: Some("awsinst_templates.json".into()), at: 7,
        }
    }

    #[test]
    fn an_update_lists_each_key_that_differs_with_its_old_and_new_value() {
        let old = json!({"templateId": "T", "maxNumber": 10, "vmType": "t3.micro", "keyName": "ops"});
        let new = json!({"templateId": "T", "maxNumber": 20, "vmType": "t3.micro", "instanceTags": "team=grid"});
        let updated = template_written(&intent(Some(old.clone()), Some(new.clone())), "awsinst_templates.json", "\"e2\"");
        assert_eq!(updated.detail_type, "Template Updated");
        assert_eq!(
            updated.detail["changes"],
            json!([
                {"key": "instanceTags", "old": null, "new": "team=grid"},
                {"key": "keyName", "old": "ops", "new": null},
                {"key": "maxNumber", "old": 10, "new": 20},
            ])
        );
        assert_eq!(template_written(&intent(None, Some(new)), "f", "e").detail_type, "Template Created");
        assert_eq!(template_written(&intent(Some(old), None), "f", "").detail_type, "Template Deleted");
        assert_eq!(updated.detail["sourceFile"], "awsinst_templates.json");
    }

    #[test]
    fn an_event_id_is_the_writes_whatever_the_file_version_it_is_committed_with() {
        let write = intent(None, Some(json!({"templateId": "T"})));
        let id = |etag: &str| template_written(&write, "f", etag).detail["eventId"].clone();
        assert_eq!(id("\"e1\""), id("\"e2\""));
        let other = Intent { id: "w2".into(), ..write.clone() };
        assert_ne!(template_written(&other, "f", "e").detail["eventId"], id("e"));
    }

    #[test]
    fn a_stale_intent_is_committed_only_when_its_write_was_made() {
        let (a, b) = (json!({"templateId": "T", "maxNumber": 1}), json!({"templateId": "T", "maxNumber": 2}));
        let file = "awsinst_templates.json";
        type Case<'a> = (&'a str, Intent, Option<Current<'a>>, Option<(&'a str, &'a str)>);
        let cases: [Case<'_>; 7] = [
            ("put made", intent(Some(a.clone()), Some(b.clone())), at(&b, file), Some((file, "\"v\""))),
            ("put not made", intent(Some(a.clone()), Some(b.clone())), at(&a, file), None),
            ("create not made", intent(None, Some(b.clone())), None, None),
            ("put made, moved to another level", intent(None, Some(b.clone())), at(&b, "awsinst_inst.json"), Some(("awsinst_inst.json", "\"v\""))),
            ("delete made", intent(Some(a.clone()), None), None, Some((file, ""))),
            ("delete made, a lower level shows", intent(Some(a.clone()), None), at(&b, "awsprov_templates.json"), Some((file, ""))),
            ("delete not made", intent(Some(a.clone()), None), at(&a, file), None),
        ];
        for (case, write, current, expected) in cases {
            let expected = expected.map(|(f, e)| (f.to_owned(), e.to_owned()));
            assert_eq!(judge(&write, current), expected, "{case}");
        }
    }

    fn at<'a>(raw: &'a Value, file: &'a str) -> Option<Current<'a>> {
        Some(Current { raw, file, etag: "\"v\"" })
    }
}
