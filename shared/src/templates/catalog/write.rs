//! Conditional edits of template files: create, update and delete one template.

use serde_json::Value;

use super::super::cache::Counters;
use super::super::parse::{Format, declared_id};
use super::super::source::Fetch;
use super::super::{Level, level_files};
use super::{Catalog, Written, read_document};
use crate::error::{Error, Result};

impl Catalog {
    /// Creates or replaces template `id` (already validated by the caller).
    ///
    /// Target: the file of `level` when given (its first existing file, else its first name,
    /// created); otherwise the file the template resolves to today; otherwise (new) the `prov`
    /// level's existing file. No file is created unless `level` names it: a new template for a
    /// provider instance without a `prov` file is refused (400 naming `level`). The write is
    /// conditional on the version read (or on `if_match`, the version the client read).
    pub async fn put(
        &self,
        provider: &str,
        id: &str,
        entry: Value,
        level: Option<Level>,
        if_match: Option<&str>,
    ) -> Result<Written> {
        let file = match level {
            Some(level) => match self.first_existing(provider, level).await? {
                Some(file) => file,
                None => level_files(provider, level).swap_remove(0),
            },
            None => match self.load(provider, true).await.ok().and_then(|l| l.owner(id).map(str::to_owned)) {
                Some(file) => file,
                None => self.first_existing(provider, Level::Prov).await?.ok_or_else(|| {
                    Error::invalid(
                        "level",
                        format!(
                            "template '{id}' is new and provider instance '{provider}' has no prov-level file \
                             ({provider}prov_templates.json or awsprov_templates.json) to add it to; name the \
                             file to create with ?level=inst, type, prov or default"
                        ),
                    )
                })?,
            },
        };
        self.edit(&file, if_match, |templates| {
            let position = templates.iter().position(|e| declared_id(e).as_deref() == Some(id));
            match position {
                Some(i) => templates[i] = entry,
                None => templates.push(entry),
            }
            Ok(position.is_none())
        })
        .await
    }

    /// Removes template `id` from the file it resolves to (a lower-priority definition of the
    /// same id, if any, becomes visible). A file left holding nothing but an empty `templates`
    /// list is removed, so the level is as if the file had never been written.
    pub async fn delete(&self, provider: &str, id: &str, if_match: Option<&str>) -> Result<Written> {
        let loaded = self.load(provider, true).await?;
        let file = loaded.owner(id).ok_or_else(|| Error::not_found("template", id))?.to_owned();
        if provider == self.default_provider && loaded.templates.iter().all(|t| t.template_id == id) {
            // With none left the service's own provider fails every call (an empty list would
            // make HostFactory drop it), so the last one stays until another exists.
            return Err(Error::Conflict(format!(
                "template '{id}' is the only template of provider instance '{provider}' (the service's own): \
                 HostFactory drops a provider that lists no template; add another template first"
            )));
        }
        self.edit(&file, if_match, |templates| {
            let before = templates.len();
            templates.retain(|e| declared_id(e).as_deref() != Some(id));
            if templates.len() == before {
                return Err(Error::not_found("template", id));
            }
            Ok(false)
        })
        .await
    }

    /// The first file of `level` that exists, from one listing of the location.
    async fn first_existing(&self, provider: &str, level: Level) -> Result<Option<String>> {
        let listing = self.source.list().await?;
        Ok(level_files(provider, level).into_iter().find(|name| listing.contains_key(name)))
    }

    /// Read-modify-write of `file`'s `templates` array, conditional on the version read.
    /// `change` answers whether the template was created. Drops the cache afterwards.
    async fn edit(
        &self,
        file: &str,
        if_match: Option<&str>,
        change: impl FnOnce(&mut Vec<Value>) -> Result<bool>,
    ) -> Result<Written> {
        if Format::of(file) == Format::Yaml {
            return Err(Error::Unprocessable(format!(
                "{file} is a YAML file: this API writes JSON only and would lose its comments and layout; \
                 edit it directly, or write the template to a JSON level with ?level="
            )));
        }
        let (mut document, expected) = match self.source.fetch(file).await? {
            Fetch::Body { body, version } => (read_document(file, &body)?, Some(version.etag)),
            Fetch::Missing => (serde_json::json!({ "templates": [] }), None),
        };
        if let Some(wanted) = if_match
            && expected.as_deref() != Some(wanted)
        {
            return Err(Error::Conflict(format!(
                "{file} is at version {} but the request expects {wanted} (If-Match); read it again and retry",
                expected.as_deref().unwrap_or("(none: the file does not exist)")
            )));
        }
        let templates = document
            .get_mut("templates")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| Error::Unprocessable(format!("{file} holds no \"templates\" array; fix it by hand first")))?;
        let created = change(templates)?;
        let etag = match (&expected, document == serde_json::json!({ "templates": [] })) {
            (Some(version), true) => {
                self.source.remove(file, version).await?;
                None
            }
            _ => {
                let mut body =
                    serde_json::to_vec_pretty(&document).map_err(|err| Error::Config(format!("{file}: {err}")))?;
                body.push(b'\n');
                Some(self.source.write(file, body, expected.as_deref()).await?)
            }
        };

        let mut state = self.state.lock().await;
        state.providers.clear();
        state.files.remove(file);
        Counters::bump(&self.counters.invalidations);
        tracing::info!(file, created, etag = ?etag, "template file written, cache invalidated");
        Ok(Written { created, file: file.to_owned(), etag })
    }
}
