//! `hostfactory`: the local server and admin commands.

use clap::{Parser, Subcommand};
use shared::api::{AppState, local_router};
use shared::config::Runtime;

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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init(Runtime::Local);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hostfactory: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let state = AppState::from_env(Runtime::Local).await?;
    let config = state.config.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(templates = %config.templates, store = ?config.store, provider = %config.default_provider, "configuration");
    println!("hostfactory listening on http://{address} (templates: {})", config.templates);
    axum::serve(listener, local_router(state)).with_graceful_shutdown(shutdown_signal()).await?;
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
