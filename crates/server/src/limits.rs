//! What one SMTP client, and all of them together, may take from the listener: sessions per
//! client address and new sessions per minute (Postfix's anvil(8)), and the memory that
//! messages being received may hold at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ccgate_smtp::Error as SmtpError;
use dashmap::DashMap;

/// Default most sessions at once from one client address (Postfix's
/// `smtpd_client_connection_count_limit`, 50).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 50;
/// Default total of message text held in memory by all sessions at once.
pub const MEMORY_BUDGET: u64 = 512 * 1024 * 1024;
/// The rate limit's window (Postfix's `anvil_rate_time_unit`).
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Past this many remembered addresses, the ones without a session and with an expired
/// window are forgotten (the map stays bounded however many addresses connect).
const PRUNE_AT: usize = 10_000;
/// Memory is reserved in steps of this many octets, so the shared counter is touched about
/// once per 64 KiB received, not per read.
const RESERVE_STEP: u64 = 64 * 1024;

/// A network (`192.0.2.0/24`, `::1/128`) whose clients no per-client limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    ///
    /// # Errors
    /// A description of what is wrong, for the configuration error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// The loopback networks: Postfix's default `mynetworks_style = host` exempts the local
    /// machine from anvil's limits, and so does ccgate by default.
    pub fn loopback() -> Vec<Self> {
        vec![
            Self {
                addr: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            Self {
                addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                prefix: 128,
            },
        ]
    }

    /// True when `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One client address's sessions and recent connections.
#[derive(Debug)]
struct Client {
    open: usize,
    window_start: Instant,
    in_window: u32,
}

/// Per-client connection limits, shared by every listener of a server.
#[derive(Debug)]
pub(crate) struct ClientLimits {
    clients: DashMap<IpAddr, Client>,
    max_open: usize,
    max_per_minute: u32,
    exceptions: Vec<Network>,
}

impl ClientLimits {
    /// `max_open` sessions at once and `max_per_minute` new ones per client (0: no limit),
    /// neither for clients in `exceptions`.
    pub fn new(max_open: usize, max_per_minute: u32, exceptions: Vec<Network>) -> Self {
        Self {
            clients: DashMap::new(),
            max_open,
            max_per_minute,
            exceptions,
        }
    }

    /// Admits a new session from `ip`, or says which limit it is over. The session counts
    /// until the returned guard is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<ClientGuard, SmtpError> {
        if (self.max_open == 0 && self.max_per_minute == 0)
            || self.exceptions.iter().any(|n| n.contains(ip))
        {
            return Ok(ClientGuard { limits: None, ip });
        }
        if self.clients.len() > PRUNE_AT {
            self.clients.retain(|_, c| {
                c.open > 0 || now.saturating_duration_since(c.window_start) < RATE_WINDOW
            });
        }
        let mut client = self.clients.entry(ip).or_insert(Client {
            open: 0,
            window_start: now,
            in_window: 0,
        });
        if now.saturating_duration_since(client.window_start) >= RATE_WINDOW {
            client.window_start = now;
            client.in_window = 0;
        }
        // Every attempt counts toward the rate, refused ones too (as in anvil).
        client.in_window = client.in_window.saturating_add(1);
        if self.max_open > 0 && client.open >= self.max_open {
            return Err(SmtpError::TooManyClientConnections);
        }
        if self.max_per_minute > 0 && client.in_window > self.max_per_minute {
            return Err(SmtpError::ClientConnectionRate);
        }
        client.open += 1;
        Ok(ClientGuard {
            limits: Some(Arc::clone(self)),
            ip,
        })
    }

    /// Sessions open from `ip` now (for tests and logs).
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.clients.get(&ip).map_or(0, |c| c.open)
    }
}

/// One admitted session; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ClientGuard {
    limits: Option<Arc<ClientLimits>>,
    ip: IpAddr,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if let Some(limits) = &self.limits
            && let Some(mut client) = limits.clients.get_mut(&self.ip)
        {
            client.open = client.open.saturating_sub(1);
        }
    }
}

/// The memory all sessions together may hold for messages being received.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    used: AtomicU64,
    limit: u64,
}

impl MemoryBudget {
    /// A budget of `limit` octets (0: no limit).
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// Octets reserved now, by all sessions.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// One session's share of the [`MemoryBudget`]; given back when dropped or reset.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    held: u64,
}

impl Reservation {
    pub fn new(budget: &Arc<MemoryBudget>) -> Self {
        Self {
            budget: Arc::clone(budget),
            held: 0,
        }
    }

    /// Makes the reservation cover `needed` octets; false when the budget cannot (then the
    /// reservation is unchanged).
    pub fn cover(&mut self, needed: u64) -> bool {
        if needed <= self.held {
            return true;
        }
        let want = needed
            .div_ceil(RESERVE_STEP)
            .saturating_mul(RESERVE_STEP)
            .saturating_sub(self.held);
        let limit = self.budget.limit;
        let granted = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.saturating_add(want);
                (limit == 0 || after <= limit).then_some(after)
            })
            .is_ok();
        if granted {
            self.held = self.held.saturating_add(want);
        }
        granted
    }

    /// Gives everything back.
    pub fn reset(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
            self.held = 0;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let cases = [
            ("127.0.0.0/8", "127.1.2.3", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("::1", "::1", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::/0", "192.0.2.1", false),
        ];
        for (net, ip, inside) in cases {
            let net = Network::parse(net).unwrap();
            assert_eq!(net.contains(ip.parse().unwrap()), inside, "{net} {ip}");
        }
        for bad in ["x", "10.0.0.0/33", "::/129", "10.0.0.0/x", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_client_count_and_rate() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let limits = Arc::new(ClientLimits::new(2, 4, Network::loopback()));
        let a = limits.admit(ip, t0).unwrap();
        let b = limits.admit(ip, t0).unwrap();
        assert_eq!(
            limits.admit(ip, t0).unwrap_err(),
            SmtpError::TooManyClientConnections
        );
        let _c = limits.admit(other, t0).unwrap();
        drop(a);
        assert_eq!(limits.open(ip), 1);
        // The fourth attempt this minute (the refused one counted) is still in the rate.
        let d = limits.admit(ip, t0).unwrap();
        drop((b, d));
        assert_eq!(
            limits.admit(ip, t0).unwrap_err(),
            SmtpError::ClientConnectionRate
        );
        // A minute later the window starts over.
        let later = t0 + RATE_WINDOW;
        let _e = limits.admit(ip, later).unwrap();
        // Loopback is exempt from both limits.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let many: Vec<_> = (0..100).map(|_| limits.admit(lo, t0).unwrap()).collect();
        assert_eq!(many.len(), 100);
    }

    #[test]
    fn memory_budget_reserves_in_steps_and_gives_back() {
        let budget = MemoryBudget::new(4 * RESERVE_STEP);
        let mut a = Reservation::new(&budget);
        let mut b = Reservation::new(&budget);
        assert!(a.cover(1));
        assert_eq!(budget.used(), RESERVE_STEP);
        assert!(a.cover(RESERVE_STEP));
        assert!(a.cover(3 * RESERVE_STEP));
        assert!(b.cover(RESERVE_STEP));
        assert!(!b.cover(RESERVE_STEP + 1));
        assert_eq!(budget.used(), 4 * RESERVE_STEP);
        a.reset();
        assert!(b.cover(2 * RESERVE_STEP));
        drop(b);
        assert_eq!(budget.used(), 0);
        let unlimited = MemoryBudget::new(0);
        assert!(Reservation::new(&unlimited).cover(u64::MAX / 2));
    }
}
