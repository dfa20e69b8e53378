//! The API description, `openapi/hostfactory.yaml`, served as JSON at `GET /api/v1/openapi.json`.

use std::sync::LazyLock;

use axum::response::Json;
use serde_json::Value;

use crate::error::{Error, Result};

const DOCUMENT: &str = include_str!("../../../openapi/hostfactory.yaml");

static PARSED: LazyLock<std::result::Result<Value, String>> =
    LazyLock::new(|| serde_yaml_ng::from_str(DOCUMENT).map_err(|err| err.to_string()));

/// The OpenAPI 3 document, parsed once.
pub fn parsed() -> Result<&'static Value> {
    PARSED.as_ref().map_err(|err| Error::Config(format!("openapi/hostfactory.yaml: {err}")))
}

pub(super) async fn document() -> Result<Json<Value>> {
    parsed().cloned().map(Json)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::routes::ROUTES;
    use super::*;

    /// Every route of the code is in the document with its operationId, and nothing else is.
    #[test]
    fn the_document_describes_exactly_the_routes() {
        let document = parsed().unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."), "an OpenAPI 3 document");
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
                documented.insert((method.to_uppercase(), path.clone(), id.to_owned()));
            }
        }
        let coded: BTreeSet<_> =
            ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_owned(), r.operation.to_owned())).collect();
        let missing: Vec<_> = coded.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&coded).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "not documented: {missing:?}; documented but not routed: {extra:?}"
        );
    }
}
