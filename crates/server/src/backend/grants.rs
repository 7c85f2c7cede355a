//! POP-before-SMTP grants: a POP3 login lets its address relay for a
//! while. On one node they live in memory; several nodes must share them,
//! so that a login on one lets the address relay through another.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yubin_auth::RelayGrants;

use crate::backend::mail::GrantWithLock;

/// Where grants are kept.
#[async_trait]
pub trait RelayGrantStore: Send + Sync {
    /// Whether grants are given at all (a zero window turns them off).
    fn enabled(&self) -> bool;
    /// `user` logged in from `ip`: the address may relay for the window,
    /// from now (an earlier grant for the address is renewed).
    async fn grant(&self, ip: IpAddr, user: &str);
    /// Who logged in from `ip` within the window, if anyone. The expiry is
    /// checked here, at lookup.
    async fn lookup(&self, ip: IpAddr) -> Option<String>;
    /// A login's grant for `ip` as the mail store may write it with the
    /// maildrop's lock, when both keep their state in the same place;
    /// `None` (the default): [`RelayGrantStore::grant`] writes it.
    fn with_lock(&self, ip: IpAddr) -> Option<GrantWithLock> {
        let _ = ip;
        None
    }
}

/// Grants in this process's memory (yubin_auth's table, bounded).
#[derive(Debug)]
pub struct MemoryGrants {
    table: Mutex<RelayGrants>,
}

impl MemoryGrants {
    /// Grants that last `window` (zero: none), IPv6 addresses keyed by
    /// their first `ipv6_prefix` bits, at most `max` kept.
    pub fn new(window: Duration, ipv6_prefix: u8, max: usize) -> MemoryGrants {
        MemoryGrants {
            table: Mutex::new(RelayGrants::new(window, ipv6_prefix, max)),
        }
    }
}

#[async_trait]
impl RelayGrantStore for MemoryGrants {
    fn enabled(&self) -> bool {
        crate::lock(&self.table).enabled()
    }

    async fn grant(&self, ip: IpAddr, user: &str) {
        crate::lock(&self.table).grant(ip, user, Instant::now());
    }

    async fn lookup(&self, ip: IpAddr) -> Option<String> {
        crate::lock(&self.table)
            .lookup(ip, Instant::now())
            .map(str::to_owned)
    }
}
