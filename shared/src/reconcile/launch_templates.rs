//! Launch templates are shared between requests by content hash (`hostfactory-<hash>`), so
//! none is deleted with its request. The reconciler deletes the ones that are ours (tagged
//! `hostfactory:managed=true` and so named), that no active request references, and that are
//! older than `HOSTFACTORY_LAUNCH_TEMPLATE_GRACE_SECS` (a launch may be about to reuse a
//! young one). A later launch of the same content simply creates it again.

use std::collections::HashSet;

use crate::app::AppState;
use crate::cloud::ManagedLaunchTemplate;
use crate::error::Result;

use super::{Report, seconds};

pub(super) async fn clean(state: &AppState, referenced: &HashSet<&str>, now: i64, report: &mut Report) -> Result<()> {
    let grace = seconds(state.config.reconcile.launch_template_grace);
    let managed = state.cloud.managed_launch_templates().await?;
    for ManagedLaunchTemplate { id, name, .. } in unused(managed, referenced, now, grace) {
        match state.cloud.delete_launch_template(&id).await {
            Ok(()) => {
                report.launch_templates_deleted += 1;
                tracing::info!(launch_template_id = %id, %name, "unused launch template deleted");
            }
            Err(err) => report.failed(&format!("deleting launch template {name}"), err),
        }
    }
    Ok(())
}

/// The templates no active request references and older than `grace` seconds (one EC2 gives
/// no creation time for counts as new).
fn unused(
    managed: Vec<ManagedLaunchTemplate>,
    referenced: &HashSet<&str>,
    now: i64,
    grace: i64,
) -> Vec<ManagedLaunchTemplate> {
    managed
        .into_iter()
        .filter(|t| !referenced.contains(t.id.as_str()))
        .filter(|t| t.created_at.map_or(0, |at| now.saturating_sub(at)) >= grace)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreferenced_templates_past_their_grace_are_deleted() {
        let template = |id: &str, created_at: Option<i64>| ManagedLaunchTemplate {
            id: id.to_owned(),
            name: format!("hostfactory-{id}"),
            created_at,
        };
        let cases = [
            (template("lt-old", Some(100)), true),
            (template("lt-young", Some(950)), false),
            (template("lt-used", Some(100)), false),
            (template("lt-undated", None), false),
            (template("lt-edge", Some(900)), true),
        ];
        let referenced: HashSet<&str> = ["lt-used"].into();
        for (template, deleted) in cases {
            let id = template.id.clone();
            assert_eq!(unused(vec![template], &referenced, 1000, 100).len() == 1, deleted, "{id}");
        }
    }
}
