//! The `bds-fetch` and `bds-load` binaries for tests of the `bds-tests`
//! crate, which cannot use `CARGO_BIN_EXE_*` (those exist only for a
//! package's own binaries).
//!
//! Chosen approach: once per test process, run `cargo build -p bds-fetch -p
//! bds-load --bins` (with `--release` when the tests were built so), then use
//! the binaries in the test executable's profile folder. Cargo releases its
//! build lock before it runs tests, so this does not deadlock; when the
//! binaries are up to date (always, under `cargo test --workspace`) it costs
//! a second. Merely looking for an existing file would risk testing a stale
//! binary under `cargo test -p bds-tests`; depending on the crates as
//! libraries would not build their binaries at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the freshly built `bds-fetch`.
pub fn bds_fetch() -> PathBuf {
    binary("bds-fetch")
}

/// Path of the freshly built `bds-load`.
pub fn bds_load() -> PathBuf {
    binary("bds-load")
}

fn binary(name: &str) -> PathBuf {
    let dir = profile_dir();
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(problem) = BUILT.get_or_init(|| build(&dir)) {
        panic!("cannot build the bds binaries: {problem}");
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing after building it",
        path.display()
    );
    path
}

/// `target/<profile>`: the test executable lives in its `deps` folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let deps = exe.parent().expect("folder of the test executable");
    match deps.file_name().and_then(|n| n.to_str()) {
        Some("deps") => deps.parent().expect("profile folder").to_path_buf(),
        _ => deps.to_path_buf(),
    }
}

fn build(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut command = Command::new(cargo);
    command.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "bds-fetch",
        "-p",
        "bds-load",
        "--bins",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    // The build must land where this test executable lives.
    if let Some(target) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let output = command.output().map_err(|e| format!("cargo: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
