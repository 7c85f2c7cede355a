//! LOGIN-DELAY (RFC 2449 §6.5): when each user last logged in over POP3,
//! so that a login coming too soon after it is refused. Several nodes must
//! share the times, or a client behind a load balancer would be refused
//! on one node and let in on the next.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Where the users' last logins are kept.
#[async_trait]
pub trait LoginTimes: Send + Sync {
    /// Records a login of `user` now and returns `true`, unless the user's
    /// last recorded login was less than `delay` ago: then `false`, and
    /// the refused attempt is not recorded (it does not push the wait on).
    async fn admit(&self, user: &str, delay: Duration) -> bool;
}

/// The times in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryLoginTimes {
    last: Mutex<HashMap<String, Instant>>,
}

/// How many users the table holds before the ones whose delay has passed
/// are dropped.
const SWEEP_ABOVE: usize = 100_000;

#[async_trait]
impl LoginTimes for MemoryLoginTimes {
    async fn admit(&self, user: &str, delay: Duration) -> bool {
        let now = Instant::now();
        let mut last = crate::lock(&self.last);
        if last
            .get(user)
            .is_some_and(|&previous| now.duration_since(previous) < delay)
        {
            return false;
        }
        if last.len() > SWEEP_ABOVE {
            last.retain(|_, t| now.duration_since(*t) < delay);
        }
        last.insert(user.to_owned(), now);
        true
    }
}
