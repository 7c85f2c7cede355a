//! The seams over PostgreSQL (issue 16), for several nodes sharing one
//! database: what one node keeps in memory, kept in tables every node
//! reads. Times are the database's (`now()`), so that nodes whose clocks
//! differ agree. A database that cannot be asked fails safe: no grant, no
//! penalty change, no greylisting verdict against the sender.

mod grants;
mod greylist;
mod mail;
mod penalties;
mod users;

pub use grants::PgGrants;
pub use greylist::PgGreylist;
pub use mail::{LOCK_LEASE, LOCK_RENEWAL, PgMailStore};
pub use penalties::PgPenalties;
pub use users::PgUsers;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mail_tests;
