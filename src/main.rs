//! The `ccgate` binary: parse the command line, load the config, run one command.
//!
//! Exit codes (docs/cli.md): 0 success, 1 the work found problems, 2 usage or I/O error.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod config;
mod cutover;
mod directory_edit;
mod directory_source;
mod gateway;
mod ldap;
mod progress;
mod reply_keys;
mod samples;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, DialectArg, DirectoryCommand};
use crate::config::Config;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("ccgate: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr, one line per event (`RUST_LOG` filters, default `info`), as text or
/// JSON.
fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        cli::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Check { dialect, files } => {
            // Without the flag, the config file's `legacy.dialect` (none without a file:
            // then the files are only parsed).
            let dialect = match dialect {
                Some(DialectArg::Ie5) => Some(ccgate_ccmail::Dialect::Ie5),
                Some(DialectArg::Ie8) => Some(ccgate_ccmail::Dialect::Ie8),
                None => config
                    .source
                    .is_some()
                    .then_some(match config.legacy.dialect {
                        config::DialectChoice::Ie5 => ccgate_ccmail::Dialect::Ie5,
                        config::DialectChoice::Ie8 => ccgate_ccmail::Dialect::Ie8,
                    }),
            };
            cmd::check::run(&config, dialect, &files)
        }
        Command::Queue { command } => cmd::queue::run(&config, &command),
        Command::Trace {
            since,
            until,
            json,
            limit,
            query,
        } => cmd::trace::run(
            &config,
            since.as_deref(),
            until.as_deref(),
            json,
            limit,
            query.as_deref(),
        ),
        Command::Replay { dry_run, paths } => cmd::replay::run(&config, dry_run, &paths),
        Command::Convert { to, file } => cmd::convert::run(&config, to, &file),
        Command::Run => {
            init_logging(cli.log_format);
            cmd::run::run(&config)
        }
        Command::Route {
            from,
            json,
            addresses,
        } => cmd::route::run(&config, from.as_deref(), json, &addresses),
        Command::Directory { command } => match command {
            DirectoryCommand::Check => cmd::directory::check(&config),
            DirectoryCommand::ExportLegacy { outdir } => {
                cmd::directory::export_legacy(&config, &outdir)
            }
            DirectoryCommand::SetState { state, names } => {
                cmd::directory::set_state(&config, state, &names)
            }
        },
        Command::Init { dir } => {
            cmd::init::run(dir.as_deref().unwrap_or(std::path::Path::new(".")))
        }
        Command::Config => {
            print!("{}", config.effective_toml());
            Ok(ExitCode::SUCCESS)
        }
    }
}
