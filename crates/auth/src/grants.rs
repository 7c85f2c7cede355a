//! POP-before-SMTP: a successful POP3 login lets the same client address
//! relay mail through SMTP for a while.
//!
//! The table holds no clock: every call takes `now` (a monotonic
//! `Instant`), so expiry is tested by moving time, and a wall-clock jump
//! neither extends nor revives a grant (reliability.md PB-03). Addresses
//! come from sockets, never from text. IPv4 (and IPv4-mapped IPv6) is keyed
//! by the exact address; IPv6 by a prefix, since a client may change its
//! interface identifier between connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::client_key::ClientKey as Key;

#[derive(Clone, Debug)]
struct Grant {
    user: String,
    expires: Instant,
}

/// The live grants.
#[derive(Debug)]
pub struct RelayGrants {
    window: Duration,
    ipv6_prefix: u8,
    max: usize,
    grants: HashMap<Key, Grant>,
}

impl RelayGrants {
    /// Grants last `window` (zero turns POP-before-SMTP off); IPv6
    /// addresses are keyed by their first `ipv6_prefix` bits; at most `max`
    /// grants are kept.
    pub fn new(window: Duration, ipv6_prefix: u8, max: usize) -> RelayGrants {
        RelayGrants {
            window,
            ipv6_prefix: ipv6_prefix.min(128),
            max: max.max(1),
            grants: HashMap::new(),
        }
    }

    /// Whether grants are given at all.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    fn key(&self, ip: IpAddr) -> Key {
        Key::of(ip, self.ipv6_prefix)
    }

    /// Records a successful POP3 login by `user` from `ip`, renewing any
    /// earlier grant for that address.
    pub fn grant(&mut self, ip: IpAddr, user: &str, now: Instant) {
        if !self.enabled() {
            return;
        }
        let key = self.key(ip);
        if !self.grants.contains_key(&key) && self.grants.len() >= self.max {
            self.purge(now);
        }
        self.grants.insert(
            key,
            Grant {
                user: user.to_owned(),
                expires: now + self.window,
            },
        );
    }

    /// The user whose login authorises `ip` to relay now, if any.
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Option<&str> {
        let grant = self.grants.get(&self.key(ip))?;
        (now < grant.expires).then_some(grant.user.as_str())
    }

    /// How many grants are held (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Drops expired grants; if the table is still full, the tenth that
    /// expires soonest makes room (so a flood of logins costs one sort per
    /// tenth of the table, not one per login).
    pub fn purge(&mut self, now: Instant) {
        self.grants.retain(|_, g| now < g.expires);
        if self.grants.len() >= self.max {
            let mut by_expiry: Vec<(Instant, Key)> =
                self.grants.iter().map(|(k, g)| (g.expires, *k)).collect();
            by_expiry.sort_unstable_by_key(|(e, _)| *e);
            let keep = self.max - self.max / 10 - 1;
            let excess = self.grants.len().saturating_sub(keep);
            for (_, key) in by_expiry.into_iter().take(excess) {
                self.grants.remove(&key);
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

    /// PB-03: the window is measured on the monotonic clock passed in
    /// (`Instant`; wall-clock steps cannot extend or revive a grant): in at
    /// N−1 s, out at N s, renewed by a new login.
    #[test]
    fn pb03_a_grant_lasts_the_window_and_is_renewed_by_a_new_login() {
        let t0 = Instant::now();
        let window = Duration::from_secs(600);
        let mut grants = RelayGrants::new(window, 128, 10);
        assert_eq!(grants.lookup(ip("127.0.0.7"), t0), None);
        grants.grant(ip("127.0.0.7"), "alice", t0);
        assert_eq!(
            grants.lookup(ip("127.0.0.7"), t0 + Duration::from_secs(599)),
            Some("alice")
        );
        assert_eq!(grants.lookup(ip("127.0.0.7"), t0 + window), None);
        assert_eq!(grants.lookup(ip("127.0.0.8"), t0), None);
        grants.grant(ip("127.0.0.7"), "bob", t0 + Duration::from_secs(500));
        assert_eq!(
            grants.lookup(ip("127.0.0.7"), t0 + Duration::from_secs(1000)),
            Some("bob")
        );
    }

    /// PB-04: `::ffff:127.0.0.7` (a dual-stack listener) and `127.0.0.7`
    /// are one client.
    #[test]
    fn pb04_mapped_and_plain_ipv4_are_the_same_client() {
        let t0 = Instant::now();
        let mut grants = RelayGrants::new(Duration::from_secs(60), 128, 10);
        grants.grant(ip("::ffff:127.0.0.7"), "alice", t0);
        assert_eq!(grants.lookup(ip("127.0.0.7"), t0), Some("alice"));
    }

    #[test]
    fn ipv6_by_prefix() {
        let t0 = Instant::now();
        let mut exact = RelayGrants::new(Duration::from_secs(60), 128, 10);
        exact.grant(ip("2001:db8:1:2::10"), "alice", t0);
        assert_eq!(exact.lookup(ip("2001:db8:1:2::11"), t0), None);
        let mut wide = RelayGrants::new(Duration::from_secs(60), 64, 10);
        wide.grant(ip("2001:db8:1:2::10"), "alice", t0);
        assert_eq!(wide.lookup(ip("2001:db8:1:2:ffff::1"), t0), Some("alice"));
        assert_eq!(wide.lookup(ip("2001:db8:1:3::10"), t0), None);
    }

    #[test]
    fn a_zero_window_grants_nothing() {
        let t0 = Instant::now();
        let mut grants = RelayGrants::new(Duration::ZERO, 128, 10);
        grants.grant(ip("127.0.0.7"), "alice", t0);
        assert_eq!(grants.lookup(ip("127.0.0.7"), t0), None);
        assert!(grants.is_empty());
    }

    /// PB-07: the table stays bounded.
    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut grants = RelayGrants::new(Duration::from_secs(60), 128, 1000);
        for i in 0..100_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            grants.grant(addr, "u", t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(grants.len() <= 1000);
        // The newest grants survive.
        assert_eq!(
            grants.lookup(
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 99_999)),
                t0 + Duration::from_secs(100)
            ),
            Some("u")
        );
    }
}
