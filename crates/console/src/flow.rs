//! Mail flow over the last hour and day: the counters sampled once a minute in memory (since
//! the process started), so a window is the difference between now and a sample.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ccgate_server::MetricEvent;
use tokio::sync::watch;

use crate::Console;
use crate::layout::now_secs;

/// Samples kept: a day of minutes.
const KEEP: usize = 24 * 60 + 1;

type Counters = BTreeMap<(MetricEvent, String), u64>;

/// The samples.
#[derive(Debug, Default)]
pub struct Flow {
    samples: Mutex<VecDeque<(u64, Counters)>>,
}

/// Counter differences over a window.
#[derive(Debug, Default)]
pub struct Window {
    /// Seconds actually covered (shorter than asked while the process is young).
    pub covered: u64,
    /// Differences by counter.
    pub counts: Counters,
}

impl Window {
    /// One counter's difference.
    pub fn get(&self, event: MetricEvent, label: &str) -> u64 {
        self.counts
            .get(&(event, label.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// A counter's difference over every label.
    pub fn total(&self, event: MetricEvent) -> u64 {
        self.counts
            .iter()
            .filter(|((e, _), _)| *e == event)
            .map(|(_, n)| n)
            .sum()
    }
}

fn read(console: &Console) -> Counters {
    console
        .parts
        .metrics
        .counters()
        .into_iter()
        .map(|(e, l, n)| ((e, l), n))
        .collect()
}

impl Flow {
    fn push(&self, at: u64, counters: Counters) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back((at, counters));
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// The counters now minus the oldest sample within `seconds`.
    pub fn window(&self, console: &Console, seconds: u64) -> Window {
        let now = now_secs();
        let current = read(console);
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let base = samples
            .iter()
            .find(|(at, _)| now.saturating_sub(*at) <= seconds);
        let (covered, counts) = match base {
            Some((at, old)) => (
                now.saturating_sub(*at),
                current
                    .iter()
                    .map(|(k, n)| {
                        (
                            k.clone(),
                            n.saturating_sub(old.get(k).copied().unwrap_or(0)),
                        )
                    })
                    .collect(),
            ),
            None => (0, current),
        };
        Window { covered, counts }
    }
}

/// Takes a sample at start and once a minute until `stop`.
pub async fn sample(console: Arc<Console>, mut stop: watch::Receiver<bool>) {
    console.flow.push(now_secs(), BTreeMap::new());
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => console.flow.push(now_secs(), read(&console)),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
