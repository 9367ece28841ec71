//! `runway-controller`: watches `RunnerScaleSet` objects, keeps one listener
//! per scale set on GitHub's scale-set message queue, and runs each queued job
//! in an ephemeral runner pod.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "runway-controller", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the RunnerScaleSet CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => anyhow::bail!("the controller is not built yet; see the open issues"),
        Command::Crd => {
            print!("{}", runway_controller::crd::crd_yaml()?);
            Ok(())
        }
    }
}
