//! Extra sender addresses per user: which users may send as an address
//! that is not simply theirs (a shared `sales@`, an address in a domain
//! the server does not receive for). The format is Postfix's
//! `smtpd_sender_login_maps` as a plain text table, so an existing map
//! carries over:
//!
//! ```text
//! # address            users who may send as it
//! sales@example.org    alice, bob
//! alice@example.net    alice
//! @example.com         carol          # any address in the domain
//! ```

use std::collections::HashMap;
use std::path::Path;

use yubin_smtp_proto::address::Mailbox;

/// The table, keys in lower case.
#[derive(Clone, Debug, Default)]
pub struct SenderLogins {
    owners: HashMap<String, Vec<String>>,
}

impl SenderLogins {
    /// Reads the file; errors name it and the line.
    pub fn load(path: &Path) -> Result<SenderLogins, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        SenderLogins::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the table's text.
    pub fn parse(text: &str) -> Result<SenderLogins, String> {
        let mut owners: HashMap<String, Vec<String>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (address, users) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("line {}: expected \"address user[, user…]\"", i + 1))?;
            let valid = match address.split_once('@') {
                Some((local, domain)) => !domain.is_empty() && !local.contains(char::is_whitespace),
                None => false,
            };
            if !valid {
                return Err(format!(
                    "line {}: {address:?} is neither an address nor @domain",
                    i + 1
                ));
            }
            let users: Vec<String> = users
                .split([',', ' ', '\t'])
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if users.is_empty() {
                return Err(format!("line {}: {address} names no user", i + 1));
            }
            owners
                .entry(address.to_ascii_lowercase())
                .or_default()
                .extend(users);
        }
        Ok(SenderLogins { owners })
    }

    /// Whether the table lets `user` send as `sender`: the address's own
    /// entry, or its domain's.
    pub fn allows(&self, user: &str, sender: &Mailbox) -> bool {
        self.owners_of(sender)
            .any(|users| users.iter().any(|u| u.eq_ignore_ascii_case(user)))
    }

    /// Whether the table gives `sender` to anyone at all.
    pub fn allows_anyone(&self, sender: &Mailbox) -> bool {
        self.owners_of(sender).next().is_some()
    }

    fn owners_of(&self, sender: &Mailbox) -> impl Iterator<Item = &Vec<String>> {
        let keys = match sender.domain_name() {
            Some(domain) => vec![
                format!("{}@{domain}", sender.local.to_ascii_lowercase()),
                format!("@{domain}"),
            ],
            None => Vec::new(),
        };
        keys.into_iter().filter_map(|key| self.owners.get(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yubin_smtp_proto::address::parse_mailbox;

    fn mailbox(text: &str) -> Mailbox {
        parse_mailbox(text).expect("an address")
    }

    #[test]
    fn addresses_and_domains_name_their_users() {
        let table = SenderLogins::parse(
            "# shared\nsales@Example.org  alice, bob\n\n@example.com carol # all of it\nx@y.example\tdave,erin\n",
        )
        .expect("parsed");
        assert!(table.allows("alice", &mailbox("SALES@example.ORG")));
        assert!(table.allows("Bob", &mailbox("sales@example.org")));
        assert!(!table.allows("carol", &mailbox("sales@example.org")));
        assert!(table.allows("carol", &mailbox("anyone@example.com")));
        assert!(!table.allows("alice", &mailbox("anyone@example.com")));
        assert!(table.allows("erin", &mailbox("x@y.example")));
        assert!(!table.allows("alice", &mailbox("alice@example.net")));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, wanted) in [
            ("sales@example.org\n", "line 1"),
            ("ok@example.org a\nnot-an-address alice\n", "line 2"),
            ("@ alice\n", "line 1"),
        ] {
            let error = SenderLogins::parse(text).expect_err(text);
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
