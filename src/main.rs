//! The `ccgate` binary.
#![forbid(unsafe_code)]

mod cli;
mod config;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ccgate: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let _config = config::Config::load(cli.config.as_deref())?;
    anyhow::bail!("command not implemented yet: {:?}", cli.command)
}
