//! MTA-STS (RFC 8461), the pure part: the policy file a domain serves at
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, which MX hosts it
//! allows, and the record kept of it between fetches. Fetching and the
//! `_mta-sts` TXT record are the delivery engine's (`engine::sts`).

/// What the domain asks of senders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to the listed MX hosts, over TLS with a valid
    /// certificate for the host's name; otherwise wait.
    Enforce,
    /// Deliver as without a policy, and report what would have failed.
    Testing,
    /// No policy (a domain withdrawing one).
    None,
}

impl Mode {
    /// The policy file's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A policy, as fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The `id` of the TXT record it was fetched under.
    pub id: String,
    /// What it asks.
    pub mode: Mode,
    /// MX host patterns: a name, or `*.` and a name for one label more.
    pub mx: Vec<String>,
    /// How long it may be used, in seconds (at most a year, §3.2).
    pub max_age: u64,
    /// When it was fetched (Unix seconds).
    pub fetched: u64,
}

/// The longest `max_age` honoured (RFC 8461 §3.2: 31557600).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy file larger than this is refused (RFC 8461 §3.3 suggests
/// 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;

impl Policy {
    /// Parses a policy file (RFC 8461 §3.2: `key: value` lines, CRLF or
    /// LF, unknown keys ignored); `id` and `fetched` as given.
    pub fn parse(text: &str, id: &str, fetched: u64) -> Result<Policy, String> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("a line without a key: {line:?}"));
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_owned()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("mode {other:?} is unknown")),
                    })
                }
                "max_age" => {
                    let seconds: u64 = value
                        .parse()
                        .map_err(|_| format!("max_age {value:?} is not a number"))?;
                    max_age = Some(seconds.min(MAX_AGE_LIMIT));
                }
                // A host name, or "*." and one; anything else matches no
                // MX host and is dropped. At most 100: more than any domain
                // needs, and a policy is no way to make us hold a megabyte.
                "mx" if mx.len() < 100 => {
                    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
                    if is_pattern(&pattern) {
                        mx.push(pattern);
                    }
                }
                "mx" => {}
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("no \"version: STSv1\"".into());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("no mx".into());
        }
        Ok(Policy {
            id: id.to_owned(),
            mode,
            mx,
            max_age,
            fetched,
        })
    }

    /// Whether it may still be used at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fetched.saturating_add(self.max_age)
    }

    /// Whether `host` (an MX host name) is one the policy allows.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| matches(pattern, &host))
    }

    /// The policy's own lines, as TLS reports quote it (RFC 8460 §4.4's
    /// `policy-string`).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            "version: STSv1".to_owned(),
            format!("mode: {}", self.mode.name()),
        ];
        lines.extend(self.mx.iter().map(|mx| format!("mx: {mx}")));
        lines.push(format!("max_age: {}", self.max_age));
        lines
    }

    /// The record kept between fetches (the policy's own lines, plus its
    /// id and fetch time).
    pub fn to_record(&self) -> String {
        let mut text = format!("id: {}\nfetched: {}\n", self.id, self.fetched);
        for line in self.lines() {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    /// Reads a kept record back; `None` if damaged.
    pub fn from_record(text: &str) -> Option<Policy> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let id = field("id:")?;
        let fetched = field("fetched:")?.parse().ok()?;
        Policy::parse(text, &id, fetched).ok()
    }
}

/// A host name in ASCII (letters, digits, hyphens, non-empty labels),
/// optionally after `*.`.
fn is_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// RFC 8461 §4.1: a pattern is a host name, or `*.` and a name, which
/// matches one label more (not zero, not two).
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// The policy id from the `_mta-sts` TXT records (RFC 8461 §3.1): of the
/// records that start with `v=STSv1;` there must be exactly one, and it
/// must have an id of 1 to 32 letters and digits; otherwise no policy.
pub fn txt_id(records: &[String]) -> Option<String> {
    use mail_auth::common::parse::TxtRecordParser;
    let candidates: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1;"))
        .collect();
    let [one] = candidates.as_slice() else {
        return None;
    };
    let id = mail_auth::mta_sts::MtaSts::parse(one.as_bytes()).ok()?.id;
    let valid = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

    #[test]
    fn a_policy_is_read_and_matches_its_hosts() {
        let policy = Policy::parse(POLICY, "20261206", 1000).unwrap();
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age, 604_800);
        assert!(policy.allows("mail.example.org"));
        assert!(policy.allows("MAIL.example.org."));
        assert!(policy.allows("mx1.example.net"));
        assert!(!policy.allows("example.net"), "the wildcard needs a label");
        assert!(!policy.allows("a.b.example.net"), "one label only");
        assert!(!policy.allows("mail.example.org.evil.test"));
        assert!(policy.is_fresh(1000 + 604_799));
        assert!(!policy.is_fresh(1000 + 604_800));
        assert_eq!(Policy::from_record(&policy.to_record()), Some(policy));
    }

    #[test]
    fn broken_policies_are_refused() {
        for (text, why) in [
            ("mode: enforce\nmx: a\nmax_age: 1\n", "version"),
            ("version: STSv1\nmx: a\nmax_age: 1\n", "mode"),
            ("version: STSv1\nmode: enforce\nmax_age: 1\n", "mx"),
            ("version: STSv1\nmode: enforce\nmx: a\n", "max_age"),
            ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "mode"),
            (
                "version: STSv1\nmode: enforce\nmx: a\nmax_age: soon\n",
                "max_age",
            ),
            ("<html>not a policy</html>", "key"),
            (
                "version: STSv1\nmode: enforce\nmx: not a host\nmx: a..b\nmax_age: 1\n",
                "mx",
            ),
        ] {
            let error = Policy::parse(text, "x", 0).unwrap_err();
            assert!(error.contains(why), "{text:?}: {error}");
        }
        let none = Policy::parse("version: STSv1\nmode: none\nmax_age: 86400\n", "x", 0).unwrap();
        assert_eq!(none.mode, Mode::None);
        let long = Policy::parse(
            "version: STSv1\nmode: testing\nmx: a\nmax_age: 99999999999\nextension: 1\n",
            "x",
            0,
        )
        .unwrap();
        assert_eq!(long.max_age, MAX_AGE_LIMIT);
        assert_eq!(Policy::from_record("id: x\nfetched: soon\n"), None);
    }

    #[test]
    fn exactly_one_txt_record_names_the_policy() {
        let one = vec![
            "v=STSv1; id=20261206T1;".to_owned(),
            "v=spf1 -all".to_owned(),
        ];
        assert_eq!(txt_id(&one).as_deref(), Some("20261206T1"));
        let two = vec!["v=STSv1; id=a;".to_owned(), "v=STSv1; id=b;".to_owned()];
        assert_eq!(txt_id(&two), None);
        // One that parses and one that does not: still two, no policy.
        let broken = vec!["v=STSv1; id=a;".to_owned(), "v=STSv1; nonsense".to_owned()];
        assert_eq!(txt_id(&broken), None);
        assert_eq!(txt_id(&["v=STSv1; id=;".to_owned()]), None, "an empty id");
        assert_eq!(
            txt_id(&["v=STSv1; id=a-b;".to_owned()]),
            None,
            "not alphanumeric"
        );
        assert_eq!(txt_id(&["v=STSv1;".to_owned()]), None, "no id");
        assert_eq!(txt_id(&[]), None);
    }
}
