//! bds-fetch: archive every Brightspace Data Sets extract the Data Hub API
//! offers, verified, with a manifest.
//!
//! The pipeline, one module per step: [`config`] resolves settings,
//! [`token`] keeps the rotating refresh token safe, [`api`] talks to the
//! Brightspace host, [`discover`] lists what is offered and plans what to
//! fetch, [`download`] streams one extract to a spool file, [`verify`] checks
//! it (and audits the archive), [`store`] publishes it write-once and
//! [`manifest`] records it. [`run`] ties the steps together.

pub mod api;
pub mod cli;
pub mod config;
pub mod discover;
pub mod download;
pub mod list;
pub mod logging;
pub mod manifest;
pub mod progress;
pub mod retry;
pub mod run;
pub mod store;
pub mod summary;
pub mod token;
pub mod verify;

/// How a command ended, mapped to the process exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was done: exit code 0.
    Done,
    /// The command finished, but some extracts or objects failed: exit code 1.
    Failures,
}

impl Outcome {
    /// The process exit code of this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Failures => 1,
        }
    }
}

/// Writes one line of data to stdout. A closed pipe (`bds-fetch list |
/// head`) is not an error: the reader has what it wanted.
pub fn print_line(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::error!("cannot write to stdout: {e}");
    }
}

/// Runs the command the user asked for. An `Err` is a fatal error (exit 2).
pub async fn execute(cli: cli::Cli) -> anyhow::Result<Outcome> {
    let settings = config::Settings::resolve(&cli)?;
    match cli.command.unwrap_or(cli::Command::Run) {
        cli::Command::Run => run::fetch(settings).await,
        cli::Command::Verify => verify::audit(settings).await,
        cli::Command::List => list::list(settings).await,
    }
}
