//! Command-line arguments of bds-load.

use std::path::PathBuf;

use anyhow::Context;
use bds_load::connect::Database;
use bds_load::plan::PlanOptions;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  every data set is up to date
  1  the run finished, but some data sets failed (see the log)
  2  usage, configuration or fatal error (archive or database unreachable, \
another run holds the lock and --no-wait was given)

Logs go to standard error (-v, -q, RUST_LOG); standard output carries only
data: the plan (--dry-run), status and schema.";

/// Replay archived Brightspace Data Sets extracts into PostgreSQL, in order,
/// idempotently. Without a subcommand, `run` is assumed.
#[derive(Debug, Parser)]
#[command(
    name = "bds-load",
    version,
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply what the archive holds and the database lacks (the default).
    Run(RunArgs),
    /// Show, per data set, what is loaded, pending and missing.
    Status(StatusArgs),
    /// Print the DDL of the catalog's tables (nothing is connected to).
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log detail (-v decisions, -vv per chunk).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors (-qq: errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// PostgreSQL connection: a libpq URL or key=value string (sslmode
    /// disable, prefer, require, verify-ca, verify-full; sslrootcert).
    /// Falls back to DATABASE_URL. Without a password in it, PGPASSWORD or
    /// the private password file PGPASSFILE (default ~/.pgpass) is used.
    #[arg(long, env = "BDS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// CA certificates (PEM) the server's certificate must chain to.
    #[arg(long, env = "BDS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl Connection {
    pub fn database(&self) -> anyhow::Result<Database> {
        let url = self
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .context("no database: give --database-url, BDS_DATABASE_URL or DATABASE_URL")?;
        Ok(Database::new(&url, self.ca_file.as_deref())?)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Archive: a folder, file:///folder or s3://bucket/prefix (S3 settings
    /// from AWS_* variables).
    #[arg(long, env = "BDS_ARCHIVE")]
    pub archive: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
    /// Only this data set (name, table or schema id); repeatable.
    #[arg(long, value_name = "NAME")]
    pub dataset: Vec<String>,
    /// Target schema (created if missing); holds the tables and bds_ledger.
    #[arg(
        long,
        env = "BDS_SCHEMA",
        default_value = "public",
        value_name = "PGSCHEMA"
    )]
    pub schema: String,
    /// Replay only extracts created at or before this time (RFC 3339, or a
    /// date meaning its midnight UTC): the database as it was then.
    #[arg(long, value_name = "TIMESTAMP")]
    pub as_of: Option<String>,
    /// Reload every data set from its latest full, then its differentials,
    /// each table built afresh (columns only from the catalog and the
    /// extracts).
    #[arg(long)]
    pub rebuild: bool,
    /// Print the plan on standard output and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Data sets loaded in parallel (one connection each).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Exit (code 2) instead of waiting when another run holds the lock.
    #[arg(long)]
    pub no_wait: bool,
    /// TOML file of keys for data sets the catalog lacks or gets wrong:
    /// `"Data Set Name" = ["Header1", "Header2"]`.
    #[arg(long, env = "BDS_KEY_OVERRIDES", value_name = "FILE")]
    pub key_overrides: Option<PathBuf>,
    /// Report differentials further apart than this many hours as a gap.
    #[arg(long, default_value_t = 36, value_name = "HOURS")]
    pub max_gap_hours: i64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Archive: a folder, file:///folder or s3://bucket/prefix.
    #[arg(long, env = "BDS_ARCHIVE")]
    pub archive: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
    /// Only this data set; repeatable.
    #[arg(long, value_name = "NAME")]
    pub dataset: Vec<String>,
    /// Target schema.
    #[arg(
        long,
        env = "BDS_SCHEMA",
        default_value = "public",
        value_name = "PGSCHEMA"
    )]
    pub schema: String,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// TOML file of key overrides (see `run`).
    #[arg(long, env = "BDS_KEY_OVERRIDES", value_name = "FILE")]
    pub key_overrides: Option<PathBuf>,
    /// Report differentials further apart than this many hours as a gap.
    #[arg(long, default_value_t = 36, value_name = "HOURS")]
    pub max_gap_hours: i64,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Only this data set; repeatable.
    #[arg(long, value_name = "NAME")]
    pub dataset: Vec<String>,
    /// Target schema.
    #[arg(
        long,
        env = "BDS_SCHEMA",
        default_value = "public",
        value_name = "PGSCHEMA"
    )]
    pub schema: String,
    /// TOML file of key overrides (see `run`).
    #[arg(long, env = "BDS_KEY_OVERRIDES", value_name = "FILE")]
    pub key_overrides: Option<PathBuf>,
}

pub fn archive(archive: Option<String>) -> anyhow::Result<String> {
    archive.context("no archive: give --archive or BDS_ARCHIVE")
}

pub fn plan_options(
    as_of: Option<&str>,
    rebuild: bool,
    max_gap_hours: i64,
) -> anyhow::Result<PlanOptions> {
    let as_of = as_of.map(parse_as_of).transpose()?;
    anyhow::ensure!(max_gap_hours > 0, "--max-gap-hours must be positive");
    Ok(PlanOptions {
        as_of,
        rebuild,
        max_gap: chrono::Duration::hours(max_gap_hours),
    })
}

fn parse_as_of(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Some(t) = bds_common::extract::parse_api_time(text) {
        return Ok(t);
    }
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .with_context(|| format!("--as-of {text:?}: not an RFC 3339 time or a date"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc())
}
