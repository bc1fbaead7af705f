//! The command line as clap sees it: raw arguments, not yet validated (ripgrep's "low args").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ccgate: a coexistence gateway between legacy Import/Export post offices and SMTP.
#[derive(Debug, Parser)]
#[command(name = "ccgate", version, about, long_about = None)]
pub struct Cli {
    /// The config file (default: ./ccgate.toml if present, else the embedded defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log lines as text (default) or one JSON object per line (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-11-23T12:00:00Z INFO queued queue_id=... from=...`.
    Text,
    /// One JSON object per event.
    Json,
}

/// Every command (docs/cli.md).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway in the foreground.
    Run,
    /// Write a commented ccgate.toml, a sample directory.csv and the data folders into DIR.
    Init {
        /// Where to write (default: the current folder).
        dir: Option<PathBuf>,
    },
    /// Print the effective configuration, every key with its value (like postconf).
    Config,
    /// Parse legacy Import/Export message or directory files and report each message.
    Check {
        /// What the post office's Import accepts (default: legacy.dialect of the config file
        /// in use; without a config file, the files are only parsed).
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert one message between the legacy format and RFC 5322.
    Convert {
        /// The output form.
        #[arg(long, value_enum)]
        to: ConvertTo,
        /// The input file.
        file: PathBuf,
    },
    /// Explain the routing decision for each recipient.
    Route {
        /// The sender, to show how it is rewritten.
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Recipients, SMTP or legacy form.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Directory commands.
    Directory {
        /// What to do.
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Queue commands.
    Queue {
        /// What to do.
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Search the message trace: what the gateway did with each message.
    Trace {
        /// Not before this time: UTC `2026-12-02T20:30`, or a duration ago (`2h`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Not after this time (as --since).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// At most this many events, newest first.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// An address, queue id or Message-ID (empty: every event in the time range).
        query: Option<String>,
    },
    /// Inject stuck or exported mail through routing into the queue.
    Replay {
        /// Print each message's routing; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Legacy export files, .eml files, mbox files, Maildir folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// `ccgate check --dialect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    /// Import 5.12-5.15.
    Ie5,
    /// Import 6.x/8.x, with its known rejects.
    Ie8,
}

/// `ccgate convert --to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConvertTo {
    /// Legacy file to RFC 5322.
    Mime,
    /// RFC 5322 to legacy import text.
    Legacy,
}

/// `ccgate directory ...`.
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Load and validate the directory; exit 1 on problems.
    Check,
    /// Write legacy directory update files for migrated users.
    ExportLegacy {
        /// Where to write the deletions and additions files.
        outdir: PathBuf,
    },
    /// Move people to another migration state in the directory CSV (cutover).
    SetState {
        /// The new state.
        #[arg(value_enum)]
        state: StateArg,
        /// Legacy names or addresses (`-` reads them from standard input, one per line).
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `ccgate directory set-state STATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// On the legacy post office (a roll-back).
    Legacy,
    /// Being moved: mail is held, never bounced.
    Migrating,
    /// On the modern side: mail, held mail included, goes to the target address.
    Migrated,
}

/// Filters shared by the queue commands.
#[derive(Debug, Clone, Default, Args)]
pub struct QueueFilter {
    /// Only messages with a recipient bound for this destination.
    #[arg(long, value_name = "NAME")]
    pub destination: Option<String>,
    /// Only messages from this sender.
    #[arg(long, value_name = "ADDR")]
    pub sender: Option<String>,
    /// Only messages with this recipient.
    #[arg(long, value_name = "ADDR")]
    pub recipient: Option<String>,
    /// Only messages in this state.
    #[arg(long, value_enum)]
    pub state: Option<QueueStateArg>,
    /// Only messages older than this (e.g. "15m", "2d").
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
}

/// `--state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueStateArg {
    /// Due or being delivered.
    Active,
    /// Waiting for a retry.
    Deferred,
    /// Held by an administrator or a cutover.
    Held,
    /// Set aside after repeated crashes or timeouts.
    Quarantined,
}

/// Which messages a queue action applies to.
#[derive(Debug, Clone, Args)]
pub struct QueueTarget {
    /// Queue ids (`-` reads ids from standard input, one per line).
    pub ids: Vec<String>,
    /// Every message matching the filters.
    #[arg(long)]
    pub all: bool,
    /// Filters (with --all).
    #[command(flatten)]
    pub filter: QueueFilter,
}

/// `ccgate queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Filters.
        #[command(flatten)]
        filter: QueueFilter,
    },
    /// Envelope, per-recipient history and the stored message.
    Show {
        /// The queue id.
        id: String,
    },
    /// Counts by destination and age bucket (like Postfix's qshape).
    Summary,
    /// Hold messages: never retried, never expired while held.
    Hold(QueueTarget),
    /// Release held messages.
    Release(QueueTarget),
    /// Retry now.
    Retry(QueueTarget),
    /// Delete.
    Delete(QueueTarget),
    /// Re-run routing with the current directory.
    Requeue(QueueTarget),
}
