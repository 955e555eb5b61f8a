//! Log output: `tracing` to stderr; `-v`/`-q` move our crates' level,
//! `RUST_LOG` overrides everything. While progress bars are drawn, lines go
//! through them so the display stays intact.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Sets up logging: default `info` for bds crates and `warn` for the rest,
/// raised by `verbose` and lowered by `quiet`.
pub fn init(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let others = if quiet >= 2 { "error" } else { "warn" };
        EnvFilter::new(format!("{others},bds_fetch={level},bds_common={level}"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrThroughBars)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Writes to stderr, suspending the progress bars while it does.
#[derive(Debug, Clone, Copy)]
struct StderrThroughBars;

/// One log line being written.
#[derive(Debug, Default)]
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match crate::progress::bars() {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

impl<'a> MakeWriter<'a> for StderrThroughBars {
    type Writer = Line;

    fn make_writer(&'a self) -> Self::Writer {
        Line::default()
    }
}
