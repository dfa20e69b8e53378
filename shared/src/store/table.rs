//! How a backend provides the repositories: it implements [`Table`] once, generic over the
//! record ([`Versioned`]: requests and machines alike), and the queries of each record kind
//! ([`RequestQueries`], [`MachineQueries`]); the repository traits the service uses are
//! assembled from those here, so no backend repeats the operations the two tables share.

use async_trait::async_trait;

use super::{
    MachineFilter, MachineRecord, MachineRepository, Page, RecordSource, RequestRecord, RequestRepository, Result, Versioned,
    Written, check_transaction_size,
};

/// The operations every record table answers alike: by key, new, at a version, as they are
/// (migration), and in pages (migration, a Scan on DynamoDB).
#[async_trait]
pub trait Table<R: Versioned>: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<R>>;
    async fn batch_get(&self, ids: &[String]) -> Result<Vec<R>>;
    async fn put_if_absent(&self, record: &R) -> Result<()>;
    async fn put_all_if_absent(&self, records: &[R]) -> Result<Vec<bool>>;
    async fn update(&self, record: &R) -> Result<R>;
    async fn delete(&self, id: &str) -> Result<()>;
    async fn upsert_batch(&self, records: &[R]) -> Result<()>;
    async fn page(&self, after: Option<String>, limit: usize) -> Result<Page<R>>;
}

/// The request queries of a backend: what [`RequestRepository`] has beyond a [`Table`].
#[async_trait]
pub trait RequestQueries: Table<RequestRecord> {
    async fn list_active(&self) -> Result<Vec<RequestRecord>>;
    /// [`RequestRepository::put_with_machines`], called with at most
    /// [`super::MAX_TRANSACTION_MACHINES`] machines.
    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>>;
    async fn update_launched(&self, request: &RequestRecord, machines: &[MachineRecord]) -> Result<RequestRecord>;
    async fn update_all(&self, requests: &[RequestRecord], machines: &[MachineRecord]) -> Result<Written>;
}

/// The machine queries of a backend: what [`MachineRepository`] has beyond a [`Table`].
#[async_trait]
pub trait MachineQueries: Table<MachineRecord> {
    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>>;
    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>>;
    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>>;
    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>>;
    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>>;
    async fn list_page(&self, filter: &MachineFilter, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>>;
}

#[async_trait]
impl<B: RequestQueries> RequestRepository for B {
    async fn get(&self, request_id: &str) -> Result<Option<RequestRecord>> {
        Table::get(self, request_id).await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<RequestRecord>> {
        Table::batch_get(self, ids).await
    }

    async fn put_if_absent(&self, request: &RequestRecord) -> Result<()> {
        Table::put_if_absent(self, request).await
    }

    async fn update(&self, request: &RequestRecord) -> Result<RequestRecord> {
        Table::update(self, request).await
    }

    async fn list_active(&self) -> Result<Vec<RequestRecord>> {
        RequestQueries::list_active(self).await
    }

    async fn put_with_machines(
        &self,
        request: &RequestRecord,
        machines: &[MachineRecord],
    ) -> Result<Vec<MachineRecord>> {
        check_transaction_size(machines)?;
        RequestQueries::put_with_machines(self, request, machines).await
    }

    async fn update_launched(&self, request: &RequestRecord, machines: &[MachineRecord]) -> Result<RequestRecord> {
        RequestQueries::update_launched(self, request, machines).await
    }

    async fn update_all(&self, requests: &[RequestRecord], machines: &[MachineRecord]) -> Result<Written> {
        RequestQueries::update_all(self, requests, machines).await
    }

    async fn delete(&self, request_id: &str) -> Result<()> {
        Table::<RequestRecord>::delete(self, request_id).await
    }

    async fn upsert_batch(&self, requests: &[RequestRecord]) -> Result<()> {
        Table::upsert_batch(self, requests).await
    }
}

#[async_trait]
impl<B: MachineQueries> MachineRepository for B {
    async fn get(&self, machine_id: &str) -> Result<Option<MachineRecord>> {
        Table::get(self, machine_id).await
    }

    async fn batch_get(&self, ids: &[String]) -> Result<Vec<MachineRecord>> {
        Table::batch_get(self, ids).await
    }

    async fn put_if_absent(&self, machine: &MachineRecord) -> Result<()> {
        Table::put_if_absent(self, machine).await
    }

    async fn put_all_if_absent(&self, machines: &[MachineRecord]) -> Result<Vec<bool>> {
        Table::put_all_if_absent(self, machines).await
    }

    async fn update(&self, machine: &MachineRecord) -> Result<MachineRecord> {
        Table::update(self, machine).await
    }

    async fn list_by_request(&self, request_id: &str) -> Result<Vec<MachineRecord>> {
        MachineQueries::list_by_request(self, request_id).await
    }

    async fn list_by_return_request(&self, return_request_id: &str) -> Result<Vec<MachineRecord>> {
        MachineQueries::list_by_return_request(self, return_request_id).await
    }

    async fn list_by_template(&self, provider: &str, template_id: &str) -> Result<Vec<MachineRecord>> {
        MachineQueries::list_by_template(self, provider, template_id).await
    }

    async fn find_by_names(&self, names: &[String]) -> Result<Vec<MachineRecord>> {
        MachineQueries::find_by_names(self, names).await
    }

    async fn list_reclaimed(&self, provider: &str) -> Result<Vec<MachineRecord>> {
        MachineQueries::list_reclaimed(self, provider).await
    }

    async fn list_page(&self, filter: &MachineFilter, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        MachineQueries::list_page(self, filter, after, limit).await
    }

    async fn upsert_batch(&self, machines: &[MachineRecord]) -> Result<()> {
        Table::upsert_batch(self, machines).await
    }

    async fn delete(&self, machine_id: &str) -> Result<()> {
        Table::<MachineRecord>::delete(self, machine_id).await
    }
}

#[async_trait]
impl<B: Table<RequestRecord> + Table<MachineRecord>> RecordSource for B {
    async fn page_requests(&self, after: Option<String>, limit: usize) -> Result<Page<RequestRecord>> {
        Table::page(self, after, limit).await
    }

    async fn page_machines(&self, after: Option<String>, limit: usize) -> Result<Page<MachineRecord>> {
        Table::page(self, after, limit).await
    }
}
