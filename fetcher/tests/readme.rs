//! Every flag and environment variable of `bds-fetch --help` is in the
//! README's configuration reference, and the other way round.

use std::path::Path;

#[test]
fn help_and_readme_name_the_same_settings() {
    let binary = Path::new(env!("CARGO_BIN_EXE_bds-fetch"));
    bds_tests::docs::assert_help_matches_readme(binary, &["run", "verify", "list"], "bds-fetch");
}
