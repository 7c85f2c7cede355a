//! DNS blocklists (RFC 5782), without I/O: a zone as an administrator
//! writes it (Postfix's syntax, `zen.spamhaus.org=127.0.0.[2..11]`), the
//! name to ask for a client address, and what the answers mean.

use std::net::{IpAddr, Ipv4Addr};

/// One blocklist zone and the answers that count as "listed".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The zone, without a trailing dot.
    pub name: String,
    /// Which answers count, per octet; `None`: any 127.0.0.0/8 answer
    /// (RFC 5782 §2.1) outside the error range.
    filter: Option<[Octets; 4]>,
}

/// The values one octet of an answer may take.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Octets {
    One(u8),
    Range(u8, u8),
    List(Vec<u8>),
}

impl Octets {
    fn parse(text: &str) -> Option<Octets> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if let Some((a, b)) = inner.split_once("..") {
                let (a, b) = (a.parse().ok()?, b.parse().ok()?);
                return (a <= b).then_some(Octets::Range(a, b));
            }
            let list: Option<Vec<u8>> = inner.split(';').map(|n| n.parse().ok()).collect();
            return list.filter(|l| !l.is_empty()).map(Octets::List);
        }
        text.parse().ok().map(Octets::One)
    }

    fn contains(&self, n: u8) -> bool {
        match self {
            Octets::One(v) => *v == n,
            Octets::Range(a, b) => (*a..=*b).contains(&n),
            Octets::List(l) => l.contains(&n),
        }
    }
}

/// What one zone said about an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Listed, with the answer that counted.
    Listed(Ipv4Addr),
    /// Not listed (no answer, or only answers the filter leaves out).
    NotListed,
    /// The zone answered with an error code (127.255.255.0/24: Spamhaus's
    /// "query refused", "rate limited", "typing error"): taken as no
    /// answer, and worth a line in the log.
    Refused(Ipv4Addr),
}

/// `text` split at the dots that are not inside brackets.
fn split_octets(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut depth) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

impl Zone {
    /// `zone` or `zone=a.b.c.d`, each octet a number, `[a..b]` or
    /// `[a;b;c]`. An error says what is wrong.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let (name, filter) = match text.split_once('=') {
            Some((name, filter)) => (name, Some(filter)),
            None => (text, None),
        };
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.contains('.')
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("{text:?}: {name:?} is not a zone name"));
        }
        // An IPv6 query puts 64 octets in front of the zone; a name has
        // 253 at most.
        if name.len() > 253 - 64 {
            return Err(format!(
                "{text:?}: the zone name is too long for IPv6 queries"
            ));
        }
        let filter = match filter {
            None => None,
            Some(f) => {
                let parts = split_octets(f.trim());
                let octets: Option<Vec<Octets>> = parts.iter().map(|p| Octets::parse(p)).collect();
                match octets.map(<[Octets; 4]>::try_from) {
                    Some(Ok(octets)) => Some(octets),
                    _ => {
                        return Err(format!(
                            "{text:?}: the answers that count are four octets, each a number, [a..b] or [a;b]"
                        ));
                    }
                }
            }
        };
        Ok(Zone { name, filter })
    }

    /// The name to look up for `ip`: its octets (IPv4) or nibbles (IPv6)
    /// reversed, under the zone (RFC 5782 §2.1, §2.4).
    pub fn query_name(&self, ip: IpAddr) -> String {
        let mut out = String::new();
        match ip {
            IpAddr::V4(v4) => {
                for octet in v4.octets().iter().rev() {
                    out.push_str(&format!("{octet}."));
                }
            }
            IpAddr::V6(v6) => {
                for byte in v6.octets().iter().rev() {
                    out.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
                }
            }
        }
        out.push_str(&self.name);
        out.push('.');
        out
    }

    /// What the A records `answers` to the query mean.
    pub fn judge(&self, answers: &[Ipv4Addr]) -> Answer {
        if let Some(error) = answers.iter().find(|a| a.octets()[..3] == [127, 255, 255]) {
            return Answer::Refused(*error);
        }
        let counts = |a: &Ipv4Addr| match &self.filter {
            Some(filter) => a.octets().iter().zip(filter).all(|(n, f)| f.contains(*n)),
            // Answers outside 127/8 are not a blocklist's (a wildcard
            // zone, or a resolver that answers for names it does not
            // know).
            None => a.octets()[0] == 127,
        };
        answers
            .iter()
            .find(|a| counts(a))
            .map_or(Answer::NotListed, |a| Answer::Listed(*a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> Ipv4Addr {
        text.parse().expect("an address")
    }

    #[test]
    fn zones_as_postfix_writes_them() {
        let zen = Zone::parse("zen.spamhaus.org=127.0.0.[2..11]").expect("valid");
        assert_eq!(zen.name, "zen.spamhaus.org");
        assert_eq!(zen.judge(&[a("127.0.0.4")]), Answer::Listed(a("127.0.0.4")));
        assert_eq!(zen.judge(&[a("127.0.0.12")]), Answer::NotListed);
        assert_eq!(zen.judge(&[]), Answer::NotListed);
        let list = Zone::parse("bl.example.=127.0.[0;1].2").expect("valid");
        assert_eq!(list.name, "bl.example");
        assert_eq!(
            list.judge(&[a("127.0.1.2")]),
            Answer::Listed(a("127.0.1.2"))
        );
        assert_eq!(list.judge(&[a("127.0.2.2")]), Answer::NotListed);
        let any = Zone::parse("Bl.Example").expect("valid");
        assert_eq!(any.name, "bl.example");
        assert_eq!(any.judge(&[a("127.0.0.2")]), Answer::Listed(a("127.0.0.2")));
        // Not a blocklist's answer.
        assert_eq!(any.judge(&[a("192.0.2.1")]), Answer::NotListed);
        for bad in [
            "",
            "nodot",
            "bl.example=127.0.0",
            "bl.example=127.0.0.[5..2]",
            "bl ex.org",
            "bl.example=a.b.c.d",
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_answers_are_no_answer_even_with_a_listing() {
        let zen = Zone::parse("zen.spamhaus.org").expect("valid");
        for code in ["127.255.255.252", "127.255.255.254", "127.255.255.255"] {
            assert_eq!(
                zen.judge(&[a(code), a("127.0.0.2")]),
                Answer::Refused(a(code))
            );
        }
    }

    #[test]
    fn query_names_reverse_the_address() {
        let zone = Zone::parse("bl.example").expect("valid");
        assert_eq!(
            zone.query_name("192.0.2.99".parse().expect("v4")),
            "99.2.0.192.bl.example."
        );
        // RFC 5782 §2.4's example.
        assert_eq!(
            zone.query_name("2001:db8:1:2:3:4:567:89ab".parse().expect("v6")),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example."
        );
    }
}
