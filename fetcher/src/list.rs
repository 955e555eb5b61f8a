//! `bds-fetch list`: what the archive holds, from the manifest.

use anyhow::Context;
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
    for record in &manifest.extracts {
        crate::print_line(format_args!(
            "{:<32} {:<12} {} {} {:>12} {}",
            record.table,
            record.kind.as_str(),
            record.queued.format("%Y-%m-%dT%H:%M:%SZ"),
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
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "-".into()),
            gap.oldest_offered.to_rfc3339()
        ));
    }
    Ok(Outcome::Done)
}
