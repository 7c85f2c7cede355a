//! Maildrops: a user's `messages` rows in one folder, in arrival order,
//! and the lock one POP3 session holds on a maildrop across the cluster.
//!
//! A lock is a row with a lease. The node renews the leases of the
//! sessions it holds ([`Database::renew_locks`]); a node that dies or
//! loses the database stops renewing, and its locks lapse. UPDATE removes
//! the lock and the deleted messages in one statement, and only while the
//! lock is still the session's own, so a session whose lock was taken
//! over cannot delete what the next session listed.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::types::ToSql;

use crate::{Database, DbError};

/// One message as a maildrop lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its row, stable while it exists.
    pub id: i64,
    /// Its unique-id listing (UIDL), fixed at delivery.
    pub uidl: String,
    /// Octets as stored (LF line ends).
    pub size: u64,
    /// Octets on the POP3 wire (CRLF line ends), fixed at delivery.
    pub wire_size: u64,
    /// Its body.
    pub body: i64,
    /// Whether a client retrieved it and left it on the server.
    pub seen: bool,
}

/// A maildrop's messages in arrival order, as a login reads them: a few
/// flat arrays (100,000 messages are six allocations, not 100,000 rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    ids: Vec<i64>,
    sizes: Vec<i64>,
    wire_sizes: Vec<i64>,
    bodies: Vec<i64>,
    seen: Vec<bool>,
    /// The UIDLs, one after another (they never contain a space).
    uidls: String,
    /// Where each UIDL ends in `uidls`.
    uidl_ends: Vec<usize>,
}

/// One message of a [`Listing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its row.
    pub id: i64,
    /// Its UIDL.
    pub uidl: &'a str,
    /// Octets as stored.
    pub size: u64,
    /// Octets on the POP3 wire.
    pub wire_size: u64,
    /// Its body.
    pub body: i64,
    /// Whether it was retrieved and left on the server.
    pub seen: bool,
}

impl Listing {
    /// How many messages.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Message `i`.
    pub fn get(&self, i: usize) -> Option<Entry<'_>> {
        let start = if i == 0 {
            0
        } else {
            *self.uidl_ends.get(i - 1)? + 1
        };
        Some(Entry {
            id: *self.ids.get(i)?,
            uidl: self.uidls.get(start..*self.uidl_ends.get(i)?)?,
            size: octets(*self.sizes.get(i)?),
            wire_size: octets(*self.wire_sizes.get(i)?),
            body: *self.bodies.get(i)?,
            seen: *self.seen.get(i)?,
        })
    }

    /// Every message, in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The total length of the UIDLs.
    pub fn uidl_octets(&self) -> usize {
        self.uidls.len()
    }

    /// The six arrays from column `first` of `row` on.
    fn from_row(row: &tokio_postgres::Row, first: usize) -> Result<Listing, DbError> {
        let mut listing = Listing {
            ids: row.try_get(first)?,
            sizes: row.try_get(first + 1)?,
            wire_sizes: row.try_get(first + 2)?,
            bodies: row.try_get(first + 3)?,
            seen: row.try_get(first + 4)?,
            uidls: row.try_get(first + 5)?,
            uidl_ends: Vec::new(),
        };
        listing.uidl_ends = listing
            .uidls
            .match_indices(' ')
            .map(|(at, _)| at)
            .chain((!listing.uidls.is_empty()).then_some(listing.uidls.len()))
            .collect();
        let n = listing.ids.len();
        let lengths = [
            listing.sizes.len(),
            listing.wire_sizes.len(),
            listing.bodies.len(),
            listing.seen.len(),
            listing.uidl_ends.len(),
        ];
        if lengths.iter().any(|&l| l != n) {
            return Err(DbError::Schema(format!(
                "a maildrop listing does not add up ({n} messages, {lengths:?})"
            )));
        }
        Ok(listing)
    }
}

/// What a listing was read from: while the maildrop's user, message
/// count and version are these, the listing is still right (deliveries
/// change the count; UPDATE and a delivery taken back, the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListingKey {
    /// The user's row.
    pub user: i64,
    /// Messages in the folder.
    pub count: i64,
    /// The maildrop's version.
    pub version: i64,
}

/// A POP-before-SMTP grant written with a login's listing, so that it
/// costs the login no statement of its own: `client` (its key in
/// `relay_grants`) may relay as `user` for `seconds`.
#[derive(Debug, Clone, Copy)]
pub struct LoginGrant<'a> {
    /// The client's key.
    pub client: &'a str,
    /// Who logged in.
    pub user: &'a str,
    /// How long the grant lasts.
    pub seconds: f64,
}

/// A maildrop lock asked for.
#[derive(Debug, Clone, Copy)]
pub struct MaildropLock<'a> {
    /// The user whose maildrop it is.
    pub name: &'a str,
    /// The node asking (the lock's owner in `maildrop_locks`).
    pub node: &'a str,
    /// The session that will hold it.
    pub session: &'a str,
    /// How long it lasts unless renewed.
    pub lease: Duration,
}

/// What asking for a maildrop's lock gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    /// The lock is this session's: the user's row id, and the maildrop's
    /// messages in arrival order.
    Taken {
        /// The user's row.
        user: i64,
        /// What the maildrop is now.
        key: ListingKey,
        /// The messages; `None` when the listing the caller has (its
        /// `cached` key equals `key`) is still right.
        listing: Option<Listing>,
    },
    /// Another session holds it and its lease runs.
    InUse,
    /// No user has that name.
    NoSuchUser,
}

/// What UPDATE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Whether the session still held its lock (if not, nothing changed).
    pub lock_held: bool,
    /// Messages removed.
    pub removed: u64,
}

/// A message to put in a maildrop.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The user, by name in any ASCII case.
    pub user: &'a str,
    /// The folder: `""` is the maildrop POP3 serves.
    pub folder: &'a str,
    /// Its UIDL; `None` makes one from the time, the body and `node`.
    pub uidl: Option<&'a str>,
    /// This node's name, in new UIDLs.
    pub node: &'a str,
    /// Octets as stored.
    pub size: u64,
    /// Octets on the POP3 wire.
    pub wire_size: u64,
    /// A body already started with [`Database::start_body`], or `None` to
    /// start one now.
    pub body: Option<i64>,
    /// The sequence number of the first of `chunks`.
    pub first_seq: i32,
    /// The chunks of the body not yet written.
    pub chunks: Vec<&'a [u8]>,
    /// Whether it was retrieved and left on the server (a Maildir `S`
    /// flag, when moving mail in).
    pub seen: bool,
    /// When it arrived, in seconds since the epoch; `None`: now.
    pub delivered: Option<i64>,
}

/// A message into a maildrop, as one statement: the body (unless started
/// already, and only for a user that exists), its last chunks and the
/// maildrop row; its row id and UIDL, or no row for no such user.
const DELIVER: &str = "WITH b AS ( \
         INSERT INTO bodies (size) SELECT $1 \
         WHERE $2::bigint IS NULL AND EXISTS (SELECT 1 FROM users WHERE name_key = $9) \
         RETURNING id), \
     body AS (SELECT id FROM b UNION ALL SELECT $2::bigint WHERE $2::bigint IS NOT NULL), \
     c AS ( \
         INSERT INTO body_chunks (body_id, seq, data) \
         SELECT body.id, $3::int + (s.n - 1)::int, s.data \
         FROM body, unnest($4::bytea[]) WITH ORDINALITY AS s(data, n)), \
     m AS ( \
         INSERT INTO messages (user_id, folder, uidl, size, wire_size, body_id, seen, delivered) \
         SELECT u.id, $5, coalesce($6, \
             floor(extract(epoch FROM now()))::bigint || '.M' || \
             (extract(microseconds FROM now())::bigint % 1000000) || \
             'Y' || body.id || '.' || $7), \
             $1, $8, body.id, $10, coalesce(to_timestamp($11::bigint), now()) \
         FROM users u, body WHERE u.name_key = $9 RETURNING id, uidl) \
     SELECT id, uidl FROM m";

/// A login's lock, grant and listing (migration 7's function, its grant
/// rule made migration 8's).
pub(crate) const OPEN_MAILDROP: &str =
    "SELECT * FROM yubin_open_maildrop($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Letting the locks of sessions `$1` go.
pub(crate) const RELEASE_LOCKS: &str = "DELETE FROM maildrop_locks WHERE session = ANY($1)";

/// The values [`DELIVER`] takes that a [`NewMessage`] holds in another form.
struct Owned {
    size: i64,
    wire_size: i64,
    user_key: String,
}

impl Owned {
    fn of(message: &NewMessage<'_>) -> Owned {
        Owned {
            size: signed(message.size),
            wire_size: signed(message.wire_size),
            user_key: message.user.to_ascii_lowercase(),
        }
    }

    fn params<'a>(&'a self, message: &'a NewMessage<'_>) -> [&'a (dyn ToSql + Sync); 11] {
        [
            &self.size,
            &message.body,
            &message.first_seq,
            &message.chunks,
            &message.folder,
            &message.uidl,
            &message.node,
            &self.wire_size,
            &self.user_key,
            &message.seen,
            &message.delivered,
        ]
    }
}

fn octets(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Database {
    /// Takes `lock` (`name`'s maildrop, for `session` of `node`, for
    /// `lease`), and lists its `folder`; or finds the lock held. A lapsed
    /// lease is taken over; the session's own lock is taken again
    /// (renewed). One statement (`yubin_open_maildrop`, migration 7): the
    /// listing runs after the lock, with a snapshot of its own, so it sees
    /// what the last holder committed. With `cached`, the key of a listing
    /// the caller keeps, the messages are not sent again if the maildrop
    /// is still what that listing was read from (the count and version
    /// are read with the listing, so they always describe what it lists).
    /// `grant` is written with them, and only if the lock was taken.
    pub async fn lock_maildrop(
        &self,
        lock: &MaildropLock<'_>,
        folder: &str,
        cached: Option<ListingKey>,
        grant: Option<LoginGrant<'_>>,
    ) -> Result<Locked, DbError> {
        let MaildropLock {
            name,
            node,
            session,
            lease,
        } = *lock;
        let name_key = name.to_ascii_lowercase();
        let seconds = lease.as_secs_f64();
        let (grant_client, grant_user, grant_seconds) = grant.map_or((None, None, None), |g| {
            (Some(g.client), Some(g.user), Some(g.seconds))
        });
        let (cached_user, cached_count, cached_version) = match cached {
            Some(k) => (Some(k.user), Some(k.count), Some(k.version)),
            None => (None, None, None),
        };
        let row = self
            .query_opt(
                OPEN_MAILDROP,
                &[
                    &name_key,
                    &node,
                    &session,
                    &seconds,
                    &folder,
                    &grant_client,
                    &grant_user,
                    &grant_seconds,
                    &cached_user,
                    &cached_count,
                    &cached_version,
                ],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Locked::NoSuchUser);
        };
        let user: i64 = row.try_get(0)?;
        if !row.try_get::<_, bool>(1)? {
            return Ok(Locked::InUse);
        }
        let read = || -> Result<(ListingKey, Option<Listing>), DbError> {
            let version = row.try_get(3)?;
            let count: Option<i64> = row.try_get(2)?;
            if let Some(count) = count {
                let key = ListingKey {
                    user,
                    count,
                    version,
                };
                if cached == Some(key) {
                    return Ok((key, None));
                }
            }
            let listing = Listing::from_row(&row, 4)?;
            let count = count.unwrap_or_else(|| i64::try_from(listing.len()).unwrap_or(i64::MAX));
            let key = ListingKey {
                user,
                count,
                version,
            };
            Ok((key, Some(listing)))
        };
        match read() {
            Ok((key, listing)) => Ok(Locked::Taken { user, key, listing }),
            Err(error) => {
                // Taken but not understood: let it go again rather than
                // leave the user locked out for a lease.
                let _ = self.unlock_maildrops(&[(user, session.to_owned())]).await;
                Err(error)
            }
        }
    }

    /// Extends the leases of `sessions` by `lease` from now; how many were
    /// still held.
    pub async fn renew_locks(&self, sessions: &[String], lease: Duration) -> Result<u64, DbError> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let renewed = self
            .execute(
                "UPDATE maildrop_locks SET lease_until = now() + make_interval(secs => $2) \
                 WHERE session = ANY($1)",
                &[&sessions, &lease.as_secs_f64()],
            )
            .await?;
        Ok(renewed)
    }

    /// Lets go of the locks of several sessions `(user, session)` that
    /// ended without UPDATE, in one statement. A session's name is its
    /// lock's (random, never reused), so it alone picks the row: the
    /// statement keeps one plan for any number of sessions, where a join
    /// with the arrays was planned again at every call.
    pub async fn unlock_maildrops(&self, locks: &[(i64, String)]) -> Result<u64, DbError> {
        let sessions: Vec<&str> = locks.iter().map(|(_, session)| session.as_str()).collect();
        self.execute(RELEASE_LOCKS, &[&sessions]).await
    }

    /// The messages in `user`'s `folder`, in arrival order.
    pub async fn list_maildrop(&self, user: i64, folder: &str) -> Result<Vec<Listed>, DbError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, uidl, size, wire_size, body_id, seen FROM messages \
                 WHERE user_id = $1 AND folder = $2 ORDER BY id",
            )
            .await?;
        let rows = client.query(&statement, &[&user, &folder]).await?;
        Ok(rows
            .iter()
            .map(|row| Listed {
                id: row.get(0),
                uidl: row.get(1),
                size: octets(row.get(2)),
                wire_size: octets(row.get(3)),
                body: row.get(4),
                seen: row.get(5),
            })
            .collect())
    }

    /// UPDATE, as one statement: while `session` still holds `user`'s
    /// lock, removes the messages `delete` (and bodies no one else names),
    /// marks `seen` as retrieved, and releases the lock. Nothing changes
    /// when the lock is no longer the session's.
    pub async fn commit_update(
        &self,
        user: i64,
        session: &str,
        delete: &[i64],
        seen: &[i64],
    ) -> Result<Committed, DbError> {
        let row = self
            .query_one(
                "WITH l AS ( \
                     DELETE FROM maildrop_locks WHERE user_id = $1 AND session = $2 RETURNING user_id), \
                 d AS ( \
                     DELETE FROM messages m USING l \
                     WHERE m.user_id = l.user_id AND m.id = ANY($3) RETURNING m.body_id), \
                 s AS ( \
                     UPDATE messages m SET seen = true FROM l \
                     WHERE m.user_id = l.user_id AND m.id = ANY($4) AND m.id <> ALL($3) \
                     AND NOT m.seen RETURNING 1), \
                 gone AS ( \
                     DELETE FROM bodies b USING d WHERE b.id = d.body_id \
                     AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.body_id = b.id AND o.id <> ALL($3)) \
                     AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.body_id = b.id) RETURNING 1) \
                 SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM d), \
                        (SELECT count(*) FROM s), (SELECT count(*) FROM gone)",
                &[&user, &session, &delete, &seen],
            )
            .await?;
        Ok(Committed {
            lock_held: row.get::<_, i64>(0) == 1,
            removed: octets(row.get(1)),
        })
    }

    /// A user's row id, by name in any ASCII case.
    pub async fn user_id(&self, name: &str) -> Result<Option<i64>, DbError> {
        let row = self
            .query_opt(
                "SELECT id FROM users WHERE name_key = $1",
                &[&name.to_ascii_lowercase()],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The folders a user has messages in (`""`: the maildrop POP3
    /// serves).
    pub async fn folders(&self, user: i64) -> Result<Vec<String>, DbError> {
        let rows = self
            .query(
                "SELECT DISTINCT folder FROM messages WHERE user_id = $1 ORDER BY folder",
                &[&user],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Puts a message in a maildrop, as one statement: the body (unless
    /// started already), its last chunks and the maildrop row. Its row id
    /// and UIDL; `None` when there is no such user (nothing is written).
    pub async fn deliver(
        &self,
        message: &NewMessage<'_>,
    ) -> Result<Option<(i64, String)>, DbError> {
        let owned = Owned::of(message);
        let row = self.query_opt(DELIVER, &owned.params(message)).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Puts several messages in maildrops in one transaction, in order
    /// (one commit for all: moving a maildrop in is not a fsync per
    /// message). What [`Database::deliver`] returns, for each.
    pub async fn deliver_batch(
        &self,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<Option<(i64, String)>>, DbError> {
        let mut client = self.client().await?;
        let statement = client.prepare_cached(DELIVER).await?;
        let tx = client.transaction().await?;
        let mut delivered = Vec::with_capacity(messages.len());
        for message in messages {
            let owned = Owned::of(message);
            let row = tx.query_opt(&statement, &owned.params(message)).await?;
            delivered.push(row.map(|r| (r.get(0), r.get(1))));
        }
        tx.commit().await?;
        Ok(delivered)
    }

    /// Removes one message again (its delivery was part of an acceptance
    /// that failed), and its body unless another row names it.
    pub async fn remove_message(&self, id: i64) -> Result<(), DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let body: Option<i64> = tx
            .query_opt(
                "DELETE FROM messages WHERE id = $1 RETURNING body_id",
                &[&id],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(body) = body {
            crate::bodies::remove_unreferenced(&tx, &[body]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The sizes remembered for `messages` under `rule`: a message absent
    /// from the map has none yet; `Some(None)` means "as listed".
    pub async fn derived_sizes(
        &self,
        rule: &str,
        messages: &[i64],
    ) -> Result<HashMap<i64, Option<u64>>, DbError> {
        let rows = self
            .query(
                "SELECT message_id, size FROM derived_sizes WHERE rule = $1 AND message_id = ANY($2)",
                &[&rule, &messages],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, Option<i64>>(1).map(octets)))
            .collect())
    }

    /// Remembers sizes computed under `rule`.
    pub async fn store_derived_sizes(
        &self,
        rule: &str,
        sizes: &[(i64, Option<u64>)],
    ) -> Result<(), DbError> {
        if sizes.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = sizes.iter().map(|(id, _)| *id).collect();
        let values: Vec<Option<i64>> = sizes.iter().map(|(_, s)| s.map(signed)).collect();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO derived_sizes (message_id, rule, size) \
                 SELECT id, $1, size FROM unnest($2::bigint[], $3::bigint[]) AS s(id, size) \
                 ON CONFLICT DO NOTHING",
                &[&rule, &ids, &values],
            )
            .await?;
        Ok(())
    }
}
