//! Mail the server writes itself (bounces and delay warnings from the
//! delivery engine) goes where any mail for that address would: a local
//! user's Maildir, or back into the queue for a remote sender. Sent from
//! the null sender (RFC 5321 §4.5.5), so it never bounces in turn.

use yubin_queue::engine::Submit;
use yubin_smtp_proto::address::parse_forward_path;

use super::SmtpService;
use crate::relay::{Client, Decision, Route};

impl Submit for SmtpService {
    fn submit(&self, recipient: &str, message: &[u8]) -> Result<(), String> {
        let bracketed = format!("<{recipient}>");
        let (path, rest) = parse_forward_path(&bracketed)
            .map_err(|e| format!("<{recipient}>: not an address ({e:?})"))?;
        if !rest.is_empty() {
            return Err(format!("<{recipient}>: not an address"));
        }
        let snapshot = self.users.snapshot();
        let local_domains = self.local_domains(&snapshot);
        let policy = self.policy(&snapshot, &local_domains);
        // The server itself may send anywhere.
        let client = Client {
            authenticated: Some("MAILER-DAEMON".into()),
            trusted_network: true,
            pop_grant: None,
        };
        let routes = match policy.decide(&path, &client) {
            Decision::Accept { routes, .. } => routes,
            Decision::Refuse(reply) => return Err(format!("<{recipient}>: {reply}")),
        };
        for route in routes {
            match route {
                Route::Local(name) => {
                    let user = snapshot
                        .users
                        .get(&name)
                        .ok_or_else(|| format!("user {name} vanished"))?;
                    let mut copy = b"Return-Path: <>\n".to_vec();
                    copy.extend_from_slice(message);
                    self.mail.deliver(user, &copy).map_err(|e| e.to_string())?;
                }
                Route::Remote(address) => {
                    // Bounces and warnings from our own name are signed
                    // like users' mail, so they pass DMARC where they go.
                    let signature =
                        super::dkim::sign(&self.dkim, message, &mut |out| out.write_all(message))
                            .map_err(|e| e.to_string())?
                            .map(|signed| signed.fields)
                            .unwrap_or_default();
                    let entry = yubin_queue::Envelope {
                        id: yubin_queue::new_id(),
                        created: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                        from: String::new(),
                        recipients: vec![address],
                        client: "localhost".into(),
                        auth: "MAILER-DAEMON".into(),
                        body: "8BITMIME".into(),
                        smtputf8: !recipient.is_ascii(),
                        size: Some(
                            yubin_pop3_proto::WireSize::of(signature.as_bytes())
                                + yubin_pop3_proto::WireSize::of(message),
                        ),
                    };
                    self.queue
                        .stage(&entry, &mut |out| {
                            out.write_all(signature.as_bytes())?;
                            out.write_all(message)
                        })
                        .and_then(|staged| staged.commit())
                        .map_err(|e| e.to_string())?;
                    self.queue_wake.arrived(&entry.id);
                }
            }
        }
        Ok(())
    }
}
