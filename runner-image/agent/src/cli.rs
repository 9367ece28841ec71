//! The command line: `runway kube ...`, `runway serve`, `runway aws ...`.
//! Each subcommand's arguments and its run function live with its module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "runway",
    version,
    about = "Runway's tool in every runner pod: allowlisted Kubernetes actions and AWS role chaining",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Kubernetes actions allowed by this scale set's `kubernetesActions`.
    #[command(long_about = crate::kube::cli::LONG_ABOUT)]
    Kube(crate::kube::cli::KubeArgs),
    /// Serve Kubernetes action payloads over authenticated HTTP (port 9016).
    Serve(crate::serve::ServeArgs),
    /// AWS credentials for job steps: IRSA, then role chaining.
    Aws(crate::aws::cli::AwsArgs),
}

/// Runs the command on a runtime of its own and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runway: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Kube(args) => crate::kube::cli::run(args).await,
            Command::Serve(args) => crate::serve::run(args).await,
            Command::Aws(args) => crate::aws::cli::run(args).await,
        }
    })
}
