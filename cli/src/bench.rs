//! `hostfactory bench-store`: ops/s of the store's hot operations on each backend. A
//! measurement, not a test: `infra/scripts/bench` runs it against moto (DynamoDB) and a temp
//! SQLite file. DynamoDB runs on fresh `hfbench-*` tables that are deleted afterwards, so it
//! never touches real data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use shared::hostfactory::MachineResult;
use shared::store::dynamo::{DynamoStore, create_tables, tables::TABLES};
use shared::store::sqlite::SqliteStore;
use shared::store::{Lifecycle, MachineRecord, Store};

type BoxError = Box<dyn std::error::Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Dynamodb,
}

pub struct Options {
    pub backends: Vec<Backend>,
    pub ops: usize,
    pub concurrency: usize,
}

pub async fn run(options: Options) -> Result<(), BoxError> {
    println!("{:<9} {:<22} {:>8} {:>10} {:>12}", "backend", "operation", "ops", "seconds", "ops/s");
    for backend in &options.backends {
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir()?;
                let store = Store::from_backend(Arc::new(SqliteStore::new(&folder.path().join("bench.sqlite"))));
                measure("sqlite", &store, &options).await?;
            }
            Backend::Dynamodb => {
                let sdk = shared::aws::load_sdk_config(shared::config::Runtime::Local).await;
                let client = aws_sdk_dynamodb::Client::new(&sdk);
                let prefix = format!("hfbench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                create_tables(&client, &prefix).await?;
                let store = Store::from_backend(Arc::new(DynamoStore::new(client.clone(), &prefix)));
                let outcome = measure("dynamodb", &store, &options).await;
                for table in &TABLES {
                    if let Err(err) = client.delete_table().table_name(table.name(&prefix)).send().await {
                        eprintln!("hostfactory: could not delete bench table {}: {err}", table.name(&prefix));
                    }
                }
                outcome?;
            }
        }
    }
    Ok(())
}

fn machine(i: usize, run: &str) -> MachineRecord {
    MachineRecord {
        machine_id: format!("i-{run}{i:09x}"),
        request_id: format!("req-bench-{}", i / 100),
        return_request_id: None,
        template_id: "Bench-Template".into(),
        provider: "awsinst".into(),
        name: format!("ip-bench-{run}-{i}.ec2.internal"),
        private_ip_address: "10.0.0.1".into(),
        public_ip_address: String::new(),
        state: "pending".into(),
        result: MachineResult::Executing,
        launchtime: shared::store::now(),
        lifecycle: Lifecycle::Ondemand,
        interrupted_at: None,
        units: 1,
        reclaimed_at: None,
        message: String::new(),
        version: 1,
        updated_at: shared::store::now(),
        expires_at: None,
        fleet_held: None,
        actions: Vec::new(),
    }
}

fn report(backend: &str, operation: &str, ops: usize, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!("{backend:<9} {operation:<22} {ops:>8} {seconds:>10.3} {:>12.0}", ops as f64 / seconds);
}

async fn measure(backend: &str, store: &Store, options: &Options) -> Result<(), BoxError> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let machines: Vec<MachineRecord> = (0..options.ops).map(|i| machine(i, run)).collect();

    let started = Instant::now();
    stream::iter(&machines)
        .map(|m| store.machines.put_if_absent(m))
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    report(backend, "put (if absent)", machines.len(), started.elapsed());

    let started = Instant::now();
    stream::iter(&machines)
        .map(|m| {
            let running = MachineRecord { state: "running".into(), result: MachineResult::Succeed, ..m.clone() };
            async move { store.machines.update(&running).await }
        })
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report(backend, "conditional update", machines.len(), started.elapsed());

    let ids: Vec<String> = machines.iter().map(|m| m.machine_id.clone()).collect();
    let batches: Vec<&[String]> = ids.chunks(100).collect();
    let started = Instant::now();
    let found: Vec<usize> = stream::iter(&batches)
        .map(|batch| async move { store.machines.batch_get(batch).await.map(|found| found.len()) })
        .buffer_unordered(options.concurrency)
        .try_collect()
        .await?;
    let elapsed = started.elapsed();
    if found.iter().sum::<usize>() != ids.len() {
        return Err(format!("batch get found {} of {} machines", found.iter().sum::<usize>(), ids.len()).into());
    }
    report(backend, "batch get (100 ids)", batches.len(), elapsed);
    report(backend, "  = records read", ids.len(), elapsed);
    Ok(())
}
