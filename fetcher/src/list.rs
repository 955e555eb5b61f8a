//! `bds-fetch list`: what the archive holds, from the manifest.

use anyhow::Context;
use bds_common::extract::utc_text;
use bds_common::manifest::Manifest;

use crate::Outcome;
use crate::config::Settings;

/// Prints every archived extract (and recorded gaps): plain columns, or
/// the manifest records as a JSON array with `--json`.
pub async fn list(settings: Settings) -> anyhow::Result<Outcome> {
    let archive = settings.open_existing_archive()?;
    let manifest = Manifest::read(&archive)
        .await
        .context("cannot read the manifest")?;
    if settings.json {
        let document = serde_json::json!({
            "extracts": manifest.extracts,
            "gaps": manifest.gaps,
        });
        crate::print_line(serde_json::to_string_pretty(&document)?);
        return Ok(Outcome::Done);
    }
    if !manifest.extracts.is_empty() {
        crate::print_line(format_args!(
            "{:<32} {:<12} {:<20} {:<7} {:>12} key",
            "table", "type", "queued", "version", "bytes"
        ));
    }
    for record in &manifest.extracts {
        crate::print_line(format_args!(
            "{:<32} {:<12} {:<20} {:<7} {:>12} {}",
            record.table,
            record.kind.as_str(),
            utc_text(record.queued),
            record.version.as_deref().unwrap_or("-"),
            record.size,
            record.key
        ));
    }
    for gap in &manifest.gaps {
        crate::print_line(format_args!(
            "gap {} newest archived differential {} < oldest offered {}",
            gap.table,
            gap.newest_archived
                .map(utc_text)
                .unwrap_or_else(|| "-".into()),
            utc_text(gap.oldest_offered)
        ));
    }
    Ok(Outcome::Done)
}
