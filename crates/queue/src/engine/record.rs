//! After an attempt (blocking): the results become notifications, the
//! entry's new state, or its removal, in the order that never loses mail:
//! a bounce is stored before its recipients are marked done, the state is
//! written before the entry is removed.

use std::collections::HashMap;
use std::sync::Mutex;

use yubin_smtp_proto::client::{RecipientResult, Response, Status};

use super::{EngineConfig, Prepared, Submit, dsn, lock, unix_now};
use crate::{EntryState, QueueStore};

/// What recording needs.
pub(super) struct Record<'a> {
    pub(super) queue: &'a dyn QueueStore,
    pub(super) config: &'a EngineConfig,
    pub(super) submit: &'a dyn Submit,
    pub(super) unsaved: &'a Mutex<HashMap<String, EntryState>>,
}

impl Record<'_> {
    /// Records an attempt's results; returns when the entry is due again,
    /// or `None` if it left the queue.
    pub(super) fn conclude(
        &self,
        id: &str,
        prepared: Prepared,
        results: Vec<(RecipientResult, Option<String>)>,
    ) -> Option<u64> {
        let Prepared {
            claim: _claim,
            envelope,
            mut state,
            headers,
            ..
        } = prepared;
        // What only a durable record may change.
        let settled = |s: &EntryState| (s.done.len(), s.warned, s.bounce_requested);
        let before = settled(&state);
        let now = unix_now();
        let expired = self.config.schedule.expired(envelope.created, now);
        let mut failed: Vec<dsn::Reported> = Vec::new();
        let mut deferred: Vec<dsn::Reported> = Vec::new();
        for (result, remote_mta) in results {
            let rcpt = &result.recipient;
            let relay = remote_mta.as_deref().unwrap_or("-");
            let reported = |response: Response| dsn::Reported {
                recipient: rcpt.clone(),
                response,
                remote_mta: remote_mta.clone(),
            };
            match result.status {
                Status::Delivered => {
                    tracing::info!(id, rcpt = %rcpt, relay, reply = %result.response, "delivered");
                    state.done.push(rcpt.clone());
                }
                Status::Failed => {
                    tracing::info!(id, rcpt = %rcpt, relay, reply = %result.response, "bounced");
                    failed.push(reported(result.response));
                }
                Status::Deferred if expired => {
                    tracing::info!(id, rcpt = %rcpt, reply = %result.response, "expired in the queue; bounced");
                    let text = format!(
                        "4.4.7 delivery time expired; last error: {}",
                        result.response
                    );
                    failed.push(reported(Response::local(result.response.code, text)));
                }
                Status::Deferred => {
                    tracing::info!(id, rcpt = %rcpt, relay, reply = %result.response, "deferred");
                    deferred.push(reported(result.response));
                }
            }
        }
        if !failed.is_empty() {
            self.bounce(id, &envelope, &headers, &failed, now, &mut state);
        }
        if !deferred.is_empty()
            && !envelope.from.is_empty()
            && self
                .config
                .schedule
                .warn_now(envelope.created, now, state.warned)
        {
            let report = self.report(
                id,
                &envelope,
                &headers,
                now,
                dsn::Action::Delayed,
                &deferred,
            );
            match self.submit.submit(&envelope.from, &report) {
                Ok(()) => state.warned = true,
                Err(error) => tracing::error!(id, %error, "could not send the delay warning"),
            }
        }
        if envelope.recipients.iter().all(|r| state.is_done(r)) {
            // The state first: if the removal fails, the next attempt finds
            // everyone done and only removes.
            self.save(id, &state, true);
            return match self.queue.remove(id) {
                Ok(()) => {
                    lock(self.unsaved).remove(id);
                    tracing::info!(id, "removed from the queue");
                    None
                }
                Err(error) => {
                    tracing::error!(id, %error, "cannot remove a finished entry");
                    Some(now + 60)
                }
            };
        }
        state.attempts = state.attempts.saturating_add(1);
        state.next_attempt = self.config.schedule.next_attempt(state.attempts, now);
        if let Some(first) = deferred.first() {
            state.last_error = first.response.to_string();
        }
        self.save(id, &state, settled(&state) != before);
        Some(state.next_attempt)
    }

    /// One report for the failed recipients, to the sender; to the
    /// postmaster if the sender cannot take it (a double bounce, as
    /// Postfix does); recipients are done only once a report is stored.
    fn bounce(
        &self,
        id: &str,
        envelope: &crate::Envelope,
        headers: &[u8],
        failed: &[dsn::Reported],
        now: u64,
        state: &mut EntryState,
    ) {
        let done = |state: &mut EntryState| {
            state
                .done
                .extend(failed.iter().map(|f| f.recipient.clone()))
        };
        if envelope.from.is_empty() {
            // RFC 5321 §4.5.5: never a notification about a notification.
            tracing::info!(id, "no bounce for a message from the null sender");
            done(state);
            return;
        }
        let message = self.report(id, envelope, headers, now, dsn::Action::Failed, failed);
        match self.submit.submit(&envelope.from, &message) {
            Ok(()) => done(state),
            Err(error) => {
                tracing::warn!(id, %error, sender = %envelope.from, "the sender cannot take the bounce; sending it to the postmaster");
                match self.submit.submit("postmaster", &message) {
                    Ok(()) => done(state),
                    // Past its lifetime, as Postfix does with an
                    // undeliverable double bounce: give up, loudly.
                    Err(error) if self.config.schedule.expired(envelope.created, now) => {
                        tracing::error!(id, %error, "the bounce cannot be delivered to the sender or the postmaster; dropped");
                        done(state);
                    }
                    // Keep them: the failure is found again next time, and
                    // the bounce tried again.
                    Err(error) => tracing::error!(id, %error, "could not send the bounce"),
                }
            }
        }
    }

    /// A delivery report to the sender of `envelope` about `recipients`;
    /// a delay report says until when retries go on.
    fn report(
        &self,
        id: &str,
        envelope: &crate::Envelope,
        headers: &[u8],
        now: u64,
        action: dsn::Action,
        recipients: &[dsn::Reported],
    ) -> Vec<u8> {
        let retry_until = (action == dsn::Action::Delayed).then(|| {
            envelope
                .created
                .saturating_add(self.config.schedule.max_age.as_secs())
        });
        let report = dsn::Report {
            hostname: &self.config.hostname,
            queue_id: id,
            sender: &envelope.from,
            arrival: envelope.created,
            now,
            action,
            recipients,
            retry_until,
        };
        dsn::build(&report, headers)
    }

    /// Writes the state (durably, or for a plain deferral without the
    /// directory fsync: see `EntryState::save_retry`); if the disk will not take
    /// it, keeps it in memory so a retry does not deliver again to
    /// recipients already done.
    fn save(&self, id: &str, state: &EntryState, durably: bool) {
        // A state only held in memory (its last durable write failed) must
        // reach the disk durably before it is let go.
        let durably = durably || lock(self.unsaved).contains_key(id);
        let saved = if durably {
            self.queue.save_state(id, state)
        } else {
            self.queue.save_retry(id, state)
        };
        match saved {
            Ok(()) => {
                lock(self.unsaved).remove(id);
            }
            Err(error) => {
                tracing::error!(id, %error, "cannot record the attempt; keeping it in memory");
                lock(self.unsaved).insert(id.to_owned(), state.clone());
            }
        }
    }
}
