//! One SMTP connection: carries out what the protocol session asks for.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yubin_smtp_proto::from_field::FromError;
use yubin_smtp_proto::{Action, Envelope, ForwardPath, Poll, Reply, Session, replies};

use crate::config::SenderIdentity;
use crate::login::{Check, Login, Outcome};
use crate::relay::Routing;

use super::commit::{self, Trace};
use super::screen::Screened;
use super::{Listener, SmtpService};
use crate::logtext::Escaped;
use crate::relay::{Client, Decision, Policy, Reason};
use crate::spool::Spool;
use crate::stream::Stream;
use crate::userstore::Snapshot;

/// The slowest average rate message content may arrive at (octets per
/// second, after a first `timeout` of grace): Postfix's
/// `smtpd_min_data_rate`.
const MIN_DATA_RATE: u64 = 500;

struct Connection {
    service: Arc<SmtpService>,
    id: u64,
    peer: SocketAddr,
    snapshot: Arc<Snapshot>,
    session: Session<Routing>,
    /// Credential checks: turns, penalties, the SASL exchange.
    login: Login,
    spool: Option<Spool>,
    tls: bool,
    listener: Listener,
    /// The client checks' verdict, and the HELO name it was for (a new
    /// HELO is checked anew).
    client_verdict: Option<(String, super::client_checks::ClientVerdict)>,
    /// The POP-before-SMTP grant the last RCPT found. A message's DATA
    /// comes after at least one RCPT of its own transaction, so the end
    /// of the message judges the client as its recipients were judged,
    /// without looking the grant up again.
    last_grant: Option<Option<String>>,
}

/// Serves one connection to its end.
pub(super) async fn handle(
    service: Arc<SmtpService>,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Listener,
) {
    let _ = tcp.set_nodelay(true);
    let implicit = listener == Listener::Submissions;
    let id = service.next_id();
    let stream = if implicit {
        match crate::tls::accept_within(&service.tls, tcp, service.timeout()).await {
            Ok(tls) => Stream::Tls(Box::new(tls)),
            Err(error) => {
                tracing::info!(session = id, rip = %peer.ip(), %error, "smtps TLS handshake failed");
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    let snapshot = service.users.snapshot();
    let offer = service.offer(listener, implicit, peer.ip());
    let session = Session::new(service.session_config(&snapshot), offer);
    let login = Login::new(
        service.guard.clone(),
        service.config.smtp.auth_failure_delay.0,
        service.timeout(),
        service.config.hostname.clone(),
    );
    let mut connection = Connection {
        service,
        id,
        peer,
        snapshot,
        session,
        login,
        spool: None,
        tls: implicit,
        listener,
        client_verdict: None,
        last_grant: None,
    };
    connection.run(stream).await;
    tracing::debug!(session = id, rip = %peer.ip(), "smtp disconnect");
}

impl Connection {
    async fn run(&mut self, mut stream: Stream) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut shutdown = self.service.shutdown.clone();
        // RFC 5321 §4.5.3.2.7: the timeout runs from our last reply to the
        // next whole command, so a client trickling a command line byte by
        // byte cannot hold the connection for ever. Message content is
        // timed per read instead: it keeps flowing for as long as it takes.
        let mut command_deadline = tokio::time::Instant::now() + self.service.timeout();
        // When the current message content began, and its octets so far.
        let mut content: Option<(tokio::time::Instant, u64)> = None;
        loop {
            let poll = self.session.poll();
            let replied = !self.session.output().is_empty();
            if self.write_output(&mut stream).await.is_err() {
                return;
            }
            if replied {
                command_deadline = tokio::time::Instant::now() + self.service.timeout();
            }
            match poll {
                Poll::Flush => {}
                Poll::NeedInput => {
                    if *shutdown.borrow() {
                        self.session.shutdown();
                        continue;
                    }
                    if !self.session.in_data() {
                        self.session.shrink_buffers();
                    }
                    let deadline = if self.session.in_data() {
                        // Per read, and on average at least MIN_DATA_RATE:
                        // content trickled a byte per timeout is cut off.
                        let (started, octets) =
                            *content.get_or_insert((tokio::time::Instant::now(), 0));
                        let earned = Duration::from_secs(octets / MIN_DATA_RATE);
                        (tokio::time::Instant::now() + self.service.timeout())
                            .min(started + self.service.timeout() + earned)
                    } else {
                        content = None;
                        command_deadline
                    };
                    let read = tokio::select! {
                        read = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => read,
                        _ = shutdown.changed() => {
                            self.session.shutdown();
                            continue;
                        }
                    };
                    match read {
                        Err(_) => self.session.timed_out(),
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(n)) => {
                            if let Some((_, octets)) = &mut content {
                                *octets += n as u64;
                            }
                            if !self.session.in_data() {
                                self.session.set_storage_low(self.service.storage.low());
                            }
                            self.session.receive(&buf[..n]);
                        }
                    }
                }
                Poll::Close => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
                    // Closing with unread input makes the kernel send a
                    // reset, which can destroy our last reply before the
                    // client reads it (a 421 after pipelined junk, say).
                    // Unless the client said QUIT, read briefly what is
                    // left; the client will see EOF.
                    if !self.session.quit_received() {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            drain(&mut stream, &mut buf),
                        )
                        .await;
                    }
                    return;
                }
                Poll::Pending => {
                    tracing::error!(
                        session = self.id,
                        "smtp driver polled with an action outstanding"
                    );
                    return;
                }
                Poll::Action(Action::StartTls) => match self.start_tls(stream).await {
                    Some(upgraded) => stream = upgraded,
                    None => return,
                },
                // As in POP3: a client that hangs up while its AUTH waits
                // for the address's turn, or for the answer to a failure,
                // releases its connection at once (issue 12).
                Poll::Action(Action::Delay(duration)) => {
                    let Some(early) = crate::stream::pause_unless_gone(&mut stream, duration).await
                    else {
                        return;
                    };
                    self.session.receive(&early);
                    self.session.delay_elapsed();
                }
                Poll::Action(Action::SaslStart {
                    mechanism,
                    initial_response,
                }) => {
                    let check = Check::SaslStart {
                        mechanism,
                        initial_response,
                    };
                    if self.login(&mut stream, check).await.is_none() {
                        return;
                    }
                }
                Poll::Action(Action::SaslStep { response }) => {
                    if self
                        .login(&mut stream, Check::SaslStep { response })
                        .await
                        .is_none()
                    {
                        return;
                    }
                }
                Poll::Action(action) => self.perform(action).await,
            }
        }
    }

    async fn write_output(&mut self, stream: &mut Stream) -> io::Result<()> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        let written =
            crate::stream::write_all(stream, self.session.output(), self.service.timeout()).await;
        self.session.clear_output();
        written
    }

    async fn start_tls(&mut self, stream: Stream) -> Option<Stream> {
        let Stream::Plain(tcp) = stream else {
            return None;
        };
        match crate::tls::accept_within(&self.service.tls, tcp, self.service.timeout()).await {
            Ok(tls) => {
                self.tls = true;
                let offer = self.service.offer(self.listener, true, self.peer.ip());
                self.session.tls_established(offer);
                Some(Stream::Tls(Box::new(tls)))
            }
            Err(error) => {
                tracing::info!(session = self.id, rip = %self.peer.ip(), %error, "smtp STARTTLS handshake failed");
                None
            }
        }
    }

    async fn perform(&mut self, action: Action<Routing>) {
        match action {
            Action::CheckRecipient {
                path,
                authenticated,
            } => self.check_recipient(&path, authenticated).await,
            Action::MessageData => {
                let data = self.session.take_data();
                self.spool().append(&data);
            }
            Action::EndOfMessage(envelope) => self.end_of_message(envelope).await,
            Action::DiscardMessage => self.spool = None,
            // Handled in `run`, where the stream is.
            Action::Delay(_)
            | Action::StartTls
            | Action::SaslStart { .. }
            | Action::SaslStep { .. } => {}
        }
    }

    fn spool(&mut self) -> &mut Spool {
        let dir = self.service.config.data_dir.join("spool");
        self.spool.get_or_insert_with(|| Spool::new(&dir))
    }

    /// Runs a credential check in the address's turn and reports the
    /// outcome to the session; `None` if the client hung up meanwhile.
    async fn login(&mut self, stream: &mut Stream, check: Check) -> Option<()> {
        let snapshot = self.snapshot.clone();
        let (outcome, early) = self
            .login
            .check(stream, self.peer.ip(), &snapshot, check)
            .await?;
        self.session.receive(&early);
        match outcome {
            Outcome::Challenge(challenge) => self.session.sasl_challenge(&challenge),
            Outcome::Accepted(user) => {
                tracing::info!(session = self.id, user = %Escaped(user.name().as_bytes()), rip = %self.peer.ip(), tls = self.tls, "smtp auth");
                self.session.credentials_accepted(user);
            }
            Outcome::Rejected(delay) => {
                tracing::info!(session = self.id, rip = %self.peer.ip(), tls = self.tls, "smtp auth failed");
                self.session.credentials_rejected(delay);
            }
            Outcome::TurnTimedOut => {
                tracing::info!(session = self.id, rip = %self.peer.ip(), "login not checked: the address's turn did not come in time");
                self.session.credentials_unverifiable();
            }
            Outcome::CheckFailed(error) => {
                tracing::error!(session = self.id, rip = %self.peer.ip(), %error, "smtp auth check failed");
                self.session.credentials_unverifiable();
            }
        }
        Some(())
    }

    /// A client whose mail is its users' own: a trusted network, or an
    /// address with a POP-before-SMTP grant (as the transaction's last
    /// RCPT found it).
    async fn trusted_client(&mut self) -> bool {
        let ip = self.peer.ip();
        if self.service.relay_networks.iter().any(|n| n.contains(ip)) {
            return true;
        }
        match self.last_grant.take() {
            Some(grant) => grant.is_some(),
            None => self.service.grants.lookup(ip).await.is_some(),
        }
    }

    async fn check_recipient(&mut self, path: &ForwardPath, authenticated: Option<String>) {
        let ip = self.peer.ip();
        let pop_grant = self.service.grants.lookup(ip).await;
        self.last_grant = Some(pop_grant.clone());
        let client = Client {
            authenticated,
            trusted_network: self.service.relay_networks.iter().any(|n| n.contains(ip)),
            pop_grant,
        };
        // Users may have changed since the connection began (yubin user add).
        self.snapshot = self.service.users.snapshot();
        let local_domains = self.service.local_domains(&self.snapshot);
        let policy = self.service.policy(&self.snapshot, &local_domains);
        let shown = match path {
            ForwardPath::Postmaster => "postmaster".to_owned(),
            ForwardPath::Mailbox(m) => m.to_string(),
        };
        match policy.decide(path, &client) {
            Decision::Accept { routes, reason } => {
                if let Some(reply) = self.sender_refusal(&policy, &client, &reason) {
                    self.session.recipient_refused(reply);
                    return;
                }
                // Mail from outside for our users: the client checks and
                // greylisting (postmaster is always reachable, RFC 5321
                // §4.5.1).
                let outside = self.listener == Listener::Mx
                    && client.authenticated.is_none()
                    && !client.trusted_network
                    && client.pop_grant.is_none();
                let postmaster = match path {
                    ForwardPath::Postmaster => true,
                    ForwardPath::Mailbox(m) => m.local.eq_ignore_ascii_case("postmaster"),
                };
                if outside && !postmaster {
                    match self.screen_client(&local_domains, &shown).await {
                        Some(Screening::Refuse(reply)) => {
                            tracing::info!(session = self.id, rip = %ip, rcpt = %Escaped(shown.as_bytes()), reply = %reply, "smtp recipient refused by the client checks");
                            self.session.recipient_refused(reply);
                            return;
                        }
                        Some(Screening::Greylisted(reply)) => {
                            tracing::info!(session = self.id, rip = %ip, rcpt = %Escaped(shown.as_bytes()), reply = %reply, "smtp recipient greylisted");
                            self.session.recipient_deferred(reply);
                            return;
                        }
                        None => {}
                    }
                }
                if reason.relays() {
                    tracing::info!(
                        session = self.id,
                        rip = %ip,
                        rcpt = %Escaped(shown.as_bytes()),
                        reason = %reason,
                        "smtp relay allowed"
                    );
                }
                self.session.recipient_accepted(Routing { routes, reason });
            }
            Decision::Refuse(reply) => {
                tracing::info!(session = self.id, rip = %ip, rcpt = %Escaped(shown.as_bytes()), reply = %reply, "smtp recipient refused");
                self.session.recipient_refused(reply);
            }
        }
    }

    /// The client checks (cached for the session's HELO name) and
    /// greylisting for `recipient`: `None` lets it through.
    async fn screen_client(
        &mut self,
        ours: &std::collections::HashSet<String>,
        recipient: &str,
    ) -> Option<Screening> {
        let service = self.service.clone();
        let config = &service.config.inbound;
        let ip = crate::peer::display_ip(self.peer);
        let helo = self.session.client_name().unwrap_or_default().to_owned();
        if config.helo.is_on() || config.fcrdns.is_on() || !service.dnsbl_zones.is_empty() {
            let known = matches!(&self.client_verdict, Some((h, _)) if *h == helo);
            if !known {
                // This server's names, whatever `smtp.local_domains` says.
                let mut ours = ours.clone();
                ours.insert(service.config.hostname.to_ascii_lowercase());
                let verdict = super::client_checks::check_client(&service, ip, &helo, &ours).await;
                if !verdict.findings.is_empty() {
                    tracing::info!(
                        session = self.id,
                        rip = %ip,
                        helo = %Escaped(helo.as_bytes()),
                        findings = %verdict.findings.join(" "),
                        refused = verdict.refusal.is_some(),
                        tagged = verdict.tag,
                        "smtp client checks"
                    );
                }
                self.client_verdict = Some((helo, verdict));
            }
            if let Some((_, verdict)) = &self.client_verdict
                && let Some(reply) = &verdict.refusal
            {
                return Some(Screening::Refuse(reply.clone()));
            }
        }
        if config.greylisting {
            let sender = self
                .session
                .sender()
                .map(ToString::to_string)
                .unwrap_or_default();
            return super::client_checks::greylist(&service, ip, &sender, recipient)
                .await
                .map(Screening::Greylisted);
        }
        None
    }

    /// Sender identity for MAIL FROM, checked at each RCPT that is
    /// accepted: a user's mail (authenticated, or relayed on the user's
    /// grant) may use only the user's addresses; a trusted network's, when
    /// `sender_identity_networks` is on, only addresses of some user here.
    fn sender_refusal(
        &self,
        policy: &Policy<'_>,
        client: &Client,
        reason: &Reason,
    ) -> Option<Reply> {
        let owner = client.authenticated.as_deref().or(reason.grant_user());
        let sender = self.session.sender();
        let smtp = &self.service.config.smtp;
        let mode = smtp.sender_identity_for(sender.and_then(|s| s.domain_name()).as_deref());
        let owned = match owner {
            _ if mode == SenderIdentity::Off => true,
            Some(user) => policy.owns(user, sender),
            None if matches!(reason, Reason::Network) && smtp.sender_identity_networks => {
                policy.owned_by_anyone(sender)
            }
            None => true,
        };
        if owned {
            return None;
        }
        let shown = sender.map(ToString::to_string).unwrap_or_default();
        let whose = owner.map_or("relay_networks client".to_owned(), |u| format!("user {u}"));
        tracing::info!(
            session = self.id,
            rip = %self.peer.ip(),
            user = %Escaped(whose.as_bytes()),
            from = %Escaped(shown.as_bytes()),
            enforced = mode == SenderIdentity::Enforce,
            "smtp sender not owned by the user"
        );
        (mode == SenderIdentity::Enforce).then(|| {
            Reply::with_text(
                553,
                "5.7.1",
                match owner {
                    Some(user) => {
                        format!("<{shown}>: Sender address rejected: not owned by user {user}")
                    }
                    None => format!(
                        "<{shown}>: Sender address rejected: not an address of this server's users"
                    ),
                },
            )
        })
    }

    /// Sender identity for the `From:` and `Sender:` fields, by the same
    /// rule as MAIL FROM, and whether the message may be signed as ours:
    /// only when every address there is the sender's (a user's own; for a trusted
    /// network with `sender_identity_networks`, some user's), whatever the
    /// mode says about refusing. A field that cannot be read, or a header
    /// too long to read to its end, is refused in `enforce` mode (it could
    /// hide another user's address) and never signed.
    fn check_from_field(
        &mut self,
        envelope: &Envelope<Routing>,
        head: &[u8],
        whole: bool,
    ) -> Result<bool, Reply> {
        let smtp = &self.service.config.smtp;
        let grant_user = envelope
            .recipients
            .iter()
            .find_map(|r| r.route.reason.grant_user().map(str::to_owned));
        let user = self
            .session
            .authenticated()
            .map(str::to_owned)
            .or(grant_user);
        let network = user.is_none()
            && smtp.sender_identity_networks
            && envelope
                .recipients
                .iter()
                .any(|r| matches!(r.route.reason, Reason::Network));
        if user.is_none() && !network {
            // Mail from outside (never signed: nothing relays it), or from
            // a trusted network whose senders are not checked.
            return Ok(true);
        }
        let whose = user
            .as_deref()
            .map_or("relay_networks client".to_owned(), |u| format!("user {u}"));
        let parsed = match yubin_smtp_proto::from_field::originator_addresses(head) {
            // The whole message is in `head`: its end is the header's end.
            Err(FromError::Incomplete) if whole => {
                let mut ended = head.to_vec();
                ended.extend_from_slice(b"\n\n");
                yubin_smtp_proto::from_field::originator_addresses(&ended)
            }
            other => other,
        };
        let enforce_all = smtp.sender_identity == SenderIdentity::Enforce;
        let addresses = match parsed {
            Ok(addresses) => addresses,
            Err(error) => {
                tracing::info!(session = self.id, user = %Escaped(whose.as_bytes()), ?error, enforced = enforce_all, "smtp From: field not checked");
                if !enforce_all {
                    return Ok(false);
                }
                let why = match error {
                    FromError::Incomplete => "the header is too long to check the From: field",
                    _ => "the From: field cannot be read; write it as Name <address>",
                };
                return Err(Reply::with_text(553, "5.7.1", why.to_owned()));
            }
        };
        let snapshot = self.service.users.snapshot();
        let local_domains = self.service.local_domains(&snapshot);
        let policy = self.service.policy(&snapshot, &local_domains);
        let foreign: Vec<_> = addresses
            .iter()
            .filter(|a| match &user {
                Some(user) => !policy.owns(user, Some(a)),
                None => !policy.owned_by_anyone(Some(a)),
            })
            .map(|a| (a, smtp.sender_identity_for(a.domain_name().as_deref())))
            .collect();
        if foreign.is_empty() {
            // Every address is the sender's (none: no From:, nothing to sign for).
            return Ok(!addresses.is_empty());
        }
        for (address, mode) in foreign.iter().filter(|(_, m)| *m != SenderIdentity::Off) {
            tracing::info!(
                session = self.id,
                rip = %self.peer.ip(),
                user = %Escaped(whose.as_bytes()),
                from = %Escaped(address.to_string().as_bytes()),
                enforced = *mode == SenderIdentity::Enforce,
                "smtp From: address not owned by the user"
            );
        }
        if let Some((address, _)) = foreign.iter().find(|(_, m)| *m == SenderIdentity::Enforce) {
            return Err(Reply::with_text(
                553,
                "5.7.1",
                match &user {
                    Some(user) => format!("From: <{address}> is not an address of user {user}"),
                    None => format!("From: <{address}> is not an address of this server's users"),
                },
            ));
        }
        // Let through ("log", "off"), but not under our signature.
        Ok(false)
    }

    async fn end_of_message(&mut self, envelope: Envelope<Routing>) {
        let data = self.session.take_data();
        self.spool().append(&data);
        let Some(spool) = self.spool.take() else {
            self.session.message_refused(replies::LOCAL_ERROR);
            return;
        };
        let whole = spool.size() <= spool.head().len() as u64;
        let signable = match self.check_from_field(&envelope, spool.head(), whole) {
            Ok(signable) => signable,
            Err(reply) => {
                self.session.message_refused(reply);
                return;
            }
        };
        let id = yubin_queue::new_id();
        let helo = self.session.client_name().unwrap_or_default().to_owned();
        let authenticated = self.session.authenticated().map(str::to_owned);
        let trusted = self.trusted_client().await;
        let (spool, screened) = {
            // The client checks' verdict, for the HELO name in force.
            let verdict = self
                .client_verdict
                .as_ref()
                .filter(|(h, _)| *h == helo)
                .map(|(_, v)| v);
            let cx = super::screen::Context {
                service: &self.service,
                session_id: self.id,
                listener: self.listener,
                peer: self.peer,
                helo: &helo,
                authenticated: authenticated.as_deref(),
                trusted,
                queue_id: &id,
                client_tag: verdict.is_some_and(|v| v.tag),
                client_name: verdict.and_then(|v| v.name.as_deref()),
                client_name_asked: verdict.is_some_and(|v| v.name_asked),
            };
            super::screen::screen(&cx, &envelope, spool).await
        };
        let Some(mut spool) = spool else {
            self.session.message_refused(replies::LOCAL_ERROR);
            return;
        };
        let (results, header, quarantine, notes) = match screened {
            Screened::Deliver {
                results,
                header,
                quarantine,
                notes,
            } => (results, header, quarantine, notes),
            Screened::Refuse(reply) => {
                self.session.message_refused(reply);
                return;
            }
            Screened::Discard { notes } => {
                tracing::info!(
                    session = self.id,
                    id = %id,
                    from = %Escaped(envelope.from.map(|f| f.to_string()).unwrap_or_default().as_bytes()),
                    rcpts = envelope.recipients.len(),
                    filters = ?notes,
                    "smtp message discarded by a content filter"
                );
                self.session.message_accepted(&id);
                return;
            }
        };
        let trace = Trace {
            id,
            helo,
            ip: crate::peer::display_ip(self.peer),
            tls: self.tls,
            esmtp: self.session.esmtp(),
            authenticated,
            submission_port: self.listener != super::Listener::Mx,
            signable,
            results,
            header,
            quarantine,
        };
        let service = self.service.clone();
        let snapshot = self.service.users.snapshot();
        let size = spool.size();
        let result = tokio::task::spawn_blocking(move || {
            let result = commit::deliver(&service, &snapshot, &envelope, &trace, &mut spool);
            (result, trace, envelope)
        })
        .await;
        match result {
            Ok((Ok(done), trace, envelope)) => {
                tracing::info!(
                    session = self.id,
                    id = %trace.id,
                    from = %Escaped(envelope.from.map(|f| f.to_string()).unwrap_or_default().as_bytes()),
                    rcpts = envelope.recipients.len(),
                    local = done.local,
                    queued = done.queued,
                    dkim = %done.signed.join(" "),
                    filters = ?notes,
                    size,
                    rip = %trace.ip,
                    tls = trace.tls,
                    "smtp message accepted"
                );
                if done.queued > 0 {
                    self.service.queue_wake.arrived(&trace.id);
                }
                self.session.message_accepted(&trace.id);
            }
            Ok((Err(failed), trace, _)) => {
                let reply = failed.reply();
                tracing::error!(session = self.id, id = %trace.id, error = %failed.reason, reply = %reply, "smtp message not stored");
                self.session.message_refused(reply);
            }
            Err(_) => self.session.message_refused(replies::LOCAL_ERROR),
        }
    }
}

/// What the checks at RCPT say about a recipient from outside.
enum Screening {
    /// Refused (the client checks): counts as an error.
    Refuse(Reply),
    /// Try again later (greylisting): does not count as an error.
    Greylisted(Reply),
}

/// Reads and discards up to 64 KiB of what the client still sends.
async fn drain(stream: &mut Stream, buf: &mut [u8]) {
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match stream.read(buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
