//! The catalog: merged templates of a provider instance, cached in the warm process, and
//! conditional edits of the files they come from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cache::{CacheStats, Counters};
use super::model::Template;
use super::parse::{Format, ParsedFile, declared_id, parse_file};
use super::source::{Fetch, TemplateSource, Version};
use super::specs::{InstanceSpecs, InstanceTypes, derive_attributes, needs_specs};
use super::validate::{Problem, describe};
use super::{LEVELS, level_files};
use crate::error::{Error, Result};

mod write;

/// The most provider instances whose merged templates a process keeps.
const MAX_CACHED_PROVIDERS: usize = 1024;

/// The merged view of one provider instance.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Usable templates: file priority, then order within the file; attributes complete.
    pub templates: Vec<Template>,
    /// What was skipped and why (bad files, bad entries, underivable attributes).
    pub problems: Vec<Problem>,
    /// The files used, highest priority first, with their version (ETag).
    pub files: Vec<(String, String)>,
    /// Every id the files declare (usable or skipped) → the file it resolves to.
    owners: HashMap<String, String>,
}

impl Loaded {
    pub fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.template_id == id)
    }

    /// The file `id` resolves to, also when its entry there was skipped as invalid.
    pub fn owner(&self, id: &str) -> Option<&str> {
        self.owners.get(id).map(String::as_str)
    }
}

/// The outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The template did not exist in the file before.
    pub created: bool,
    pub file: String,
    /// The file's new version; `None` when the write removed the file (its last template deleted).
    pub etag: Option<String>,
}

/// A template as written in its file, with what HostFactory sees of it.
#[derive(Debug, Clone)]
pub struct Found {
    pub raw: Value,
    /// `None` when the entry is skipped (see `problems`).
    pub effective: Option<Template>,
    pub file: String,
    pub etag: String,
    pub problems: Vec<Problem>,
}

pub struct Catalog {
    source: TemplateSource,
    specs: InstanceSpecs,
    ttl: Duration,
    /// The service's own provider instance (`HF_PROVIDER_NAME`): never "unknown", so a location
    /// without its templates is a configuration error.
    default_provider: String,
    state: tokio::sync::Mutex<State>,
    counters: Counters,
}

#[derive(Default)]
struct State {
    files: HashMap<String, CachedFile>,
    providers: HashMap<String, Entry>,
}

struct CachedFile {
    version: Version,
    parsed: Arc<ParsedFile>,
}

struct Entry {
    checked_at: Instant,
    loaded: Arc<Loaded>,
}

impl Catalog {
    /// `ttl`: how long a provider instance's merged templates are served without revalidating.
    /// `types`: EC2's instance type specs (the cloud), for the attributes templates leave out.
    pub fn new(source: TemplateSource, types: Arc<dyn InstanceTypes>, ttl: Duration, default_provider: &str) -> Self {
        Catalog {
            source,
            specs: InstanceSpecs::new(types),
            ttl,
            default_provider: default_provider.to_owned(),
            state: tokio::sync::Mutex::default(),
            counters: Counters::default(),
        }
    }

    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    pub async fn stats(&self) -> CacheStats {
        let state = self.state.lock().await;
        self.counters.snapshot(state.providers.len(), state.files.len(), self.ttl.as_secs(), self.specs.calls())
    }

    /// The merged templates of `provider`: from the cache within the TTL (unless `force`), else
    /// revalidated against one listing of the location (see [`Catalog::revalidate`]). Fails,
    /// never answers empty, when nothing usable is found: [`Error::NotFound`] for an unknown
    /// provider instance (see [`Catalog::unusable`]).
    pub async fn load(&self, provider: &str, force: bool) -> Result<Arc<Loaded>> {
        let mut state = self.state.lock().await;
        let cached = state.providers.get(provider).map(|e| (e.checked_at, e.loaded.clone()));
        match &cached {
            Some((checked_at, loaded)) if !force && checked_at.elapsed() < self.ttl => {
                Counters::bump(&self.counters.hits);
                return Ok(loaded.clone());
            }
            Some(_) => Counters::bump(&self.counters.refreshes),
            None => Counters::bump(&self.counters.misses),
        }

        let (used, looked_for) = self.revalidate(&mut state, provider).await?;
        let files: Vec<(String, String)> =
            used.iter().filter_map(|n| state.files.get(n).map(|f| (n.clone(), f.version.etag.clone()))).collect();
        let loaded = match cached {
            Some((_, loaded)) if loaded.files == files => loaded,
            _ => {
                let parsed: Vec<Arc<ParsedFile>> =
                    used.iter().filter_map(|n| state.files.get(n).map(|f| f.parsed.clone())).collect();
                let loaded = self.merge(provider, files, &parsed, &looked_for).await?;
                Arc::new(loaded)
            }
        };
        self.remember(&mut state, provider, loaded.clone());
        let stats = self.counters.snapshot(state.providers.len(), state.files.len(), self.ttl.as_secs(), self.specs.calls());
        tracing::info!(provider, templates = loaded.templates.len(), problems = loaded.problems.len(), ?stats, "templates revalidated");
        Ok(loaded)
    }

    /// Brings the cached files of `provider`'s levels up to date with one listing of the
    /// location: per level the first name listed is used; it is read only when the listing
    /// shows another stamp than the version held (a file not listed is dropped). Answers the
    /// files used, highest priority first, and the names looked for in vain.
    async fn revalidate(&self, state: &mut State, provider: &str) -> Result<(Vec<String>, Vec<String>)> {
        let listing = self.source.list().await?;
        Counters::bump(&self.counters.listings);
        let (mut used, mut looked_for) = (Vec::new(), Vec::new());
        for level in LEVELS {
            for name in level_files(provider, level) {
                let Some(stamp) = listing.get(&name) else {
                    state.files.remove(&name);
                    looked_for.push(name);
                    continue;
                };
                if state.files.get(&name).is_some_and(|f| f.version.is_listed_as(stamp.as_ref())) {
                    Counters::bump(&self.counters.not_modified);
                } else {
                    let Fetch::Body { body, version } = self.source.fetch(&name).await? else {
                        // Removed since it was listed.
                        state.files.remove(&name);
                        looked_for.push(name);
                        continue;
                    };
                    Counters::bump(&self.counters.bodies_fetched);
                    let parsed = parse_file(&name, &body);
                    for problem in &parsed.problems {
                        tracing::warn!(problem = %problem, "template problem");
                    }
                    state.files.insert(name.clone(), CachedFile { version, parsed: Arc::new(parsed) });
                }
                used.push(name);
                break;
            }
        }
        self.counters.refreshed();
        Ok((used, looked_for))
    }

    /// Caches `provider`'s merged templates. Callers name instances freely (with a stock or
    /// shared file every name has templates), so the cache is bounded: when it is full the
    /// expired entries go, else all.
    fn remember(&self, state: &mut State, provider: &str, loaded: Arc<Loaded>) {
        if state.providers.len() >= MAX_CACHED_PROVIDERS && !state.providers.contains_key(provider) {
            state.providers.retain(|_, entry| entry.checked_at.elapsed() < self.ttl);
            if state.providers.len() >= MAX_CACHED_PROVIDERS {
                state.providers.clear();
            }
        }
        state.providers.insert(provider.to_owned(), Entry { checked_at: Instant::now(), loaded });
    }

    /// Merges files (highest priority first) and completes attributes with one batched
    /// `DescribeInstanceTypes` for every type still missing from the instance-spec cache.
    async fn merge(
        &self,
        provider: &str,
        files: Vec<(String, String)>,
        parsed: &[Arc<ParsedFile>],
        looked_for: &[String],
    ) -> Result<Loaded> {
        let mut templates: Vec<Template> = Vec::new();
        let mut problems = Vec::new();
        let mut owners = HashMap::new();
        for ((name, _), file) in files.iter().zip(parsed) {
            problems.extend(file.problems.iter().cloned());
            let ids = file.templates.iter().map(|t| &t.template_id).chain(&file.skipped_ids);
            let mut claimed_here = HashSet::new();
            for id in ids {
                if !owners.contains_key(id) {
                    owners.insert(id.clone(), name.clone());
                    claimed_here.insert(id.clone());
                }
            }
            templates.extend(file.templates.iter().filter(|t| claimed_here.contains(&t.template_id)).cloned());
        }

        let wanted: Vec<&str> =
            templates.iter().filter(|t| needs_specs(t)).flat_map(|t| t.instance_types()).collect::<Vec<_>>();
        let specs = if wanted.is_empty() { HashMap::new() } else { self.specs.lookup(&wanted).await? };
        let mut usable = Vec::with_capacity(templates.len());
        for mut template in templates {
            match derive_attributes(&mut template, &specs) {
                Ok(()) => usable.push(template),
                Err(problem) => {
                    let problem = Problem { file: Some(template.source_file.clone()), template_id: Some(template.template_id.clone()), ..problem };
                    tracing::warn!(problem = %problem, "template skipped");
                    problems.push(problem);
                }
            }
        }

        if usable.is_empty() {
            // An empty list makes HostFactory drop the provider: answer an error instead.
            let empty: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
            return Err(self.unusable(provider, owners.is_empty() && problems.is_empty(), &problems, &empty, looked_for));
        }
        Ok(Loaded { templates: usable, problems, files, owners })
    }

    /// Why `provider` has no usable template. When no file of its levels declares any template
    /// (all absent, or holding an empty list), an instance the caller named is unknown (404);
    /// the service's own `HF_PROVIDER_NAME`, or templates that are all invalid, is a
    /// configuration error (500). Answers name files only; the location is logged.
    fn unusable(&self, provider: &str, undeclared: bool, problems: &[Problem], empty: &[&str], missing: &[String]) -> Error {
        if undeclared && provider != self.default_provider {
            return Error::not_found("provider instance", provider);
        }
        let error = Error::Config(if undeclared {
            let empty = if empty.is_empty() { String::new() } else { format!("empty: {}; ", empty.join(", ")) };
            format!("no templates for provider instance '{provider}' ({empty}missing: {})", missing.join(", "))
        } else {
            format!("no usable templates for provider instance '{provider}': {}", describe(problems))
        });
        tracing::error!(provider, location = %self.source, error = %error, "templates unusable");
        error
    }

    /// Template `id` as written in its file (read fresh, so the ETag is current).
    pub async fn find(&self, provider: &str, id: &str) -> Result<Found> {
        let loaded = self.load(provider, false).await?;
        let file = loaded.owner(id).ok_or_else(|| Error::not_found("template", id))?.to_owned();
        let Fetch::Body { body, version } = self.source.fetch(&file).await? else {
            return Err(Error::not_found("template", id));
        };
        let document = read_document(&file, &body)?;
        let raw = entries(&document)
            .and_then(|entries| entries.iter().find(|e| declared_id(e).as_deref() == Some(id)).cloned())
            .ok_or_else(|| Error::not_found("template", id))?;
        Ok(Found {
            raw,
            effective: loaded.template(id).cloned(),
            file,
            etag: version.etag,
            problems: loaded.problems.iter().filter(|p| p.template_id.as_deref() == Some(id)).cloned().collect(),
        })
    }
}

/// A template file as a JSON value; one that does not parse must be fixed by hand.
pub(super) fn read_document(file: &str, body: &[u8]) -> Result<Value> {
    let parsed = match Format::of(file) {
        Format::Json => serde_json::from_slice(body).map_err(|err| err.to_string()),
        Format::Yaml => serde_yaml_ng::from_slice(body).map_err(|err| err.to_string()),
    };
    parsed.map_err(|err| Error::Unprocessable(format!("{file} does not parse ({err}); fix it by hand first")))
}

pub(super) fn entries(document: &Value) -> Option<&Vec<Value>> {
    document.get("templates").and_then(Value::as_array)
}

#[cfg(test)]
mod tests;
