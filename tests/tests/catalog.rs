//! The committed catalog and the README's data set list are exactly what
//! `schema/generate.py` builds from the committed reference copy.

use std::path::Path;
use std::process::Command;

#[test]
fn regenerating_the_catalog_reproduces_the_committed_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("schema/generate.py"))
        .arg("--check")
        .output()
        .expect("python3 must be installed to check the catalog (Debian package python3)");
    assert!(
        out.status.success(),
        "schema/generate.py --check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
