//! One POP3 connection: carries out what the protocol session asks for.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yubin_auth::User;
use yubin_pop3_proto::{Action, Poll, Refusal, Session};
use yubin_store::LockError;

use super::{Pop3Service, surrogate};
use crate::backend::{GrantWithLock, MailError, Maildrop, Opened};
use crate::config::Utf8Headers;
use crate::login::{Check, Login, Outcome};
use crate::logtext::Escaped;
use crate::peer::display_ip;
use crate::stream::Stream;
use crate::stream::write_all;
use crate::userstore::Snapshot;

/// The locked maildrop of a logged-in session.
pub(super) struct OpenMaildrop {
    /// The maildrop, locked until the last clone is dropped.
    pub(super) store: Arc<dyn Maildrop>,
    /// Which messages go out with an RFC 6858 surrogate header (empty
    /// unless `utf8_headers = "downgrade"` and the client is not in UTF-8
    /// mode).
    pub(super) surrogates: Vec<bool>,
}

/// Why a connection ended, for the logout log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Quit,
    Disconnected,
    Timeout,
    Shutdown,
    Closed,
    IoError,
    TlsFailed,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Quit => "QUIT",
            End::Disconnected => "disconnected",
            End::Timeout => "idle timeout",
            End::Shutdown => "server shutdown",
            End::Closed => "closed after errors",
            End::IoError => "I/O error",
            End::TlsFailed => "TLS handshake failed",
        }
    }
}

pub(super) struct Connection {
    pub(super) service: Arc<Pop3Service>,
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    snapshot: Arc<Snapshot>,
    pub(super) session: Session,
    /// Credential checks: turns, penalties, the SASL exchange.
    login: Login,
    /// The mechanism of the login in progress, for logs.
    method: &'static str,
    /// The user name given in the login in progress, for logs.
    attempted_user: Vec<u8>,
    pub(super) maildrop: Option<OpenMaildrop>,
    tls: bool,
}

/// Serves one connection to its end.
pub(super) async fn handle(
    service: Arc<Pop3Service>,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
) {
    let _ = tcp.set_nodelay(true);
    keepalive(&tcp);
    let local = tcp.local_addr().unwrap_or(peer);
    let id = service.next_id();
    let stream = if implicit_tls {
        match crate::tls::accept_within(&service.tls, tcp, service.idle_timeout()).await {
            Ok(tls) => Stream::Tls(Box::new(tls)),
            Err(error) => {
                tracing::info!(session = id, rip = %display_ip(peer), %error, "pop3s TLS handshake failed");
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    let snapshot = service.users.snapshot();
    let apop = (service.config.pop3.apop && snapshot.apop).then(|| service.apop_timestamp());
    let offer = service.offer(implicit_tls, peer.ip(), apop);
    let session = Session::new(service.session_config(&snapshot), offer);
    let login = Login::new(
        service.guard.clone(),
        service.config.pop3.auth_failure_delay.0,
        service.idle_timeout(),
        service.config.hostname.clone(),
    );
    let mut connection = Connection {
        service,
        id,
        peer,
        local,
        snapshot,
        session,
        login,
        method: "",
        attempted_user: Vec::new(),
        maildrop: None,
        tls: implicit_tls,
    };
    let end = connection.run(stream).await;
    connection.log_logout(end);
}

impl Connection {
    async fn run(&mut self, mut stream: Stream) -> End {
        let mut buf = vec![0u8; 4096];
        let mut shutdown = self.service.shutdown.clone();
        // RFC 1939 §3's autologout timer runs from our last answer to the
        // next whole command (issue 12): a client trickling a command a
        // byte at a time cannot hold the connection for ever.
        let mut deadline = tokio::time::Instant::now() + self.service.idle_timeout();
        loop {
            let poll = self.session.poll();
            let replied = !self.session.output().is_empty();
            if self.write_output(&mut stream).await.is_err() {
                return End::IoError;
            }
            if replied {
                deadline = tokio::time::Instant::now() + self.service.idle_timeout();
            }
            match poll {
                Poll::Flush => {}
                Poll::NeedInput => {
                    if *shutdown.borrow() {
                        return self.shut_down(&mut stream).await;
                    }
                    self.session.shrink_buffers();
                    let read = tokio::select! {
                        read = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => read,
                        _ = shutdown.changed() => return self.shut_down(&mut stream).await,
                    };
                    match read {
                        // RFC 1939 §3: on autologout, close without a response and without UPDATE.
                        Err(_) => return End::Timeout,
                        Ok(Ok(0)) => return End::Disconnected,
                        Ok(Ok(n)) => self.session.receive(&buf[..n]),
                        Ok(Err(_)) => return End::Disconnected,
                    }
                }
                Poll::Close => {
                    close(&mut stream).await;
                    return if self.session.quit_received() {
                        End::Quit
                    } else {
                        End::Closed
                    };
                }
                Poll::Pending => {
                    tracing::error!(
                        session = self.id,
                        "pop3 driver polled with an action outstanding"
                    );
                    return End::Closed;
                }
                Poll::Action(Action::StartTls) => match self.start_tls(stream).await {
                    Some(upgraded) => {
                        stream = upgraded;
                        deadline = tokio::time::Instant::now() + self.service.idle_timeout();
                    }
                    None => return End::TlsFailed,
                },
                Poll::Action(Action::SendMessage { index, top, utf8 }) => {
                    if self
                        .send_message(&mut stream, index, top, utf8)
                        .await
                        .is_err()
                    {
                        return End::IoError;
                    }
                    // The message was an answer, however long it took to send.
                    deadline = tokio::time::Instant::now() + self.service.idle_timeout();
                }
                // A credential check waits for the address's turn, and a
                // failure is answered after a delay. A client that hangs up
                // meanwhile must not hold its connection slot until then
                // (issue 12): the wait is dropped at once. The check itself
                // is not, so its failure is recorded and keeps counting.
                Poll::Action(Action::Delay(duration)) => {
                    let Some(early) = crate::stream::pause_unless_gone(&mut stream, duration).await
                    else {
                        return End::Disconnected;
                    };
                    self.session.receive(&early);
                    self.session.delay_elapsed();
                }
                Poll::Action(action) => match self.login_check(action) {
                    Ok(check) => {
                        let snapshot = self.snapshot.clone();
                        let Some((outcome, early)) = self
                            .login
                            .check(&mut stream, self.peer.ip(), &snapshot, check)
                            .await
                        else {
                            return End::Disconnected;
                        };
                        self.session.receive(&early);
                        self.login_outcome(outcome).await;
                    }
                    Err(action) => self.perform(action).await,
                },
            }
        }
    }

    async fn shut_down(&mut self, stream: &mut Stream) -> End {
        self.session.shutdown();
        let _ = self.write_output(stream).await;
        close(stream).await;
        End::Shutdown
    }

    /// Writes what the session has to say, within the idle timeout.
    pub(super) async fn write_output(&mut self, stream: &mut Stream) -> io::Result<()> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        let written = write_all(stream, self.session.output(), self.service.idle_timeout()).await;
        self.session.clear_output();
        written
    }

    async fn start_tls(&mut self, stream: Stream) -> Option<Stream> {
        let Stream::Plain(tcp) = stream else {
            return None;
        };
        match crate::tls::accept_within(&self.service.tls, tcp, self.service.idle_timeout()).await {
            Ok(tls) => {
                self.tls = true;
                let apop = self.session.offer().apop_timestamp.clone();
                let offer = self.service.offer(true, self.peer.ip(), apop);
                self.session.tls_established(offer);
                Some(Stream::Tls(Box::new(tls)))
            }
            Err(error) => {
                tracing::info!(session = self.id, rip = %display_ip(self.peer), %error, "pop3 STLS handshake failed");
                None
            }
        }
    }

    async fn perform(&mut self, action: Action) {
        match action {
            Action::OpenMaildrop { user } => self.open_maildrop(user).await,
            Action::Commit { delete, retrieved } => self.commit(delete, retrieved).await,
            // Handled in `run`, where the stream is.
            Action::StartTls
            | Action::SendMessage { .. }
            | Action::Delay(_)
            | Action::CheckPassword { .. }
            | Action::CheckApop { .. }
            | Action::SaslStart { .. }
            | Action::SaslStep { .. } => {}
        }
    }

    /// The check a credential action asks for (noting the method and name
    /// for the log); any other action is handed back.
    fn login_check(&mut self, action: Action) -> Result<Check, Action> {
        Ok(match action {
            Action::CheckPassword { user, password } => {
                self.method = "USER";
                self.attempted_user = user.clone().into_bytes();
                Check::Password { user, password }
            }
            Action::CheckApop { user, digest } => {
                self.method = "APOP";
                self.attempted_user = user.clone().into_bytes();
                let timestamp = self
                    .session
                    .offer()
                    .apop_timestamp
                    .clone()
                    .unwrap_or_default();
                Check::Apop {
                    user,
                    timestamp,
                    digest,
                }
            }
            Action::SaslStart {
                mechanism,
                initial_response,
            } => {
                self.method = mechanism_name(&mechanism);
                self.attempted_user.clear();
                Check::SaslStart {
                    mechanism,
                    initial_response,
                }
            }
            Action::SaslStep { response } => Check::SaslStep { response },
            other => return Err(other),
        })
    }

    fn login_failed(&mut self, delay: Duration) {
        tracing::info!(
            session = self.id,
            user = %Escaped(&self.attempted_user),
            method = %self.method,
            rip = %display_ip(self.peer),
            tls = self.tls,
            "pop3 login failed"
        );
        self.session.credentials_rejected(delay);
    }

    async fn login_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Challenge(challenge) => self.session.sasl_challenge(&challenge),
            Outcome::Accepted(user) => self.session.credentials_accepted(user),
            Outcome::Rejected(delay) => self.login_failed(delay),
            // POP3 has always counted a check that could not run as a
            // failed login: the same answer, the same penalty.
            Outcome::CheckFailed(error) => {
                tracing::error!(session = self.id, rip = %display_ip(self.peer), %error, "pop3 login check failed");
                let delay = self.login.count_failure(self.peer.ip()).await;
                self.login_failed(delay);
            }
            Outcome::TurnTimedOut => {
                tracing::info!(
                    session = self.id,
                    rip = %display_ip(self.peer),
                    "login not checked: the address's turn did not come in time"
                );
                self.session.credentials_unverifiable();
            }
        }
    }

    async fn open_maildrop(&mut self, user_name: String) {
        let refuse = |conn: &mut Connection, refusal: Refusal, why: &dyn std::fmt::Display| {
            tracing::info!(
                session = conn.id,
                user = %Escaped(user_name.as_bytes()),
                method = %conn.method,
                rip = %display_ip(conn.peer),
                reason = %why,
                "pop3 login refused"
            );
            conn.session.maildrop_refused(refusal);
        };
        let Some(user) = self.snapshot.users.get(&user_name).cloned() else {
            refuse(self, Refusal::Temporary, &"user vanished during login");
            return;
        };
        // The grant may go with the lock when nothing after the opening
        // can refuse the login (a login delay can).
        let grant = if self.service.config.pop3.login_delay.0.is_zero() {
            self.service.grants.with_lock(self.peer.ip())
        } else {
            None
        };
        let (maildrop, granted) = match open_maildrop(&self.service, user.clone(), grant).await {
            Ok(opened) => (
                OpenMaildrop {
                    store: opened.maildrop,
                    surrogates: Vec::new(),
                },
                opened.granted,
            ),
            Err(MailError::Lock(LockError::InUse)) => {
                refuse(self, Refusal::InUse, &"maildrop in use");
                return;
            }
            Err(error) if error.is_permanent() => {
                refuse(self, Refusal::Permanent, &error);
                return;
            }
            Err(error) => {
                refuse(self, Refusal::Temporary, &error);
                return;
            }
        };
        // Checked only now, after the credentials: RFC 2449 §8.1.1.
        if let Err(seconds) = self.service.check_login_delay(&user.name).await {
            refuse(self, Refusal::LoginDelay(seconds), &"login delay");
            return;
        }
        let mut maildrop = maildrop;
        // RFC 6858 §4: LIST may report the surrogate's size; yubin reports
        // the size of what RETR sends, so the two always agree.
        let surrogate_sizes = if self.service.config.pop3.utf8_headers == Utf8Headers::Downgrade
            && !self.session.utf8()
        {
            let store = maildrop.store.clone();
            tokio::task::spawn_blocking(move || {
                store.derived_sizes(surrogate::CACHE, &|message, listed| {
                    surrogate::surrogate_size(message, listed)
                })
            })
            .await
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        maildrop.surrogates = surrogate_sizes.iter().map(Option::is_some).collect();
        let infos = maildrop.store.message_list(&surrogate_sizes);
        tracing::info!(
            session = self.id,
            user = %Escaped(user.name.as_bytes()),
            method = %self.method,
            rip = %display_ip(self.peer),
            lip = %display_ip(self.local),
            tls = self.tls,
            messages = maildrop.store.len(),
            "pop3 login"
        );
        self.maildrop = Some(maildrop);
        self.session.maildrop_opened(infos);
        // A login that succeeded all the way lets this address relay (POP
        // before SMTP); failed, partial and refused logins never get here.
        if granted {
            super::log_grant(display_ip(self.peer), &user.name);
        } else {
            super::grant_relay(&self.service, display_ip(self.peer), &user.name).await;
        }
    }

    async fn commit(&mut self, delete: Vec<usize>, retrieved: Vec<usize>) {
        let Some(maildrop) = self.maildrop.take() else {
            self.session.update_finished(delete.len());
            return;
        };
        let count = delete.len();
        // The lock is released with the last handle, after the removal is
        // durable.
        match maildrop.store.commit_async(delete, retrieved).await {
            Some(report) => {
                if report.not_removed > 0 {
                    tracing::warn!(
                        session = self.id,
                        not_removed = report.not_removed,
                        "pop3 UPDATE could not remove every marked message"
                    );
                }
                self.session.update_finished(report.not_removed);
            }
            None => self.session.update_finished(count.max(1)),
        }
    }

    /// An administrator should know why a message stays on the server.
    pub(super) fn log_needs_utf8(&self, index: usize) {
        let uid = self
            .maildrop
            .as_ref()
            .map(|m| m.store.uid(index).into_owned())
            .unwrap_or_default();
        tracing::info!(
            session = self.id,
            user = %Escaped(self.session.user().unwrap_or_default().as_bytes()),
            uid = %Escaped(uid.as_bytes()),
            "pop3 message has UTF-8 headers; refused to a client without UTF8 mode (pop3.utf8_headers)"
        );
    }

    fn log_logout(&self, end: End) {
        let Some(user) = self.session.user() else {
            tracing::debug!(session = self.id, rip = %display_ip(self.peer), reason = %end.as_str(), "pop3 disconnect before login");
            return;
        };
        let stats = self.session.stats();
        tracing::info!(
            session = self.id,
            user = %Escaped(user.as_bytes()),
            rip = %display_ip(self.peer),
            reason = %end.as_str(),
            top = stats.top,
            retr = %format_args!("{}/{}", stats.retrieved, stats.retrieved_bytes),
            del = %format_args!("{}/{}", stats.deleted - stats.not_removed.min(stats.deleted), stats.deleted_bytes),
            size = stats.size,
            "pop3 logout"
        );
    }
}

/// Ends the connection (TLS close_notify, then FIN), not waiting long on a
/// peer that no longer reads.
async fn close(stream: &mut Stream) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
}

/// TCP keepalive, so a client that vanished without closing (a dead link,
/// a suspended laptop) is noticed within about two minutes and its maildrop
/// lock released, instead of after the whole autologout timer.
fn keepalive(tcp: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15))
        .with_retries(4);
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&params);
}

/// How long a login waits for a maildrop lock that is held. A client that
/// drops its connection and reconnects at once (common after a timeout) may
/// log in again before its old session has noticed the close; a short grace
/// covers that, while a session that is really alive is still refused
/// "at once" (Dovecot's option waits 10 s).
const LOCK_GRACE: Duration = Duration::from_millis(250);

/// Opens (creates, locks, lists) `user`'s maildrop, waiting up to
/// [`LOCK_GRACE`] for a lock that is held; `grant` goes with the lock
/// where the store can write it there.
async fn open_maildrop(
    service: &Pop3Service,
    user: User,
    grant: Option<GrantWithLock>,
) -> Result<Opened, MailError> {
    let started = tokio::time::Instant::now();
    let user = Arc::new(user);
    loop {
        match service
            .mail
            .clone()
            .open_async(user.clone(), grant.clone())
            .await
        {
            Err(MailError::Lock(LockError::InUse)) if started.elapsed() < LOCK_GRACE => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            opened => return opened,
        }
    }
}

fn mechanism_name(mechanism: &str) -> &'static str {
    yubin_auth::sasl::MECHANISMS
        .iter()
        .find(|m| **m == mechanism)
        .copied()
        .unwrap_or("SASL")
}
