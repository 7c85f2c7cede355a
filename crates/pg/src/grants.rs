//! POP-before-SMTP grants (`relay_grants`): a client's address may relay
//! as a user until its grant expires. Each user logging in from an address
//! has a row of its own, so that the logins of users behind one address (a
//! NAT, a company's gateway) do not wait on one row; the client relays as
//! the user of its newest grant.
//!
//! Writing a grant locks its row until the statement commits, so one
//! user's logins in a row would still wait on each other. A grant that is
//! already the client's newest, to the same user, written less than a
//! second ago (a tenth of the window, for windows under ten seconds), is
//! therefore left as it is: it is read without locking its row, and
//! expires at most that much earlier than a fresh one would. A login's
//! grant follows the same rule, in `yubin_open_maildrop` (migration 8).

use crate::{Database, DbError};

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
            // The same rule as a login's grant in `yubin_open_maildrop`
            // (migration 8): left while it stands fresh and the client's
            // newest.
            "INSERT INTO relay_grants (client, username, expires) \
             SELECT client, username, now() + make_interval(secs => $3) \
             FROM unnest($1::text[], $2::text[]) AS g(client, username) \
             WHERE NOT EXISTS (SELECT 1 FROM (SELECT n.username, n.expires FROM relay_grants n \
                     WHERE n.client = g.client ORDER BY n.expires DESC, n.username LIMIT 1) AS newest \
                 WHERE newest.username = g.username \
                 AND newest.expires >= now() + make_interval(secs => $3 - least(1.0, $3 / 10))) \
             ON CONFLICT (client, username) DO UPDATE SET expires = EXCLUDED.expires",
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
                 ORDER BY expires DESC, username LIMIT 1",
                &[&client],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}
