//! Where a user's Maildir is: expanding `mail_location` templates.
//!
//! Variables as in Dovecot: `%u` the user name, `%n` its local part, `%d`
//! its domain, `%h` the home directory, `%%` a percent sign; a leading `~/`
//! is the home directory. An optional `maildir:` prefix and Dovecot's
//! `:KEY=value` options after the path are accepted and ignored, so a
//! Dovecot `mail_location` or `userdb_mail` value can be used as it is.

use std::path::PathBuf;

/// Why a template could not be expanded for a user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    /// The template uses `%h` or `~` and the user has no home directory.
    #[error("the mail location uses the home directory, but the user has none")]
    NoHome,
    /// The template uses `%d` and the user name has no domain.
    #[error("the mail location uses %d, but the user name has no domain")]
    NoDomain,
    /// An unknown `%` variable.
    #[error("unknown variable %{0} in mail location")]
    UnknownVariable(char),
    /// The template is not a Maildir location.
    #[error("only maildir: locations are supported, not {0:?}")]
    NotMaildir(String),
}

/// Expands `template` for `user` (a name already checked by the auth crate:
/// no `/`, no `..`), with an optional home directory.
pub fn expand(template: &str, user: &str, home: Option<&str>) -> Result<PathBuf, LocationError> {
    let path = strip_format(template)?;
    let (local, domain) = match user.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (user, None),
    };
    let home = home.filter(|h| !h.is_empty());
    let mut out = String::with_capacity(path.len() + user.len());
    let mut rest = path;
    if let Some(after) = rest.strip_prefix("~/") {
        out.push_str(home.ok_or(LocationError::NoHome)?);
        out.push('/');
        rest = after;
    }
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(user),
            Some('n') => out.push_str(local),
            Some('d') => out.push_str(domain.ok_or(LocationError::NoDomain)?),
            Some('h') => out.push_str(home.ok_or(LocationError::NoHome)?),
            Some('%') => out.push('%'),
            Some(other) => return Err(LocationError::UnknownVariable(other)),
            None => return Err(LocationError::UnknownVariable(' ')),
        }
    }
    Ok(PathBuf::from(out))
}

/// The default location under `mail_root`: `mail_root/<domain>/<local>` for
/// `local@domain`, `mail_root/<user>` for a name without a domain.
pub fn default_location(mail_root: &std::path::Path, user: &str) -> PathBuf {
    match user.split_once('@') {
        Some((local, domain)) => mail_root.join(domain).join(local),
        None => mail_root.join(user),
    }
}

fn strip_format(template: &str) -> Result<&str, LocationError> {
    let (format, path) = match template.split_once(':') {
        Some((format, path)) if !format.contains('/') => (Some(format), path),
        _ => (None, template),
    };
    if let Some(format) = format
        && !format.eq_ignore_ascii_case("maildir")
    {
        return Err(LocationError::NotMaildir(format.to_owned()));
    }
    // Dovecot options follow the path after another ':' (e.g. ":LAYOUT=fs").
    Ok(path.split(':').next().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables() {
        let p = |t: &str, u: &str| expand(t, u, Some("/home/x"));
        assert_eq!(
            p("/var/mail/%d/%n/Maildir", "a@b.org"),
            Ok("/var/mail/b.org/a/Maildir".into())
        );
        assert_eq!(p("maildir:~/Maildir", "a"), Ok("/home/x/Maildir".into()));
        assert_eq!(
            p("maildir:%h/Maildir:LAYOUT=fs", "a"),
            Ok("/home/x/Maildir".into())
        );
        assert_eq!(p("/m/%u/100%%", "a@b"), Ok("/m/a@b/100%".into()));
        assert_eq!(p("/m/%d/%n", "a"), Err(LocationError::NoDomain));
        assert_eq!(p("/m/%x", "a"), Err(LocationError::UnknownVariable('x')));
        assert_eq!(
            p("mbox:~/mail", "a"),
            Err(LocationError::NotMaildir("mbox".into()))
        );
        assert_eq!(expand("~/Maildir", "a", None), Err(LocationError::NoHome));
    }

    #[test]
    fn default_layout() {
        let root = std::path::Path::new("/d/mail");
        assert_eq!(
            default_location(root, "a@b.org"),
            PathBuf::from("/d/mail/b.org/a")
        );
        assert_eq!(
            default_location(root, "demo"),
            PathBuf::from("/d/mail/demo")
        );
    }
}
