//! The IBM `awsprov_templates.json` document and the template entries it holds.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hostfactory::{Attributes, TemplateInfo};

/// `{ "templates": [ {...}, ... ] }`
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateFile {
    pub templates: Vec<Template>,
}

/// One template as written in a template file. Fields this service does not interpret
/// are kept in `extra` and passed through to getAvailableTemplates (HostFactory ignores them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    #[serde(alias = "template_id")]
    pub template_id: String,
    #[serde(alias = "max_number")]
    pub max_number: i64,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The file this template was read from.
    #[serde(skip)]
    pub source_file: String,
}

impl TemplateFile {
    /// Parses a template file; errors name the file, the template and the field.
    pub fn parse(file_name: &str, body: &[u8]) -> Result<Self> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let file: TemplateFile = serde_path_to_error::deserialize(&mut json).map_err(|err| {
            let path = err.path().to_string();
            Error::Config(format!("{file_name}: {path}: {}", err.into_inner()))
        })?;
        for (i, template) in file.templates.iter().enumerate() {
            template.validate().map_err(|problem| Error::Config(format!("{file_name}: templates[{i}]: {problem}")))?;
        }
        Ok(file)
    }
}

impl Template {
    fn validate(&self) -> std::result::Result<(), String> {
        let id = &self.template_id;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("templateId '{id}' must be 1-64 characters of [0-9A-Za-z_-]"));
        }
        if !(-1..=10_000).contains(&self.max_number) {
            return Err(format!("{id}: maxNumber {} must be between -1 and 10000", self.max_number));
        }
        Ok(())
    }

    /// getAvailableTemplates' view of this template.
    pub fn to_info(&self) -> TemplateInfo {
        let mut extra = self.extra.clone();
        extra.insert("sourceFile".into(), self.source_file.clone().into());
        TemplateInfo {
            template_id: self.template_id.clone(),
            max_number: self.max_number,
            available_number: None,
            requested_machines: None,
            attributes: self.attributes.clone(),
            extra,
        }
    }
}
