//! The mail transaction: MAIL, RCPT, DATA, BDAT (RFC 5321 §3.3, RFC 3030).

use super::{Action, Awaiting, Envelope, Phase, Recipient, Session};
use crate::address::{ForwardPath, Mailbox};
use crate::command::MailParams;
use crate::data::{DataEnd, DataReceiver};
use crate::hops::HopCounter;
use crate::reply::{Reply, replies};

/// A transaction in progress.
#[derive(Debug)]
pub(super) struct Transaction<R> {
    from: Option<Mailbox>,
    params: MailParams,
    recipients: Vec<Recipient<R>>,
    /// The recipient being checked by the driver.
    pending: Option<ForwardPath>,
    /// Octets received in BDAT chunks so far.
    bdat_total: u64,
    /// `Received:` fields in the content so far.
    hops: HopCounter,
}

impl<R> Transaction<R> {
    pub(super) fn sender(&self) -> Option<&Mailbox> {
        self.from.as_ref()
    }

    fn envelope(self) -> Envelope<R> {
        Envelope {
            from: self.from,
            params: self.params,
            recipients: self.recipients,
        }
    }
}

impl<R> Session<R> {
    /// Ends any transaction (RSET, EHLO, after a message), keeping the greeting.
    pub(super) fn reset_transaction(&mut self) {
        let greeted = !matches!(self.phase, Phase::Connected | Phase::Closed);
        if greeted {
            self.phase = Phase::Ready;
        }
        self.data.clear();
        self.bdat = Default::default();
        self.bdat_started = false;
        // Content already handed to the driver belongs to no message now;
        // left there, it would be glued to the front of the next one.
        if std::mem::take(&mut self.data_handed) {
            self.discard_owed = true;
        }
    }

    pub(super) fn mail(&mut self, from: Option<Mailbox>, params: MailParams) {
        match self.phase {
            Phase::Connected => return self.error(replies::NEED_EHLO),
            Phase::Ready => {}
            _ => return self.error(replies::NESTED_MAIL),
        }
        if self.offer.submission && self.authenticated.is_none() {
            self.error(replies::AUTH_REQUIRED);
            return;
        }
        // Refused before any content is sent, not after all of it.
        if self.storage_low {
            self.reply(replies::INSUFFICIENT_STORAGE);
            return;
        }
        // RFC 1870 §6.2: a declared size over the limit is refused now.
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size)
        {
            self.reply(replies::TOO_BIG);
            return;
        }
        if from.as_ref().is_some_and(Mailbox::is_utf8) && !params.smtputf8 {
            self.error(replies::NEEDS_SMTPUTF8);
            return;
        }
        self.phase = Phase::Transaction(Transaction {
            from,
            params,
            recipients: Vec::new(),
            pending: None,
            bdat_total: 0,
            hops: HopCounter::default(),
        });
        self.reply(replies::SENDER_OK);
    }

    pub(super) fn rcpt(&mut self, path: ForwardPath) {
        let transaction = match &mut self.phase {
            Phase::Connected => return self.error(replies::NEED_EHLO),
            Phase::Ready => return self.error(replies::NEED_MAIL),
            Phase::Transaction(t) => t,
            _ => return self.error(replies::NEED_MAIL),
        };
        if transaction.recipients.len() >= self.config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452, and the client sends the rest later.
            self.reply(replies::TOO_MANY_RECIPIENTS);
            return;
        }
        if let ForwardPath::Mailbox(mailbox) = &path
            && mailbox.is_utf8()
            && !transaction.params.smtputf8
        {
            self.error(replies::NEEDS_SMTPUTF8);
            return;
        }
        transaction.pending = Some(path.clone());
        let authenticated = self.authenticated.clone();
        self.act(
            Action::CheckRecipient {
                path,
                authenticated,
            },
            Awaiting::Recipient,
        );
    }

    /// The outcome of `CheckRecipient`: accepted; `route` is kept with it.
    pub fn recipient_accepted(&mut self, route: R) {
        if !self.take_awaiting(Awaiting::Recipient) {
            return;
        }
        if let Phase::Transaction(t) = &mut self.phase
            && let Some(path) = t.pending.take()
        {
            t.recipients.push(Recipient { path, route });
        }
        self.reply(replies::RECIPIENT_OK);
    }

    /// The outcome of `CheckRecipient`: refused with `reply`.
    pub fn recipient_refused(&mut self, reply: Reply) {
        // Refused recipients count as errors, so address probing ends (AU-05).
        self.recipient_not_taken(reply, true);
    }

    /// The outcome of `CheckRecipient`: not now, with `reply` (a 4xx, as
    /// greylisting gives). Unlike a refusal it does not count as an
    /// error: the recipient exists, and a mailing list's post to many
    /// users must not be cut off by `max_errors`.
    pub fn recipient_deferred(&mut self, reply: Reply) {
        self.recipient_not_taken(reply, false);
    }

    /// Answers the pending RCPT with `reply`, counting it as an error or not.
    fn recipient_not_taken(&mut self, reply: Reply, error: bool) {
        if !self.take_awaiting(Awaiting::Recipient) {
            return;
        }
        if let Phase::Transaction(t) = &mut self.phase {
            t.pending = None;
        }
        if error {
            self.error(reply);
        } else {
            self.reply(reply);
        }
    }

    pub(super) fn data_command(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Ready);
        let transaction = match phase {
            Phase::Connected => {
                self.phase = Phase::Connected;
                return self.refuse_data(replies::NEED_EHLO);
            }
            Phase::Transaction(t) => t,
            other => {
                self.phase = other;
                return self.refuse_data(replies::NEED_MAIL);
            }
        };
        if self.bdat_started {
            self.phase = Phase::Transaction(transaction);
            return self.refuse_data(replies::DATA_AFTER_BDAT);
        }
        if transaction.recipients.is_empty() {
            self.phase = Phase::Transaction(transaction);
            return self.refuse_data(replies::NO_VALID_RECIPIENTS);
        }
        self.reply(replies::START_DATA);
        self.data.clear();
        self.phase = Phase::Data(
            transaction,
            DataReceiver::new(self.config.max_message_size, self.config.line_ends),
        );
    }

    pub(super) fn bdat_command(&mut self, size: u64, last: bool) {
        let phase = std::mem::replace(&mut self.phase, Phase::Ready);
        let (transaction, refusal) = match phase {
            Phase::Connected => {
                self.phase = Phase::Connected;
                (None, Some(replies::NEED_EHLO))
            }
            Phase::Transaction(t) if t.recipients.is_empty() => {
                (Some(t), Some(replies::NO_VALID_RECIPIENTS))
            }
            Phase::Transaction(t)
                if t.bdat_total.saturating_add(size) > self.config.max_message_size =>
            {
                (Some(t), Some(replies::TOO_BIG))
            }
            Phase::Transaction(t) => (Some(t), None),
            other => {
                self.phase = other;
                (None, Some(replies::NEED_MAIL))
            }
        };
        if refusal.is_none() && !self.bdat_started {
            self.data.clear();
            self.bdat_started = true;
        }
        // RFC 3030 §2: the chunk's octets follow whatever the reply will be.
        self.phase = Phase::Bdat {
            transaction,
            remaining: size,
            last,
            refusal,
        };
        if size == 0 {
            self.finish_bdat_chunk();
        }
    }

    /// Feeds buffered input to DATA or BDAT; false if there was none.
    pub(super) fn content(&mut self) -> bool {
        let mut input = self.lines.take_rest();
        if input.is_empty() {
            return false;
        }
        // A piece at a time, so content is handed over in bounded pieces.
        let later = if input.len() > super::DATA_CHUNK {
            input.split_off(super::DATA_CHUNK)
        } else {
            Vec::new()
        };
        self.lines.push(&later);
        let mut rest_after = self.lines.take_rest();
        match &mut self.phase {
            Phase::Data(transaction, receiver) => {
                let before = self.data.len();
                let used = receiver.feed(&input, &mut self.data);
                transaction.hops.feed(&self.data[before..]);
                let done = receiver.is_done();
                self.lines.push(&input[used..]);
                self.lines.push(&rest_after);
                rest_after.clear();
                if done {
                    self.finish_data();
                }
            }
            Phase::Bdat {
                remaining,
                refusal,
                transaction,
                ..
            } => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if refusal.is_none() {
                    let before = self.data.len();
                    self.bdat.feed(&input[..take], &mut self.data);
                    if let Some(t) = transaction {
                        t.bdat_total += take as u64;
                        t.hops.feed(&self.data[before..]);
                    }
                }
                *remaining -= take as u64;
                let done = *remaining == 0;
                self.lines.push(&input[take..]);
                self.lines.push(&rest_after);
                rest_after.clear();
                if done {
                    self.finish_bdat_chunk();
                }
            }
            _ => {
                self.lines.push(&input);
                self.lines.push(&rest_after);
            }
        }
        true
    }

    fn finish_data(&mut self) {
        let Phase::Data(transaction, receiver) = std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return;
        };
        match receiver.end() {
            DataEnd::Complete if transaction.hops.count() > self.config.max_hops => {
                self.reply(replies::TOO_MANY_HOPS);
                self.discard();
            }
            DataEnd::Complete => {
                self.act(
                    Action::EndOfMessage(transaction.envelope()),
                    Awaiting::Delivery,
                );
            }
            DataEnd::TooBig => {
                self.reply(replies::TOO_BIG);
                self.discard();
            }
            DataEnd::BareLineEnd => {
                self.error(replies::BARE_LINE_END);
                self.discard();
            }
        }
    }

    fn finish_bdat_chunk(&mut self) {
        let Phase::Bdat {
            transaction,
            last,
            refusal,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return;
        };
        match (refusal, transaction) {
            (Some(reply), transaction) => {
                let had_content = self.bdat_started;
                if transaction.is_none() {
                    // Not greeted yet, or no transaction: keep the phase as it was.
                    self.phase = if self.client_name.is_some() {
                        Phase::Ready
                    } else {
                        Phase::Connected
                    };
                }
                self.error(reply);
                if had_content {
                    self.discard();
                }
                self.reset_transaction();
            }
            (None, Some(transaction))
                if last && transaction.hops.count() > self.config.max_hops =>
            {
                self.reply(replies::TOO_MANY_HOPS);
                self.discard();
            }
            (None, Some(transaction)) if last => {
                let mut tail = Vec::new();
                self.bdat.finish(&mut tail);
                self.data.extend_from_slice(&tail);
                self.act(
                    Action::EndOfMessage(transaction.envelope()),
                    Awaiting::Delivery,
                );
            }
            (None, Some(transaction)) => {
                let total = transaction.bdat_total;
                self.phase = Phase::Transaction(transaction);
                self.reply(Reply::with_text(
                    250,
                    "2.0.0",
                    format!("{total} octets received"),
                ));
            }
            (None, None) => self.reset_transaction(),
        }
    }

    /// Tells the driver to throw away what it stored, and ends the transaction.
    fn discard(&mut self) {
        self.data.clear();
        self.next_action = Some(Action::DiscardMessage);
        self.reset_transaction();
    }

    /// The outcome of `EndOfMessage`: stored durably for every recipient.
    /// `id` names it in the reply (and in logs).
    pub fn message_accepted(&mut self, id: &str) {
        if self.take_awaiting(Awaiting::Delivery) {
            self.reply(Reply::with_text(
                250,
                "2.0.0",
                format!("Ok: queued as {id}"),
            ));
            self.reset_transaction();
        }
    }

    /// The outcome of `EndOfMessage`: not stored (nothing was kept).
    pub fn message_refused(&mut self, reply: Reply) {
        if self.take_awaiting(Awaiting::Delivery) {
            self.reply(reply);
            self.reset_transaction();
        }
    }
}
