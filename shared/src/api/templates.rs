//! Templates resource group: getAvailableTemplates.

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;

use super::{AppState, Provider};
use crate::error::Result;
use crate::hostfactory::GetAvailableTemplatesResponse;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/templates", get(get_available_templates))
}

/// getAvailableTemplates: the merged templates of the caller's provider instance.
async fn get_available_templates(
    State(state): State<AppState>,
    Provider(provider): Provider,
) -> Result<Json<GetAvailableTemplatesResponse>> {
    let templates = state.catalog.load(&provider).await?;
    tracing::info!(provider = %provider, count = templates.len(), "templates listed");
    Ok(Json(GetAvailableTemplatesResponse {
        message: "Get available templates success.".to_owned(),
        templates: templates.iter().map(|t| t.to_info()).collect(),
    }))
}
