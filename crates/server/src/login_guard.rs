//! The login penalty shared by POP3 and SMTP: failures from one client
//! address, over any protocol and connection, lengthen the delay before the
//! next failure is answered and space out the address's next credential
//! checks (reliability.md AU-03; see [`yubin_auth::penalty`]).
//!
//! The spacing holds at the moment of the check (issue 12, finding 5): a
//! check takes its address's [`Turn`], so one address's checks run one at a
//! time, and waits, turn in hand, until one penalty has passed since the
//! address's last failure. The turn is given back once the outcome is
//! recorded, so the next check sees every failure before it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use yubin_auth::penalty::penalty;
use yubin_auth::{CLIENT_IPV6_PREFIX, ClientKey, LoginPenalties};

/// Addresses remembered at most (a flood of distinct addresses evicts the
/// oldest, never grows memory without bound).
const MAX_ADDRESSES: usize = 100_000;

/// Failed logins per client address, for both protocols.
pub struct LoginGuard {
    penalties: Mutex<LoginPenalties>,
    /// One lock per client address (IPv6 by /64, as the penalties): held
    /// from the wait before a credential check until its outcome is in.
    turns: Mutex<HashMap<ClientKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Keyed per process: digests of attempts mean nothing outside it.
    hasher: std::collections::hash_map::RandomState,
    cap: Duration,
}

impl LoginGuard {
    /// Delays double per failure up to `cap`.
    pub fn new(cap: Duration) -> LoginGuard {
        LoginGuard {
            penalties: Mutex::new(LoginPenalties::new(MAX_ADDRESSES)),
            turns: Mutex::new(HashMap::new()),
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

    /// Waits for `ip`'s turn to check credentials: until no other check
    /// from the address is running and one penalty (for its failures so far,
    /// from `base`) has passed since its last failure. Zero wait for an
    /// address without recent failures and no check running. Hold the turn
    /// until the check's outcome is recorded ([`LoginGuard::failed`]); a
    /// future dropped while waiting (the client hung up) gives the turn on.
    pub async fn turn(&self, ip: IpAddr, base: Duration) -> Turn {
        let lock = self.lock_for(ip);
        let held = lock.lock_owned().await;
        let wait = crate::lock(&self.penalties).wait(ip, Instant::now(), base, self.cap);
        crate::stream::pause(wait).await;
        Turn { _held: held }
    }

    fn lock_for(&self, ip: IpAddr) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = crate::lock(&self.turns);
        if turns.len() >= MAX_ADDRESSES {
            // Only locks someone holds or waits for are worth keeping; those
            // are bounded by the connections.
            turns.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        turns
            .entry(ClientKey::of(ip, CLIENT_IPV6_PREFIX))
            .or_default()
            .clone()
    }
}

/// An address's turn to check credentials (see [`LoginGuard::turn`]);
/// dropping it lets the address's next check go.
#[must_use = "the turn is given back when dropped"]
pub struct Turn {
    _held: tokio::sync::OwnedMutexGuard<()>,
}
