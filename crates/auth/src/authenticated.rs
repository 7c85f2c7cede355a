//! Proof that a login succeeded. An [`Authenticated`] is made only where
//! credentials are checked (the password and APOP checks of [`Users`],
//! the SASL mechanisms), so code that is handed one knows the check
//! happened: the protocol cores take nothing else to log a client in.
//!
//! [`Users`]: crate::Users

use std::fmt;

/// A user whose credentials were checked, by the canonical name from the
/// passwd-file.
#[derive(Clone, PartialEq, Eq)]
pub struct Authenticated {
    name: String,
}

impl Authenticated {
    /// Only the checks in this crate vouch for a user.
    pub(crate) fn checked(name: &str) -> Authenticated {
        Authenticated {
            name: name.to_owned(),
        }
    }

    /// For the protocol cores' own tests and fuzz targets, which drive a
    /// session without a user table: never in a build that serves anyone
    /// (the `testing` feature is enabled by dev-dependencies and the fuzz
    /// crate only).
    #[cfg(feature = "testing")]
    pub fn for_tests(name: &str) -> Authenticated {
        Authenticated::checked(name)
    }

    /// The user's canonical name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's canonical name, owned.
    pub fn into_name(self) -> String {
        self.name
    }
}

impl fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authenticated({:?})", self.name)
    }
}

impl fmt::Display for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
