//! Login penalties: failed logins from a client address slow down every
//! further login from it, whichever protocol and connection it comes
//! through (reliability.md AU-03; Dovecot's auth_penalty).
//!
//! Two things grow with the failures in a row from an address (doubling
//! from a base up to a cap, see [`penalty`]): the pause before a failure is
//! answered, and the spacing between credential checks. The second is what
//! limits guessing: the caller runs an address's checks one at a time, and
//! before each asks [`wait`](LoginPenalties::wait), which is the time left
//! until one penalty (for the failures so far) has passed since the last
//! failure. The spacing is thus measured when the check runs, with every
//! failure before it counted, so twenty parallel connections, or a client
//! that hangs up and reconnects instead of waiting for the answer, check no
//! faster than one patient client (issue 12, finding 5). An address with no
//! recent failures never waits.
//!
//! A success does not wipe the record (an attacker with one valid account
//! would reset it between guesses); an hour without failures does. A mail
//! client that checks every few minutes never notices: its slot is long
//! free. Like [`crate::grants`], the table holds no clock: every call takes
//! `now`. A client repeating the very same wrong attempt (a stale password,
//! retried) does not climb further.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::client_key::ClientKey;

/// Failures older than this are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// IPv6 clients are counted by /64: one host usually has a whole one.
pub const IPV6_PREFIX: u8 = crate::client_key::CLIENT_IPV6_PREFIX;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    last_attempt: u64,
}

/// Failed logins per client address.
#[derive(Debug)]
pub struct LoginPenalties {
    max: usize,
    records: HashMap<ClientKey, Record>,
}

/// The delay after `failures` failures in a row: `base`, doubling with
/// each further failure, never more than `cap` (nor less than `base`).
pub fn penalty(base: Duration, cap: Duration, failures: u32) -> Duration {
    let cap = cap.max(base);
    let doublings = failures.saturating_sub(1).min(30);
    base.checked_mul(1 << doublings).map_or(cap, |d| d.min(cap))
}

impl LoginPenalties {
    /// A table remembering at most `max` addresses.
    pub fn new(max: usize) -> LoginPenalties {
        LoginPenalties {
            max: max.max(1),
            records: HashMap::new(),
        }
    }

    /// Records a failed login from `ip` at `now` and returns the failures
    /// in a row from that address, this one included (for [`penalty`]).
    /// `attempt` identifies what was tried (a digest of the name and
    /// credentials): the same attempt again does not count again.
    pub fn failure(&mut self, ip: IpAddr, attempt: u64, now: Instant) -> u32 {
        let key = ClientKey::of(ip, IPV6_PREFIX);
        if !self.records.contains_key(&key) && self.records.len() >= self.max {
            self.purge(now);
        }
        let record = self.records.entry(key).or_insert(Record {
            failures: 0,
            last: now,
            last_attempt: attempt,
        });
        if now.saturating_duration_since(record.last) >= FORGET_AFTER {
            record.failures = 0;
        }
        if record.failures == 0 || record.last_attempt != attempt {
            record.failures = record.failures.saturating_add(1);
        }
        record.last = now;
        record.last_attempt = attempt;
        record.failures
    }

    /// How long a credential check from `ip` must still wait at `now`: until
    /// the penalty for the failures so far (`base` doubled per failure, up to
    /// `cap`) has passed since the last one. Zero for an address without
    /// recent failures. Only meaningful if the address's checks run one at a
    /// time, each recording its failure before the next asks.
    pub fn wait(&self, ip: IpAddr, now: Instant, base: Duration, cap: Duration) -> Duration {
        let Some(record) = self.records.get(&ClientKey::of(ip, IPV6_PREFIX)) else {
            return Duration::ZERO;
        };
        if record.failures == 0 || now.saturating_duration_since(record.last) >= FORGET_AFTER {
            return Duration::ZERO;
        }
        let spacing = penalty(base, cap, record.failures);
        record
            .last
            .checked_add(spacing)
            .map_or(Duration::ZERO, |next| next.saturating_duration_since(now))
    }

    /// Addresses remembered (stale ones included until purged).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets stale addresses; if still full, the tenth that failed
    /// longest ago (one sort per tenth of the table, not per failure).
    fn purge(&mut self, now: Instant) {
        self.records
            .retain(|_, r| now.saturating_duration_since(r.last) < FORGET_AFTER);
        if self.records.len() >= self.max {
            let mut by_age: Vec<(Instant, ClientKey)> =
                self.records.iter().map(|(k, r)| (r.last, *k)).collect();
            by_age.sort_unstable_by_key(|(last, _)| *last);
            let keep = self.max - self.max / 10 - 1;
            let excess = self.records.len().saturating_sub(keep);
            for (_, key) in by_age.into_iter().take(excess) {
                self.records.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// AU-03: 2 s, doubling, capped at 15 s; shared by every connection
    /// from the address (the table is per address, not per session).
    #[test]
    fn au03_delays_double_to_the_cap_per_address() {
        let t0 = Instant::now();
        let mut p = LoginPenalties::new(1000);
        let delays: Vec<u64> = (0..6)
            .map(|i| {
                let n = p.failure(ip("127.0.0.5"), i, t0);
                penalty(Duration::from_secs(2), Duration::from_secs(15), n).as_secs()
            })
            .collect();
        assert_eq!(delays, [2, 4, 8, 15, 15, 15]);
        assert_eq!(p.failure(ip("127.0.0.6"), 0, t0), 1);
    }

    #[test]
    fn penalties_never_overflow_and_respect_base_and_cap() {
        let base = Duration::from_secs(2);
        assert_eq!(penalty(base, Duration::from_secs(15), 0), base);
        assert_eq!(
            penalty(base, Duration::from_secs(15), u32::MAX),
            Duration::from_secs(15)
        );
        assert_eq!(penalty(base, Duration::ZERO, 9), base, "cap below base");
        assert_eq!(penalty(Duration::ZERO, Duration::ZERO, 40), Duration::ZERO);
        assert_eq!(penalty(Duration::MAX, Duration::MAX, 40), Duration::MAX);
    }

    #[test]
    fn the_same_wrong_attempt_does_not_climb() {
        let t0 = Instant::now();
        let mut p = LoginPenalties::new(1000);
        for _ in 0..5 {
            assert_eq!(p.failure(ip("192.0.2.1"), 42, t0), 1);
        }
        assert_eq!(p.failure(ip("192.0.2.1"), 43, t0), 2);
    }

    #[test]
    fn an_hour_of_quiet_forgets() {
        let t0 = Instant::now();
        let mut p = LoginPenalties::new(1000);
        p.failure(ip("192.0.2.1"), 1, t0);
        p.failure(ip("192.0.2.1"), 2, t0);
        assert_eq!(p.failure(ip("192.0.2.1"), 5, t0 + FORGET_AFTER), 1);
    }

    /// AU-03, the guessing rate: a check from a penalised address waits
    /// until the penalty for every failure so far has passed since the last
    /// one; an address without failures, or one whose last failure is long
    /// past, never waits.
    #[test]
    fn au03_checks_from_a_penalised_address_are_spaced() {
        let t0 = Instant::now();
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(15);
        let mut p = LoginPenalties::new(1000);
        let a = ip("192.0.2.1");
        assert_eq!(p.wait(a, t0, base, cap), Duration::ZERO);
        p.failure(a, 1, t0);
        assert_eq!(p.wait(a, t0, base, cap), Duration::from_secs(2));
        // The next failure arrives 2 s later: the one after must wait 4 s
        // from then, counted when it asks, not when it queued.
        let t2 = t0 + Duration::from_secs(2);
        p.failure(a, 2, t2);
        assert_eq!(p.wait(a, t2, base, cap), Duration::from_secs(4));
        assert_eq!(
            p.wait(a, t2 + Duration::from_secs(1), base, cap),
            Duration::from_secs(3)
        );
        assert_eq!(p.wait(ip("192.0.2.2"), t2, base, cap), Duration::ZERO);
        assert_eq!(
            p.wait(a, t2 + Duration::from_secs(600), base, cap),
            Duration::ZERO
        );
        for n in 3..10 {
            p.failure(a, n, t2);
        }
        assert_eq!(p.wait(a, t2, base, cap), cap);
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut p = LoginPenalties::new(1000);
        p.failure(ip("2001:db8:1:2::1"), 1, t0);
        assert_eq!(p.failure(ip("2001:db8:1:2::99"), 2, t0), 2);
        assert_eq!(p.failure(ip("2001:db8:1:3::1"), 3, t0), 1);
        p.failure(ip("::ffff:192.0.2.9"), 1, t0);
        assert_eq!(p.failure(ip("192.0.2.9"), 2, t0), 2);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut p = LoginPenalties::new(500);
        for i in 0..50_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            p.failure(addr, 0, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(p.len() <= 500);
    }
}
