//! Checks that a tool's `--help` and the README's configuration reference
//! name the same flags and environment variables.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Flags (`--name`) and variables (`BDS_*`, `DATABASE_URL`, `RUST_LOG`)
/// named in `text`.
pub fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let word_start = i == 0 || !is_word(bytes[i - 1]);
        let flag_start = rest.as_bytes().get(2).is_some_and(u8::is_ascii_lowercase);
        if rest.starts_with("--") && word_start && flag_start {
            let len = rest[2..]
                .bytes()
                .take_while(|&b| b.is_ascii_lowercase() || b == b'-')
                .count();
            if len > 0 {
                out.insert(rest[..2 + len].trim_end_matches('-').to_string());
            }
            i += 2 + len.max(1);
            continue;
        }
        if word_start && (rest.starts_with("BDS_") || rest.starts_with("DATABASE_URL")) {
            let len = rest
                .bytes()
                .take_while(|&b| b.is_ascii_uppercase() || b == b'_')
                .count();
            out.insert(rest[..len].trim_end_matches('_').to_string());
            i += len;
            continue;
        }
        i += 1;
    }
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The `--help` output of `binary` and of each of its `subcommands`.
pub fn help_text(binary: &Path, subcommands: &[&str]) -> String {
    let mut text = String::new();
    let mut runs: Vec<Vec<&str>> = vec![vec!["--help"]];
    runs.extend(subcommands.iter().map(|s| vec![*s, "--help"]));
    for args in runs {
        let out = Command::new(binary)
            .args(&args)
            .output()
            .expect("run the binary");
        assert!(out.status.success(), "{} {args:?} failed", binary.display());
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    text
}

/// The README section that starts with the heading `### {title}` and ends at
/// the next heading.
pub fn readme_section(title: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let heading = format!("### {title}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("README lacks {heading:?}"));
    let body = &readme[start + heading.len()..];
    let end = body.find("\n#").map_or(body.len(), |e| e + 1);
    body[..end].to_string()
}

/// Panics unless the tool's help and its README section name the same
/// flags and variables (`--help` and `--version` aside).
pub fn assert_help_matches_readme(binary: &Path, subcommands: &[&str], section: &str) {
    let ignored = ["--help", "--version"];
    let help: BTreeSet<String> = names(&help_text(binary, subcommands))
        .into_iter()
        .filter(|n| !ignored.contains(&n.as_str()))
        .collect();
    let readme: BTreeSet<String> = names(&readme_section(section))
        .into_iter()
        .filter(|n| !ignored.contains(&n.as_str()))
        .collect();
    let undocumented: Vec<_> = help.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&help).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "README section {section:?} and --help disagree.\n in --help only: {undocumented:?}\n in README only: {unknown:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flags_and_variables() {
        let found = names("use `--base-url URL` or BDS_BASE_URL, else DATABASE_URL; a-b--c no");
        let want: BTreeSet<String> = ["--base-url", "BDS_BASE_URL", "DATABASE_URL"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(found, want);
    }
}
