//! Counters and histograms for `/metrics`, in the Prometheus text format (version 0.0.4).
//!
//! Events are counted by name and destination lane; delivery attempt durations go into one
//! histogram per lane. Queue depth is read from the spool when scraped, not counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use ccgate_queue::Spool;

/// Upper bounds (seconds) of the delivery-duration histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// A counted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A message acknowledged (SMTP 250 or a legacy message queued).
    Accepted,
    /// A recipient delivered.
    Delivered,
    /// A recipient deferred (transient failure).
    Deferred,
    /// A recipient failed for good (bounce owed).
    Bounced,
    /// A message set aside (pickup quarantine).
    Quarantined,
    /// An SMTP recipient refused at RCPT.
    Rejected,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Self::Accepted => "ccgate_messages_accepted_total",
            Self::Delivered => "ccgate_recipients_delivered_total",
            Self::Deferred => "ccgate_recipients_deferred_total",
            Self::Bounced => "ccgate_recipients_bounced_total",
            Self::Quarantined => "ccgate_messages_quarantined_total",
            Self::Rejected => "ccgate_recipients_rejected_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Accepted => {
                "Messages acknowledged (SMTP 250 or legacy message queued), by source."
            }
            Self::Delivered => "Recipients delivered, by destination.",
            Self::Deferred => "Recipients deferred after a transient failure, by destination.",
            Self::Bounced => "Recipients failed permanently (bounce owed), by destination.",
            Self::Quarantined => "Messages set aside for inspection, by source.",
            Self::Rejected => "SMTP recipients refused at RCPT, by reason.",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Accepted | Self::Quarantined => "source",
            Self::Rejected => "reason",
            _ => "destination",
        }
    }

    const ALL: [Self; 6] = [
        Self::Accepted,
        Self::Delivered,
        Self::Deferred,
        Self::Bounced,
        Self::Quarantined,
        Self::Rejected,
    ];
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(Event, String), u64>,
    durations: BTreeMap<String, Histogram>,
    directory_entries: Option<u64>,
    directory_reloads: u64,
    directory_reload_errors: u64,
    directory_loaded_at: Option<std::time::SystemTime>,
    directory_failed_at: Option<std::time::SystemTime>,
}

/// The directory's loads, for the console's health table.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectoryStatus {
    /// Entries at the last successful load.
    pub entries: Option<u64>,
    /// Successful loads (the first one included).
    pub loads: u64,
    /// Failed reloads.
    pub failures: u64,
    /// When the last load succeeded.
    pub loaded_at: Option<std::time::SystemTime>,
    /// When the last reload failed.
    pub failed_at: Option<std::time::SystemTime>,
}

/// The gateway's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    trace: std::sync::OnceLock<std::sync::Arc<crate::trace::TraceLog>>,
}

impl Metrics {
    /// Counts `n` events for a label value (source, destination or reason).
    pub fn count(&self, event: Event, label: &str, n: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner.counters.entry((event, label.to_owned())).or_insert(0) += n;
        }
    }

    /// Records how long one delivery attempt to `destination` took.
    pub fn observe_delivery(&self, destination: &str, took: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            let h = inner.durations.entry(destination.to_owned()).or_default();
            let secs = took.as_secs_f64();
            for (slot, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if secs <= bound {
                    *slot += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// Records a directory (re)load: its size, or that it failed.
    pub fn directory_loaded(&self, entries: Result<u64, ()>) {
        if let Ok(mut inner) = self.inner.lock() {
            match entries {
                Ok(n) => {
                    inner.directory_entries = Some(n);
                    inner.directory_reloads += 1;
                    inner.directory_loaded_at = Some(std::time::SystemTime::now());
                }
                Err(()) => {
                    inner.directory_reload_errors += 1;
                    inner.directory_failed_at = Some(std::time::SystemTime::now());
                }
            }
        }
    }

    /// Sends the message-trace events recorded with [`Metrics::trace`] to `log` (once).
    pub fn set_trace(&self, log: std::sync::Arc<crate::trace::TraceLog>) {
        let _ = self.trace.set(log);
    }

    /// The trace log, if one is set.
    pub fn trace_log(&self) -> Option<std::sync::Arc<crate::trace::TraceLog>> {
        self.trace.get().cloned()
    }

    /// Records message-trace events (nothing without a trace log).
    pub fn trace(&self, events: impl IntoIterator<Item = crate::trace::TraceEvent>) {
        if let Some(log) = self.trace.get() {
            for event in events {
                log.record(&event);
            }
        }
    }

    /// Every counter with its label value, for the console's mail-flow figures.
    pub fn counters(&self) -> Vec<(Event, String, u64)> {
        self.inner.lock().map_or_else(
            |_| Vec::new(),
            |inner| {
                (inner.counters.iter())
                    .map(|((event, label), n)| (*event, label.clone(), *n))
                    .collect()
            },
        )
    }

    /// The directory's size at the last load, how many loads succeeded and failed, and when.
    pub fn directory_status(&self) -> DirectoryStatus {
        self.inner.lock().map_or_else(
            |_| DirectoryStatus::default(),
            |inner| DirectoryStatus {
                entries: inner.directory_entries,
                loads: inner.directory_reloads,
                failures: inner.directory_reload_errors,
                loaded_at: inner.directory_loaded_at,
                failed_at: inner.directory_failed_at,
            },
        )
    }

    /// The text exposition, with the spool's depth per destination read now.
    pub fn render(&self, spool: Option<&Spool>) -> String {
        let mut out = String::new();
        let Ok(inner) = self.inner.lock() else {
            return out;
        };
        for event in Event::ALL {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} counter",
                event.name(),
                event.help(),
                event.name()
            );
            for ((e, label), value) in &inner.counters {
                if *e == event {
                    let _ = writeln!(
                        out,
                        "{}{{{}=\"{}\"}} {value}",
                        event.name(),
                        event.label(),
                        escape(label)
                    );
                }
            }
        }
        let name = "ccgate_delivery_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Duration of delivery attempts, by destination.\n# TYPE {name} histogram"
        );
        for (dest, h) in &inner.durations {
            let dest = escape(dest);
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{destination=\"{dest}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{destination=\"{dest}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{destination=\"{dest}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{destination=\"{dest}\"}} {}", h.count);
        }
        let _ = writeln!(
            out,
            "# HELP ccgate_directory_entries Entries in the directory in service.\n# TYPE ccgate_directory_entries gauge"
        );
        if let Some(n) = inner.directory_entries {
            let _ = writeln!(out, "ccgate_directory_entries {n}");
        }
        let _ = writeln!(
            out,
            "# HELP ccgate_directory_reloads_total Successful directory loads.\n# TYPE ccgate_directory_reloads_total counter\nccgate_directory_reloads_total {}",
            inner.directory_reloads
        );
        let _ = writeln!(
            out,
            "# HELP ccgate_directory_reload_errors_total Directory reloads refused (the previous directory stayed in service).\n# TYPE ccgate_directory_reload_errors_total counter\nccgate_directory_reload_errors_total {}",
            inner.directory_reload_errors
        );
        drop(inner);
        if let Some(spool) = spool {
            let status = spool.status();
            let _ = writeln!(
                out,
                "# HELP ccgate_spool_accepting 1 while the spool takes new mail, 0 while it refuses it (452/451; see ccgate_spool_status).\n# TYPE ccgate_spool_accepting gauge\nccgate_spool_accepting {}",
                u8::from(status == ccgate_queue::SpoolStatus::Accepting)
            );
            let _ = writeln!(
                out,
                "# HELP ccgate_spool_status Why the spool is or is not taking mail: 1 for the reason in force (accepting, low_space: below min_free, disk_full or write_error: writes fail and are retried, failed: restart needed).\n# TYPE ccgate_spool_status gauge"
            );
            for reason in [
                "accepting",
                "low_space",
                "disk_full",
                "write_error",
                "failed",
            ] {
                let _ = writeln!(
                    out,
                    "ccgate_spool_status{{reason=\"{reason}\"}} {}",
                    u8::from(status.reason() == reason)
                );
            }
            let now = std::time::SystemTime::now();
            let depth = spool.depth(now);
            let _ = writeln!(
                out,
                "# HELP ccgate_queue_messages Messages in the queue, by state (as `ccgate queue list` shows them).\n# TYPE ccgate_queue_messages gauge"
            );
            for (state, count) in depth.messages {
                let _ = writeln!(out, "ccgate_queue_messages{{state=\"{state}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "# HELP ccgate_queue_recipients_by_state Unfinished recipients in the queue, by destination and state.\n# TYPE ccgate_queue_recipients_by_state gauge"
            );
            for row in &depth.recipients {
                let _ = writeln!(
                    out,
                    "ccgate_queue_recipients_by_state{{destination=\"{}\",state=\"{}\"}} {}",
                    escape(&row.destination),
                    row.state,
                    row.recipients
                );
            }
            let summary = spool.summary(now);
            let _ = writeln!(
                out,
                "# HELP ccgate_queue_messages_by_age Messages in the queue, by destination and age bucket (minutes, as `ccgate queue summary`).\n# TYPE ccgate_queue_messages_by_age gauge"
            );
            for row in &summary.rows {
                if row.destination == "TOTAL" {
                    continue;
                }
                for (column, count) in summary.columns.iter().zip(&row.counts).skip(1) {
                    let _ = writeln!(
                        out,
                        "ccgate_queue_messages_by_age{{destination=\"{}\",age=\"{}\"}} {count}",
                        escape(&row.destination),
                        escape(column)
                    );
                }
            }
            let lanes = spool.lanes(now);
            let _ = writeln!(
                out,
                "# HELP ccgate_lane_in_flight Delivery attempts running, by destination.\n# TYPE ccgate_lane_in_flight gauge"
            );
            for lane in &lanes {
                let _ = writeln!(
                    out,
                    "ccgate_lane_in_flight{{destination=\"{}\"}} {}",
                    escape(&lane.name),
                    lane.in_flight
                );
            }
            let _ = writeln!(
                out,
                "# HELP ccgate_lane_dead 1 while a destination is marked dead and cooling off.\n# TYPE ccgate_lane_dead gauge"
            );
            for lane in &lanes {
                let dead = u8::from(matches!(lane.status, ccgate_queue::LaneStatus::Dead { .. }));
                let _ = writeln!(
                    out,
                    "ccgate_lane_dead{{destination=\"{}\"}} {dead}",
                    escape(&lane.name)
                );
            }
        }
        out
    }
}

/// Label values escape `\`, `"` and line feeds.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
