//! getAvailableTemplates' answer.

use serde::Serialize;

use super::Attributes;

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
    /// How many of `templates` rest (not answered: a metric).
    #[serde(skip)]
    pub resting: u64,
}
