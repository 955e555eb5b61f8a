//! Progress: bars (bytes, rate, per extract and overall) when stderr is a
//! terminal; otherwise a plain log line every few seconds, for cron.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Seconds between plain progress lines.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// The bars on screen, if any; log lines go through them (see
/// [`crate::logging`]) so they do not tear the display.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// The bars, when they are drawn.
pub fn bars() -> Option<&'static MultiProgress> {
    BARS.get()
}

#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    done: AtomicUsize,
    failed: AtomicUsize,
}

/// Progress of a whole run.
#[derive(Debug)]
pub struct Progress {
    counters: Arc<Counters>,
    overall: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing progress for `extracts` downloads of about
    /// `total_bytes`. `quiet` suppresses bars and plain lines alike.
    pub fn start(extracts: usize, total_bytes: u64, quiet: bool) -> Progress {
        let counters = Arc::new(Counters::default());
        if quiet || extracts == 0 {
            return Progress {
                counters,
                overall: None,
                ticker: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let multi =
                BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
            let overall = multi.add(ProgressBar::new(total_bytes));
            overall.set_style(style(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ));
            overall.set_prefix(format!("0/{extracts} extracts"));
            return Progress {
                counters,
                overall: Some(overall),
                ticker: None,
            };
        }
        let ticker = tokio::spawn(plain_lines(counters.clone(), extracts, total_bytes));
        Progress {
            counters,
            overall: None,
            ticker: Some(ticker),
        }
    }

    /// A bar for one extract of about `size` bytes.
    pub fn extract(&self, label: &str, size: Option<u64>) -> ExtractBar {
        let bar = self.overall.as_ref().and_then(|_| {
            let bar = bars()?.add(ProgressBar::new(size.unwrap_or(0)));
            bar.set_style(style(
                "  {prefix:40!} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec}",
            ));
            bar.set_prefix(label.to_string());
            Some(bar)
        });
        ExtractBar {
            bar,
            overall: self.overall.clone(),
            counters: self.counters.clone(),
            position: AtomicU64::new(0),
        }
    }

    /// Counts one extract as finished.
    pub fn finished(&self, ok: bool, total: usize) {
        let counter = if ok {
            &self.counters.done
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(overall) = &self.overall {
            let done = self.counters.done.load(Ordering::Relaxed)
                + self.counters.failed.load(Ordering::Relaxed);
            overall.set_prefix(format!("{done}/{total} extracts"));
        }
    }

    /// Removes the bars and stops the plain lines.
    pub fn stop(self) {
        if let Some(overall) = &self.overall {
            overall.finish_and_clear();
        }
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
    }
}

/// Progress of one extract download.
#[derive(Debug)]
pub struct ExtractBar {
    bar: Option<ProgressBar>,
    overall: Option<ProgressBar>,
    counters: Arc<Counters>,
    position: AtomicU64,
}

impl ExtractBar {
    /// A bar that shows nothing (tests, dry runs).
    pub fn hidden() -> ExtractBar {
        ExtractBar {
            bar: None,
            overall: None,
            counters: Arc::default(),
            position: AtomicU64::new(0),
        }
    }

    /// `bytes` more arrived.
    pub fn advance(&self, bytes: u64) {
        self.position.fetch_add(bytes, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        if let Some(overall) = &self.overall {
            overall.inc(bytes);
        }
    }

    /// A new attempt starts from zero: take back what the last one counted.
    pub fn restart(&self) {
        let counted = self.position.swap(0, Ordering::Relaxed);
        self.counters.bytes.fetch_sub(counted, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_position(0);
        }
        if let Some(overall) = &self.overall {
            overall.set_position(overall.position().saturating_sub(counted));
        }
    }
}

impl Drop for ExtractBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Some(multi) = bars() {
                multi.remove(bar);
            }
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("progress templates are valid")
        .progress_chars("=> ")
}

async fn plain_lines(counters: Arc<Counters>, extracts: usize, total_bytes: u64) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(PLAIN_INTERVAL);
    interval.tick().await;
    loop {
        interval.tick().await;
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            done = counters.done.load(Ordering::Relaxed),
            failed = counters.failed.load(Ordering::Relaxed),
            of = extracts,
            bytes,
            total_bytes,
            mib_per_s = format!("{:.1}", bytes as f64 / seconds / 1_048_576.0),
            "progress"
        );
    }
}
