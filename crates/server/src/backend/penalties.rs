//! Failed logins per client address (IPv6 by /64), which lengthen the
//! delay before a failure is answered and space out the address's next
//! checks ([`crate::login_guard`]). Several nodes must share them, or an
//! address guessing on every node would be paced by none.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yubin_auth::LoginPenalties;

/// Where failed logins are counted.
#[async_trait]
pub trait PenaltyStore: Send + Sync {
    /// Records a failed login from `ip` and returns the failures in a row
    /// from the address, this one included. `attempt` is a digest of what
    /// was tried: the same attempt again does not count again.
    async fn failure(&self, ip: IpAddr, attempt: u64) -> u32;
    /// How long a check from `ip` must still wait: until the penalty for
    /// its failures so far (`base` doubled per failure, up to `cap`) has
    /// passed since the last one.
    async fn wait(&self, ip: IpAddr, base: Duration, cap: Duration) -> Duration;
}

/// Failed logins in this process's memory (yubin_auth's table, bounded).
#[derive(Debug)]
pub struct MemoryPenalties {
    table: Mutex<LoginPenalties>,
}

impl MemoryPenalties {
    /// A table remembering at most `max` addresses.
    pub fn new(max: usize) -> MemoryPenalties {
        MemoryPenalties {
            table: Mutex::new(LoginPenalties::new(max)),
        }
    }
}

#[async_trait]
impl PenaltyStore for MemoryPenalties {
    async fn failure(&self, ip: IpAddr, attempt: u64) -> u32 {
        crate::lock(&self.table).failure(ip, attempt, Instant::now())
    }

    async fn wait(&self, ip: IpAddr, base: Duration, cap: Duration) -> Duration {
        crate::lock(&self.table).wait(ip, Instant::now(), base, cap)
    }
}
