//! The maildrop as handed to a session: sizes and unique-ids, compactly.

/// The messages of a maildrop, in the order they are numbered (message 1
/// first): their wire sizes and unique-ids. All unique-ids share one buffer,
/// so a 100,000-message maildrop costs two allocations, not 100,000.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageList {
    sizes: Vec<u64>,
    uids: String,
    uid_ends: Vec<usize>,
}

impl MessageList {
    /// An empty list.
    pub fn new() -> MessageList {
        MessageList::default()
    }

    /// An empty list with room for `messages` messages whose unique-ids
    /// take `uid_bytes` octets together.
    pub fn with_capacity(messages: usize, uid_bytes: usize) -> MessageList {
        MessageList {
            sizes: Vec::with_capacity(messages),
            uids: String::with_capacity(uid_bytes),
            uid_ends: Vec::with_capacity(messages),
        }
    }

    /// Adds the next message: its size in octets on the wire (CRLF line
    /// ends, before byte-stuffing; see [`crate::WireSize`]) and its
    /// unique-id (1–70 octets in 0x21–0x7E, RFC 1939 §7).
    pub fn push(&mut self, size: u64, uid: &str) {
        self.sizes.push(size);
        self.uids.push_str(uid);
        self.uid_ends.push(self.uids.len());
    }

    /// How many messages there are.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The size of message `index` (0-based).
    pub fn size(&self, index: usize) -> u64 {
        self.sizes.get(index).copied().unwrap_or(0)
    }

    /// The unique-id of message `index` (0-based).
    pub fn uid(&self, index: usize) -> &str {
        let end = self.uid_ends.get(index).copied().unwrap_or(0);
        let start = match index {
            0 => 0,
            _ => self.uid_ends.get(index - 1).copied().unwrap_or(end),
        };
        self.uids.get(start..end).unwrap_or("")
    }

    /// All sizes, in order.
    pub(super) fn sizes(&self) -> &[u64] {
        &self.sizes
    }
}

impl<S: AsRef<str>> FromIterator<(u64, S)> for MessageList {
    fn from_iter<I: IntoIterator<Item = (u64, S)>>(iter: I) -> Self {
        let mut list = MessageList::new();
        for (size, uid) in iter {
            list.push(size, uid.as_ref());
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uids_by_index() {
        let list: MessageList = [(10, "a"), (20, "bb"), (30, "ccc")].into_iter().collect();
        assert_eq!(list.len(), 3);
        assert_eq!((list.size(0), list.uid(0)), (10, "a"));
        assert_eq!((list.size(1), list.uid(1)), (20, "bb"));
        assert_eq!((list.size(2), list.uid(2)), (30, "ccc"));
        assert_eq!((list.size(3), list.uid(3)), (0, ""));
    }
}
