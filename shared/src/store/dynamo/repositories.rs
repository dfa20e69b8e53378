//! The requests and machines tables as [`Stored`] records (their common operations are the
//! generic [`crate::store::Table`] of [`super::items`] and [`super::batch`]), and the index
//! queries of each and the return request's transaction.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use futures::{StreamExt, TryStreamExt, stream};

use super::batch::PARALLEL_BATCHES;
use super::items::Stored;
use super::tables::{
    ACTIVE, ACTIVE_INDEX, MACHINES, NAME_INDEX, RECLAIM_INDEX, REQUEST_INDEX, REQUESTS, RETURN_INDEX, TEMPLATE_INDEX,
};
use super::transact::cancellation_codes;
use super::{DynamoStore, Item, encode, s};
use crate::error::{Error, Result};
use crate::store::{
    MAX_TRANSACTION_MACHINES, MachineFilter, MachineQueries, MachineRecord, Page, RequestQueries, RequestRecord, Table, Versioned, Written, exists,
    stale,
};

impl Stored for RequestRecord {
    const KEY: &'static str = REQUESTS.key;

    fn table(store: &DynamoStore) -> &str {
        &store.requests
    }

    /// Its attributes plus `active` while the reconciler has work on it
    /// ([`RequestRecord::is_active`], the sparse index key).
    fn item(&self) -> Result<Item> {
        let mut item = encode(self)?;
        if self.is_active() {
            item.insert("active".to_owned(), s(ACTIVE));
        }
        Ok(item)
    }
}

impl Stored for MachineRecord {
    const KEY: &'static str = MACHINES.key;

    fn table(store: &DynamoStore) -> &str {
        &store.machines
    }
}

/// The first action of a cancelled transaction whose condition failed (reasons are in action
/// order).
fn failed_condition(err: &SdkError<TransactWriteItemsError>) -> Option<usize> {
    cancellation_codes(err).iter().position(|code| code == "ConditionalCheckFailed")
}

impl DynamoStore {
    /// The Put of a new `request` and of every machine at its next version (each conditional
    /// on the version read).
    fn return_actions(&self, request: &RequestRecord, machines: &[MachineRecord]) -> Result<Vec<TransactWriteItem>> {
        let mut actions = vec![self.new_put(request)?];
        for machine in machines {
            actions.push(self.versioned_put(machine)?);
        }
        Ok(actions)
    }
}

#[async_trait]
impl RequestQueries for DynamoStore {
    async fn list_active(&self) -> Result<Vec<RequestRecord>> {
        // The index sorts by createdAt within the one `active` partition: oldest first.
        self.query_index(ACTIVE_INDEX, "active", ACTIVE).await
    }

    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>> {
        let actions = self.return_actions(request, machines)?;
        // The token makes an SDK retry of a call whose answer was lost a no-op on AWS (36 chars:
        // the request id's uuid).
        let token = &request.request_id[request.request_id.len().saturating_sub(36)..];
        let transaction = self.client.transact_write_items().client_request_token(token);
        let err = match transaction.set_transact_items(Some(actions)).send().await {
            Ok(_) => return Ok(machines.iter().map(Versioned::next_version).collect()),
            Err(err) => err,
        };
        Err(match failed_condition(&err) {
            Some(0) => exists("request", &request.request_id),
            Some(i) => {
                let machine = &machines[i - 1];
                self.why_not_written::<MachineRecord>(&machine.machine_id, machine.version).await
            }
            None => Error::aws(format!("writing request {} with {} machines", request.request_id, machines.len()), err),
        })
    }

    async fn update_launched(&self, request: &RequestRecord, machines: &[MachineRecord]) -> Result<RequestRecord> {
        let (first, rest) = machines.split_at(machines.len().min(MAX_TRANSACTION_MACHINES));
        if !rest.is_empty() {
            self.upsert_records(rest).await?;
        }
        let mut actions = first.iter().map(|m| self.plain_put(m)).collect::<Result<Vec<_>>>()?;
        actions.push(self.versioned_put(request)?);
        let next = request.next_version();
        let token = uuid::Uuid::new_v4().to_string();
        let sent = self.client.transact_write_items().client_request_token(token).set_transact_items(Some(actions));
        let err = match sent.send().await {
            Ok(_) => return Ok(next),
            Err(err) => err,
        };
        if failed_condition(&err).is_none() {
            let context = format!("recording request {} with {} machines", request.request_id, machines.len());
            return Err(Error::aws(context, err));
        }
        // A retry whose first attempt was applied (its answer lost) finds exactly its own record;
        // else the request moved on (stale) or is gone, and the machines are written alone.
        let stored = Table::<RequestRecord>::get(self, &request.request_id).await?;
        if stored.as_ref() == Some(&next) {
            return Ok(next);
        }
        self.upsert_records(first).await?;
        Err(match stored {
            Some(_) => stale(RequestRecord::WHAT, &request.request_id, request.version),
            None => Error::not_found(RequestRecord::WHAT, &request.request_id),
        })
    }

    async fn update_all(&self, requests: &[RequestRecord], machines: &[MachineRecord]) -> Result<Written> {
        self.update_records(requests, machines).await
    }
}

#[async_trait]
impl MachineQueries for DynamoStore {
    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>> {
        self.query_index(REQUEST_INDEX, "requestId", request_id).await
    }

    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>> {
        self.query_index(RETURN_INDEX, "returnRequestId", return_request_id).await
    }

    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>> {
        let distinct: HashSet<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
        let found: Vec<Vec<MachineRecord>> = stream::iter(distinct)
            .map(|name| async move { self.query_index(NAME_INDEX, "name", &name).await })
            .buffer_unordered(PARALLEL_BATCHES * 2)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>> {
        self.query_index(RECLAIM_INDEX, "provider", provider).await
    }

    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>> {
        let machines: Vec<MachineRecord> = self.query_index(TEMPLATE_INDEX, "templateId", template_id).await?;
        Ok(machines.into_iter().filter(|m| m.provider == provider).collect())
    }

    async fn list_page(&self, filter: &MachineFilter, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        self.machine_page(filter, after, limit).await
    }
}
