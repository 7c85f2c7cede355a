//! POP-before-SMTP grants (`relay_grants`): a client's address may relay
//! as a user until its grant expires. Each user logging in from an address
//! has a row of its own, so that the logins of users behind one address (a
//! NAT, a company's gateway) do not wait on one row; the client relays as
//! the user of its newest grant.
//!
//! Writing a grant locks its row until the statement commits, so one
//! user's logins in a row would still wait on each other. A grant that
//! already stands for the same client and user, written less than a second
//! ago (a tenth of the window, for windows under ten seconds), is
//! therefore left as it is: it is read without locking its row, and
//! expires at most that much earlier than a fresh one would.

use crate::{Database, DbError};

/// SQL: whether the grant of `client` to `user` for `seconds` (SQL
/// expressions) already stands and was written less than a second ago;
/// such a grant is not written again.
macro_rules! grant_stands {
    ($client:literal, $user:literal, $seconds:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM relay_grants r WHERE r.client = ",
            $client,
            " AND r.username = ",
            $user,
            " AND r.expires >= now() + make_interval(secs => ",
            $seconds,
            " - least(1.0, ",
            $seconds,
            " / 10)))"
        )
    };
}

impl Database {
    /// Grants each of `clients` relaying as the user at the same place in
    /// `users`, for `seconds` from now; a client named twice keeps the
    /// last. A grant that stands already (see the module's doc) is left.
    pub async fn write_grants(
        &self,
        clients: &[String],
        users: &[String],
        seconds: f64,
    ) -> Result<(), DbError> {
        let mut last = std::collections::HashMap::new();
        for (client, user) in clients.iter().zip(users) {
            last.insert(client, user);
        }
        let (clients, users): (Vec<&String>, Vec<&String>) = last.into_iter().unzip();
        // Expired grants are swept now and then (`remove_expired`), not on
        // the login's way.
        self.execute(
            concat!(
                "INSERT INTO relay_grants (client, username, expires) \
                 SELECT client, username, now() + make_interval(secs => $3) \
                 FROM unnest($1::text[], $2::text[]) AS g(client, username) \
                 WHERE NOT ",
                grant_stands!("g.client", "g.username", "$3::float8"),
                " ON CONFLICT (client, username) DO UPDATE SET expires = EXCLUDED.expires"
            ),
            &[&clients, &users, &seconds],
        )
        .await
        .map(|_| ())
    }

    /// The user `client` may relay as: the user of its newest grant that
    /// has not expired.
    pub async fn relay_grant(&self, client: &str) -> Result<Option<String>, DbError> {
        let row = self
            .query_opt(
                "SELECT username FROM relay_grants WHERE client = $1 AND expires > now() \
                 ORDER BY expires DESC LIMIT 1",
                &[&client],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}
