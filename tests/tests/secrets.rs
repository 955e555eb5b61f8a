//! Secrets: the tools run with known secret values (client
//! secret, refresh and access tokens issued by the fake hub, signed-URL
//! signatures, S3 secret key, database password) and no log line at `-q`,
//! default, `-v` or `-vv`, no error message, no `--help`, no `Debug` output,
//! no manifest segment and no ledger row may contain any of them.

use std::process::{Command, Output};

use bds_tests::fakehub::{Fault, FaultKind, FaultTarget, HubConfig};
use bds_tests::harness::{pg, s3};
use bds_tests::reliability::bins;
use bds_tests::reliability::proxy::Proxy;
use bds_tests::reliability::{self, FetchScene, archive_files, load_command, write_private};

const CLIENT_SECRET: &str = "cs-4b1e9c7d2f-client-secret";
const S3_SECRET: &str = "s3-8d0c77e1aa-secret-key";
const DB_PASSWORD: &str = "pw-91f3c0de55-database";
const VERBOSITY: [&[&str]; 4] = [&["-q"], &[], &["-v"], &["-vv"]];

/// Every text in `texts` (name, text) free of every secret.
fn assert_no_secret(texts: &[(String, String)], secrets: &[String]) {
    for (name, text) in texts {
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} contains the secret {secret:?}:\n{text}"
            );
        }
    }
}

fn both(name: String, output: &Output) -> [(String, String); 2] {
    [
        (
            format!("{name} stderr"),
            String::from_utf8_lossy(&output.stderr).into(),
        ),
        (
            format!("{name} stdout"),
            String::from_utf8_lossy(&output.stdout).into(),
        ),
    ]
}

/// The access and refresh tokens in the auth host's answers, as a proxy in
/// front of it saw them.
fn issued_tokens(auth: &Proxy) -> Vec<String> {
    let mut tokens = Vec::new();
    for exchange in auth.log() {
        if let Ok(answer) = serde_json::from_str::<serde_json::Value>(&exchange.body) {
            for field in ["access_token", "refresh_token"] {
                if let Some(token) = answer[field].as_str() {
                    tokens.push(token.to_string());
                }
            }
        }
    }
    tokens
}

#[test]
fn bds_fetch_never_shows_a_secret() {
    let config = HubConfig {
        client_secret: CLIENT_SECRET.into(),
        ..HubConfig::default()
    };
    let bucket = s3::bucket();
    let env: Vec<(String, String)> = bucket
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_SECRET_ACCESS_KEY" => (k.clone(), S3_SECRET.to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let dir = tempfile::TempDir::new().unwrap();
    let archive = bucket.location("v0");
    let mut scene = FetchScene::with_archive(config, dir, &["Users"], 40, archive, env.clone());
    let auth = Proxy::start(scene.hub.auth_url());
    scene.auth_url = Some(auth.url().to_string());
    let mut secrets = vec![
        CLIENT_SECRET.to_string(),
        S3_SECRET.to_string(),
        scene.token(),
    ];
    let mut texts = Vec::new();

    // A fresh prefix per verbosity, so every run downloads (signed URLs),
    // with one extract failing for good (errors naming its download).
    let victim = FaultTarget::extract(scene.file("Users", "differential", 0));
    for (i, flags) in VERBOSITY.iter().enumerate() {
        scene.archive = bucket.location(&format!("v{i}"));
        scene
            .hub
            .inject(Fault::once(victim.clone(), FaultKind::Status500).times(1000));
        let mut args = flags.to_vec();
        args.extend(["--json", "--retry-attempts", "2"]);
        let output = scene.run(&args);
        assert_eq!(output.status.code(), Some(1));
        texts.extend(both(format!("run {flags:?}"), &output));
        for sub in ["verify", "list"] {
            let mut args = flags.to_vec();
            args.push(sub);
            texts.extend(both(format!("{sub} {flags:?}"), &scene.run(&args)));
        }
        secrets.push(scene.token());
        scene.hub.clear_faults();
    }

    // A refused (spent) token, a malformed config file holding the secret,
    // --help with the secrets in the environment.
    let spent = secrets[2].clone();
    let current = scene.token();
    write_private(&scene.token_file, &spent);
    let refused = scene.run(&["-vv"]);
    assert_eq!(refused.status.code(), Some(2));
    texts.extend(both("refused token".into(), &refused));
    write_private(&scene.token_file, &current);
    let bad_config = scene.dir.path().join("bad.toml");
    write_private(
        &bad_config,
        &format!("client_secret = \"{CLIENT_SECRET}\nx = 1\n"),
    );
    let output = scene.run(&["-vv", "--config", bad_config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    texts.extend(both("bad config".into(), &output));
    let help = scene.command(&["--help"]).output().unwrap();
    texts.extend(both("--help".into(), &help));

    secrets.extend(issued_tokens(&auth));
    let signatures: Vec<String> = scene
        .hub
        .storage_requests()
        .iter()
        .filter_map(|r| r.path.split("Signature=").nth(1))
        .map(|s| s.split('&').next().unwrap().to_string())
        .collect();
    assert!(signatures.len() >= 4, "downloads were signed");
    assert!(
        secrets.len() >= 12,
        "tokens were captured: {}",
        secrets.len()
    );
    secrets.extend(signatures);

    for i in 0..VERBOSITY.len() {
        let archive = bucket.archive_at(&format!("v{i}"));
        for object in reliability::block_on(archive.list("manifest")).unwrap() {
            let bytes = reliability::block_on(archive.get_bytes(&object.key)).unwrap();
            texts.push((object.key, String::from_utf8_lossy(&bytes).into()));
        }
    }
    assert_no_secret(&texts, &secrets);
    eprintln!(
        "{} texts checked against {} secrets",
        texts.len(),
        secrets.len()
    );
}

/// A role with a password, owning the test database; its URL and
/// key=value forms.
fn role_with_password(db: &pg::TestDatabase) -> (String, String) {
    let mut admin = db.client();
    let role = format!("bds_secret_{}", db.name());
    admin.batch_execute(pg::PASSWORD_GROUP_SQL).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{DB_PASSWORD}' IN ROLE {}; \
             ALTER DATABASE \"{}\" OWNER TO \"{role}\"",
            pg::PASSWORD_GROUP,
            db.name()
        ))
        .unwrap();
    let url = db
        .url()
        .replacen("postgres@", &format!("{role}:{DB_PASSWORD}@"), 1);
    assert!(url.contains(DB_PASSWORD), "{url}");
    let conninfo = db.conninfo().replace(
        "user=postgres",
        &format!("user={role} password={DB_PASSWORD}"),
    );
    (url, conninfo)
}

#[test]
fn bds_load_never_shows_the_database_password() {
    let work = tempfile::tempdir().unwrap();
    let history = reliability::history(&["Users", "Grade Results"], 50, 3, work.path());
    let root = tempfile::tempdir().unwrap();
    let location = root.path().display().to_string();
    archive_files(root.path(), &history, "secrets");
    let db = pg::database();
    let (url, conninfo) = role_with_password(&db);
    let mut texts = Vec::new();

    for (i, flags) in VERBOSITY.iter().enumerate() {
        let database = if i % 2 == 0 { &url } else { &conninfo };
        let runs: [(&[&str], &[&str]); 4] = [
            (&[], &["--rebuild"]),
            (&[], &["--dry-run"]),
            (&["status"], &[]),
            (&["status"], &["--json"]),
        ];
        for (subcommand, args) in runs {
            let output = Command::new(bins::bds_load())
                .args(subcommand)
                .args(["--archive", &location, "--database-url", database])
                .args(*flags)
                .args(args)
                .env_remove("BDS_DATABASE_URL")
                .env_remove("DATABASE_URL")
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            let what = format!("bds-load {subcommand:?} {flags:?} {args:?}");
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{what}: {log}");
            texts.extend(both(what, &output));
        }
        // Errors that name the connection: no such database, nobody
        // listening.
        let missing = database.replace(db.name(), "no_such_database");
        let dead = database.replace(
            &port(db.url()),
            &bds_tests::harness::free_port().to_string(),
        );
        for (what, target) in [("missing database", missing), ("dead server", dead)] {
            let output = load_command(&location, &target)
                .args(*flags)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{what}");
            texts.extend(both(format!("{what} {flags:?}"), &output));
        }
    }
    let help = load_command(&location, &url)
        .env("BDS_DATABASE_URL", &url)
        .arg("--help")
        .output()
        .unwrap();
    texts.extend(both("--help".into(), &help));

    let mut client = db.client();
    for row in client
        .query("SELECT t::text FROM bds_ledger t", &[])
        .unwrap()
    {
        texts.push(("ledger row".into(), row.get(0)));
    }
    assert!(texts.iter().any(|(n, _)| n == "ledger row"));
    assert_no_secret(&texts, &[DB_PASSWORD.to_string()]);
    eprintln!("{} texts checked", texts.len());
}

/// A connection string without its password, for the lookups libpq makes.
fn without_password(url: &str) -> String {
    let url = url.replacen(&format!(":{DB_PASSWORD}@"), "@", 1);
    assert!(!url.contains(DB_PASSWORD), "{url}");
    url
}

/// With no password in the connection string, bds-load takes it from
/// `PGPASSWORD`, else from a private password file, as libpq does; a
/// password file others can read is ignored with a warning.
#[test]
fn bds_load_takes_the_password_from_pgpassword_or_the_password_file() {
    let work = tempfile::tempdir().unwrap();
    let history = reliability::history(&["Users"], 20, 1, work.path());
    let root = tempfile::tempdir().unwrap();
    let location = root.path().display().to_string();
    archive_files(root.path(), &history, "pgpass");
    let db = pg::database();
    let (url, _) = role_with_password(&db);
    let bare = without_password(&url);
    let run = |env: &[(&str, &str)]| {
        let mut command = load_command(&location, &bare);
        command
            .args(["--dry-run"])
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", work.path().join("no-such-file"));
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!log.contains(DB_PASSWORD), "{log}");
        (output.status.code(), log)
    };

    // The throwaway cluster asks this role for its password; an existing
    // server's rules are its own, so only the successes are asserted there.
    let asks_for_password = pg::ca_file().is_some();
    let (code, log) = run(&[]);
    if asks_for_password {
        assert_eq!(code, Some(2), "connected without a password: {log}");
        assert!(
            log.contains("PGPASSWORD"),
            "says where a password goes: {log}"
        );
    }

    let (code, log) = run(&[("PGPASSWORD", DB_PASSWORD)]);
    assert_eq!(code, Some(0), "PGPASSWORD: {log}");

    let file = work.path().join("pgpass");
    let line = format!(
        "localhost:*:*:*:wrong\n127.0.0.1:{}:*:*:{DB_PASSWORD}\n",
        port(&url)
    );
    write_private(&file, &line);
    let file_arg = file.display().to_string();
    let (code, log) = run(&[("PGPASSFILE", &file_arg)]);
    assert_eq!(code, Some(0), "password file: {log}");

    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, log) = run(&[("PGPASSFILE", &file_arg)]);
    assert!(log.contains("password file ignored"), "{log}");
    if asks_for_password {
        assert_eq!(code, Some(2), "{log}");
    }
}

fn port(url: &str) -> String {
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap()
        .to_string()
}

/// The types that hold secrets print `[redacted]` with `{:?}` and `{}`.
#[test]
fn debug_output_of_secret_holders_is_redacted() {
    use bds_common::redact::{Secret, redact_conninfo, redact_url};

    let secret = Secret::new(CLIENT_SECRET);
    assert!(!format!("{secret:?} {secret}").contains(CLIENT_SECRET));
    let url = format!("postgres://bds:{DB_PASSWORD}@db.example/warehouse");
    assert!(!redact_conninfo(&url).contains(DB_PASSWORD));
    let kv = format!("host=db user=bds password={DB_PASSWORD} dbname=w");
    assert!(!redact_conninfo(&kv).contains(DB_PASSWORD));
    let signed = "https://storage.example/blob/x.zip?Expires=1&Signature=abc123secret";
    assert!(!redact_url(signed).contains("abc123secret"));

    let database = bds_load::connect::Database::new(&url, None).unwrap();
    assert!(!format!("{database:?}").contains(DB_PASSWORD));
    assert!(!database.display().contains(DB_PASSWORD));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fetch.toml");
    write_private(&config, &format!("client_secret = \"{CLIENT_SECRET}\"\n"));
    let cli = <bds_fetch::cli::Cli as clap::Parser>::try_parse_from([
        "bds-fetch",
        "--config",
        config.to_str().unwrap(),
    ])
    .unwrap();
    let settings = bds_fetch::config::Settings::resolve(&cli).unwrap();
    assert_eq!(
        settings.client_secret.as_ref().map(Secret::expose),
        Some(CLIENT_SECRET)
    );
    assert!(!format!("{settings:?}").contains(CLIENT_SECRET));
    let hub = HubConfig {
        client_secret: CLIENT_SECRET.into(),
        ..HubConfig::default()
    };
    assert!(!format!("{hub:?}").contains(CLIENT_SECRET));
}
