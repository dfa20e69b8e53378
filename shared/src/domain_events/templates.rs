//! The events of the templates function's writes and validations: created, updated (with the
//! old and new value of every key that differs), deleted, validated (with the problems found).

use serde_json::{Value, json};

use super::derive::{DomainEvent, base};
/// One template write, as the templates function made it.
pub struct TemplateWrite<'a> {
    pub provider: &'a str,
    pub template_id: &'a str,
    /// The file it was written to (or removed from).
    pub source_file: &'a str,
    /// The file's ETag after the write.
    pub etag: &'a str,
    /// The caller's IAM principal, or `local`.
    pub by: &'a str,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Value>,
    pub at: i64,
}

/// `Template Created`, `Template Updated` or `Template Deleted`.
pub fn template_written(write: &TemplateWrite<'_>) -> DomainEvent {
    let detail_type = match (write.old, write.new) {
        (None, _) => "Template Created",
        (Some(_), Some(_)) => "Template Updated",
        (Some(_), None) => "Template Deleted",
    };
    let mut detail = base(detail_type, &[write.provider, write.template_id, write.etag], write.provider, write.template_id, write.at);
    detail.insert("sourceFile".into(), json!(write.source_file));
    detail.insert("etag".into(), json!(write.etag));
    detail.insert("by".into(), json!(write.by));
    if detail_type == "Template Updated" {
        detail.insert("changes".into(), json!(changes(write.old, write.new)));
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

    #[test]
    fn an_update_lists_each_key_that_differs_with_its_old_and_new_value() {
        let old = json!({"templateId": "T", "maxNumber": 10, "vmType": "t3.micro", "keyName": "ops"});
        let new = json!({"templateId": "T", "maxNumber": 20, "vmType": "t3.micro", "instanceTags": "team=grid"});
        let write = |old: Option<&Value>, new: Option<&Value>| {
            template_written(&TemplateWrite {
                provider: "awsinst", template_id: "T", source_file: "awsinst_templates.json", etag: "\"e2\"", by: "local", old, new, at: 7,
            })
        };
        let updated = write(Some(&old), Some(&new));
        assert_eq!(updated.detail_type, "Template Updated");
        assert_eq!(
            updated.detail["changes"],
            json!([
                {"key": "instanceTags", "old": null, "new": "team=grid"},
                {"key": "keyName", "old": "ops", "new": null},
                {"key": "maxNumber", "old": 10, "new": 20},
            ])
        );
        assert_eq!(write(None, Some(&new)).detail_type, "Template Created");
        assert_eq!(write(Some(&old), None).detail_type, "Template Deleted");
        assert_eq!(updated.detail["sourceFile"], "awsinst_templates.json");
    }
}
