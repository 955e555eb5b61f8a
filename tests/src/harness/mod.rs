//! Real services for tests: a throwaway PostgreSQL cluster ([`pg`]) and an
//! S3-compatible server ([`s3`]), each started once per test process on
//! loopback, on first use.
//!
//! Both are torn down when the test process ends, however it ends (normal
//! exit, panic, abort, SIGKILL): a small watchdog shell process polls the
//! test process and cleans up after it. A service that cannot be started
//! fails the test with a message saying what to install; nothing is skipped.
//!
//! Environment variables:
//! - `BDS_TEST_DATABASE_URL`: use this PostgreSQL server instead of a
//!   throwaway cluster (the role must be allowed to create databases).
//! - `BDS_TEST_S3_ENDPOINT`: use this S3-compatible server instead of
//!   starting moto (credentials from `AWS_ACCESS_KEY_ID` and
//!   `AWS_SECRET_ACCESS_KEY` when set, else `testing`).

use std::net::TcpListener;
use std::process::{Command, Stdio};

pub mod pg;
pub mod s3;

/// A port on 127.0.0.1 that was free a moment ago. The caller binds it soon
/// after; a collision with another process is possible but rare, and the
/// services retry on another port when it happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Starts a detached shell that waits for this process to end, then runs
/// `cleanup` (a shell snippet). It lives in its own process group so that a
/// Ctrl-C aimed at the test run does not kill it before it has cleaned up.
#[expect(
    clippy::zombie_processes,
    reason = "the watchdog outlives this process by design; nobody waits for it"
)]
pub(crate) fn spawn_watchdog(cleanup: &str) {
    use std::os::unix::process::CommandExt;

    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {cleanup}",
        pid = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the cleanup watchdog (sh)");
}

/// Runs `work` on a fresh thread and returns its result. The blocking
/// `postgres` client and our small HTTP calls start their own runtime, which
/// panics inside a tokio runtime; a plain thread makes the harness callable
/// from sync and async tests alike. A panic in `work` is re-raised here.
pub(crate) fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Quotes `text` for a POSIX shell.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
