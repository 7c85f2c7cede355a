//! The listings of large maildrops a node keeps between sessions. A login
//! sends the key of the kept listing with its lock; the database sends the
//! messages again only when the maildrop changed since (its count or
//! version moved), so a warm login on 100,000 messages reads two numbers
//! instead of 100,000 rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use yubin_pg::{Listing, ListingKey};

/// Maildrops with fewer messages are listed afresh each time: their
/// listings are cheap to send, and keeping them would only churn.
const KEPT_FROM: usize = 256;

/// Messages kept over all listings, at most (about 70 octets each).
const KEPT_AT_MOST: usize = 1_000_000;

/// Listings by user (name in lower case).
#[derive(Default)]
pub(super) struct Listings {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_user: HashMap<String, (ListingKey, Arc<Listing>)>,
    messages: usize,
}

impl Listings {
    /// The key of the listing kept for `user`, if any.
    pub(super) fn key(&self, user: &str) -> Option<ListingKey> {
        crate::lock(&self.kept)
            .by_user
            .get(&user.to_ascii_lowercase())
            .map(|(key, _)| *key)
    }

    /// The listing for `user` the database described with `key`: `fresh`
    /// if it sent one (kept if large), else the one kept under that key.
    /// `None` if it sent none and none is kept under `key` (dropped
    /// meanwhile): the caller lists again.
    pub(super) fn settle(
        &self,
        user: &str,
        key: ListingKey,
        fresh: Option<Listing>,
    ) -> Option<Arc<Listing>> {
        let name = user.to_ascii_lowercase();
        let mut kept = crate::lock(&self.kept);
        let Some(fresh) = fresh else {
            return kept
                .by_user
                .get(&name)
                .filter(|(kept_key, _)| *kept_key == key)
                .map(|(_, listing)| listing.clone());
        };
        let fresh = Arc::new(fresh);
        if let Some((_, old)) = kept.by_user.remove(&name) {
            kept.messages -= old.len();
        }
        if fresh.len() >= KEPT_FROM && fresh.len() <= KEPT_AT_MOST {
            // Room first: any others go (they are listed afresh next time).
            while kept.messages + fresh.len() > KEPT_AT_MOST {
                let Some(other) = kept.by_user.keys().next().cloned() else {
                    break;
                };
                if let Some((_, old)) = kept.by_user.remove(&other) {
                    kept.messages -= old.len();
                }
            }
            kept.messages += fresh.len();
            kept.by_user.insert(name, (key, fresh.clone()));
        }
        Some(fresh)
    }
}
