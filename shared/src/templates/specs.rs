//! Instance type specifications from EC2 `DescribeInstanceTypes`, cached for the process, and
//! the template attributes derived from them.
//!
//! Mapping (hostfactory-spec.md §3.1: "on hyper-threaded types use vCPU/2"):
//! - `ncpus`  = physical cores = `DefaultCores` (vCPUs / threads per core when EC2 omits it);
//! - `ncores` = the same number (IBM's sample files write `ncpus` = `ncores`, e.g. 1 and 1 for
//!   c5.large with its 2 vCPUs);
//! - `nram`   = `MemoryInfo.SizeInMiB` (HostFactory's MB);
//! - `type`   = `X86_64` for x86_64, [`ARM64_HOST_TYPE`] for arm64.
//!
//! For `vmTypes` the smallest type (fewest vCPUs, then least memory) describes the template, so
//! HostFactory never counts on more than any launched host has. Attributes written in the file
//! always win; only missing ones are derived.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::RwLock;

use super::model::Template;
use super::validate::Problem;
use crate::error::Result;
use crate::hostfactory::Attribute;

/// EGO host type written for arm64 (Graviton) instance types. EGO's x86-64 Linux type is
/// `X86_64`; IBM publishes no AWS arm64 sample, so this follows EGO's `LINUX_…` naming and can be
/// overridden per template with an explicit `type` attribute.
pub const ARM64_HOST_TYPE: &str = "LINUX_ARM64";

/// What HostFactory needs of one instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub vcpus: u32,
    /// Physical cores.
    pub cores: u32,
    pub memory_mib: u64,
    /// The EGO host type (`X86_64`, [`ARM64_HOST_TYPE`]).
    pub host_type: String,
}

/// Most values EC2 accepts in one filter.
const FILTER_BATCH: usize = 100;

/// The one thing templates ask of EC2 (implemented in [`crate::cloud`], so templates name no
/// SDK): the specs of up to 100 instance types, with the number of `DescribeInstanceTypes`
/// pages it took. Types EC2 does not know are absent from the answer.
#[async_trait]
pub trait InstanceTypes: Send + Sync {
    async fn describe_instance_types(&self, names: &[&str]) -> Result<(HashMap<String, InstanceSpec>, u64)>;
}

/// Process-wide cache of instance specs of one region (the region of the EC2 client).
pub struct InstanceSpecs {
    ec2: Arc<dyn InstanceTypes>,
    cache: RwLock<HashMap<String, InstanceSpec>>,
    calls: AtomicU64,
}

impl InstanceSpecs {
    pub fn new(ec2: Arc<dyn InstanceTypes>) -> Self {
        InstanceSpecs { ec2, cache: RwLock::new(HashMap::new()), calls: AtomicU64::new(0) }
    }

    /// `DescribeInstanceTypes` calls made so far (pages count one each).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Specs of `names`; types EC2 does not know are absent from the answer. Types not cached
    /// yet are fetched in one `DescribeInstanceTypes` call per 100 names (a filter, so one unknown
    /// name does not fail the others).
    pub async fn lookup(&self, names: &[&str]) -> Result<HashMap<String, InstanceSpec>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.cache.read().await;
            for name in names {
                match cache.get(*name) {
                    Some(spec) => {
                        found.insert((*name).to_owned(), spec.clone());
                    }
                    None if !missing.contains(name) => missing.push(*name),
                    None => {}
                }
            }
        }
        for batch in missing.chunks(FILTER_BATCH) {
            let fetched = self.describe(batch).await?;
            self.cache.write().await.extend(fetched.iter().map(|(k, v)| (k.clone(), v.clone())));
            found.extend(fetched);
        }
        Ok(found)
    }

    async fn describe(&self, names: &[&str]) -> Result<HashMap<String, InstanceSpec>> {
        tracing::info!(types = ?names, "describing instance types");
        let (specs, pages) = self.ec2.describe_instance_types(names).await?;
        self.calls.fetch_add(pages, Ordering::Relaxed);
        Ok(specs)
    }
}

/// The attributes HostFactory requires.
const REQUIRED: [&str; 4] = ["type", "ncpus", "ncores", "nram"];

/// Whether `template` lacks an attribute that must be derived.
pub fn needs_specs(template: &Template) -> bool {
    REQUIRED.iter().any(|name| !template.attributes.contains_key(*name))
}

/// The instance type whose specs describe `template`: `vmType`, else the smallest of `vmTypes`.
fn describing_type<'a>(template: &'a Template, specs: &'a HashMap<String, InstanceSpec>) -> Option<&'a str> {
    if let Some(vm_type) = &template.vm_type {
        return Some(vm_type);
    }
    template
        .vm_types
        .keys()
        .filter_map(|name| specs.get(name).map(|spec| (name, spec)))
        .min_by_key(|(_, spec)| (spec.vcpus, spec.memory_mib))
        .map(|(name, _)| name.as_str())
}

/// Fills the missing required attributes of `template` from `specs`.
pub fn derive_attributes(template: &mut Template, specs: &HashMap<String, InstanceSpec>) -> std::result::Result<(), Problem> {
    if !needs_specs(template) {
        return Ok(());
    }
    let missing: Vec<&str> = REQUIRED.into_iter().filter(|n| !template.attributes.contains_key(*n)).collect();
    let Some(name) = describing_type(template, specs) else {
        let problem = if template.vm_type.is_none() && template.vm_types.is_empty() {
            "missing and cannot be derived: the template names no vmType or vmTypes".to_owned()
        } else {
            format!("missing and cannot be derived: EC2 knows none of {:?} in this region", template.instance_types())
        };
        return Err(Problem::field(format!("attributes.{}", missing.join("/")), problem));
    };
    let Some(spec) = specs.get(name) else {
        return Err(Problem::field("vmType", format!("'{name}' is not an EC2 instance type in this region")));
    };
    for attribute in missing {
        let value = match attribute {
            "type" => Attribute::string(&spec.host_type),
            "ncpus" | "ncores" => Attribute::numeric(spec.cores),
            _ => Attribute::numeric(spec.memory_mib),
        };
        template.attributes.insert(attribute.to_owned(), value);
    }
    Ok(())
}
