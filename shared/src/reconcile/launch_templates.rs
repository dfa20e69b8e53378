//! Launch templates are shared between requests by content hash (`hostfactory-<hash>`), so
//! none is deleted with its request. The reconciler deletes the ones that are ours (tagged
//! `hostfactory:managed=true` and so named), that no active request references, and that are
//! older than `HOSTFACTORY_LAUNCH_TEMPLATE_GRACE_SECS` (a launch may be about to reuse a
//! young one). A later launch of the same content simply creates it again.

use std::collections::HashSet;

use aws_sdk_ec2::types::Filter;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::provision::{LAUNCH_TEMPLATE_PREFIX, tags};

use super::{Report, seconds};

pub(super) async fn clean(state: &AppState, referenced: &HashSet<&str>, now: i64, report: &mut Report) -> Result<()> {
    let grace = seconds(state.config.reconcile.launch_template_grace);
    let filter = Filter::builder().name(format!("tag:{}", tags::MANAGED)).values("true").build();
    let mut pages = state.ec2.describe_launch_templates().filters(filter).max_results(200).into_paginator().send();
    let mut unused = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Error::aws("listing managed launch templates", err))?;
        for template in page.launch_templates() {
            let (Some(id), Some(name)) = (template.launch_template_id(), template.launch_template_name()) else {
                continue;
            };
            let age = template.create_time().map(|t| now.saturating_sub(t.secs())).unwrap_or(0);
            if name.starts_with(LAUNCH_TEMPLATE_PREFIX) && !referenced.contains(id) && age >= grace {
                unused.push((id.to_owned(), name.to_owned()));
            }
        }
    }
    for (id, name) in unused {
        match state.ec2.delete_launch_template().launch_template_id(&id).send().await {
            Ok(_) => {
                report.launch_templates_deleted += 1;
                tracing::info!(launch_template_id = %id, %name, "unused launch template deleted");
            }
            Err(err) => {
                report.failed(&format!("deleting launch template {name}"), Error::aws(format!("deleting {id}"), err))
            }
        }
    }
    Ok(())
}
