//! `ccgate run`: the gateway in the foreground.
//!
//! Opens the spool (recovering what a crash left), binds the SMTP listener, starts the delivery
//! agents and the spool's housekeeping, and prints where everything is. SIGTERM or SIGINT: stop
//! accepting, let open transactions finish within the grace period, finish deliveries in hand,
//! close the spool, exit 0. SIGHUP: read the config again (the `[directory]` settings, the
//! router's settings and two SMTP limits apply at once, see [`LIVE_KEYS`]; other changes at the
//! next restart) and reload the directory.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ccgate_core::Lane;
use ccgate_queue::Spool;
use ccgate_server::{
    DirectoryRouting, ImportCommand, Ledger, LegacyAgent, MaildirAgent, Metrics, PickupAgent,
    RefuseAgent, Routing, Shutdown, SmtpAgent, SmtpClientOptions, SmtpServer, SmtpSettings,
    load_tls, route_unrouted,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::config::{Config, DirectorySource, NextHop};
use crate::directory_source;
use ccgate_router::DirectoryHandle;

/// Runs the gateway until a stop signal.
pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ccgate")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config.clone()))
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let token = crate::cutover::admin_token(&config)?;
    for dir in [
        &config.data_dir,
        &config.legacy.pickup_dir,
        &config.legacy.drop_dir,
    ] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let spool_dir = ccgate_queue::spool_dir(&config.data_dir);
    let options = super::queue::spool_options(&config);
    let dir = spool_dir.clone();
    let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, options))
        .await
        .context("spool task failed")?
        .with_context(|| format!("{}: cannot open the spool", spool_dir.display()))?;
    for finding in spool.recovery_report().findings() {
        warn!("spool recovery: {finding}");
    }
    // The replay ledger, completed before anything delivers: messages the spool took whose
    // keys a crash kept out of the ledger are not picked up again.
    let ledger_path = config.data_dir.join("ledger.log");
    let ledger = Ledger::open(&ledger_path)
        .with_context(|| format!("{}: cannot open the ledger", ledger_path.display()))?;
    let adopted = ledger
        .adopt(&spool.origins())
        .with_context(|| format!("{}: cannot complete the ledger", ledger_path.display()))?;
    if adopted > 0 {
        warn!(
            keys = adopted,
            "ledger: recorded messages the spool took before a crash (they are not taken again)"
        );
    }
    let ledger = Arc::new(ledger);
    let spool = Arc::new(spool);

    let metrics = Arc::new(Metrics::default());
    if config.trace_size > 0 {
        let dir = crate::cutover::trace_dir(&config.data_dir);
        let log = ccgate_server::TraceLog::open(&dir, config.trace_size)
            .with_context(|| format!("{}: cannot open the message trace", dir.display()))?;
        metrics.set_trace(Arc::new(log));
    }
    let directory = load_directory(&config).await?;
    metrics.directory_loaded(Ok(directory.len() as u64));
    let handle = Arc::new(DirectoryHandle::new(directory));
    // Reply tags: the key is made on first run and rotated when due (reply_keys.rs).
    let mut key_file = crate::reply_keys::KeyFile::of(&config);
    let reply_tags = key_file.open_or_create(&config)?;
    key_file.rotate_if_due(&reply_tags, SystemTime::now())?;
    info!(file = %key_file.path().display(), lifetime_days = reply_tags.lifetime_days(), "reply-tag keys");
    let mut router_config = directory_source::router_config(&config);
    router_config.reply_tags = Some(reply_tags.clone());
    let directory_routing = Arc::new(DirectoryRouting::new(Arc::clone(&handle), router_config));
    let routing: Arc<dyn Routing> = directory_routing.clone();
    let mut settings = SmtpSettings::new(config.smtp.listen.clone(), &config.smtp.hostname);
    settings.max_message_size = config.smtp.max_message_size;
    settings.max_recipients = usize::try_from(config.smtp.max_recipients).unwrap_or(usize::MAX);
    settings.max_connections = usize::try_from(config.smtp.max_connections).unwrap_or(usize::MAX);
    settings.max_line_length = match config.smtp.max_line_length {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    settings.max_connections_per_client =
        usize::try_from(config.smtp.max_connections_per_client).unwrap_or(usize::MAX);
    settings.max_connection_rate = config.smtp.max_connection_rate;
    settings.client_limit_exceptions = config.smtp.client_limit_exceptions.clone();
    settings.memory_budget = config.smtp.memory_budget;
    if let Some((cert, key)) = &config.smtp.tls {
        settings.tls = Some(load_tls(cert, key)?);
    }
    let server = SmtpServer::bind(
        settings,
        Arc::clone(&spool),
        Arc::clone(&routing),
        Arc::clone(&metrics),
    )
    .await?;
    let ready = Arc::new(AtomicBool::new(false));
    let shared_config = Arc::new(std::sync::Mutex::new(config.clone()));
    let legacy_work = config.data_dir.join("legacy");
    let admin = ccgate_console::ConsoleServer::bind(
        config.admin_listen,
        ccgate_console::Parts {
            spool: Arc::clone(&spool),
            metrics: Arc::clone(&metrics),
            routing: Arc::clone(&directory_routing),
            ready: Arc::clone(&ready),
            token,
            quarantine_dir: legacy_work.join("quarantine"),
            pickup_dir: config.legacy.pickup_dir.clone(),
            trace: metrics.trace_log(),
            editor: Arc::new(crate::cutover::Editor {
                config: Arc::clone(&shared_config),
                routing: Arc::clone(&directory_routing),
                spool: Arc::clone(&spool),
                metrics: Arc::clone(&metrics),
            }),
            facts: crate::cutover::facts(&config),
            schedule_file: Some(config.data_dir.join(ccgate_console::SCHEDULE_FILE)),
        },
    )
    .await?;
    let admin_addr = admin.local_addr();

    let shutdown = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    let smtp_addrs = server.local_addrs();
    let live_limits = server.live_limits();
    tasks.spawn(server.serve(shutdown.subscribe()));
    tasks.spawn(admin.serve(shutdown.subscribe()));
    tasks.spawn(housekeeping(
        Arc::clone(&spool),
        Arc::clone(&routing),
        shutdown.subscribe(),
    ));
    match &config.modern.next_hop {
        NextHop::Maildir(path) => {
            let agent = MaildirAgent::new(
                path,
                Lane::Modern,
                Arc::clone(&spool),
                &config.smtp.hostname,
                Arc::clone(&metrics),
            )?;
            tasks.spawn(agent.run(shutdown.subscribe()));
        }
        NextHop::Smtp { host, port } => {
            let mut options = SmtpClientOptions::new(host, *port, &config.smtp.hostname);
            options.concurrency = config.modern.concurrency;
            options.connect_timeout = config.modern.connect_timeout;
            options.reply_timeout = config.modern.command_timeout;
            options.data_timeout = config.modern.data_timeout;
            options.tls = config.modern.tls.clone();
            options.line_fitter = Some(Arc::new(crate::gateway::FitLines));
            let agent = SmtpAgent::new(
                options,
                Lane::Modern,
                Arc::clone(&spool),
                Arc::clone(&metrics),
            )
            .context("modern.tls")?;
            tasks.spawn(agent.run(shutdown.subscribe()));
        }
    }
    let codec = Arc::new(crate::gateway::Codec::new(
        Arc::clone(&directory_routing),
        super::convert::options(&config),
        config.legacy.unknown_recipients,
    ));
    let live_codec = Arc::clone(&codec);
    let refuse = RefuseAgent::new(Arc::clone(&spool), Arc::clone(&metrics));
    tasks.spawn(refuse.run(shutdown.subscribe()));
    let suppress = ccgate_server::SuppressAgent::new(Arc::clone(&spool), Arc::clone(&metrics));
    tasks.spawn(suppress.run(shutdown.subscribe()));
    let write = ccgate_ccmail::WriteOptions {
        dialect: match config.legacy.dialect {
            crate::config::DialectChoice::Ie5 => ccgate_ccmail::Dialect::Ie5,
            crate::config::DialectChoice::Ie8 => ccgate_ccmail::Dialect::Ie8,
        },
        date_order: config.legacy.date_format,
        codepage: config.legacy.codepage,
        gateway_po: config.legacy.gateway_po.clone(),
        ..ccgate_ccmail::WriteOptions::default()
    };
    let import = import_command(&config);
    let legacy = LegacyAgent::new(
        &config.legacy.drop_dir,
        &legacy_work,
        Arc::clone(&spool),
        codec.clone(),
        write,
        import,
        Arc::clone(&metrics),
    )?
    .with_batch(config.legacy.import_batch);
    let live_import = legacy.import_handle();
    tasks.spawn(legacy.run(shutdown.subscribe()));
    let read = ccgate_ccmail::ReadOptions {
        date_order: config.legacy.date_format,
        codepage: config.legacy.codepage,
        ..ccgate_ccmail::ReadOptions::default()
    };
    let pickup = PickupAgent::new(
        &config.legacy.pickup_dir,
        &legacy_work,
        Arc::clone(&spool),
        codec,
        ledger,
        (read, config.legacy.poll_interval),
        Arc::clone(&metrics),
    )?;
    tasks.spawn(pickup.run(shutdown.subscribe()));

    print_banner(
        &config,
        &smtp_addrs,
        admin_addr,
        &spool_dir,
        handle.current().len(),
    );
    ready.store(true, Ordering::Relaxed);

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut config = config;
    let timer = |config: &Config| {
        let every = config
            .directory
            .reload_interval
            .unwrap_or(Duration::from_secs(365 * 86_400));
        tokio::time::interval_at(tokio::time::Instant::now() + every, every)
    };
    let mut reload_timer = timer(&config);
    let hour = Duration::from_secs(3600);
    let mut key_timer = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration and the directory");
                let mut router_changed = false;
                if let Some(new) = reread_config(&config) {
                    let new_interval = new.directory.reload_interval != config.directory.reload_interval;
                    let before = directory_source::router_config(&config);
                    apply_live(&mut config, &new);
                    apply_live(&mut shared_config.lock().unwrap_or_else(std::sync::PoisonError::into_inner), &new);
                    let mut router_config = directory_source::router_config(&config);
                    let lifetime = directory_routing.config().reply_tags.as_ref().map(ccgate_router::ReplyTags::lifetime_days);
                    router_changed = router_config != before
                        || lifetime != Some(config.legacy.reply_tag_lifetime_days);
                    if router_changed {
                        router_config.reply_tags =
                            Some(reply_tags.with_lifetime(config.legacy.reply_tag_lifetime_days));
                        directory_routing.set_config(router_config);
                        key_file = crate::reply_keys::KeyFile::of(&config);
                    }
                    live_codec.set_unknown_recipients(config.legacy.unknown_recipients);
                    live_import.set(import_command(&config));
                    spool.set_retry(super::queue::spool_options(&config).retry);
                    live_limits.set(
                        config.smtp.max_message_size,
                        usize::try_from(config.smtp.max_recipients).unwrap_or(usize::MAX),
                    );
                    if new_interval {
                        reload_timer = timer(&config);
                    }
                }
                let released = reload(&config, &directory_routing, &spool, &metrics).await;
                if router_changed && !released {
                    // The directory did not reload, but the router's settings changed: held
                    // cutover mail goes where they now say.
                    release(&directory_routing, &spool).await;
                }
            }
            _ = reload_timer.tick() => {
                reload(&config, &directory_routing, &spool, &metrics).await;
            }
            _ = key_timer.tick() => {
                if let Err(e) = key_file.rotate_if_due(&reply_tags, SystemTime::now()) {
                    warn!(error = %format!("{e:#}"), "reply-tag key rotation failed; the keys in service stay");
                }
            }
        }
    }
    shutdown.trigger();
    while tasks.join_next().await.is_some() {}
    let spool = Arc::try_unwrap(spool)
        .map_err(|_| anyhow::anyhow!("the spool is still in use at shutdown"))?;
    tokio::task::spawn_blocking(move || spool.close())
        .await
        .context("spool task failed")?
        .context("closing the spool")?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Loads the directory at start. With the embedded defaults a missing `directory.csv` is
/// created with sample rows; an invalid directory stops the start with every problem listed.
async fn load_directory(config: &Config) -> anyhow::Result<ccgate_router::Directory> {
    if config.source.is_none()
        && let DirectorySource::Csv(path) = &config.directory.source
        && !path.exists()
    {
        std::fs::write(path, crate::samples::DIRECTORY_CSV)
            .with_context(|| format!("{}: cannot create the sample directory", path.display()))?;
        warn!(path = %path.display(), "no directory: created one with sample rows");
    }
    let cfg = config.clone();
    match tokio::task::spawn_blocking(move || directory_source::load(&cfg))
        .await
        .context("directory task failed")??
    {
        Ok(directory) => {
            info!(entries = directory.len(), source = %directory_source::origin(config), "directory loaded");
            if directory.is_empty() {
                warn!(source = %directory_source::origin(config), "the directory has no entries: no legacy user is known");
            }
            Ok(directory)
        }
        Err(invalid) => {
            anyhow::bail!("the directory has problems; fix them and start again:\n{invalid}")
        }
    }
}

/// The keys a SIGHUP puts in service at once, besides every `directory.*` key: the router's
/// settings (held cutover mail is then routed again), what the legacy codec does with
/// unknown names, the import program, the two SMTP limits each new session is built with, and
/// the spool's retry schedule and expiry. Everything else
/// (listen addresses, `data_dir`, TLS files, the spool and pickup folders, what the spool and
/// the agents are built with) needs a restart.
pub const LIVE_KEYS: [&str; 11] = [
    "queue.retry",
    "queue.max_lifetime",
    "legacy.import_command",
    "legacy.import_timeout",
    "smtp.max_message_size",
    "smtp.max_recipients",
    "migration.cutover",
    "legacy.post_offices",
    "legacy.smtp_bulletin_boards",
    "legacy.unknown_recipients",
    "legacy.reply_tag_lifetime",
];

/// The import program `[legacy] import_command` and `import_timeout` say, if any.
fn import_command(config: &Config) -> Option<ImportCommand> {
    config
        .legacy
        .import_command
        .clone()
        .map(|command| ImportCommand {
            command,
            timeout: config.legacy.import_timeout,
        })
}

/// True for a key a SIGHUP applies at once.
fn is_live(key: &str) -> bool {
    key.starts_with("directory.") || LIVE_KEYS.contains(&key)
}

/// Copies the keys a SIGHUP applies at once ([`LIVE_KEYS`] and `[directory]`) from `new`.
fn apply_live(config: &mut Config, new: &Config) {
    config.directory = new.directory.clone();
    config.cutover = new.cutover;
    config.legacy.post_offices = new.legacy.post_offices.clone();
    config.legacy.smtp_bulletin_boards = new.legacy.smtp_bulletin_boards.clone();
    config.legacy.unknown_recipients = new.legacy.unknown_recipients;
    config.legacy.reply_tag_lifetime_days = new.legacy.reply_tag_lifetime_days;
    config.smtp.max_message_size = new.smtp.max_message_size;
    config.smtp.max_recipients = new.smtp.max_recipients;
    config.legacy.import_command = new.legacy.import_command.clone();
    config.legacy.import_timeout = new.legacy.import_timeout;
    config.queue.retry = new.queue.retry.clone();
    config.queue.max_lifetime = new.queue.max_lifetime;
}

/// SIGHUP: reads the config file again (when the gateway runs from one). A file with a problem
/// is refused whole, with the reason, and the running configuration stays. Otherwise the
/// `[directory]` settings and the [`LIVE_KEYS`] take effect now (the reload that follows uses
/// them); every other changed key is named in a warning and takes effect at the next restart,
/// because the listeners, the spool and the agents are built once at start (as Postfix needs
/// a restart for `inet_interfaces`). Until then each SIGHUP names them again.
fn reread_config(current: &Config) -> Option<Config> {
    let path = current.source.as_deref()?;
    let new = match Config::load(Some(path)) {
        Ok(new) => new,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "configuration reload refused; the running configuration stays");
            return None;
        }
    };
    for key in current.changed_keys(&new) {
        if is_live(&key) {
            info!(key = %key, "configuration changed; in effect now");
        } else {
            warn!(key = %key, "configuration changed; takes effect at the next restart");
        }
    }
    Some(new)
}

/// Routes held cutover mail again with the directory and settings in service.
async fn release(routing: &Arc<DirectoryRouting>, spool: &Arc<Spool>) {
    let (spool, routing) = (Arc::clone(spool), Arc::clone(routing));
    match tokio::task::spawn_blocking(move || routing.release(&spool)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => info!(messages = n, "held cutover mail routed again"),
        Ok(Err(e)) => warn!(error = %e, "cannot release held cutover mail"),
        Err(e) => warn!(error = %e, "release task failed"),
    }
}

/// SIGHUP or the reload interval: a new directory replaces the old one whole; a bad one
/// leaves the old one in service. Held cutover mail is then routed again. True when the
/// directory was replaced (and held mail released).
async fn reload(
    config: &Config,
    routing: &Arc<DirectoryRouting>,
    spool: &Arc<Spool>,
    metrics: &Arc<Metrics>,
) -> bool {
    let cfg = config.clone();
    match tokio::task::spawn_blocking(move || directory_source::load(&cfg)).await {
        Ok(Ok(Ok(directory))) if directory.is_empty() && !routing.handle().current().is_empty() => {
            // An empty answer (a wrong LDAP filter or base, a truncated file) would make every
            // legacy recipient unknown and bounced: keep the directory in service.
            metrics.directory_loaded(Err(()));
            warn!(
                previous = routing.handle().current().len(),
                "directory reload refused: the new directory has no entries; the previous directory stays in service (restart to start from an empty one)"
            );
        }
        Ok(Ok(Ok(directory))) => {
            let entries = directory.len();
            routing.handle().swap(directory);
            metrics.directory_loaded(Ok(entries as u64));
            info!(entries, "directory reloaded");
            release(routing, spool).await;
            return true;
        }
        Ok(Ok(Err(invalid))) => {
            metrics.directory_loaded(Err(()));
            warn!("directory reload refused; the previous directory stays in service:\n{invalid}");
        }
        Ok(Err(e)) => {
            metrics.directory_loaded(Err(()));
            warn!(error = %format!("{e:#}"), "directory reload failed; the previous directory stays in service");
        }
        Err(e) => warn!(error = %e, "directory reload task failed"),
    }
    false
}

/// The spool's periodic duties: lease timeouts, admin requests from `ccgate queue`, bounces,
/// compaction; then routing what waits for the router (bounces, requeued mail).
async fn housekeeping(
    spool: Arc<Spool>,
    routing: Arc<dyn Routing>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let spool = Arc::clone(&spool);
        let routing = Arc::clone(&routing);
        let work = move || -> Result<(), ccgate_queue::QueueError> {
            spool.tick(SystemTime::now())?;
            route_unrouted(&spool, routing.as_ref(), 1000, SystemTime::now())?;
            Ok(())
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "spool housekeeping failed"),
            Err(e) => warn!(error = %e, "spool housekeeping task failed"),
        }
    }
}

fn print_banner(
    config: &Config,
    smtp: &[std::net::SocketAddr],
    admin: Option<std::net::SocketAddr>,
    spool: &Path,
    entries: usize,
) {
    let hop = match &config.modern.next_hop {
        NextHop::Maildir(p) => format!("maildir {}", p.display()),
        NextHop::Smtp { host, port } => format!("smtp://{host}:{port}"),
    };
    let smtp: Vec<String> = smtp.iter().map(ToString::to_string).collect();
    eprintln!(
        "ccgate: config      {}",
        config.source.as_deref().map_or_else(
            || "embedded defaults".to_owned(),
            |p| p.display().to_string()
        )
    );
    eprintln!(
        "ccgate: smtp        {}  (legacy domain {}, modern domain {})",
        smtp.join(", "),
        config.legacy.domain,
        config.modern.domain
    );
    eprintln!("ccgate: spool       {}", spool.display());
    eprintln!(
        "ccgate: directory   {}  ({entries} entries)",
        crate::directory_source::origin(config)
    );
    eprintln!(
        "ccgate: legacy PO   {} via gateway PO {}: pickup {}, drop {}",
        config.legacy.post_office,
        config.legacy.gateway_po,
        config.legacy.pickup_dir.display(),
        config.legacy.drop_dir.display()
    );
    eprintln!("ccgate: modern hop  {hop}");
    if let Some(admin) = admin {
        eprintln!(
            "ccgate: admin       http://{admin}/metrics /healthz /readyz /queue/summary; console http://{admin}/"
        );
    }
}
