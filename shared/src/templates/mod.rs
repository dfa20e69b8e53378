//! Templates: discovery in S3 or a local folder, the file priority hierarchy, validation,
//! attributes from real instance specs, the warm-process cache, and conditional writes.
//!
//! Files of a provider instance `{p}`, highest priority first (one file per level: the first
//! name of the level that exists; for each base name `.json` is tried before `.yaml` and `.yml`):
//! 1. `inst`:    `{p}inst_templates`
//! 2. `type`:    `{p}type_templates`
//! 3. `prov`:    `{p}prov_templates`, else IBM's stock `awsprov_templates` (spec §1.3)
//! 4. `default`: `templates`
//!
//! The same `templateId` in several files resolves to the highest-priority file; order is file
//! priority, then order within the file.

mod cache;
mod catalog;
mod fields;
mod kinds;
mod model;
mod parse;
mod source;
mod specs;
mod validate;


use serde::Deserialize;

pub use cache::CacheStats;
pub use catalog::{Catalog, Found, Loaded, Written};
pub use kinds::{
    AllocationStrategy, FleetType, OnDemandAllocationStrategy, PriceType, ProviderApi, Tenancy, TypeWeights, VolumeType,
};
pub use model::{MAX_NUMBER_CAP, Template};
pub use parse::{ParsedFile, check_document, check_template};
pub use source::TemplateSource;
pub use specs::{ARM64_HOST_TYPE, InstanceSpec, InstanceSpecs, InstanceTypes};
pub use validate::{Problem, describe};


/// The file levels of the hierarchy, highest priority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Inst,
    Type,
    Prov,
    Default,
}

pub const LEVELS: [Level; 4] = [Level::Inst, Level::Type, Level::Prov, Level::Default];

/// IBM's stock file name (spec §1.3), read at the `prov` level when the provider's own is absent.
pub const IBM_STOCK_FILE: &str = "awsprov_templates.json";

/// Extensions tried for each base name, in precedence order: JSON wins over YAML when both exist.
const EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// Candidate file names of one level for `provider`, in the order they are tried.
pub fn level_files(provider: &str, level: Level) -> Vec<String> {
    let bases = match level {
        Level::Inst => vec![format!("{provider}inst_templates")],
        Level::Type => vec![format!("{provider}type_templates")],
        Level::Prov => vec![format!("{provider}prov_templates"), "awsprov_templates".to_owned()],
        Level::Default => vec!["templates".to_owned()],
    };
    let mut names: Vec<String> = Vec::new();
    for base in bases {
        for extension in EXTENSIONS {
            let name = format!("{base}.{extension}");
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests;
