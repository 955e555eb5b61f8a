//! A throwaway PostgreSQL cluster for tests, one per test process, and a
//! fresh database per test.
//!
//! ```no_run
//! let db = bds_tests::harness::pg::database();
//! let mut client = db.client();
//! client.batch_execute("create table t (id bigint primary key)").unwrap();
//! // give db.url() to a spawned `bds-load --database-url ...`
//! ```
//!
//! The cluster (initdb, trust authentication, UTF8, locale C, fsync off,
//! TLS on with a throwaway CA: see [`ca_file`])
//! listens on a free loopback port and on a unix socket in its temp folder.
//! It is stopped (immediate mode) and its folder removed by a watchdog once
//! the test process has ended. When `BDS_TEST_DATABASE_URL` is set, databases
//! are created on that server instead.
//!
//! Limitation: [`TestDatabase::client`] returns the blocking `postgres`
//! client, which runs its own tokio runtime and panics when called from
//! inside another one. In `#[tokio::test]` functions call it in
//! `tokio::task::spawn_blocking` or on a `std::thread`. [`database`] and
//! dropping a [`TestDatabase`] are safe anywhere.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use postgres::{Client, NoTls};

use super::{free_port, off_runtime, shell_quote, spawn_watchdog};

/// Variable pointing the suite at an existing server.
pub const DATABASE_URL_VAR: &str = "BDS_TEST_DATABASE_URL";

/// Superuser of the throwaway cluster.
const SUPERUSER: &str = "postgres";

/// Settings for a fast, disposable cluster: durability is worthless here.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 2GB
checkpoint_timeout = 30min
max_connections = 200
shared_buffers = 64MB
log_min_messages = warning
log_min_error_statement = panic
";

/// One fresh database, dropped (with its connections) when this value is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    conninfo: String,
}

impl TestDatabase {
    /// Database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection URL (`postgres://...` for the throwaway cluster), usable by
    /// the `postgres` crate, psql and our binaries.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same connection as a libpq `key=value` string.
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// A new connection. Panics inside a tokio runtime (see module docs).
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls)
            .unwrap_or_else(|e| panic!("connect to test database {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = off_runtime(move || {
            let mut admin = server().admin()?;
            admin.batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// A fresh, empty database on the test server (starting the throwaway
/// cluster on first use).
pub fn database() -> TestDatabase {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let server = server();
    let name = format!(
        "bds_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );

    let created = off_runtime(|| {
        let mut admin = server.admin()?;
        admin.batch_execute(&format!("create database \"{name}\""))
    });
    if let Err(e) = created {
        panic!("create test database {name}: {e}");
    }
    TestDatabase {
        url: server.url_for(&name),
        conninfo: server.conninfo_for(&name),
        name,
    }
}

/// URL of the maintenance database `postgres` on the test server.
pub fn server_url() -> String {
    server().url_for("postgres")
}

/// Path of a PostgreSQL client or server program (`psql`, `pg_dump`, ...)
/// of the installed version. Panics saying what to install when missing.
pub fn binary(name: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| {
        panic!(
            "PostgreSQL program {name} not found in PATH or /usr/lib/postgresql/*/bin: \
             install the `postgresql` Debian package (apt-get install postgresql)"
        )
    })
}

/// Where databases are created: our cluster or the user's server.
#[derive(Debug)]
enum Server {
    Cluster { port: u16 },
    External { url: String },
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Server::External { url },
        _ => off_runtime(start_cluster),
    })
}

impl Server {
    fn admin(&self) -> Result<Client, postgres::Error> {
        match self {
            Server::Cluster { .. } => Client::connect(&self.url_for("postgres"), NoTls),
            Server::External { url } => Client::connect(url, NoTls),
        }
    }

    fn url_for(&self, dbname: &str) -> String {
        match self {
            Server::Cluster { port } => format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{dbname}"),
            Server::External { url } if is_uri(url) => {
                let mut parsed = url::Url::parse(url)
                    .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is not a valid URL: {e}"));
                parsed.set_path(dbname);
                parsed.to_string()
            }
            Server::External { url } => format!("{url} dbname={dbname}"),
        }
    }

    fn conninfo_for(&self, dbname: &str) -> String {
        match self {
            Server::Cluster { port } => {
                format!("host=127.0.0.1 port={port} user={SUPERUSER} dbname={dbname}")
            }
            Server::External { url } if is_uri(url) => uri_to_conninfo(url, dbname),
            Server::External { url } => format!("{url} dbname={dbname}"),
        }
    }
}

fn is_uri(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The key=value form of a `postgres://` URL, through the postgres crate's
/// own parser so both forms mean the same connection.
fn uri_to_conninfo(url: &str, dbname: &str) -> String {
    let config: postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is not a valid URL: {e}"));
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
            postgres::config::Host::Unix(p) => parts.push(format!("host={}", p.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        let password = String::from_utf8_lossy(password).replace('\\', r"\\");
        parts.push(format!("password='{}'", password.replace('\'', r"\'")));
    }
    parts.push(format!("dbname={dbname}"));
    parts.join(" ")
}

/// Creates and starts the throwaway cluster; panics with the server log when
/// that fails.
fn start_cluster() -> Server {
    let initdb = binary("initdb");
    let pg_ctl = binary("pg_ctl");
    let owner = ClusterOwner::detect();

    let dir = tempfile::Builder::new()
        .prefix("bds-pg-")
        .tempdir()
        .expect("create a temp folder for PostgreSQL")
        .keep();
    spawn_watchdog(&stop_script(&dir));
    owner.give(&dir);
    let data = dir.join("data");

    let mut init = owner.command(&initdb);
    init.arg("-D").arg(&data);
    init.args([
        "-U",
        SUPERUSER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(init, "initdb");
    require_passwords(&data);

    let tls = make_certificates(&dir, &data, &owner);
    let settings = format!(
        "{SETTINGS}unix_socket_directories = '{}'\n{tls}",
        dir.display()
    );
    append(&data.join("postgresql.conf"), &settings);

    let log = dir.join("server.log");
    for _attempt in 0..5 {
        let port = free_port();
        let mut start = owner.command(&pg_ctl);
        start.arg("-D").arg(&data).arg("-l").arg(&log);
        start.args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"]);
        if start.output().is_ok_and(|o| o.status.success()) {
            return Server::Cluster { port };
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    panic!("PostgreSQL did not start (5 attempts); server log:\n{log_text}");
}

/// The CA certificate the throwaway cluster's TLS certificate chains to, for
/// tests of certificate verification; `None` with an external server.
pub fn ca_file() -> Option<PathBuf> {
    match server() {
        Server::Cluster { .. } => Some(cluster_dir().join("ca.crt")),
        Server::External { .. } => None,
    }
}

fn cluster_dir() -> &'static PathBuf {
    CLUSTER_DIR.get().expect("the cluster is started")
}

static CLUSTER_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes a test CA and a server certificate for `localhost` and 127.0.0.1
/// (ECDSA P-256, two days) with the openssl program, and returns the
/// settings that turn TLS on. The server still accepts plain connections.
fn make_certificates(dir: &Path, data: &Path, owner: &ClusterOwner) -> String {
    let _ = CLUSTER_DIR.set(dir.to_path_buf());
    let script = format!(
        "set -e; cd {dir}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout ca.key -out ca.crt -days 2 -subj '/CN=bds test CA' 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout server.key -out server.csr -subj '/CN=localhost' 2>/dev/null; \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext; \
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
           -out server.crt -days 2 -extfile server.ext 2>/dev/null; \
         mv server.crt server.key {data}/; chmod 600 {data}/server.key",
        dir = shell_quote(&dir.display().to_string()),
        data = shell_quote(&data.display().to_string()),
    );
    let status = Command::new("sh").arg("-c").arg(&script).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "could not make the test TLS certificates: install the `openssl` Debian package"
    );
    for file in ["server.crt", "server.key"] {
        owner.give(&data.join(file));
    }
    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".to_string()
}

/// Shell commands that stop the cluster in immediate mode (SIGQUIT to the
/// postmaster, which also works when we are root and it is not) and remove
/// its folder.
fn stop_script(dir: &Path) -> String {
    let dir = shell_quote(&dir.display().to_string());
    format!(
        "pid=$(head -n 1 {dir}/data/postmaster.pid 2>/dev/null); \
         if [ -n \"$pid\" ]; then kill -QUIT \"$pid\" 2>/dev/null; \
         n=0; while kill -0 \"$pid\" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; fi; \
         rm -rf {dir}"
    )
}

/// PostgreSQL refuses to run as root: then the cluster belongs to the
/// `postgres` system user and its programs run through `runuser`.
#[derive(Debug)]
enum ClusterOwner {
    Me,
    SystemUser { uid: u32, gid: u32 },
}

impl ClusterOwner {
    fn detect() -> ClusterOwner {
        let euid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1);
        if euid != 0 {
            return ClusterOwner::Me;
        }
        let entry = Command::new("getent")
            .args(["passwd", SUPERUSER])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let fields: Vec<&str> = entry.trim().split(':').collect();
        match (fields.get(2), fields.get(3)) {
            (Some(uid), Some(gid)) => ClusterOwner::SystemUser {
                uid: uid.parse().expect("uid in passwd"),
                gid: gid.parse().expect("gid in passwd"),
            },
            _ => panic!(
                "running as root, and PostgreSQL refuses to: create a `postgres` user \
                 (the `postgresql` Debian package does) or run the tests as another user"
            ),
        }
    }

    fn give(&self, dir: &Path) {
        if let ClusterOwner::SystemUser { uid, gid } = self {
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
                .expect("hand the cluster folder to the postgres user");
        }
    }

    fn command(&self, program: &Path) -> Command {
        match self {
            ClusterOwner::Me => Command::new(program),
            ClusterOwner::SystemUser { .. } => {
                let mut command = Command::new("runuser");
                command.args(["-u", SUPERUSER, "--"]).arg(program);
                command
            }
        }
    }
}

fn run(mut command: Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Members of this role must give their password over TCP (scram-sha-256);
/// everyone else is trusted. Tests of password handling create their roles
/// in it (see [`PASSWORD_GROUP_SQL`]).
pub const PASSWORD_GROUP: &str = "bds_password_login";

/// Creates [`PASSWORD_GROUP`] if it does not exist yet, safely from tests
/// running at the same time.
pub const PASSWORD_GROUP_SQL: &str = "DO $$ BEGIN CREATE ROLE bds_password_login NOLOGIN; \
     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$";

/// Puts the password rule for [`PASSWORD_GROUP`] ahead of initdb's trust
/// rules (the first matching line wins).
fn require_passwords(data: &Path) {
    let path = data.join("pg_hba.conf");
    let rules =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let ours = format!(
        "host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n\
         host all +{PASSWORD_GROUP} ::1/128 scram-sha-256\n"
    );
    std::fs::write(&path, ours + &rules)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `name` in PATH, else in the newest /usr/lib/postgresql/*/bin.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let in_path = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if in_path.is_some() {
        return in_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin").join(name)))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}
