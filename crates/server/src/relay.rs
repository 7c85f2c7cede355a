//! Who may send where: local recipients, aliases, and the relay policy
//! (RFC 5321 §3.6; issue 4's rules).
//!
//! Mail for a local user is accepted from anyone, as an MX must. Mail for
//! anywhere else is accepted only from a client that authenticated with
//! SMTP AUTH in this session, connects from a `relay_networks` address, or
//! logged in over POP3 from the same address recently (POP before SMTP).
//! The classic open-relay tricks are treated as non-local: a quoted local
//! part, `%` (the percent hack), `!` (bang paths), an `@` inside the local
//! part, address literals; so they are relayed for nobody who is not
//! already allowed to relay.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use yubin_auth::Users;
use yubin_smtp_proto::{ForwardPath, Mailbox, Reply};

/// A network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `192.168.0.0/24`, `2001:db8::/32`, or a single address.
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let addr = crate::peer::canonical_ip(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { addr, prefix })
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, crate::peer::canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The aliases file: `alias: target, target` per line, `#` comments.
#[derive(Clone, Debug, Default)]
pub struct Aliases {
    map: HashMap<String, Vec<String>>,
}

impl Aliases {
    /// Reads an aliases file.
    pub fn load(path: &Path) -> Result<Aliases, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Aliases::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses an aliases file's text.
    pub fn parse(text: &str) -> Result<Aliases, String> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (alias, targets) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected \"alias: target, target\"", i + 1))?;
            let targets: Vec<String> = targets
                .split(',')
                .map(|t| {
                    t.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                })
                .filter(|t| !t.is_empty())
                .collect();
            if alias.trim().is_empty() || targets.is_empty() {
                return Err(format!(
                    "line {}: an alias needs a name and at least one target",
                    i + 1
                ));
            }
            map.insert(alias.trim().to_ascii_lowercase(), targets);
        }
        Ok(Aliases { map })
    }

    fn get(&self, key: &str) -> Option<&[String]> {
        self.map.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// Where a recipient's copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A local user's Maildir (the user's canonical name).
    Local(String),
    /// The outbound queue, to this address.
    Remote(String),
}

/// An accepted recipient's routing: where its copies go, and why relaying
/// (if any) was allowed. Kept with the recipient in the SMTP session, as it
/// is, until the message is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// Copies.
    pub routes: Vec<Route>,
    /// Why it was accepted.
    pub reason: Reason,
}

/// Why a recipient was accepted, and, for a relayed one, whose right it
/// was. Shown in the log and the queue entry as `local`, `alias`,
/// `auth alice`, `network`, `pop-before-smtp alice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A local user's address.
    Local,
    /// A local alias.
    Alias,
    /// Relayed for the user authenticated with SMTP AUTH.
    Auth(String),
    /// Relayed for a client in `relay_networks`.
    Network,
    /// Relayed for the user whose POP3 login granted the client's address.
    Grant(String),
}

impl Reason {
    /// Whether the recipient is relayed on a client's right (not local).
    pub fn relays(&self) -> bool {
        !matches!(self, Reason::Local | Reason::Alias)
    }

    /// The user whose POP-before-SMTP grant let it relay.
    pub fn grant_user(&self) -> Option<&str> {
        match self {
            Reason::Grant(user) => Some(user),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Local => f.write_str("local"),
            Reason::Alias => f.write_str("alias"),
            Reason::Auth(user) => write!(f, "auth {user}"),
            Reason::Network => f.write_str("network"),
            Reason::Grant(user) => write!(f, "pop-before-smtp {user}"),
        }
    }
}

/// What the client is, for the relay decision.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// The user authenticated with SMTP AUTH in this session.
    pub authenticated: Option<String>,
    /// Whether the address is in `relay_networks`.
    pub trusted_network: bool,
    /// The user whose POP3 login from this address allows relaying.
    pub pop_grant: Option<String>,
}

/// The verdict on one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Accepted: where its copies go, and why relaying (if any) was allowed.
    Accept {
        /// Copies.
        routes: Vec<Route>,
        /// Why.
        reason: Reason,
    },
    /// Refused with this reply.
    Refuse(Reply),
}

/// The local side of the policy: users, local domains, aliases.
#[derive(Debug)]
pub struct Policy<'a> {
    /// The users.
    pub users: &'a Users,
    /// Local domains, lower case.
    pub local_domains: &'a HashSet<String>,
    /// Aliases.
    pub aliases: &'a Aliases,
    /// The first user of the passwd-file: postmaster's fallback.
    pub first_user: Option<&'a str>,
    /// Extra addresses users may send as.
    pub sender_logins: &'a crate::sender_logins::SenderLogins,
}

impl Policy<'_> {
    /// Decides about one RCPT.
    pub fn decide(&self, path: &ForwardPath, client: &Client) -> Decision {
        let mailbox = match path {
            ForwardPath::Postmaster => return self.postmaster(),
            ForwardPath::Mailbox(m) => m,
        };
        let local_domain = mailbox
            .domain_name()
            .filter(|d| self.local_domains.contains(d));
        let tricky = mailbox.quoted || mailbox.local.contains(['%', '!', '@']);
        match local_domain {
            Some(domain) if !tricky => self.local(mailbox, &domain),
            _ => self.relay(mailbox, client),
        }
    }

    fn postmaster(&self) -> Decision {
        // RFC 5321 §4.5.1: mail to postmaster must be accepted.
        let user = self
            .users
            .get("postmaster")
            .map(|u| u.name.clone())
            .or_else(|| {
                self.aliases
                    .get("postmaster")
                    .and_then(|t| t.first().cloned())
            })
            .or_else(|| self.first_user.map(str::to_owned));
        match user {
            Some(user) => self.expand_target(&user).map_or_else(
                || Decision::Refuse(Reply::new(550, "5.1.1", "postmaster has no mailbox here")),
                |route| Decision::Accept {
                    routes: vec![route],
                    reason: Reason::Local,
                },
            ),
            None => Decision::Refuse(Reply::new(550, "5.1.1", "postmaster has no mailbox here")),
        }
    }

    fn local(&self, mailbox: &Mailbox, domain: &str) -> Decision {
        let full = format!("{}@{domain}", mailbox.local);
        let user = self
            .users
            .get(&full)
            .or_else(|| self.users.get(&mailbox.local));
        if let Some(user) = user {
            return Decision::Accept {
                routes: vec![Route::Local(user.name.clone())],
                reason: Reason::Local,
            };
        }
        let is_postmaster = mailbox.local.eq_ignore_ascii_case("postmaster");
        let targets = self
            .aliases
            .get(&full)
            .or_else(|| self.aliases.get(&mailbox.local));
        match targets {
            Some(targets) => {
                // One level: targets are users or remote addresses, not aliases again.
                let routes: Vec<Route> = targets
                    .iter()
                    .filter_map(|t| self.expand_target(t))
                    .collect();
                if routes.is_empty() {
                    Decision::Refuse(Reply::new(550, "5.1.1", "User unknown"))
                } else {
                    Decision::Accept {
                        routes,
                        reason: Reason::Alias,
                    }
                }
            }
            None if is_postmaster => self.postmaster(),
            None => Decision::Refuse(Reply::with_text(
                550,
                "5.1.1",
                format!("<{mailbox}>: Recipient address rejected: User unknown"),
            )),
        }
    }

    /// Whether `user` may send as `sender`: the address is in a local
    /// domain and reaches `user`'s own maildrop, as mail to it would (the
    /// user's name, or an alias that includes the user), or the sender
    /// logins table gives it to the user. The null sender (`None`) is
    /// anyone's: it is what bounces and auto-replies use.
    pub fn owns(&self, user: &str, sender: Option<&Mailbox>) -> bool {
        let Some(sender) = sender else {
            return true;
        };
        if self.sender_logins.allows(user, sender) {
            return true;
        }
        self.reaches(sender, |name| name.eq_ignore_ascii_case(user))
    }

    /// Whether `sender` belongs to any user here (the rule for
    /// `relay_networks` clients when `sender_identity_networks` is on).
    pub fn owned_by_anyone(&self, sender: Option<&Mailbox>) -> bool {
        let Some(sender) = sender else {
            return true;
        };
        self.sender_logins.allows_anyone(sender) || self.reaches(sender, |_| true)
    }

    /// Whether mail to `sender` would reach a local user `whom` accepts.
    fn reaches(&self, sender: &Mailbox, whom: impl Fn(&str) -> bool) -> bool {
        let tricky = sender.quoted || sender.local.contains(['%', '!', '@']);
        let Some(domain) = sender
            .domain_name()
            .filter(|d| self.local_domains.contains(d) && !tricky)
        else {
            return false;
        };
        match self.local(sender, &domain) {
            Decision::Accept { routes, .. } => routes
                .iter()
                .any(|r| matches!(r, Route::Local(name) if whom(name))),
            Decision::Refuse(_) => false,
        }
    }

    /// An alias target: a local user (by name, or name@local-domain) or a remote address.
    fn expand_target(&self, target: &str) -> Option<Route> {
        if let Some(user) = self.users.get(target) {
            return Some(Route::Local(user.name.clone()));
        }
        match target.rsplit_once('@') {
            Some((local, domain)) if self.local_domains.contains(&domain.to_ascii_lowercase()) => {
                self.users.get(local).map(|u| Route::Local(u.name.clone()))
            }
            Some(_) => Some(Route::Remote(target.to_owned())),
            None => None,
        }
    }

    fn relay(&self, mailbox: &Mailbox, client: &Client) -> Decision {
        let reason = if let Some(user) = &client.authenticated {
            Reason::Auth(user.clone())
        } else if client.trusted_network {
            Reason::Network
        } else if let Some(user) = &client.pop_grant {
            Reason::Grant(user.clone())
        } else {
            return Decision::Refuse(Reply::with_text(
                554,
                "5.7.1",
                format!("<{mailbox}>: Relay access denied"),
            ));
        };
        Decision::Accept {
            routes: vec![Route::Remote(mailbox.to_string())],
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yubin_auth::PasswdFile;
    use yubin_smtp_proto::address::parse_forward_path;

    fn users() -> Users {
        let (file, _) = PasswdFile::parse("alice@local.test:{PLAIN}x\nbob:{PLAIN}y\n");
        Users::from_file(&file).0
    }

    fn decide(address: &str, client: &Client) -> Decision {
        let users = users();
        let domains: HashSet<String> = ["local.test".to_owned(), "mx.local.test".to_owned()].into();
        let aliases =
            Aliases::parse("info: alice@local.test, someone@remote.test\nlist@local.test: bob\n")
                .unwrap();
        let policy = Policy {
            users: &users,
            local_domains: &domains,
            aliases: &aliases,
            first_user: Some("alice@local.test"),
            sender_logins: &crate::sender_logins::SenderLogins::default(),
        };
        let (path, _) = parse_forward_path(address).unwrap();
        policy.decide(&path, client)
    }

    fn refused_code(d: &Decision) -> Option<(u16, &'static str)> {
        match d {
            Decision::Refuse(r) => Some((r.code, r.status)),
            Decision::Accept { .. } => None,
        }
    }

    #[test]
    fn local_users_and_aliases() {
        let anyone = Client::default();
        assert_eq!(
            decide("<alice@local.test>", &anyone),
            Decision::Accept {
                routes: vec![Route::Local("alice@local.test".into())],
                reason: Reason::Local
            }
        );
        assert_eq!(
            decide("<Bob@MX.local.test>", &anyone),
            Decision::Accept {
                routes: vec![Route::Local("bob".into())],
                reason: Reason::Local
            }
        );
        assert_eq!(
            decide("<info@local.test>", &anyone),
            Decision::Accept {
                routes: vec![
                    Route::Local("alice@local.test".into()),
                    Route::Remote("someone@remote.test".into())
                ],
                reason: Reason::Alias
            }
        );
        assert_eq!(
            refused_code(&decide("<nobody@local.test>", &anyone)),
            Some((550, "5.1.1"))
        );
        assert!(matches!(
            decide("<Postmaster>", &anyone),
            Decision::Accept { .. }
        ));
        assert!(matches!(
            decide("<postmaster@local.test>", &anyone),
            Decision::Accept { .. }
        ));
    }

    /// SI-05: the open-relay matrix, for a client with no right to relay.
    #[test]
    fn si05_open_relay_tricks_are_refused() {
        let anyone = Client::default();
        for address in [
            "<u@remote.test>",
            "<u%remote.test@local.test>",
            "<remote.test!u@local.test>",
            "<\"u@remote.test\"@local.test>",
            "<@local.test:u@remote.test>",
            "<@a.test,@b.test:u@remote.test>",
            "<u@[127.0.0.1]>",
            "<u@[IPv6:::1]>",
            "<\"alice\"@local.test>",
        ] {
            assert_eq!(
                refused_code(&decide(address, &anyone)),
                Some((554, "5.7.1")),
                "{address}"
            );
        }
    }

    #[test]
    fn relay_for_the_authorised() {
        let auth = Client {
            authenticated: Some("alice".into()),
            ..Client::default()
        };
        let net = Client {
            trusted_network: true,
            ..Client::default()
        };
        let pop = Client {
            pop_grant: Some("bob".into()),
            ..Client::default()
        };
        for (client, reason, shown) in [
            (auth, Reason::Auth("alice".into()), "auth alice"),
            (net, Reason::Network, "network"),
            (pop, Reason::Grant("bob".into()), "pop-before-smtp bob"),
        ] {
            assert_eq!(reason.to_string(), shown);
            assert_eq!(
                decide("<u@remote.test>", &client),
                Decision::Accept {
                    routes: vec![Route::Remote("u@remote.test".into())],
                    reason
                }
            );
        }
    }

    #[test]
    fn networks() {
        let net = Network::parse("192.168.0.0/24").unwrap();
        assert!(net.contains("192.168.0.77".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.0.1".parse().unwrap()));
        assert!(!net.contains("192.168.1.1".parse().unwrap()));
        assert!(
            Network::parse("10.0.0.1")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
        assert!(
            Network::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8:ffff::1".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("nonsense").is_none());
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }
}
