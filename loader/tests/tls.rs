//! TLS to PostgreSQL against the harness cluster, whose certificate is
//! signed by a throwaway CA: a load verifies the server against a CA file,
//! and refuses a server whose certificate does not chain to the CA it was
//! given or to the public roots.

mod support;

use bds_tests::generator::assert_table_matches;
use bds_tests::harness::pg;
use support::*;

fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

#[test]
fn a_ca_file_verifies_the_server_and_a_wrong_one_is_refused() {
    let ca = pg::ca_file().expect("the harness cluster has a CA");
    let work = tempfile::tempdir().unwrap();
    let history = histories(&["Users"], 100, work.path());
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();

    // Verified against the CA file given as a flag, and as sslrootcert=.
    let url = with_params(db.url(), "sslmode=verify-full");
    let ca_text = ca.to_str().unwrap();
    assert_exit(&load(&archive, &url, &["--ca-file", ca_text]), 0);
    let expected = expected("Users", &history, None);
    assert_table_matches(&mut db.client(), "public", &expected.table, &expected);
    let url = with_params(
        db.url(),
        &format!("sslmode=verify-ca&sslrootcert={ca_text}"),
    );
    assert_exit(&load(&archive, &url, &["--dry-run"]), 0);

    // A CA that did not sign the server's certificate.
    let other = work.path().join("other-ca.crt");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-keyout"])
        .arg(work.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .args(["-days", "1", "-subj", "/CN=not the test CA"])
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(made.status.success());
    let url = with_params(db.url(), "sslmode=verify-full");
    let refused = load(&archive, &url, &["--ca-file", other.to_str().unwrap()]);
    assert_exit(&refused, 2);
    assert!(
        stderr(&refused).to_lowercase().contains("certificate"),
        "{}",
        stderr(&refused)
    );

    // require without a CA file checks against the public roots, which did
    // not sign the test CA.
    let refused = load(&archive, &with_params(db.url(), "sslmode=require"), &[]);
    assert_exit(&refused, 2);
}
