//! What a server's EHLO answer offers (RFC 5321 §4.1.1.1): one keyword per
//! line after the first, with parameters.

use super::response::Response;

/// The extensions the client makes use of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// The name the server gave in the first line.
    pub server_name: String,
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: the fixed size limit, 0 if none was given.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 4954: the mechanisms, upper-case.
    pub auth: Vec<String>,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
}

impl Extensions {
    /// Reads an EHLO answer.
    pub fn parse(response: &Response) -> Extensions {
        let mut lines = response.lines.iter();
        let mut extensions = Extensions {
            server_name: lines
                .next()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_owned(),
            ..Extensions::default()
        };
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => extensions.pipelining = true,
                "SIZE" => {
                    extensions.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => extensions.eight_bit_mime = true,
                "SMTPUTF8" => extensions.smtputf8 = true,
                "STARTTLS" => extensions.starttls = true,
                "ENHANCEDSTATUSCODES" => extensions.enhanced_status_codes = true,
                "AUTH" => extensions.auth.extend(words.map(str::to_ascii_uppercase)),
                _ => {}
            }
        }
        extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_parameters() {
        let response = Response {
            code: 250,
            lines: vec![
                "mx.example greets you".into(),
                "PIPELINING".into(),
                "size 35882577".into(),
                "8BITMIME".into(),
                "AUTH PLAIN login".into(),
                "STARTTLS".into(),
                "X-UNKNOWN stuff".into(),
            ],
        };
        let e = Extensions::parse(&response);
        assert_eq!(e.server_name, "mx.example");
        assert!(e.pipelining && e.eight_bit_mime && e.starttls);
        assert!(!e.smtputf8 && !e.enhanced_status_codes);
        assert_eq!(e.size, Some(35_882_577));
        assert_eq!(e.auth, ["PLAIN", "LOGIN"]);
    }

    #[test]
    fn size_without_a_number_means_no_fixed_limit() {
        let response = Response {
            code: 250,
            lines: vec!["mx".into(), "SIZE".into()],
        };
        assert_eq!(Extensions::parse(&response).size, Some(0));
    }
}
