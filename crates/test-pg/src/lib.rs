//! A private PostgreSQL cluster for tests, started from the machine's own
//! binaries (`initdb`, `pg_ctl`, `postgres`: on `PATH` or under
//! `/usr/lib/postgresql/*/bin`), in a temporary directory, on a free
//! loopback port, with a unix socket in the same directory. Dropping it
//! stops the server (`pg_ctl stop -m immediate`: tests also kill it on
//! purpose) and removes the directory.
//!
//! PostgreSQL refuses to run as root; under root the cluster belongs to
//! the `postgres` account (or `nobody`) and its commands run as it.

use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The role tests connect as (a superuser, trust authentication on
/// loopback and the socket).
pub const ROLE: &str = "yubin";

/// A running cluster.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    /// Server settings (`key=value`) given at every start.
    settings: Vec<String>,
}

impl TestPostgres {
    /// Makes a cluster and starts it; the database `yubin` exists.
    pub fn start() -> io::Result<TestPostgres> {
        TestPostgres::start_with(&[])
    }

    /// As [`TestPostgres::start`], with server settings (`key=value`, as
    /// `postgres -c` takes them), e.g.
    /// `shared_preload_libraries=pg_stat_statements`.
    pub fn start_with(settings: &[&str]) -> io::Result<TestPostgres> {
        TestPostgres::start_with_files(settings, &[])
    }

    /// As [`TestPostgres::start_with`], with `files` (name, contents)
    /// written into the data directory before the server starts, readable
    /// by the cluster's account alone: `server.crt` and `server.key` for
    /// `ssl=on`.
    pub fn start_with_files(
        settings: &[&str],
        files: &[(&str, &[u8])],
    ) -> io::Result<TestPostgres> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new().prefix("yubin-pg-").tempdir()?;
        let owner = owner()?;
        if let Some((uid, gid)) = owner {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
            nix::unistd::chown(
                dir.path(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(io::Error::from)?;
        }
        let port = free_port()?;
        let pg = TestPostgres {
            dir,
            bin,
            port,
            owner,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                ROLE,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        for (name, contents) in files {
            let path = pg.data().join(name);
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(
                    &path,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                )
                .map_err(io::Error::from)?;
            }
        }
        pg.start_server()?;
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                ROLE,
                "yubin",
            ],
        )?;
        Ok(pg)
    }

    /// The cluster's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style URL for the database `yubin`.
    pub fn url(&self) -> String {
        format!("postgresql://{ROLE}@127.0.0.1:{}/yubin", self.port)
    }

    /// The same database over the unix socket, as a key=value string.
    pub fn socket_conninfo(&self) -> String {
        format!(
            "host={} port={} user={ROLE} dbname=yubin",
            self.dir.path().display(),
            self.port
        )
    }

    /// Starts the server (again, after [`TestPostgres::stop`]).
    pub fn start_server(&self) -> io::Result<()> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-o",
                &options,
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-w",
                "start",
            ],
        )
        .map(|_| ())
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn stop(&self) -> io::Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .map(|_| ())
    }

    /// Runs `psql` with `sql` against the database; its standard output.
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        let mut args = self.psql_args();
        args.extend(["-c".to_owned(), sql.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("psql", &args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A `psql` session that stays open, reading statements from its
    /// piped standard input and writing results (unaligned, without
    /// command tags) to its piped standard output: for a test that holds a
    /// transaction, and its row locks, while something else runs.
    pub fn psql_session(&self) -> io::Result<Child> {
        let mut args = self.psql_args();
        args.push("-q".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (path, mut command) = self.command("psql", &args);
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    fn psql_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            ROLE,
            "-d",
            "yubin",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// One of the cluster's programs with `args`, run as the cluster's
    /// owner; its path, for errors.
    fn command(&self, program: &str, args: &[&str]) -> (PathBuf, Command) {
        let path = {
            let own = self.bin.join(program);
            if own.exists() {
                own
            } else {
                PathBuf::from(program)
            }
        };
        let mut command = Command::new(&path);
        command
            .args(args)
            .stdin(Stdio::null())
            .env("PGCONNECT_TIMEOUT", "10");
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid).current_dir(self.dir.path());
        }
        (path, command)
    }

    fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        let (path, mut command) = self.command(program, args);
        let out = command
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{program} {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Where `initdb` is: beside `pg_ctl` on `PATH`, or Debian's
/// `/usr/lib/postgresql/VERSION/bin` (the newest).
fn binaries() -> io::Result<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                // A symbolic link (Debian's /usr/local/bin or
                // postgresql-common's wrappers) leads to the real ones.
                let real = std::fs::canonicalize(dir.join("initdb"))?;
                return Ok(real.parent().map_or(dir, Path::to_path_buf));
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql",
        )
    })
}

/// Under root, the account the cluster runs as.
fn owner() -> io::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return Ok(Some((user.uid.as_raw(), user.gid.as_raw())));
        }
    }
    Err(io::Error::other(
        "running as root, and no postgres or nobody account to run PostgreSQL as",
    ))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_answers_restarts_and_stops() {
        let pg = TestPostgres::start().expect("a cluster");
        assert_eq!(pg.psql("SELECT 1 + 1").expect("psql").trim(), "2");
        pg.stop().expect("stopped");
        assert!(pg.psql("SELECT 1").is_err());
        pg.start_server().expect("started again");
        assert_eq!(
            pg.psql("SELECT current_database()").expect("psql").trim(),
            "yubin"
        );
    }
}
