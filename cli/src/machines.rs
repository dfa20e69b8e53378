//! `hostfactory machines list|show|start|stop|restart|pause|resume|terminate`: the operator
//! lifecycle routes' use cases (`shared::calls::lifecycle`) on the configured store and AWS,
//! without a server. `list` prints a table, the others the machine; `--json` prints JSON.

use clap::{Args, Subcommand};
use shared::app::AppState;
use shared::calls::lifecycle::{self, ListQuery, MachineView};
use shared::config::Runtime;
use shared::store::Action;

#[derive(Subcommand)]
pub enum MachinesCommand {
    /// The machines this deployment launched, one page (--all: every page).
    List(ListArgs),
    /// One machine with EC2's state now and the actions allowed in it.
    Show(Target),
    /// StartInstances of a stopped machine.
    Start(Target),
    /// StopInstances of a running (or paused) machine.
    Stop(Target),
    /// RebootInstances of a running machine.
    Restart(Target),
    /// StopInstances with hibernation (machines launched with `hibernate: true`).
    Pause(Target),
    /// StartInstances of a paused machine.
    Resume(Target),
    /// The HostFactory return path: fleet or group shrunk, instance terminated, capacity released.
    Terminate(Target),
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    request_id: Option<String>,
    #[arg(long)]
    template_id: Option<String>,
    /// An EC2 state (pending, running, stopping, stopped, shutting-down, terminated).
    #[arg(long)]
    state: Option<String>,
    #[arg(long, default_value_t = lifecycle::DEFAULT_PAGE)]
    limit: usize,
    /// The page after the one that printed this token.
    #[arg(long)]
    next_token: Option<String>,
    /// Every page, not only the first.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct Target {
    /// The machine's instance id.
    id: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Common {
    /// The provider instance (default HF_PROVIDER_NAME, else awsinst).
    #[arg(long)]
    provider: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: MachinesCommand) -> Result<(), Box<dyn std::error::Error>> {
    let state = AppState::from_env(Runtime::Local).await?;
    let provider = |common: &Common| common.provider.clone().unwrap_or_else(|| state.config.default_provider.clone());
    let (target, action) = match command {
        MachinesCommand::List(args) => return list(&state, &provider(&args.common), args).await,
        MachinesCommand::Show(target) => (target, None),
        MachinesCommand::Start(target) => (target, Some(Action::Start)),
        MachinesCommand::Stop(target) => (target, Some(Action::Stop)),
        MachinesCommand::Restart(target) => (target, Some(Action::Restart)),
        MachinesCommand::Pause(target) => (target, Some(Action::Pause)),
        MachinesCommand::Resume(target) => (target, Some(Action::Resume)),
        MachinesCommand::Terminate(target) => (target, Some(Action::Terminate)),
    };
    let provider = provider(&target.common);
    let machine = match action {
        None => lifecycle::show(&state, &provider, &target.id).await?,
        Some(action) => lifecycle::act(&state, &provider, &target.id, action, "local").await?,
    };
    match target.common.json {
        true => println!("{}", serde_json::to_string_pretty(&machine)?),
        false => print!("{}", table(std::slice::from_ref(&machine))),
    }
    Ok(())
}

async fn list(state: &AppState, provider: &str, args: ListArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut query = ListQuery {
        request_id: args.request_id,
        template_id: args.template_id,
        state: args.state,
        limit: Some(args.limit),
        next_token: args.next_token,
        provider: None,
    };
    let mut machines = Vec::new();
    let next = loop {
        let page = lifecycle::list(state, provider, query.clone()).await?;
        machines.extend(page.machines);
        match page.next_token {
            Some(token) if args.all => query.next_token = Some(token),
            next => break next,
        }
    };
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "machines": machines, "nextToken": next }))?);
        return Ok(());
    }
    print!("{}", table(&machines));
    if let Some(token) = next {
        println!("more: --next-token {token}");
    }
    Ok(())
}

/// The machines as an aligned text table, one per line under a header.
fn table(machines: &[MachineView]) -> String {
    let header = ["MACHINE", "STATE", "EC2", "TEMPLATE", "REQUEST", "NAME", "ALLOWED"].map(String::from);
    let rows: Vec<[String; 7]> = machines
        .iter()
        .map(|v| {
            let m = &v.machine;
            let allowed: Vec<&str> = v.allowed_actions.iter().map(|a| a.as_str()).collect();
            let name = if m.name.is_empty() { "-".to_owned() } else { m.name.clone() };
            [m.machine_id.clone(), v.machine_state.to_owned(), m.state.to_string(), m.template_id.clone(), m.request_id.clone(), name, allowed.join(",")]
        })
        .collect();
    let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_each_column_under_its_header() {
        let machine = serde_json::from_value(serde_json::json!({
            "machineId": "i-0123", "requestId": "req-1", "templateId": "T", "provider": "awsinst",
            "name": "ip-10-0-0-1.ec2.internal", "privateIpAddress": "", "publicIpAddress": "", "state": "stopped",
            "result": "succeed", "launchtime": 1, "lifecycle": "ondemand", "message": "", "version": 1, "updatedAt": 1
        }))
        .unwrap();
        let printed = table(&[MachineView::of(machine)]);
        let expected = "MACHINE  STATE    EC2      TEMPLATE  REQUEST  NAME                      ALLOWED\n\
                        i-0123   STOPPED  stopped  T         req-1    ip-10-0-0-1.ec2.internal  start,terminate\n";
        assert_eq!(printed, expected);
    }
}
