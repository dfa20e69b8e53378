//! Templates resource group: getAvailableTemplates, validation, cache statistics and CRUD.
//!
//! `cache` and `validate` are route names, so templates with those ids cannot be read through
//! `GET /api/v1/templates/{id}` (they still load and list normally).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Json, Response};
use http::{HeaderMap, StatusCode, Uri, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Caller, HfJson, Provider};
use crate::app::AppState;
use crate::calls::template_writes::{self as writes, Writer};
use crate::error::{Error, Result};
use crate::hostfactory::GetAvailableTemplatesResponse;
use crate::metrics::MachineFigures;
use crate::templates::{Level, Written, check_document, check_template};

#[derive(Deserialize)]
struct ListQuery {
    /// Revalidate now instead of serving the cached list within its TTL.
    #[serde(default)]
    force_refresh: bool,
}

#[derive(Deserialize)]
struct WriteQuery {
    /// `inst`, `type`, `prov` or `default`: the level whose file receives the template.
    level: Option<Level>,
}

fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T> {
    Query::try_from_uri(uri).map(|q| q.0).map_err(|err| Error::invalid("query", err.body_text()))
}

/// getAvailableTemplates (the use case is [`crate::calls::available_templates`]).
pub(super) async fn get_available_templates(
    State(state): State<AppState>,
    Provider(provider): Provider,
    uri: Uri,
) -> Result<(Extension<MachineFigures>, Json<GetAvailableTemplatesResponse>)> {
    let ListQuery { force_refresh } = query(&uri)?;
    let answer = crate::calls::available_templates(&state, &provider, force_refresh).await?;
    Ok((Extension(MachineFigures { templates_resting: answer.resting, ..Default::default() }), Json(answer)))
}

/// Validates a posted document (`{"templates": [...]}` or one template) without saving it:
/// 200 when every template is valid, else 400 listing every problem.
pub(super) async fn validate(
    State(state): State<AppState>,
    Provider(provider): Provider,
    Caller(by): Caller,
    HfJson(document): HfJson<Value>,
) -> Response {
    let checked = check_document(document);
    let ids: Vec<&str> = checked.templates.iter().map(|t| t.template_id.as_str()).collect();
    let owned: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    writes::record_validation(&state, &provider, &by, &owned, &checked.problems).await;
    if checked.problems.is_empty() {
        let message = format!("{} template(s) valid.", ids.len());
        return Json(json!({ "ok": true, "message": message, "templates": ids })).into_response();
    }
    let message = crate::templates::describe(&checked.problems);
    let body = json!({ "ok": false, "message": message, "valid": ids, "errors": checked.problems });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

pub(super) async fn cache_stats(State(state): State<AppState>) -> Json<Value> {
    let stats = state.catalog.stats().await;
    tracing::info!(?stats, "template cache statistics");
    Json(json!({ "source": state.catalog.source().to_string(), "cache": stats }))
}

/// One template as written in its file (`template`), what HostFactory sees of it (`effective`,
/// `null` when it is skipped) and its file; the `ETag` header is the file's version for `If-Match`.
pub(super) async fn get_template(
    State(state): State<AppState>,
    Provider(provider): Provider,
    Path(id): Path<String>,
) -> Result<Response> {
    let found = state.catalog.find(&provider, &id).await?;
    let body = json!({
        "template": found.raw,
        "effective": found.effective.map(|t| t.to_info(None)),
        "sourceFile": found.file,
        "problems": found.problems,
    });
    Ok((StatusCode::OK, [(header::ETAG, found.etag)], Json(body)).into_response())
}

/// Creates or replaces a template after validating it. `?level=` picks the file level; an
/// `If-Match` header makes the write conditional on the version the client read.
pub(super) async fn put_template(
    State(state): State<AppState>,
    Provider(provider): Provider,
    Caller(by): Caller,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    HfJson(body): HfJson<Value>,
) -> Result<Response> {
    let WriteQuery { level } = query(&uri)?;
    let Value::Object(mut entry) = body else {
        return Err(Error::invalid("body", "must be one template object"));
    };
    // Keys only ever written by getAvailableTemplates: not part of the file.
    entry.remove("sourceFile");
    match entry.get("templateId").or_else(|| entry.get("template_id")) {
        None => {
            entry.insert("templateId".into(), id.clone().into());
        }
        Some(Value::String(written)) if *written == id => {}
        Some(other) => {
            return Err(Error::invalid("templateId", format!("{other} does not match the id '{id}' in the path")));
        }
    }
    let entry = Value::Object(entry);
    if let Err(problems) = check_template(entry.clone()) {
        let listed: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect();
        return Err(Error::invalid(format!("template '{id}'"), listed.join("; ")));
    }
    let writer = Writer { provider: &provider, template_id: &id, by: &by };
    let written = writes::put_template(&state, writer, entry, level, if_match(&headers)?).await?;
    let verb = if written.created { "created in" } else { "updated in" };
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(written_response(status, &id, verb, written))
}

/// Deletes a template from the file it resolves to.
pub(super) async fn delete_template(
    State(state): State<AppState>,
    Provider(provider): Provider,
    Caller(by): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let writer = Writer { provider: &provider, template_id: &id, by: &by };
    let written = writes::delete_template(&state, writer, if_match(&headers)?).await?;
    Ok(written_response(StatusCode::OK, &id, "deleted from", written))
}

fn if_match(headers: &HeaderMap) -> Result<Option<&str>> {
    headers
        .get(header::IF_MATCH)
        .map(|value| value.to_str().map_err(|_| Error::invalid("if-match", "must be visible ASCII")))
        .transpose()
}

/// The file's new version as `ETag`; none when the write removed the file.
fn written_response(status: StatusCode, id: &str, verb: &str, written: Written) -> Response {
    let removed = if written.etag.is_none() { " (its last template: the file was removed)" } else { "" };
    let body = json!({
        "message": format!("Template '{id}' {verb} {}{removed}.", written.file),
        "templateId": id,
        "sourceFile": written.file,
        "created": written.created,
    });
    let etag = written.etag.map(|etag| [(header::ETAG, etag)]);
    (status, etag, Json(body)).into_response()
}
