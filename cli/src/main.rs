//! `hostfactory`: the local server and admin commands.

mod bench;
mod machines;
mod serve;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use shared::api::local_router;
use shared::app::AppState;
use shared::config::{Config, Runtime};
use shared::store::migrate::{self, Location, Progress};

#[derive(Parser)]
#[command(name = "hostfactory", version, about = "IBM Spectrum Symphony HostFactory provider for AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function's routes on HOSTFACTORY_LISTEN (default 127.0.0.1:8080) with the
    /// local defaults: sample templates folder and an embedded store under .data/.
    Serve,
    /// Copy every request and machine from one store to another, then verify counts and a
    /// checksum. Safe to re-run. Stores: sqlite:<path>, dynamodb[:<table prefix>] (default
    /// HOSTFACTORY_TABLE_PREFIX), or, as a source only, orb:<path to ORB's request_database.json>.
    Migrate {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Create the DynamoDB tables ({prefix}_requests, _machines, _templates) as template.yaml
    /// defines them, for deployments without CloudFormation; existing tables are left alone.
    CreateTables {
        /// Table prefix (default: HOSTFACTORY_TABLE_PREFIX, else "hostfactory").
        #[arg(long)]
        prefix: Option<String>,
    },
    /// The operator lifecycle of the machines this deployment launched (list, show, start,
    /// stop, restart, pause, resume, terminate), on the configured store and AWS.
    Machines {
        #[command(subcommand)]
        command: machines::MachinesCommand,
    },
    /// Run one reconciliation pass (pending and stuck requests, unrecorded tagged instances,
    /// unused launch templates) against the configured store and AWS; prints its report as JSON.
    Reconcile,
    /// Measure put, conditional update and batch get (ops/s) on scratch stores: a temp SQLite
    /// file and fresh DynamoDB tables (deleted afterwards) at the configured AWS endpoint.
    /// infra/scripts/bench runs it against moto.
    BenchStore {
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["sqlite", "dynamodb"])]
        backends: Vec<bench::Backend>,
        /// Records written, updated and read per backend.
        #[arg(long, default_value_t = 2000)]
        ops: usize,
        /// Operations in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init(Runtime::Local);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve_command().await,
        Command::Migrate { from, to } => migrate_command(&from, &to).await,
        Command::CreateTables { prefix } => create_tables(prefix).await,
        Command::Reconcile => reconcile().await,
        Command::Machines { command } => machines::run(command).await,
        Command::BenchStore { backends, ops, concurrency } => {
            bench::run(bench::Options { backends, ops: ops.max(1), concurrency: concurrency.max(1) }).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hostfactory: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve_command() -> Result<(), Box<dyn std::error::Error>> {
    let state = AppState::from_env(Runtime::Local).await?;
    let config = state.config.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(templates = %config.templates, store = ?config.store, provider = %config.default_provider, "configuration");
    println!("hostfactory listening on http://{address} (templates: {})", config.templates);
    tokio::spawn(publish_events(state.clone()));
    serve::run(listener, local_router(state), config.local_timeouts, shutdown_signal()).await?;
    Ok(())
}

/// Publishes the store's captured changes as domain events every second (`HOSTFACTORY_EVENTS`),
/// beside the server and never in a call's way; a failed round is retried the next second.
/// Every round first settles the template write intents a crash left (a previous run's).
async fn publish_events(state: AppState) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticks.tick().await;
        if let Err(err) = shared::calls::template_writes::settle_due(&state).await {
            tracing::warn!(error = %err, "template write intents not settled this round");
        }
        if let Err(err) = state.publish_events().await {
            tracing::warn!(error = %err, "domain events not published this round");
        }
    }
}

async fn migrate_command(from: &str, to: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env(Runtime::Local)?;
    let sdk = shared::aws::load_sdk_config(Runtime::Local).await;
    let source = Location::parse(from, &config.table_prefix)?.source(&config, &sdk)?;
    let target = Location::parse(to, &config.table_prefix)?.target(&sdk)?;

    // Drawn on stderr (hidden when it is not a terminal); stdout keeps only the result line.
    let bar = ProgressBar::no_length();
    let counting = ProgressStyle::with_template("{spinner} {msg}: {pos} records")?;
    let copying = ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} records ({per_sec}, {eta} left)")?
        .progress_chars("=> ");
    bar.set_style(counting.clone());
    bar.set_message(format!("reading {from}"));
    let mut phase = 0;
    let result = migrate::migrate(source.as_ref(), &target, &mut |progress| match progress {
        Progress::Counted(n) => bar.set_position(n),
        Progress::Copied { done, total } => {
            if phase == 0 {
                phase = 1;
                bar.set_style(copying.clone());
                bar.set_message("copying");
                bar.set_length(total);
                bar.reset_eta();
            }
            bar.set_position(done);
        }
        Progress::Verified(n) => {
            if phase == 1 {
                phase = 2;
                bar.set_style(counting.clone());
                bar.set_message(format!("verifying {to}"));
            }
            bar.set_position(n);
        }
    })
    .await;
    bar.finish_and_clear();
    let fingerprint = result?;
    println!(
        "migrated {} requests and {} machines from {from} to {to}; verified (sha256 {})",
        fingerprint.requests, fingerprint.machines, fingerprint.checksum
    );
    Ok(())
}

async fn create_tables(prefix: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env(Runtime::Local)?;
    let prefix = prefix.unwrap_or(config.table_prefix);
    let sdk = shared::aws::load_sdk_config(Runtime::Local).await;
    let created = shared::store::dynamo::create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &prefix).await?;
    if created.is_empty() {
        println!("the tables for prefix '{prefix}' exist already");
    } else {
        println!("created {}", created.join(", "));
    }
    Ok(())
}

async fn reconcile() -> Result<(), Box<dyn std::error::Error>> {
    let state = AppState::from_env(Runtime::Local).await?;
    let report = shared::reconcile::run_once(&state).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
}
