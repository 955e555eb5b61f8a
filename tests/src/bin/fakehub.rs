//! `bds-fakehub`: the fake Brightspace Data Hub as a standalone server, for
//! demos and manual tries. Serves the zips of a directory described by its
//! `hub.json` (see `bds_tests::fakehub::manifest`), optionally generating a
//! demo history there first, prints its URLs as one JSON line on stdout and
//! runs until interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bds_common::catalog::Catalog;
use bds_tests::ExtractFile;
use bds_tests::fakehub::{FakeHub, Fault, FaultKind, FaultTarget, HubConfig, RouteClass, manifest};
use chrono::{DateTime, Utc};
use clap::Parser;

/// Fake Brightspace Data Hub: API, auth and signed storage hosts on loopback.
///
/// Prints one JSON line on stdout with `api_url` (pass to bds-fetch as
/// --base-url), `auth_url` (--auth-url), `storage_url`, `client_id` and
/// `token_file`, then serves until interrupted.
///
/// Exit codes: 0 stopped by Ctrl-C, 2 usage or startup error.
#[derive(Debug, Parser)]
#[command(name = "bds-fakehub", version)]
struct Args {
    /// Directory of the zips to serve, described by DIR/hub.json; without
    /// it, zips named like archive keys are found by scanning.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,

    /// First generate a demo history of every current data set into
    /// --data-dir and write its hub.json.
    #[arg(long)]
    generate: bool,

    /// Seed of the generated history.
    #[arg(long, default_value_t = 42, requires = "generate")]
    seed: u64,

    /// Rows in the first full of each generated data set (default: a
    /// few thousand, varying by data set).
    #[arg(long, requires = "generate")]
    rows: Option<u64>,

    /// Weeks of generated history before the latest Sunday.
    #[arg(long, requires = "generate")]
    weeks: Option<u32>,

    /// Port of the API host (0: any free port).
    #[arg(long, default_value_t = 0)]
    api_port: u16,

    /// Port of the auth host (0: any free port).
    #[arg(long, default_value_t = 0)]
    auth_port: u16,

    /// Port of the storage host (0: any free port).
    #[arg(long, default_value_t = 0)]
    storage_port: u16,

    /// The registered OAuth client id.
    #[arg(long, default_value = "bds-demo-client")]
    client_id: String,

    /// The registered OAuth client secret.
    #[arg(long, default_value = "bds-demo-secret")]
    client_secret: String,

    /// Write the initial refresh token here (mode 0600). Without it, the
    /// token is part of the JSON line.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// The hub's clock: an RFC 3339 time, or `real` for the wall clock.
    /// Default: one minute after the newest extract was created, so the
    /// whole history is in view. With --generate, also where the history
    /// ends (default: now).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,

    /// Lifetime of access tokens in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_lifetime: u64,

    /// Objects per page of the paged listings.
    #[arg(long, default_value_t = 100)]
    page_size: usize,

    /// Serve zips from storage at this many MB (10^6 bytes) per second at
    /// most, like a link to the real storage rather than loopback.
    #[arg(long, value_name = "MB_PER_SEC")]
    link_rate: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let clock = parse_clock(args.now.as_deref())?;
    if args.generate {
        let end = clock.flatten().unwrap_or_else(Utc::now);
        generate(args, end)?;
    }
    let extracts = load(&args.data_dir)?;
    let now = match clock {
        Some(fixed) => fixed,
        None => extracts
            .iter()
            .map(|f| f.created + chrono::Duration::minutes(1))
            .max(),
    };

    let config = HubConfig {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        access_token_lifetime: Duration::from_secs(args.access_token_lifetime),
        page_size: args.page_size,
        now,
        api_port: args.api_port,
        auth_port: args.auth_port,
        storage_port: args.storage_port,
        ..HubConfig::default()
    };
    let hub = FakeHub::try_start(config).context("cannot start the fake hub")?;
    let count = extracts.len();
    hub.add_extracts(extracts);
    if let Some(rate) = args.link_rate {
        hub.inject(Fault {
            target: FaultTarget::Route(RouteClass::Storage),
            kind: FaultKind::SlowBody {
                bytes_per_sec: rate.max(1) * 1_000_000,
            },
            times: u32::MAX,
        });
    }
    let refresh_token = hub.issue_refresh_token();
    if let Some(path) = &args.token_file {
        write_token(path, &refresh_token)?;
    }

    announce(args, &hub, count, &refresh_token)?;
    tracing::info!(extracts = count, "serving; stop with Ctrl-C");
    wait_for_interrupt()
}

/// `None`: default clock; `Some(None)`: the wall clock; `Some(Some(t))`: `t`.
fn parse_clock(text: Option<&str>) -> Result<Option<Option<DateTime<Utc>>>> {
    match text {
        None => Ok(None),
        Some(t) if t.eq_ignore_ascii_case("real") => Ok(Some(None)),
        Some(t) => match bds_common::extract::parse_api_time(t) {
            Some(time) => Ok(Some(Some(time))),
            None => bail!("--now {t:?} is neither an RFC 3339 time nor `real`"),
        },
    }
}

fn generate(args: &Args, end: DateTime<Utc>) -> Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "generating a demo history");
    let files = if args.rows.is_none() && args.weeks.is_none() {
        bds_tests::generator::demo(dir, args.seed, end)
            .context("cannot generate the demo history")?
    } else {
        let mut files = Vec::new();
        for dataset in Catalog::builtin().current() {
            let mut options = bds_tests::generator::Options::new(args.seed, end);
            options.rows = args.rows.unwrap_or(options.rows);
            options.weeks = args.weeks.unwrap_or(options.weeks);
            let generated = bds_tests::generator::generate(dataset, &options, dir)
                .with_context(|| format!("cannot generate data set {}", dataset.name))?;
            files.extend(generated);
        }
        files
    };
    manifest::write(dir, &files).context("cannot write the hub manifest")?;
    tracing::info!(extracts = files.len(), "generated");
    Ok(())
}

fn load(dir: &Path) -> Result<Vec<ExtractFile>> {
    let extracts = if dir.join(manifest::MANIFEST_FILE).exists() {
        manifest::read(dir)?
    } else {
        tracing::info!(dir = %dir.display(), "no hub.json: scanning for archive-named zips");
        manifest::scan(dir)?
    };
    for file in &extracts {
        if !file.path.is_file() {
            tracing::warn!(path = %file.path.display(), "listed extract is missing; its downloads fail");
        }
    }
    Ok(extracts)
}

/// Writes the token to a temporary file readable by the owner only, then
/// renames it into place.
fn write_token(path: &Path, token: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    writeln!(file, "{token}").and_then(|()| file.sync_all())?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write token file {}", path.display()))
}

/// The machine-readable line on stdout.
fn announce(args: &Args, hub: &FakeHub, extracts: usize, refresh_token: &str) -> Result<()> {
    let mut line = serde_json::json!({
        "api_url": hub.api_url(),
        "auth_url": hub.auth_url(),
        "token_url": hub.token_url(),
        "storage_url": hub.storage_url(),
        "client_id": args.client_id,
        "now": hub.now().to_rfc3339(),
        "extracts": extracts,
    });
    match &args.token_file {
        Some(path) => line["token_file"] = path.display().to_string().into(),
        None => line["refresh_token"] = refresh_token.into(),
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

fn wait_for_interrupt() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    tracing::info!("interrupted; stopping");
    Ok(())
}
