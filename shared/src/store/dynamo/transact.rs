//! Versioned updates of many records at once ([`crate::store::RequestRepository::update_all`]):
//! TransactWriteItems of up to 100 conditional puts as [`plan`] groups them, the transactions
//! of a phase a few at a time. A record whose condition fails (another writer moved it on) is
//! left out and the rest of its transaction sent again; a transaction cancelled by a
//! concurrent one is retried after a pause.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use futures::{StreamExt, TryStreamExt, stream};

use super::batch::PARALLEL_BATCHES;
use super::items::Stored;
use super::{DynamoStore, n};
use crate::error::{Error, Result};
use crate::store::changes::{Ref, plan};
use crate::store::{MachineRecord, RequestRecord, Versioned, Written};

/// TransactWriteItems takes 100 actions.
const TRANSACT_LIMIT: usize = 100;
/// Sends of one transaction before giving up on it.
const TRANSACT_TRIES: u32 = 5;

impl DynamoStore {
    /// Every record still at its version written at the next one; see the module doc.
    pub(super) async fn update_records(
        &self,
        requests: &[RequestRecord],
        machines: &[MachineRecord],
    ) -> Result<Written> {
        let build = |r: Ref| match r {
            Ref::Request(i) => self.versioned_put(&requests[i]),
            Ref::Machine(i) => self.versioned_put(&machines[i]),
        };
        let mut written = Written { requests: vec![None; requests.len()], machines: vec![None; machines.len()] };
        for phase in plan(requests, machines, TRANSACT_LIMIT) {
            let applied: Vec<Vec<Ref>> = stream::iter(phase)
                .map(|refs| self.transact(refs, &build))
                .buffer_unordered(PARALLEL_BATCHES)
                .try_collect()
                .await?;
            for record in applied.into_iter().flatten() {
                match record {
                    Ref::Request(i) => written.requests[i] = Some(requests[i].next_version()),
                    Ref::Machine(i) => written.machines[i] = Some(machines[i].next_version()),
                }
            }
        }
        Ok(written)
    }

    /// Writes every record that does not exist yet (conditional puts, 100 per transaction, a
    /// few at a time); `false` for one that existed (left as it was).
    pub(super) async fn put_new_records<R: Stored>(&self, records: &[R]) -> Result<Vec<bool>> {
        let build = |i: usize| self.new_put(&records[i]);
        let positions: Vec<usize> = (0..records.len()).collect();
        let chunks: Vec<Vec<usize>> = positions.chunks(TRANSACT_LIMIT).map(<[usize]>::to_vec).collect();
        let applied: Vec<Vec<usize>> =
            stream::iter(chunks).map(|refs| self.transact(refs, &build)).buffer_unordered(PARALLEL_BATCHES).try_collect().await?;
        let mut written = vec![false; records.len()];
        for i in applied.into_iter().flatten() {
            written[i] = true;
        }
        Ok(written)
    }

    /// Writes `refs` (their puts made by `build`) in one transaction; answers those written
    /// (without the ones whose condition failed).
    async fn transact<T: Copy + Send>(
        &self,
        mut refs: Vec<T>,
        build: &(dyn Fn(T) -> Result<TransactWriteItem> + Sync),
    ) -> Result<Vec<T>> {
        for attempt in 0..TRANSACT_TRIES {
            if refs.is_empty() {
                break;
            }
            let actions = refs.iter().map(|r| build(*r)).collect::<Result<Vec<_>>>()?;
            // A fresh token per send: an SDK retry of this send (its answer lost) is a no-op on
            // AWS; the next send differs in content.
            let token = uuid::Uuid::new_v4().to_string();
            let sent = self.client.transact_write_items().client_request_token(token).set_transact_items(Some(actions));
            let err = match sent.send().await {
                Ok(_) => return Ok(refs),
                Err(err) => err,
            };
            let reasons = cancellation_codes(&err);
            let context = || format!("updating {} records in one transaction", refs.len());
            if reasons.iter().any(|c| c == "ConditionalCheckFailed") {
                refs = refs.into_iter().zip(&reasons).filter(|(_, c)| *c != "ConditionalCheckFailed").map(|(r, _)| r).collect();
            } else if reasons.iter().any(|c| c == "TransactionConflict") && attempt + 1 < TRANSACT_TRIES {
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            } else {
                return Err(Error::aws(context(), err));
            }
        }
        if refs.is_empty() {
            return Ok(refs);
        }
        Err(Error::store("updating records in a transaction", format!("still in conflict after {TRANSACT_TRIES} tries")))
    }

    /// The put of a new `record`, on the condition that none with its key exists.
    pub(super) fn new_put<R: Stored>(&self, record: &R) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", R::KEY);
        action(put.table_name(R::table(self)).set_item(Some(record.item()?)))
    }

    /// The put of `record` as it is, whatever is stored (a new record, or one recorded again).
    pub(super) fn plain_put<R: Stored>(&self, record: &R) -> Result<TransactWriteItem> {
        action(Put::builder().table_name(R::table(self)).set_item(Some(record.item()?)))
    }

    /// The put of `record` at its next version, on the condition that it is still at its own.
    pub(super) fn versioned_put<R: Stored>(&self, record: &R) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(record.version()));
        action(put.table_name(R::table(self)).set_item(Some(record.next_version().item()?)))
    }
}

/// A transaction's action of `put`.
fn action(put: aws_sdk_dynamodb::types::builders::PutBuilder) -> Result<TransactWriteItem> {
    let put = put.build().map_err(|e| Error::store("building a transaction", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Why each action of a cancelled transaction failed (`None` for those that did not), in
/// action order; empty when the transaction was not cancelled.
pub(super) fn cancellation_codes(err: &SdkError<TransactWriteItemsError>) -> Vec<String> {
    let reasons = match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c.cancellation_reasons.clone(),
        _ => None,
    };
    reasons.unwrap_or_default().into_iter().map(|r| r.code.unwrap_or_default()).collect()
}
