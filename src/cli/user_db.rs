//! `yubin user …` with `storage.backend = "postgres"`: the same commands
//! against the database's users table. Every node notices a change within
//! a few seconds, without a restart.

use yubin_auth::UserEntry;
use yubin_pg::Database;
use yubin_server::Config;

use super::db::{open, schema_failure};
use super::user::{UserCommand, import_result, read_import};
use super::{Failure, password};

fn db_failure(error: yubin_pg::DbError) -> Failure {
    Failure::Runtime(error.into())
}

/// Runs a `user` subcommand against the database.
pub fn run(command: UserCommand, config: &Config) -> Result<(), Failure> {
    let (runtime, db) = open(config)?;
    runtime.block_on(async {
        db.check_schema().await.map_err(schema_failure)?;
        run_on(command, &db).await
    })
}

async fn run_on(command: UserCommand, db: &Database) -> Result<(), Failure> {
    match command {
        UserCommand::List => {
            let (_, users) = db.user_entries().await.map_err(db_failure)?;
            super::user::print_users(users.iter());
        }
        UserCommand::Add {
            name,
            password_stdin,
            scheme,
        } => {
            super::user::valid_name(&name)?;
            let scheme = super::user::parse_scheme(&scheme)?;
            if db.user_entry(&name).await.map_err(db_failure)?.is_some() {
                return Err(Failure::Usage(format!(
                    "NAME: user {name:?} already exists"
                )));
            }
            let hashed = super::user::hash(scheme, &password::read_new(password_stdin)?)?;
            if !db
                .add_user(&UserEntry::new(&name, hashed))
                .await
                .map_err(db_failure)?
            {
                return Err(Failure::Usage(format!(
                    "NAME: user {name:?} already exists"
                )));
            }
            println!("added user {name}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            scheme,
        } => {
            let scheme = super::user::parse_scheme(&scheme)?;
            if db.user_entry(&name).await.map_err(db_failure)?.is_none() {
                return Err(Failure::Usage(format!("NAME: no user {name:?}")));
            }
            let hashed = super::user::hash(scheme, &password::read_new(password_stdin)?)?;
            if !db.set_password(&name, &hashed).await.map_err(db_failure)? {
                return Err(Failure::Usage(format!("NAME: no user {name:?}")));
            }
            println!("changed the password of {name}");
        }
        UserCommand::Del { name, delete_mail } => {
            match db
                .remove_user(&name, delete_mail)
                .await
                .map_err(db_failure)?
            {
                yubin_pg::Removal::Removed(messages) => {
                    println!("deleted user {name} and {messages} messages");
                }
                yubin_pg::Removal::HasMail(messages) => {
                    return Err(Failure::Usage(format!(
                        "NAME: {name:?} has {messages} messages, which would be deleted with the user; add --delete-mail to do so"
                    )));
                }
                yubin_pg::Removal::NoSuchUser => {
                    return Err(Failure::Usage(format!("NAME: no user {name:?}")));
                }
            }
        }
        UserCommand::Import { file, replace } => {
            // Names were checked as the file was read.
            let (entries, skipped) = read_import(&file)?;
            let report = db
                .import_users(&entries, replace)
                .await
                .map_err(db_failure)?;
            return import_result(report.added, report.replaced, report.kept, &skipped);
        }
    }
    Ok(())
}
