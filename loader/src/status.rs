//! `bds-load status`: per data set, what the database holds compared with
//! the archive: baseline full, last differential applied, extracts pending,
//! rows, gaps, and how old the newest archived extract is.

use std::io::Write;

use bds_common::extract::utc_text;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::connect::Database;
use crate::ddl::KeyOverrides;
use crate::error::LoadError;
use crate::ledger;
use crate::plan::{LedgerState, PlanOptions, plan_dataset};
use crate::replace::row_count;
use crate::run::{archive_runtime, group, read_archive};

/// The status of one data set.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetStatus {
    /// Data set name.
    pub dataset: String,
    /// Table name.
    pub table: String,
    /// Queued time of the full the table was loaded from.
    pub baseline_full: Option<DateTime<Utc>>,
    /// Queued time of the last differential applied since that full.
    pub last_differential: Option<DateTime<Utc>>,
    /// Extracts a run would apply now (including a reload's full).
    pub pending: usize,
    /// Rows in the table, when it exists.
    pub rows: Option<i64>,
    /// Gaps in the differentials, and gaps the fetcher recorded.
    pub gaps: Vec<String>,
    /// Created time of the newest archived extract.
    pub newest_extract: Option<DateTime<Utc>>,
    /// Hours since then.
    pub newest_extract_age_hours: Option<f64>,
    /// Why a run would reload the table from a full, if it would.
    pub reload_reason: Option<String>,
}

/// Collects the status of the archived data sets (or the named ones).
pub fn collect(
    archive: &str,
    database: &Database,
    datasets: &[String],
    schema: &str,
    overrides: &KeyOverrides,
    options: PlanOptions,
) -> Result<Vec<DatasetStatus>, LoadError> {
    let runtime = archive_runtime()?;
    let (_, manifest) = read_archive(archive, &runtime)?;
    let work = group(&manifest, datasets, schema, overrides)?;
    let mut client = database.connect()?;
    let has_ledger = ledger::table_exists(&mut client, schema, ledger::LEDGER_TABLE)?;
    let now = Utc::now();

    let mut out = Vec::with_capacity(work.len());
    for w in &work {
        let state = if has_ledger {
            ledger::state(&mut client, schema, &w.spec.table)?
        } else {
            LedgerState::default()
        };
        let plan = plan_dataset(&w.extracts, &w.gaps, &state, w.spec.has_key(), options);
        let rows = if ledger::table_exists(&mut client, schema, &w.spec.table)? {
            Some(row_count(&mut client, schema, &w.spec.table)?)
        } else {
            None
        };
        let newest = w.extracts.iter().map(|r| r.created).max();
        out.push(DatasetStatus {
            dataset: w.spec.dataset.clone(),
            table: w.spec.table.clone(),
            baseline_full: state.baseline.as_ref().map(|b| b.queued),
            last_differential: state.since_baseline.last().map(|a| a.queued),
            pending: plan.steps.len(),
            rows,
            gaps: plan.gaps,
            newest_extract: newest,
            newest_extract_age_hours: newest
                .map(|t| ((now - t).num_minutes() as f64 / 60.0 * 10.0).round() / 10.0),
            reload_reason: plan.reload_reason,
        });
    }
    Ok(out)
}

/// Writes the status as JSON or as an aligned table.
pub fn print(statuses: &[DatasetStatus], json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, statuses)?;
        return writeln!(out);
    }
    let time = |t: Option<DateTime<Utc>>| t.map_or("-".to_string(), utc_text);
    let width = statuses
        .iter()
        .map(|s| s.dataset.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(
        out,
        "{:width$}  {:20}  {:20}  {:>7}  {:>10}  {:>9}  GAPS",
        "DATA SET", "BASELINE FULL", "LAST DIFFERENTIAL", "PENDING", "ROWS", "AGE (H)"
    )?;
    for s in statuses {
        writeln!(
            out,
            "{:width$}  {:20}  {:20}  {:>7}  {:>10}  {:>9}  {}",
            s.dataset,
            time(s.baseline_full),
            time(s.last_differential),
            s.pending,
            s.rows.map_or("-".into(), |r| r.to_string()),
            s.newest_extract_age_hours
                .map_or("-".into(), |h| format!("{h:.1}")),
            s.gaps.len()
        )?;
        for gap in &s.gaps {
            writeln!(out, "    gap: {gap}")?;
        }
    }
    Ok(())
}
