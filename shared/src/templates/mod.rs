//! Templates: discovery in S3 or a local folder, the file priority hierarchy, and the
//! conversion to getAvailableTemplates' answer.

mod model;
mod source;

pub use model::{Template, TemplateFile};
pub use source::TemplateSource;

use crate::error::{Error, Result};

/// The file levels of the hierarchy, highest priority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Inst,
    Type,
    Prov,
    Default,
}

/// IBM's stock file name (spec §1.3), read at the `prov` level when the provider's own is absent.
pub const IBM_STOCK_FILE: &str = "awsprov_templates.json";

/// Candidate file names of one level for `provider`, in the order they are tried.
pub fn level_files(provider: &str, level: Level) -> Vec<String> {
    match level {
        Level::Inst => vec![format!("{provider}inst_templates.json")],
        Level::Type => vec![format!("{provider}type_templates.json")],
        Level::Prov => vec![format!("{provider}prov_templates.json"), IBM_STOCK_FILE.to_owned()],
        Level::Default => vec!["templates.json".to_owned()],
    }
}

pub const LEVELS: [Level; 4] = [Level::Inst, Level::Type, Level::Prov, Level::Default];

/// Reads templates for a provider instance from a [`TemplateSource`].
pub struct Catalog {
    source: TemplateSource,
}

impl Catalog {
    pub fn new(source: TemplateSource) -> Self {
        Self { source }
    }

    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    /// All templates for `provider`, merged across the hierarchy: the same `templateId` in
    /// several files resolves to the highest-priority file; order is file priority, then the
    /// order within each file.
    pub async fn load(&self, provider: &str) -> Result<Vec<Template>> {
        let mut merged: Vec<Template> = Vec::new();
        let mut looked_for = Vec::new();
        for level in LEVELS {
            let Some((name, body)) = self.first_existing(provider, level, &mut looked_for).await? else {
                continue;
            };
            let file = TemplateFile::parse(&name, &body)?;
            for mut template in file.templates {
                if merged.iter().all(|t| t.template_id != template.template_id) {
                    template.source_file = name.clone();
                    merged.push(template);
                }
            }
        }
        if merged.is_empty() {
            // An empty list makes HostFactory drop the provider: answer an error instead.
            return Err(Error::Config(format!(
                "no templates for provider instance '{provider}' in {} (missing: {})",
                self.source,
                looked_for.join(", ")
            )));
        }
        Ok(merged)
    }

    /// The first file of `level` that exists, with its content. Records missing names.
    async fn first_existing(
        &self,
        provider: &str,
        level: Level,
        looked_for: &mut Vec<String>,
    ) -> Result<Option<(String, Vec<u8>)>> {
        for name in level_files(provider, level) {
            match self.source.read(&name).await? {
                Some(body) => return Ok(Some((name, body))),
                None => looked_for.push(name),
            }
        }
        Ok(None)
    }
}
