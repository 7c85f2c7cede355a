//! HELO sanity, without I/O: what is wrong with the name a client gave
//! in HELO or EHLO, if anything (RFC 5321 §4.1.1.1: a fully qualified
//! domain name, or an address literal when it has none).

use std::collections::HashSet;
use std::net::IpAddr;

use yubin_smtp_proto::Reply;

/// What is wrong with a HELO name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeloProblem {
    /// Not a domain name or an address literal (a bare address, spaces,
    /// stray characters).
    Invalid,
    /// A name without a dot (`localhost`, `DESKTOP-1234`).
    NotFullyQualified,
    /// This server's own name or one of its domains, from a client that
    /// is not this server.
    Ours,
    /// An address literal of another address than the client's.
    ForeignLiteral,
}

impl HeloProblem {
    /// The reply a refusal gets (Postfix's wording and codes).
    pub(crate) fn reply(self) -> Reply {
        match self {
            HeloProblem::Invalid => Reply::new(501, "5.5.2", "Helo command rejected: Invalid name"),
            HeloProblem::NotFullyQualified => Reply::new(
                504,
                "5.5.2",
                "Helo command rejected: need fully-qualified hostname",
            ),
            HeloProblem::Ours => Reply::new(550, "5.7.1", "Helo command rejected: You are not me"),
            HeloProblem::ForeignLiteral => Reply::new(
                550,
                "5.7.1",
                "Helo command rejected: the address literal is not your address",
            ),
        }
    }

    /// A word for the log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HeloProblem::Invalid => "invalid",
            HeloProblem::NotFullyQualified => "not-fqdn",
            HeloProblem::Ours => "ours",
            HeloProblem::ForeignLiteral => "foreign-literal",
        }
    }
}

/// What is wrong with `helo` from a client at `client`, whose server
/// answers to the names in `ours` (lower case).
pub(crate) fn helo_problem(
    helo: &str,
    client: IpAddr,
    ours: &HashSet<String>,
) -> Option<HeloProblem> {
    if let Some(literal) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // The tag is case-insensitive (RFC 5234 literals).
        let address = match literal.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => &literal[5..],
            _ => literal,
        };
        let Ok(address) = address.parse::<IpAddr>() else {
            return Some(HeloProblem::Invalid);
        };
        let same = match (address, client) {
            (IpAddr::V6(a), IpAddr::V4(c)) => a.to_ipv4_mapped() == Some(c),
            (IpAddr::V4(a), IpAddr::V6(c)) => c.to_ipv4_mapped() == Some(a),
            (a, c) => a == c,
        };
        return (!same).then_some(HeloProblem::ForeignLiteral);
    }
    let name = helo.strip_suffix('.').unwrap_or(helo);
    if name.parse::<IpAddr>().is_ok() {
        return Some(HeloProblem::Invalid);
    }
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                // Underscores are not in host names, but Windows machines
                // send them; they say nothing about spam.
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return Some(HeloProblem::Invalid);
    }
    if !name.contains('.') {
        return Some(HeloProblem::NotFullyQualified);
    }
    if ours.contains(&name.to_ascii_lowercase()) {
        return Some(HeloProblem::Ours);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names_judged() {
        let ours: HashSet<String> = ["mx.ours.test".to_owned(), "ours.test".to_owned()].into();
        let client: IpAddr = "192.0.2.7".parse().expect("an address");
        for (helo, want) in [
            ("mail.example.com", None),
            ("mail.example.com.", None),
            ("host_1.example.com", None),
            ("[192.0.2.7]", None),
            ("[IPv6:::ffff:192.0.2.7]", None),
            ("[ipv6:::ffff:192.0.2.7]", None),
            ("192.0.2.7.", Some(HeloProblem::Invalid)),
            ("[192.0.2.8]", Some(HeloProblem::ForeignLiteral)),
            ("[not an address]", Some(HeloProblem::Invalid)),
            ("192.0.2.7", Some(HeloProblem::Invalid)),
            ("localhost", Some(HeloProblem::NotFullyQualified)),
            ("DESKTOP-1234", Some(HeloProblem::NotFullyQualified)),
            ("bad..name.com", Some(HeloProblem::Invalid)),
            ("-x.example.com", Some(HeloProblem::Invalid)),
            ("spaces in.name", Some(HeloProblem::Invalid)),
            ("", Some(HeloProblem::Invalid)),
            ("MX.Ours.Test", Some(HeloProblem::Ours)),
            ("ours.test", Some(HeloProblem::Ours)),
        ] {
            assert_eq!(helo_problem(helo, client, &ours), want, "{helo:?}");
        }
    }
}
