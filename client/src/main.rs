//! `hostfactory-client <call> -f <input-file>`: see the library docs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hostfactory_client::call::Call;
use serde_json::json;

#[derive(Parser)]
#[command(name = "hostfactory-client", version, about = "Sends a HostFactory provider call to the hostfactory-aws API")]
struct Args {
    /// The HostFactory call (the script's name).
    call: Call,
    /// HostFactory's input file (the scripts pass "$2").
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) if matches!(err.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            println!("{}", json!({ "message": err.render().to_string().lines().next().unwrap_or("invalid arguments") }));
            return ExitCode::FAILURE;
        }
    };
    let log_dir = std::env::var_os("HF_PROVIDER_LOGDIR").map(PathBuf::from);
    hostfactory_client::init_logging(log_dir.as_deref());
    let outcome = hostfactory_client::run(args.call, &args.file, |name| std::env::var(name).ok()).await;
    println!("{}", outcome.document);
    if outcome.success { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
