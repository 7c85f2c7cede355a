//! The TRANSACTION and UPDATE states (RFC 1939 §5, §6, §7).

use super::messages::MessageList;
use super::replies::Reply;
use super::{Action, Awaiting, MessageError, Session, State};
use crate::command::Command;
use crate::msgnum::MsgNum;
use crate::reply;

/// Marks on a message during the session.
const DELETED: u8 = 1;
const RETRIEVED: u8 = 2;

/// A multi-line LIST or UIDL answer being written in pieces.
#[derive(Clone, Copy, Debug)]
struct Listing {
    uids: bool,
    next: usize,
}

/// The maildrop as this session sees it: frozen at login (messages that
/// arrive later are not part of it), with deletion marks.
#[derive(Debug)]
pub(super) struct Maildrop {
    list: MessageList,
    marks: Vec<u8>,
    /// Count and size of the messages not marked deleted, kept current so
    /// STAT is O(1).
    live_count: u32,
    live_size: u64,
    listing: Option<Listing>,
}

/// Why a message number does not name a message.
enum Lookup {
    NoSuchMessage,
    Deleted,
}

impl Maildrop {
    pub(super) fn new(list: MessageList) -> Self {
        let mut maildrop = Maildrop {
            marks: vec![0; list.len()],
            list,
            live_count: 0,
            live_size: 0,
            listing: None,
        };
        maildrop.recount();
        maildrop
    }

    /// Recomputes the totals of the messages not marked deleted.
    fn recount(&mut self) {
        // A maildrop beyond u32::MAX messages cannot be numbered; the store never
        // hands over that many, and we stop counting there rather than wrap.
        let mut count = 0u32;
        let mut size = 0u64;
        for (&s, &mark) in self.list.sizes().iter().zip(&self.marks) {
            if mark & DELETED == 0 {
                count = count.saturating_add(1);
                // Sizes come from file names (",W="); a corrupt one must not overflow.
                size = size.saturating_add(s);
            }
        }
        self.live_count = count;
        self.live_size = size;
    }

    pub(super) fn totals(&self) -> (u32, u64) {
        (self.live_count, self.live_size)
    }

    /// The one place a message number becomes a message index: refuses
    /// numbers past the end and messages marked deleted, so every command agrees.
    fn lookup(&self, n: MsgNum) -> Result<usize, Lookup> {
        let index = n.index();
        match self.marks.get(index) {
            None => Err(Lookup::NoSuchMessage),
            Some(mark) if mark & DELETED != 0 => Err(Lookup::Deleted),
            Some(_) => Ok(index),
        }
    }

    fn lookup_error(&self, out: &mut Vec<u8>, n: MsgNum, error: Lookup) {
        match error {
            Lookup::NoSuchMessage => Reply::NoSuchMessage {
                n: n.index() + 1,
                count: self.list.len(),
            },
            Lookup::Deleted => Reply::MessageDeleted { n: n.index() + 1 },
        }
        .write(out);
    }

    /// Writes more of a LIST or UIDL answer; returns true if output reached
    /// `limit` before the listing was done.
    pub(super) fn continue_listing(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        let Some(mut listing) = self.listing.take() else {
            return false;
        };
        while listing.next < self.list.len() {
            if out.len() >= limit {
                self.listing = Some(listing);
                return true;
            }
            let index = listing.next;
            listing.next += 1;
            if self.marks[index] & DELETED != 0 {
                continue;
            }
            let n = index + 1;
            if listing.uids {
                reply::line(out, format_args!("{n} {}", self.list.uid(index)));
            } else {
                reply::line(out, format_args!("{n} {}", self.list.size(index)));
            }
        }
        reply::end(out);
        false
    }
}

impl Session {
    pub(super) fn transaction_command(&mut self, command: Command<'_>) {
        let State::Transaction(maildrop) = &mut self.state else {
            return;
        };
        let out = &mut self.output;
        match command {
            Command::Noop => Reply::Ok.write(out),
            Command::Stat => {
                let (count, size) = maildrop.totals();
                Reply::Stat { count, size }.write(out);
            }
            Command::List(None) => {
                let (count, size) = maildrop.totals();
                Reply::ListFollows { count, size }.write(out);
                maildrop.listing = Some(Listing {
                    uids: false,
                    next: 0,
                });
            }
            Command::Uidl(None) => {
                Reply::UidlFollows.write(out);
                maildrop.listing = Some(Listing {
                    uids: true,
                    next: 0,
                });
            }
            Command::List(Some(n)) => match maildrop.lookup(n) {
                Ok(i) => Reply::ListOne {
                    n: n.index() + 1,
                    size: maildrop.list.size(i),
                }
                .write(out),
                Err(e) => maildrop.lookup_error(out, n, e),
            },
            Command::Uidl(Some(n)) => match maildrop.lookup(n) {
                Ok(i) => Reply::UidlOne {
                    n: n.index() + 1,
                    uid: maildrop.list.uid(i),
                }
                .write(out),
                Err(e) => maildrop.lookup_error(out, n, e),
            },
            Command::Retr(n) | Command::Top(n, _) => {
                if let Err(e) = maildrop.lookup(n) {
                    maildrop.lookup_error(out, n, e);
                    return;
                }
                let top = match command {
                    Command::Top(_, lines) => Some(lines),
                    _ => None,
                };
                let index = n.index();
                let utf8 = self.utf8;
                self.act(
                    Action::SendMessage { index, top, utf8 },
                    Awaiting::Message {
                        index,
                        top: top.is_some(),
                    },
                );
            }
            Command::Dele(n) => match maildrop.lookup(n) {
                Ok(i) => {
                    maildrop.marks[i] |= DELETED;
                    maildrop.live_count = maildrop.live_count.saturating_sub(1);
                    maildrop.live_size = maildrop.live_size.saturating_sub(maildrop.list.size(i));
                    Reply::MarkedDeleted { n: n.index() + 1 }.write(out);
                }
                Err(e) => maildrop.lookup_error(out, n, e),
            },
            Command::Rset => {
                for mark in &mut maildrop.marks {
                    *mark &= !DELETED;
                }
                maildrop.recount();
                let (count, size) = maildrop.totals();
                Reply::Reset { count, size }.write(out);
            }
            Command::Quit => {
                // RFC 1939 §6: QUIT in TRANSACTION enters UPDATE.
                let mut delete = Vec::new();
                let mut retrieved = Vec::new();
                for (index, &mark) in maildrop.marks.iter().enumerate() {
                    if mark & DELETED != 0 {
                        delete.push(index);
                        self.stats.deleted += 1;
                        self.stats.deleted_bytes = self
                            .stats
                            .deleted_bytes
                            .saturating_add(maildrop.list.size(index));
                    } else if mark & RETRIEVED != 0 {
                        retrieved.push(index);
                    }
                }
                self.state = State::Update;
                self.quit = true;
                self.act(Action::Commit { delete, retrieved }, Awaiting::Update);
            }
            _ => self.wrong_state(),
        }
    }

    /// The message for `SendMessage` is open: the status line goes out next,
    /// then the driver streams the body.
    pub fn message_opened(&mut self) {
        let Some(Awaiting::Message { index, top }) =
            self.take_awaiting(|a| matches!(a, Awaiting::Message { .. }))
        else {
            return;
        };
        let State::Transaction(maildrop) = &self.state else {
            return;
        };
        let size = maildrop.list.size(index);
        if top {
            Reply::TopFollows.write(&mut self.output);
        } else {
            Reply::MessageFollows { size }.write(&mut self.output);
        }
        self.awaiting = Some(Awaiting::MessageBody { index, top });
    }

    /// The body of the message, with its terminating line, has been written.
    pub fn message_sent(&mut self) {
        let Some(Awaiting::MessageBody { index, top }) =
            self.take_awaiting(|a| matches!(a, Awaiting::MessageBody { .. }))
        else {
            return;
        };
        let State::Transaction(maildrop) = &mut self.state else {
            return;
        };
        if top {
            self.stats.top += 1;
        } else if let Some(mark) = maildrop.marks.get_mut(index) {
            *mark |= RETRIEVED;
            self.stats.retrieved += 1;
            self.stats.retrieved_bytes = self
                .stats
                .retrieved_bytes
                .saturating_add(maildrop.list.size(index));
        }
    }

    /// The message for `SendMessage` could not be sent; nothing was written.
    pub fn message_failed(&mut self, error: MessageError) {
        let Some(Awaiting::Message { index, .. }) =
            self.take_awaiting(|a| matches!(a, Awaiting::Message { .. }))
        else {
            return;
        };
        let n = index + 1;
        match error {
            MessageError::Gone => Reply::MessageGone { n },
            MessageError::Io => Reply::MessageUnreadable { n },
            MessageError::NeedsUtf8 => Reply::MessageNeedsUtf8 { n },
        }
        .write(&mut self.output);
    }

    /// The outcome of `Commit`: `not_removed` marked messages could not be removed.
    pub fn update_finished(&mut self, not_removed: usize) {
        if self.take_awaiting(|a| a == Awaiting::Update).is_none() {
            return;
        }
        if not_removed == 0 {
            Reply::LoggingOut.write(&mut self.output);
        } else {
            self.stats.not_removed = u32::try_from(not_removed).unwrap_or(u32::MAX);
            // RFC 1939 §6 and RFC 3206: the rest was still done.
            Reply::NotRemoved { count: not_removed }.write(&mut self.output);
        }
        self.state = State::Closed;
    }
}
