//! bds-load: replay archived Brightspace Data Sets extracts into PostgreSQL.
//! Parses arguments, sets up logging, runs the command and maps the outcome
//! to an exit code; the work is in the library.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use bds_load::ddl::{KeyOverrides, schema_ddl};
use bds_load::ledger::ledger_ddl;
use bds_load::run::{RunOptions, run};
use bds_load::status;
use clap::Parser;

use cli::{Cli, Command, LogArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(args) => load(args),
        Command::Status(args) => show_status(args),
        Command::Schema(args) => print_schema(args),
    }
}

fn load(args: cli::RunArgs) -> anyhow::Result<ExitCode> {
    let options = RunOptions {
        archive: cli::archive(args.archive)?,
        database: args.connection.database()?,
        datasets: args.dataset,
        schema: args.schema,
        plan: cli::plan_options(args.as_of.as_deref(), args.rebuild, args.max_gap_hours)?,
        dry_run: args.dry_run,
        jobs: args.jobs,
        wait: !args.no_wait,
        key_overrides: key_overrides(args.key_overrides.as_deref())?,
    };
    tracing::debug!(database = options.database.display(), "starting");
    let report = run(&options).context("load failed")?;
    if report.lock_busy {
        anyhow::bail!("another bds-load run is working on this database (--no-wait given)");
    }
    if report.failed.is_empty() && options.dry_run {
        tracing::info!(
            datasets = report.datasets,
            extracts_planned = report.steps_planned,
            "dry run finished, nothing changed"
        );
        return Ok(ExitCode::SUCCESS);
    }
    if report.failed.is_empty() {
        tracing::info!(
            datasets = report.datasets,
            extracts = report.steps_done,
            "run finished"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<&str> = report.failed.iter().map(|(d, _)| d.as_str()).collect();
    tracing::error!(
        "{} of {} data set(s) failed: {}",
        names.len(),
        report.datasets,
        names.join(", ")
    );
    Ok(ExitCode::from(1))
}

fn show_status(args: cli::StatusArgs) -> anyhow::Result<ExitCode> {
    let database = args.connection.database()?;
    let plan = cli::plan_options(None, false, args.max_gap_hours)?;
    let statuses = status::collect(
        &cli::archive(args.archive)?,
        &database,
        &args.dataset,
        &args.schema,
        &key_overrides(args.key_overrides.as_deref())?,
        plan,
    )
    .context("status failed")?;
    write_stdout(|out| status::print(&statuses, args.json, out))
}

fn print_schema(args: cli::SchemaArgs) -> anyhow::Result<ExitCode> {
    let overrides = key_overrides(args.key_overrides.as_deref())?;
    let mut text = schema_ddl(&args.schema, &args.dataset, &overrides)?;
    if args.dataset.is_empty() {
        text.push_str("-- the ledger bds-load keeps (it creates it itself)\n");
        text.push_str(&ledger_ddl(&args.schema));
        text.push_str(";\n");
    }
    write_stdout(|out| out.write_all(text.as_bytes()))
}

fn key_overrides(path: Option<&std::path::Path>) -> anyhow::Result<KeyOverrides> {
    Ok(match path {
        Some(path) => KeyOverrides::load(path)?,
        None => KeyOverrides::default(),
    })
}

use std::io::Write;

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(
    write: impl FnOnce(&mut std::io::StdoutLock<'_>) -> std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("write to standard output")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn init_logging(args: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    let ours = match (args.quiet, args.verbose) {
        (q, _) if q > 1 => "error",
        (1, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    let default = format!("warn,bds_load={ours},bds_common={ours}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
