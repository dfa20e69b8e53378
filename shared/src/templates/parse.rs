//! Template documents: JSON or YAML text → typed, validated templates plus the problems of the
//! entries that were skipped.
//!
//! A document that does not parse is one problem naming the line and column. Inside a document
//! that parses, each template is converted and validated on its own: a bad entry is skipped with
//! a problem naming its index, id and field, and the other entries stay usable.

use serde_json::Value;

use super::model::Template;
use super::validate::{Problem, duplicates, validate};

/// The syntax of a template file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn of(file_name: &str) -> Format {
        if file_name.ends_with(".yaml") || file_name.ends_with(".yml") { Format::Yaml } else { Format::Json }
    }
}

/// The result of reading one file.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    /// Usable templates in file order (`source_file` set).
    pub templates: Vec<Template>,
    /// Ids of entries that were skipped: they still claim their id in the hierarchy, so that a
    /// broken override never silently falls back to a lower-priority definition.
    pub skipped_ids: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Parses and validates file `name`; never fails, problems are part of the result.
pub fn parse_file(name: &str, body: &[u8]) -> ParsedFile {
    let document = match parse_document(Format::of(name), body) {
        Ok(document) => document,
        Err(problem) => return ParsedFile { problems: vec![problem.in_file(name)], ..ParsedFile::default() },
    };
    let entries = match document {
        Value::Object(mut map) => match map.remove("templates") {
            Some(Value::Array(entries)) => entries,
            _ => {
                let problem = Problem::field("templates", "the document must hold a \"templates\" array");
                return ParsedFile { problems: vec![problem.in_file(name)], ..ParsedFile::default() };
            }
        },
        _ => {
            let problem = Problem::field("file", "the document must be an object with a \"templates\" array");
            return ParsedFile { problems: vec![problem.in_file(name)], ..ParsedFile::default() };
        }
    };
    let mut parsed = check_entries(entries);
    for template in &mut parsed.templates {
        template.source_file = name.to_owned();
    }
    for problem in &mut parsed.problems {
        problem.file = Some(name.to_owned());
    }
    parsed
}

/// A posted document: `{"templates": [...]}` or one template object.
pub fn check_document(document: Value) -> ParsedFile {
    match document {
        Value::Object(mut map) if map.contains_key("templates") => match map.remove("templates") {
            Some(Value::Array(entries)) => check_entries(entries),
            _ => ParsedFile {
                problems: vec![Problem::field("templates", "must be an array of templates")],
                ..ParsedFile::default()
            },
        },
        one @ Value::Object(_) => check_entries(vec![one]),
        _ => ParsedFile {
            problems: vec![Problem::field("body", "must be a template object or {\"templates\": [...]}")],
            ..ParsedFile::default()
        },
    }
}

/// Converts and validates one template given as JSON; problems carry no file or index.
pub fn check_template(entry: Value) -> Result<Template, Vec<Problem>> {
    let template = convert(entry).map_err(|problem| vec![problem])?;
    let problems = validate(&template);
    if problems.is_empty() { Ok(template) } else { Err(problems) }
}

fn check_entries(entries: Vec<Value>) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    let mut kept: Vec<(usize, String)> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let id = declared_id(&entry);
        match check_template(entry) {
            Ok(template) => {
                kept.push((index, template.template_id.clone()));
                parsed.templates.push(template);
            }
            Err(problems) => {
                parsed.problems.extend(problems.into_iter().map(|p| p.in_template(index, id.as_deref())));
                parsed.skipped_ids.extend(id);
            }
        }
    }
    let duplicated = duplicates(kept.iter().map(|(i, id)| (*i, id.as_str())));
    for problem in &duplicated {
        let position = kept.iter().position(|(i, _)| Some(*i) == problem.index);
        if let Some(position) = position {
            kept.remove(position);
            parsed.templates.remove(position);
        }
    }
    parsed.problems.extend(duplicated);
    parsed.problems.sort_by_key(|p| p.index);
    parsed
}

/// The id an entry declares, read before conversion so that problems can name it.
pub(crate) fn declared_id(entry: &Value) -> Option<String> {
    entry.get("templateId").or_else(|| entry.get("template_id")).and_then(Value::as_str).map(str::to_owned)
}

fn convert(entry: Value) -> Result<Template, Problem> {
    serde_path_to_error::deserialize(entry).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
        match (path.as_str(), missing) {
            (".", Some(field)) => Problem::field(field, "is required"),
            (".", None) => Problem::field("template", message),
            (path, Some(field)) => Problem::field(format!("{path}.{field}"), "is required"),
            (path, None) => Problem::field(path, message),
        }
    })
}

/// Text → JSON value; a syntax error names the line and column.
fn parse_document(format: Format, body: &[u8]) -> Result<Value, Problem> {
    match format {
        Format::Json => serde_json::from_slice(body).map_err(|err| {
            Problem::field("file", format!("line {}, column {}: invalid JSON: {err}", err.line(), err.column()))
        }),
        Format::Yaml => serde_yaml_ng::from_slice(body).map_err(|err| {
            let at = err.location().map(|l| format!("line {}, column {}: ", l.line(), l.column())).unwrap_or_default();
            Problem::field("file", format!("{at}invalid YAML: {err}"))
        }),
    }
}
