//! `runway`: the tool in every runner pod. See the library's docs.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = runway_agent::cli::Cli::parse();
    runway_agent::cli::run(cli)
}
