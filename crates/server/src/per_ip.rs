//! A cap on simultaneous connections from one client address, so one
//! client cannot take all of `max_connections` (a slow-loris holds many
//! connections open doing almost nothing). Loopback is exempt: local
//! programs and the benchmark open many connections legitimately, as
//! Postfix exempts `$mynetworks` from its anvil limits. IPv6 clients are
//! counted by /64, as login penalties are (issue 12): one host usually has
//! a whole /64 and could otherwise open the cap once per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use yubin_auth::{CLIENT_IPV6_PREFIX, ClientKey};

/// Connection counts per client address.
#[derive(Debug)]
pub(crate) struct PerIpLimit {
    max: usize,
    counts: Mutex<HashMap<ClientKey, usize>>,
}

/// One counted connection; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PerIpSlot {
    limit: Arc<PerIpLimit>,
    key: Option<ClientKey>,
}

impl PerIpLimit {
    /// At most `max` connections per address; 0 means no limit.
    pub(crate) fn new(max: usize) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `ip`, or `None` if it has too many.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpSlot> {
        let ip = crate::peer::canonical_ip(ip);
        if self.max == 0 || ip.is_loopback() {
            return Some(PerIpSlot {
                limit: self.clone(),
                key: None,
            });
        }
        let key = ClientKey::of(ip, CLIENT_IPV6_PREFIX);
        let mut counts = crate::lock(&self.counts);
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PerIpSlot {
            limit: self.clone(),
            key: Some(key),
        })
    }
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut counts = crate::lock(&self.limit.counts);
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_per_address_with_loopback_exempt() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = limit.try_take(ip).unwrap();
        let _b = limit.try_take("::ffff:192.0.2.1".parse().unwrap()).unwrap();
        assert!(limit.try_take(ip).is_none());
        assert!(limit.try_take("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(limit.try_take(ip).is_some());
        let local: Vec<_> = (0..10)
            .map(|_| limit.try_take("127.0.0.1".parse().unwrap()))
            .collect();
        assert!(local.iter().all(Option::is_some));
        assert!(PerIpLimit::new(0).try_take(ip).is_some());
    }

    /// Issue 12: addresses of one IPv6 /64 share one cap.
    #[test]
    fn ipv6_clients_are_capped_by_their_64() {
        let limit = PerIpLimit::new(2);
        let _a = limit.try_take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = limit
            .try_take("2001:db8:1:2::beef".parse().unwrap())
            .unwrap();
        assert!(
            limit
                .try_take("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(limit.try_take("2001:db8:1:3::1".parse().unwrap()).is_some());
    }
}
