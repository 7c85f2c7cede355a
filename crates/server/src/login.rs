//! Checking credentials, once for both protocol drivers: the address's turn
//! (bounded by the session's idle timeout), the check itself off the async
//! threads, the SASL exchange in progress, and the login penalty with its
//! fixed answer time. The drivers only translate: from their session's
//! action to a [`Check`], and from the [`Outcome`] back to their session.
//!
//! The rules (issue 12): checks from one address run one at a time, each
//! one penalty after the address's last failure (findings 5 and 1); a
//! failure is answered one fixed delay after its check began, whatever
//! the stored hash took (finding 4); a client that hangs up while waiting
//! for its turn is dropped unchecked, one that hangs up during its check
//! is still counted.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use yubin_auth::Authenticated;
use yubin_auth::sasl::{Exchange, Step};

use crate::login_guard::LoginGuard;
use crate::stream::Stream;
use crate::userstore::Snapshot;

/// What to check.
pub(crate) enum Check {
    /// USER/PASS (POP3).
    Password { user: String, password: Vec<u8> },
    /// APOP (POP3): the digest of the greeting's timestamp and the secret.
    Apop {
        user: String,
        timestamp: String,
        digest: String,
    },
    /// The first step of a SASL exchange.
    SaslStart {
        mechanism: String,
        initial_response: Option<Vec<u8>>,
    },
    /// A later step of the exchange in progress.
    SaslStep { response: Vec<u8> },
}

/// What came of a check.
pub(crate) enum Outcome {
    /// The SASL exchange goes on: send this challenge.
    Challenge(Vec<u8>),
    /// The credentials are right for this user.
    Accepted(Authenticated),
    /// Wrong, unknown or malformed, all alike: counted against the address;
    /// answer after this delay.
    Rejected(Duration),
    /// Not checked: the address's turn did not come in time. Nothing was
    /// counted; the client may try again later.
    TurnTimedOut,
    /// The check itself could not run (its task failed). Nothing counted
    /// yet: each protocol answers as it always has (POP3 counts it as a
    /// failure with [`Login::count_failure`], SMTP answers `454`).
    CheckFailed(String),
}

/// One connection's logins.
pub(crate) struct Login {
    guard: Arc<LoginGuard>,
    /// The protocol's `auth_failure_delay`: the first failure's delay.
    base_delay: Duration,
    /// The longest wait for the address's turn.
    turn_limit: Duration,
    /// For CRAM-MD5's challenge.
    hostname: String,
    exchange: Option<Exchange>,
    /// A digest of what is being tried, so that a retry of the same stale
    /// password does not climb the penalty.
    attempt: u64,
}

impl Login {
    /// Logins over a protocol whose first failure waits `base_delay` and
    /// whose sessions time out after `turn_limit`.
    pub(crate) fn new(
        guard: Arc<LoginGuard>,
        base_delay: Duration,
        turn_limit: Duration,
        hostname: String,
    ) -> Login {
        Login {
            guard,
            base_delay,
            turn_limit,
            hostname,
            exchange: None,
            attempt: 0,
        }
    }

    /// Runs `check` for a client at `ip` in the address's turn. `None` if
    /// the client hung up while waiting for it; otherwise the outcome and
    /// what the client sent meanwhile (for its session).
    pub(crate) async fn check(
        &mut self,
        stream: &mut Stream,
        ip: IpAddr,
        snapshot: &Arc<Snapshot>,
        check: Check,
    ) -> Option<(Outcome, Vec<u8>)> {
        let guard = self.guard.clone();
        let turn = tokio::time::timeout(self.turn_limit, guard.turn(ip, self.base_delay));
        let (turn, early) = crate::stream::wait_unless_gone(stream, turn).await?;
        let Ok(turn) = turn else {
            self.exchange = None;
            return Some((Outcome::TurnTimedOut, early));
        };
        let started = Instant::now();
        let outcome = match self.run(snapshot, check).await {
            Ok(Step::Challenge(challenge)) => Outcome::Challenge(challenge),
            Ok(Step::Success(user)) => Outcome::Accepted(user),
            Ok(Step::Failure) => {
                let delay = self.guard.failed(ip, self.attempt, self.base_delay).await;
                Outcome::Rejected(delay.saturating_sub(started.elapsed()))
            }
            Err(error) => Outcome::CheckFailed(error.to_string()),
        };
        // The outcome is recorded: the address's next check may go.
        drop(turn);
        if !matches!(outcome, Outcome::Challenge(_)) {
            self.exchange = None;
        }
        Some((outcome, early))
    }

    /// Counts a failure for `ip` now (a check that could not run, where the
    /// protocol treats that as a failed login) and returns its delay.
    pub(crate) async fn count_failure(&self, ip: IpAddr) -> Duration {
        self.guard.failed(ip, self.attempt, self.base_delay).await
    }

    /// The check itself, on a blocking thread unless it is quick; `Err` if
    /// that thread failed.
    async fn run(
        &mut self,
        snapshot: &Arc<Snapshot>,
        check: Check,
    ) -> Result<Step, tokio::task::JoinError> {
        let snapshot = snapshot.clone();
        let verdict = |user: Option<Authenticated>| match user {
            Some(user) => Step::Success(user),
            None => Step::Failure,
        };
        match check {
            Check::Password { user, password } => {
                self.attempt = self.guard.digest(&[b"USER", user.as_bytes(), &password]);
                // A quick scheme is checked here: a blocking thread would
                // cost more than the check (two thread hand-overs).
                let found = if snapshot.users.verifies_quickly(&user) {
                    snapshot.users.authenticate_password(&user, &password)
                } else {
                    tokio::task::spawn_blocking(move || {
                        snapshot.users.authenticate_password(&user, &password)
                    })
                    .await?
                };
                Ok(verdict(found))
            }
            Check::Apop {
                user,
                timestamp,
                digest,
            } => {
                self.attempt = self
                    .guard
                    .digest(&[b"APOP", user.as_bytes(), digest.as_bytes()]);
                // One MD5 of a short string, and no dummy for an unknown
                // name: checked here.
                let found = snapshot.users.authenticate_apop(&user, &timestamp, &digest);
                Ok(verdict(found))
            }
            Check::SaslStart {
                mechanism,
                initial_response,
            } => {
                self.attempt = self.guard.digest(&[
                    mechanism.as_bytes(),
                    initial_response.as_deref().unwrap_or_default(),
                ]);
                let hostname = self.hostname.clone();
                let started = tokio::task::spawn_blocking(move || {
                    Exchange::start(
                        &mechanism,
                        initial_response.as_deref(),
                        &snapshot.users,
                        &hostname,
                    )
                })
                .await?;
                // A mechanism the session offered but we cannot run fails
                // like wrong credentials.
                let Some((exchange, step)) = started else {
                    return Ok(Step::Failure);
                };
                self.exchange = Some(exchange);
                Ok(step)
            }
            Check::SaslStep { response } => {
                self.attempt = self.guard.digest(&[&self.attempt.to_le_bytes(), &response]);
                let Some(mut exchange) = self.exchange.take() else {
                    return Ok(Step::Failure);
                };
                let (exchange, step) = tokio::task::spawn_blocking(move || {
                    let step = exchange.step(&response, &snapshot.users);
                    (exchange, step)
                })
                .await?;
                self.exchange = Some(exchange);
                Ok(step)
            }
        }
    }
}
