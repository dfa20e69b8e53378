//! Machine listings in pages, each one Query of the index that fits the filter best:
//! `request-index` for a request's machines, `template-index` for a template's, else
//! `provider-index` (every machine of the provider instance by id). What the index key does not
//! select is a filter expression. The cursor is the last evaluated machine id: with the
//! filter's own values it rebuilds the index's `ExclusiveStartKey`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::tables::{MACHINES, PROVIDER_INDEX, REQUEST_INDEX, TEMPLATE_INDEX};
use super::{DynamoStore, decode, s};
use crate::error::{Error, Result};
use crate::store::{MachineFilter, MachineRecord, Page};

/// One Query: the index, the attributes its key condition names, and those left to filter.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    index: &'static str,
    keys: Vec<(&'static str, String)>,
    filters: Vec<(&'static str, String)>,
}

/// The index that selects most of `filter` by key.
fn plan(filter: &MachineFilter) -> Plan {
    let provider = ("provider", filter.provider.clone());
    let template = filter.template_id.clone().map(|t| ("templateId", t));
    let state = filter.state.as_ref().map(|st| ("state", st.as_str().to_owned()));
    let (index, keys, mut filters) = match (&filter.request_id, template) {
        (Some(request), template) => (REQUEST_INDEX, vec![("requestId", request.clone())], [Some(provider), template].into()),
        (None, Some(template)) => (TEMPLATE_INDEX, vec![template, provider], Vec::new()),
        (None, None) => (PROVIDER_INDEX, vec![provider], Vec::new()),
    };
    filters.push(state);
    Plan { index, keys, filters: filters.into_iter().flatten().collect() }
}

impl DynamoStore {
    pub(super) async fn machine_page(
        &self,
        filter: &MachineFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Page<MachineRecord>> {
        let plan = plan(filter);
        let condition = |list: &[(&str, String)], prefix: &str| {
            let terms: Vec<String> = (0..list.len()).map(|i| format!("#{prefix}{i} = :{prefix}{i}")).collect();
            terms.join(" AND ")
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.machines)
            .index_name(plan.index)
            .key_condition_expression(condition(&plan.keys, "k"))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if !plan.filters.is_empty() {
            query = query.filter_expression(condition(&plan.filters, "f"));
        }
        let named = plan.keys.iter().enumerate().map(|(i, kv)| (format!("k{i}"), kv));
        for (name, (attribute, value)) in named.chain(plan.filters.iter().enumerate().map(|(i, kv)| (format!("f{i}"), kv))) {
            query = query.expression_attribute_names(format!("#{name}"), *attribute).expression_attribute_values(format!(":{name}"), s(value));
        }
        if let Some(id) = after {
            let mut start: HashMap<String, AttributeValue> = plan.keys.iter().map(|(a, v)| ((*a).to_owned(), s(v))).collect();
            start.insert(MACHINES.key.to_owned(), s(&id));
            query = query.set_exclusive_start_key(Some(start));
        }
        let output = query.send().await.map_err(|e| Error::aws(format!("listing machines ({})", plan.index), e))?;
        let next = output.last_evaluated_key.and_then(|mut key| match key.remove(MACHINES.key) {
            Some(AttributeValue::S(id)) => Some(id),
            _ => None,
        });
        let items = output.items.unwrap_or_default().into_iter().map(decode).collect::<Result<_>>()?;
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InstanceState;

    #[test]
    fn each_filter_is_served_by_the_index_that_selects_most_of_it() {
        let filter = |request: Option<&str>, template: Option<&str>, state: Option<&str>| MachineFilter {
            provider: "awsinst".into(),
            request_id: request.map(Into::into),
            template_id: template.map(Into::into),
            state: state.map(InstanceState::parse),
        };
        let pairs = |list: &[(&'static str, &str)]| list.iter().map(|(a, v)| (*a, (*v).to_owned())).collect::<Vec<_>>();
        let cases = [
            (filter(None, None, None), PROVIDER_INDEX, pairs(&[("provider", "awsinst")]), pairs(&[])),
            (filter(None, None, Some("stopped")), PROVIDER_INDEX, pairs(&[("provider", "awsinst")]), pairs(&[("state", "stopped")])),
            (filter(None, Some("T"), None), TEMPLATE_INDEX, pairs(&[("templateId", "T"), ("provider", "awsinst")]), pairs(&[])),
            (
                filter(Some("req-1"), Some("T"), Some("running")),
                REQUEST_INDEX,
                pairs(&[("requestId", "req-1")]),
                pairs(&[("provider", "awsinst"), ("templateId", "T"), ("state", "running")]),
            ),
            (filter(Some("req-1"), None, None), REQUEST_INDEX, pairs(&[("requestId", "req-1")]), pairs(&[("provider", "awsinst")])),
        ];
        for (filter, index, keys, filters) in cases {
            assert_eq!(plan(&filter), Plan { index, keys, filters }, "{filter:?}");
        }
    }
}
