//! Command-line arguments. Every setting is also read from a `BDS_*`
//! environment variable and from the config file; flags win over variables,
//! variables over the file (see [`crate::config`]).

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

const AFTER_HELP: &str = "\
Settings: flags > BDS_* environment variables > config file (TOML with the same names
in snake_case, e.g. base_url, or the JSON config of D2L's Python sample client).
The client secret comes only from BDS_CLIENT_SECRET or the config file.

Exit codes:
  0  all done (for verify: the archive is clean)
  1  the run finished, but some extracts failed (for verify: problems were found)
  2  usage, configuration or fatal error (bad settings, token refused, archive unreachable)";

/// Archive every Brightspace Data Sets extract the Data Hub API offers,
/// verified, with a manifest.
#[derive(Debug, Parser)]
#[command(name = "bds-fetch", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do; without a subcommand, `run`.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML config file (or the JSON config of D2L's Python sample client).
    #[arg(long, env = "BDS_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The Brightspace site, e.g. https://myschool.brightspace.com.
    #[arg(long, env = "BDS_BASE_URL", global = true, value_name = "URL")]
    pub base_url: Option<String>,

    /// Token service base URL [default: https://auth.brightspace.com].
    #[arg(long, env = "BDS_AUTH_URL", global = true, value_name = "URL")]
    pub auth_url: Option<String>,

    /// OAuth client id of the registered app.
    #[arg(long, env = "BDS_CLIENT_ID", global = true, value_name = "ID")]
    pub client_id: Option<String>,

    /// File holding the current refresh token (mode 0600; rewritten every run).
    #[arg(long, env = "BDS_TOKEN_FILE", global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Archive: a local folder, file:///path or s3://bucket/prefix (AWS_* settings).
    #[arg(long, env = "BDS_ARCHIVE", global = true, value_name = "LOCATION")]
    pub archive: Option<String>,

    /// Only this data set (name, table name or schema id); repeatable.
    #[arg(
        long = "dataset",
        env = "BDS_DATASETS",
        value_delimiter = ',',
        global = true,
        value_name = "NAME|SCHEMA_ID"
    )]
    pub datasets: Vec<String>,

    /// Only full extracts.
    #[arg(
        long,
        env = "BDS_FULL_ONLY",
        global = true,
        conflicts_with = "differential_only"
    )]
    pub full_only: bool,

    /// Only differential extracts.
    #[arg(long, env = "BDS_DIFFERENTIAL_ONLY", global = true)]
    pub differential_only: bool,

    /// Only extracts created on or after this date (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, env = "BDS_SINCE", global = true, value_name = "DATE")]
    pub since: Option<String>,

    /// Downloads at once [default: 4].
    #[arg(long, env = "BDS_CONCURRENCY", global = true, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Print the plan, download nothing.
    #[arg(long, env = "BDS_DRY_RUN", global = true)]
    pub dry_run: bool,

    /// LP API version used in routes [default: 1.53].
    #[arg(long, env = "BDS_API_VERSION", global = true, value_name = "VERSION")]
    pub api_version: Option<String>,

    /// OAuth scope to ask for when refreshing (default: the scope of the grant).
    #[arg(long, env = "BDS_SCOPE", global = true, value_name = "SCOPE")]
    pub scope: Option<String>,

    /// First retry delay in milliseconds, doubled per attempt, with jitter [default: 1000].
    #[arg(long, env = "BDS_RETRY_BASE_MS", global = true, value_name = "MS")]
    pub retry_base_ms: Option<u64>,

    /// Attempts per request or download before giving up [default: 6].
    #[arg(long, env = "BDS_RETRY_ATTEMPTS", global = true, value_name = "N")]
    pub retry_attempts: Option<u32>,

    /// Print a JSON summary (run, verify) or listing (list) on stdout.
    #[arg(long, env = "BDS_JSON", global = true)]
    pub json: bool,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// The subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Fetch every offered extract not archived yet (the default).
    Run,
    /// Re-hash every archived extract against the manifest; report missing,
    /// corrupt and unlisted objects (exit 1 on any).
    Verify,
    /// List what the archive holds.
    List,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes"), "{help}");
        assert!(help.contains("2  usage"), "{help}");
    }

    #[test]
    fn subcommand_flags_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from(["bds-fetch", "list", "--json", "--archive", "/x"]).unwrap();
        assert_eq!(cli.command, Some(Command::List));
        assert!(cli.json);
        assert_eq!(cli.archive.as_deref(), Some("/x"));
    }
}
