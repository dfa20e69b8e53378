//! getAvailableTemplates (spec §2.1): the merged templates of the caller's provider instance,
//! each with what its capacity counter leaves of `maxNumber`.

use crate::app::AppState;
use crate::error::Result;
use crate::hostfactory::GetAvailableTemplatesResponse;
use crate::store::capacity_key;

/// Template keys getAvailableTemplates does not list: HostFactory does not use them and they often
/// hold bootstrap secrets. `GET /api/v1/templates/{id}` still shows them.
const NOT_LISTED: [&str; 1] = ["userData"];

/// The templates of `provider` with their `availableNumber`. Skipped files and entries are
/// listed under `warnings`; nothing usable at all is an error, never `[]`.
pub async fn available_templates(
    state: &AppState,
    provider: &str,
    force_refresh: bool,
) -> Result<GetAvailableTemplatesResponse> {
    let loaded = state.catalog.load(provider, force_refresh).await?;
    let keys: Vec<String> = loaded.templates.iter().map(|t| capacity_key(provider, &t.template_id)).collect();
    let in_use = state.store.capacity.in_use_of(&keys).await?;
    let templates = loaded
        .templates
        .iter()
        .zip(&keys)
        .map(|(t, key)| {
            let used = in_use.get(key).copied().unwrap_or(0);
            let available = (t.effective_max_number() - i64::try_from(used).unwrap_or(i64::MAX)).max(0);
            let mut info = t.to_info(Some(available));
            for key in NOT_LISTED {
                info.extra.remove(key);
            }
            info
        })
        .collect();
    let warnings: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    let message = match warnings.len() {
        0 => "Get available templates success.".to_owned(),
        n => format!("Get available templates success; {n} problem(s) skipped, see warnings."),
    };
    tracing::info!(provider = %provider, count = loaded.templates.len(), skipped = warnings.len(), "templates listed");
    Ok(GetAvailableTemplatesResponse { message, templates, warnings })
}
