//! Pure scheduling decisions: retry backoff with jitter, expiry, dead-destination (lane)
//! health, and the qshape age buckets. No clock and no I/O: every function takes `now`.
//!
//! - **Retry:** the n-th transient failure waits `retry[n-1]` (the last interval repeats),
//!   scaled by a jitter factor in `[1 - JITTER, 1 + JITTER)` drawn from a hash of the queue id,
//!   recipient and attempt, so a deferred queue never retries in lock step (the Postfix weakness
//!   QSHAPE_README names, lessons.md §3) while staying reproducible in tests.
//! - **Expiry:** a recipient still unfinished `max_lifetime` after arrival fails (and is bounced)
//!   at its next due time; retries are clamped so that this happens on time. Held recipients
//!   never expire.
//! - **Lane health:** `dead_after` consecutive destination-level failures mark a lane dead for a
//!   cool-off (doubling on each failed probe, up to a maximum); after the cool-off one probe
//!   attempt runs; a success makes the lane alive again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccgate_core::QueueId;

/// Spread of the retry jitter: intervals are scaled by a factor in `[0.8, 1.2)`.
pub const JITTER: f64 = 0.2;

/// Milliseconds since the Unix epoch (0 for earlier times, saturating far in the future).
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// SplitMix64: a small, good 64-bit mixer (public domain, Vigna).
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The jitter seed of one recipient's n-th attempt.
pub fn jitter_seed(id: QueueId, rcpt: u16, attempt: u32) -> u64 {
    let n = id.to_u128();
    let (hi, lo) = ((n >> 64) as u64, n as u64);
    mix64(hi ^ mix64(lo ^ mix64((u64::from(rcpt) << 32) | u64::from(attempt))))
}

/// Scales `base` by a factor in `[1 - JITTER, 1 + JITTER)` chosen by `seed`.
pub fn jittered(base: Duration, seed: u64) -> Duration {
    // 53 random bits -> uniform in [0, 1).
    let unit = (mix64(seed) >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

/// The wait after the `failures`-th transient failure (1-based; 0 is treated as 1): the
/// schedule's entry, the last one repeating, with jitter. An empty schedule means 5 minutes.
pub fn retry_delay(schedule: &[Duration], failures: u32, seed: u64) -> Duration {
    let idx = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
    let base = schedule
        .get(idx)
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(300));
    jittered(base, seed)
}

/// When a message that arrived at `arrival_ms` expires.
pub fn expiry_ms(arrival_ms: u64, max_lifetime: Duration) -> u64 {
    arrival_ms.saturating_add(duration_ms(max_lifetime))
}

/// True when a message that arrived at `arrival_ms` has outlived `max_lifetime` at `now_ms`.
pub fn is_expired(arrival_ms: u64, now_ms: u64, max_lifetime: Duration) -> bool {
    now_ms >= expiry_ms(arrival_ms, max_lifetime)
}

/// The next attempt after a transient failure at `now_ms`: the jittered retry delay, but never
/// past the expiry (so that an expiring message is bounced on time, not one interval late).
pub fn next_attempt_ms(
    now_ms: u64,
    arrival_ms: u64,
    policy: &RetryPolicy,
    failures: u32,
    seed: u64,
) -> u64 {
    let wait = duration_ms(retry_delay(&policy.retry, failures, seed));
    now_ms
        .saturating_add(wait)
        .min(expiry_ms(arrival_ms, policy.max_lifetime).max(now_ms))
}

/// The retry and expiry settings (`[queue]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Waits after the 1st, 2nd, ... transient failure; the last repeats.
    pub retry: Vec<Duration>,
    /// Unfinished recipients fail (and bounce) this long after arrival.
    pub max_lifetime: Duration,
}

/// Settings for marking destinations dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadPolicy {
    /// Consecutive destination-level failures before a lane is marked dead (0: never).
    pub dead_after: u32,
    /// First cool-off.
    pub cooloff: Duration,
    /// Longest cool-off (it doubles after each failed probe).
    pub max_cooloff: Duration,
}

/// Where a lane stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneStatus {
    /// Delivering up to its concurrency limit.
    Alive,
    /// Cooling off: its mail is deferred without attempts until `until_ms`.
    Dead {
        /// End of the cool-off.
        until_ms: u64,
    },
    /// The cool-off is over: one probe attempt at a time until one succeeds.
    Probing,
}

/// The health of one lane: consecutive failures and the cool-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaneHealth {
    /// Destination-level failures since the last success.
    pub failures: u32,
    /// End of the current or last cool-off; 0 when the lane is healthy.
    pub dead_until_ms: u64,
    /// Length of the last cool-off, 0 when healthy.
    pub cooloff_ms: u64,
}

impl LaneHealth {
    /// Where the lane stands at `now_ms`.
    pub fn status(&self, now_ms: u64) -> LaneStatus {
        if self.dead_until_ms == 0 {
            LaneStatus::Alive
        } else if now_ms < self.dead_until_ms {
            LaneStatus::Dead {
                until_ms: self.dead_until_ms,
            }
        } else {
            LaneStatus::Probing
        }
    }

    /// Records a destination-level failure; returns the end of a new cool-off when the lane
    /// has just been marked dead.
    pub fn on_failure(&mut self, now_ms: u64, policy: &DeadPolicy) -> Option<u64> {
        if policy.dead_after == 0 {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        let probing = self.status(now_ms) == LaneStatus::Probing;
        if !probing && self.failures < policy.dead_after {
            return None;
        }
        if let LaneStatus::Dead { .. } = self.status(now_ms) {
            // Already dead: late results of attempts started before do not extend it.
            return None;
        }
        let cooloff = if probing {
            self.cooloff_ms
                .saturating_mul(2)
                .min(duration_ms(policy.max_cooloff))
        } else {
            duration_ms(policy.cooloff)
        }
        .max(1);
        self.cooloff_ms = cooloff;
        self.dead_until_ms = now_ms.saturating_add(cooloff);
        Some(self.dead_until_ms)
    }

    /// Records that the destination answered; returns true when the lane was dead or probing
    /// and is alive again.
    pub fn on_success(&mut self) -> bool {
        self.failures = 0;
        let revived = self.dead_until_ms != 0;
        self.dead_until_ms = 0;
        self.cooloff_ms = 0;
        revived
    }

    /// How many attempts may run at once at `now_ms` given the configured `limit`.
    pub fn concurrency(&self, now_ms: u64, limit: u32) -> u32 {
        match self.status(now_ms) {
            LaneStatus::Alive => limit,
            LaneStatus::Dead { .. } => 0,
            LaneStatus::Probing => 1.min(limit),
        }
    }
}

/// Column labels of `queue summary` (Postfix qshape): total, then ages up to N minutes.
pub const AGE_BUCKETS: [&str; 11] = [
    "T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+",
];

/// The age column (1..=10) for a message `age_ms` old; column 0 is the total.
pub fn age_bucket(age_ms: u64) -> usize {
    let minutes = age_ms / 60_000;
    let mut limit = 5;
    for col in 1..10 {
        if minutes < limit {
            return col;
        }
        limit *= 2;
    }
    10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retry: vec![Duration::from_secs(60), Duration::from_secs(300)],
            max_lifetime: Duration::from_secs(3600),
        }
    }

    #[test]
    fn retry_follows_schedule_and_last_repeats() {
        let p = policy();
        for (failures, base) in [(0, 60), (1, 60), (2, 300), (3, 300), (100, 300)] {
            for seed in 0..50 {
                let d = retry_delay(&p.retry, failures, seed).as_secs_f64();
                let base = f64::from(base);
                assert!(
                    d >= base * (1.0 - JITTER) && d < base * (1.0 + JITTER),
                    "{failures} {seed} {d}"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_retries() {
        let id = QueueId::from_u128(42);
        let base = Duration::from_secs(3600);
        let mut secs: Vec<u64> = (0..100)
            .map(|r| jittered(base, jitter_seed(id, r, 1)).as_secs())
            .collect();
        secs.sort_unstable();
        secs.dedup();
        assert!(secs.len() > 90, "only {} distinct delays", secs.len());
        // Reproducible.
        assert_eq!(jitter_seed(id, 1, 2), jitter_seed(id, 1, 2));
    }

    #[test]
    fn retries_are_clamped_to_expiry() {
        let p = policy();
        // Arrived 59 minutes ago: the next try is at the expiry, not 5 minutes later.
        let now = 10_000_000;
        let arrival = now - 59 * 60_000;
        assert_eq!(next_attempt_ms(now, arrival, &p, 2, 7), arrival + 3_600_000);
        assert!(is_expired(arrival, arrival + 3_600_000, p.max_lifetime));
        assert!(!is_expired(arrival, arrival + 3_599_999, p.max_lifetime));
        // Already past expiry: due now.
        assert_eq!(next_attempt_ms(now, 0, &p, 2, 7), now);
    }

    #[test]
    fn lane_goes_dead_probes_and_revives() {
        let policy = DeadPolicy {
            dead_after: 3,
            cooloff: Duration::from_secs(60),
            max_cooloff: Duration::from_secs(150),
        };
        let mut h = LaneHealth::default();
        assert_eq!(h.on_failure(0, &policy), None);
        assert_eq!(h.on_failure(0, &policy), None);
        assert_eq!(h.on_failure(1000, &policy), Some(61_000));
        assert_eq!(h.status(1000), LaneStatus::Dead { until_ms: 61_000 });
        assert_eq!(h.concurrency(1000, 20), 0);
        // Late failures while dead do not extend the cool-off.
        assert_eq!(h.on_failure(2000, &policy), None);
        // After the cool-off: one probe; it fails: doubled cool-off.
        assert_eq!(h.status(61_000), LaneStatus::Probing);
        assert_eq!(h.concurrency(61_000, 20), 1);
        assert_eq!(h.on_failure(61_000, &policy), Some(181_000));
        // Doubling is capped.
        assert_eq!(h.on_failure(181_000, &policy), Some(331_000));
        assert!(h.on_success());
        assert_eq!(h.status(331_000), LaneStatus::Alive);
        assert!(!h.on_success());
        // dead_after = 0 disables the mechanism.
        let off = DeadPolicy {
            dead_after: 0,
            ..policy
        };
        let mut h = LaneHealth::default();
        for _ in 0..10 {
            assert_eq!(h.on_failure(0, &off), None);
        }
    }

    #[test]
    fn qshape_buckets() {
        for (minutes, col) in [
            (0, 1),
            (4, 1),
            (5, 2),
            (9, 2),
            (10, 3),
            (39, 4),
            (40, 5),
            (1279, 9),
            (1280, 10),
            (100_000, 10),
        ] {
            assert_eq!(age_bucket(minutes * 60_000), col, "{minutes}");
        }
    }
}
