//! The catalog over a folder: one directory read per revalidation, and only the files whose
//! stamp changed are read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::Catalog;
use crate::error::Result;
use crate::templates::{CacheStats, InstanceSpec, InstanceTypes, TemplateSource};

/// EC2 is never asked: every test template sets its attributes.
struct NoEc2;

#[async_trait]
impl InstanceTypes for NoEc2 {
    async fn describe_instance_types(&self, names: &[&str]) -> Result<(HashMap<String, InstanceSpec>, u64)> {
        panic!("no instance type lookup expected, asked for {names:?}")
    }
}

fn write(folder: &Path, name: &str, ids: &[&str]) {
    let templates: Vec<_> = ids
        .iter()
        .map(|id| {
            json!({
                "templateId": id, "maxNumber": 1, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "subnet-1",
                "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]}
            })
        })
        .collect();
    std::fs::write(folder.join(name), json!({ "templates": templates }).to_string()).unwrap();
}

async fn ids(catalog: &Catalog) -> Vec<String> {
    let loaded = catalog.load("awsinst", false).await.unwrap();
    loaded.templates.iter().map(|t| t.template_id.clone()).collect()
}

/// (listings, files read, files not read because the listing shows the version held).
fn reads(stats: &CacheStats) -> (u64, u64, u64) {
    (stats.listings, stats.bodies_fetched, stats.not_modified)
}

#[tokio::test]
async fn a_folder_is_listed_once_per_revalidation_and_only_changed_files_are_read() {
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "awsprov_templates.json", &["Stock"]);
    write(folder.path(), "templates.json", &["Shared"]);
    // Shadowed by the JSON file of its level: listed, never read.
    std::fs::write(folder.path().join("awsprov_templates.yaml"), "templates: [").unwrap();
    std::fs::write(folder.path().join("notes.txt"), "not a template file").unwrap();
    // TTL 0: every load revalidates.
    let catalog = Catalog::new(TemplateSource::Folder(folder.path().into()), Arc::new(NoEc2), Duration::ZERO, "awsinst");

    assert_eq!(ids(&catalog).await, ["Stock", "Shared"]);
    assert_eq!(reads(&catalog.stats().await), (1, 2, 0), "cold: one directory read, the two files used read");

    assert_eq!(ids(&catalog).await, ["Stock", "Shared"]);
    assert_eq!(reads(&catalog.stats().await), (2, 2, 2), "nothing changed: one directory read, no file read");

    write(folder.path(), "awsprov_templates.json", &["Stock", "More"]);
    assert_eq!(ids(&catalog).await, ["Stock", "More", "Shared"]);
    assert_eq!(reads(&catalog.stats().await), (3, 3, 3), "only the edited file is read");

    std::fs::remove_file(folder.path().join("templates.json")).unwrap();
    assert_eq!(ids(&catalog).await, ["Stock", "More"], "a removed file's templates are gone");
    assert_eq!(reads(&catalog.stats().await), (4, 3, 4));
    assert_eq!(catalog.stats().await.files, 1, "and so is its cache entry");
}

#[tokio::test]
async fn a_missing_folder_lists_nothing() {
    let folder = tempfile::tempdir().unwrap();
    let source = TemplateSource::Folder(folder.path().join("absent"));
    assert!(source.list().await.unwrap().is_empty());
}
