//! `runway`: the tool in every runner pod. Job steps use it for allowlisted
//! Kubernetes actions (`runway kube ...`) and AWS role chaining
//! (`runway aws ...`).
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(name = "runway", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("no subcommands yet: `runway kube` and `runway aws` are built by later issues")
}
