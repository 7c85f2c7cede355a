//! The login penalty shared by POP3 and SMTP: failures from one client
//! address, over any protocol and connection, lengthen the delay before the
//! next failure is answered and space out the address's next credential
//! checks (reliability.md AU-03; see [`yubin_auth::penalty`]).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use yubin_auth::LoginPenalties;
use yubin_auth::penalty::penalty;

/// Addresses remembered at most (a flood of distinct addresses evicts the
/// oldest, never grows memory without bound).
const MAX_ADDRESSES: usize = 100_000;

/// Failed logins per client address, for both protocols.
pub struct LoginGuard {
    penalties: Mutex<LoginPenalties>,
    /// Keyed per process: digests of attempts mean nothing outside it.
    hasher: std::collections::hash_map::RandomState,
    cap: Duration,
}

impl LoginGuard {
    /// Delays double per failure up to `cap`.
    pub fn new(cap: Duration) -> LoginGuard {
        LoginGuard {
            penalties: Mutex::new(LoginPenalties::new(MAX_ADDRESSES)),
            hasher: std::collections::hash_map::RandomState::new(),
            cap,
        }
    }

    /// A digest of what a client tried (name and credentials), to tell a
    /// retry of the same stale password from a new guess. Never stored
    /// beyond the table, never logged.
    pub fn digest(&self, parts: &[&[u8]]) -> u64 {
        self.hasher.hash_one(parts)
    }

    /// Records a failure and returns how long to wait before answering it:
    /// `base` (the protocol's `auth_failure_delay`) doubled per recent
    /// failure from the address, up to the cap.
    pub fn failed(&self, ip: IpAddr, attempt: u64, base: Duration) -> Duration {
        let failures = crate::lock(&self.penalties).failure(ip, attempt, Instant::now());
        penalty(base, self.cap, failures)
    }

    /// How long a credential check from `ip` must wait for its slot (zero
    /// unless the address failed recently); the slot is taken.
    pub fn wait_before_check(&self, ip: IpAddr, base: Duration) -> Duration {
        crate::lock(&self.penalties).reserve(ip, Instant::now(), base, self.cap)
    }
}
