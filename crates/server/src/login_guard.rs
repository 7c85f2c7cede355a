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
use std::time::Duration;

use yubin_auth::penalty::penalty;
use yubin_auth::{CLIENT_IPV6_PREFIX, ClientKey};

use crate::backend::PenaltyStore;

/// Failed logins per client address, for both protocols: the penalties
/// (kept by the backend, so that several nodes can share them) and the
/// turns (this process's: a check runs on one node).
pub struct LoginGuard {
    penalties: Arc<dyn PenaltyStore>,
    /// One lock per client address (IPv6 by /64, as the penalties): held
    /// from the wait before a credential check until its outcome is in.
    turns: Mutex<HashMap<ClientKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Keyed per process: digests of attempts mean nothing outside it.
    hasher: std::collections::hash_map::RandomState,
    cap: Duration,
}

impl LoginGuard {
    /// Addresses remembered at most, by the turns here and by an
    /// in-memory penalty table (a flood of distinct addresses evicts the
    /// oldest, never grows memory without bound).
    pub const MAX_ADDRESSES: usize = 100_000;

    /// Penalties from `penalties`; delays double per failure up to `cap`.
    pub fn new(penalties: Arc<dyn PenaltyStore>, cap: Duration) -> LoginGuard {
        LoginGuard {
            penalties,
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
    pub async fn failed(&self, ip: IpAddr, attempt: u64, base: Duration) -> Duration {
        let failures = self.penalties.failure(ip, attempt).await;
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
        let wait = self.penalties.wait(ip, base, self.cap).await;
        crate::stream::pause(wait).await;
        Turn { _held: held }
    }

    fn lock_for(&self, ip: IpAddr) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = crate::lock(&self.turns);
        if turns.len() >= Self::MAX_ADDRESSES {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryPenalties;
    use tokio::time::Instant;

    fn guard() -> Arc<LoginGuard> {
        Arc::new(LoginGuard::new(
            Arc::new(MemoryPenalties::new(100)),
            Duration::from_secs(1),
        ))
    }

    const BASE: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn one_address_checks_one_at_a_time() {
        let guard = guard();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = guard.turn(ip, BASE).await;
        let waiting = tokio::spawn({
            let guard = guard.clone();
            async move {
                let started = Instant::now();
                let _turn = guard.turn(ip, BASE).await;
                started.elapsed()
            }
        });
        // Another address is not held up meanwhile.
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            guard.turn("192.0.2.2".parse().unwrap(), BASE),
        )
        .await;
        assert!(other.is_ok(), "another address waited");
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(first);
        let waited = waiting.await.unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
    }

    #[tokio::test]
    async fn after_failures_the_next_check_waits_its_penalty() {
        let guard = guard();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for (attempt, expected) in [(1, BASE), (2, BASE * 2), (3, BASE * 4)] {
            let turn = guard.turn(ip, BASE).await;
            assert_eq!(guard.failed(ip, attempt, BASE).await, expected);
            drop(turn);
        }
        // Three failures: the next check, from anywhere in the same /64,
        // waits four times the base since the last one.
        let started = Instant::now();
        let _turn = guard.turn("2001:db8::2".parse().unwrap(), BASE).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(350) && waited < Duration::from_millis(700),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_check_given_up_while_waiting_lets_the_next_one_go() {
        let guard = guard();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let held = guard.turn(ip, BASE).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(30), guard.turn(ip, BASE)).await;
        assert!(gave_up.is_err());
        drop(held);
        let next = tokio::time::timeout(Duration::from_millis(50), guard.turn(ip, BASE)).await;
        assert!(next.is_ok(), "the abandoned wait kept the turn");
    }
}
