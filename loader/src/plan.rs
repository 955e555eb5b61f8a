//! What to apply to one data set's table: a pure function of the archived
//! extracts, the ledger and the options, so it can be tested without a
//! database or an archive.
//!
//! Rule: the latest full created at or before `--as-of` is the baseline. The
//! table is reloaded from it when the ledger's baseline differs (older, newer
//! than `--as-of`, absent), when `--rebuild` is given, when differentials
//! past `--as-of` were applied, or when a differential arrived in the
//! archive that sorts before one already applied (order matters). Then every
//! differential created after the baseline's created time is applied in
//! (queued, created) order, skipping those the ledger records since the
//! baseline. Differentials older than the baseline are never applied.

use std::collections::HashSet;

use bds_common::extract::{ExtractKind, utc_text};
use bds_common::manifest::{ExtractRecord, GapRecord};
use chrono::{DateTime, Duration, Utc};

/// A ledger row, as far as planning needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `ExtractId::key()`.
    pub extract_key: String,
    /// When D2L queued it.
    pub queued: DateTime<Utc>,
    /// When D2L created it.
    pub created: DateTime<Utc>,
}

/// What the ledger says about one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    /// The full the table was last loaded from; `None` when the table was
    /// never loaded (or has vanished).
    pub baseline: Option<Applied>,
    /// Differentials applied or skipped since that full, in ledger order.
    pub since_baseline: Vec<Applied>,
}

/// Options that shape a plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// Ignore extracts created after this time.
    pub as_of: Option<DateTime<Utc>>,
    /// Reload from the latest full even if the ledger is up to date.
    pub rebuild: bool,
    /// Differentials further apart than this are reported as a gap.
    pub max_gap: Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            as_of: None,
            rebuild: false,
            max_gap: Duration::hours(36),
        }
    }
}

/// One thing to do to the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Replace the table with this full.
    Full(ExtractRecord),
    /// Upsert this differential.
    Differential(ExtractRecord),
    /// Record this differential as skipped: the data set has no key.
    SkipDifferential(ExtractRecord),
}

impl Step {
    /// The extract of the step.
    pub fn record(&self) -> &ExtractRecord {
        match self {
            Step::Full(r) | Step::Differential(r) | Step::SkipDifferential(r) => r,
        }
    }
}

/// The plan of one data set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetPlan {
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Why the table is reloaded from a full, when it is.
    pub reload_reason: Option<String>,
    /// `--rebuild`: the full builds the table from the catalog and the
    /// extract's header, dropping columns only earlier extracts had.
    pub rebuild: bool,
    /// Things the user should know (nothing to start from, `--as-of` before
    /// any full).
    pub notes: Vec<String>,
    /// Gaps in the differentials after the baseline, and gaps the fetcher
    /// recorded.
    pub gaps: Vec<String>,
    /// Why the data set cannot be brought to the requested state: it fails,
    /// and its table is left as it is.
    pub refused: Option<String>,
}

/// Plans one data set. `extracts` are the data set's archived extracts in
/// any order, `gaps` the fetcher's gap records for it.
pub fn plan_dataset(
    extracts: &[ExtractRecord],
    gaps: &[GapRecord],
    ledger: &LedgerState,
    has_key: bool,
    options: PlanOptions,
) -> DatasetPlan {
    let mut eligible: Vec<&ExtractRecord> = extracts
        .iter()
        .filter(|r| options.as_of.is_none_or(|t| r.created <= t))
        .collect();
    eligible.sort_by_key(|r| (r.queued, r.created));
    let target_full = eligible
        .iter()
        .rev()
        .find(|r| r.kind == ExtractKind::Full)
        .copied();

    let mut plan = DatasetPlan::default();
    // The archive cannot show the table as it was before its oldest full:
    // keeping today's rows would silently answer for another date.
    let any_full = extracts.iter().any(|r| r.kind == ExtractKind::Full);
    if let (Some(t), None, true) = (options.as_of, target_full, any_full) {
        plan.refused = Some(format!(
            "no full extract created at or before {}: the archive cannot show the table \
             as it was then (the table is left as it is)",
            utc_text(t)
        ));
        return plan;
    }
    let reload = reload_reason(&eligible, target_full, ledger, options);
    let base_created = match (&reload, target_full, &ledger.baseline) {
        (Some(_), Some(full), _) => full.created,
        (None, _, Some(baseline)) => baseline.created,
        _ => {
            plan.notes.push(no_baseline_note(options, ledger));
            return plan;
        }
    };
    if let (Some(reason), Some(full)) = (reload, target_full) {
        plan.reload_reason = Some(reason);
        plan.rebuild = options.rebuild;
        plan.steps.push(Step::Full(full.clone()));
    }

    let done: HashSet<&str> = if plan.reload_reason.is_some() {
        HashSet::new()
    } else {
        let keys = ledger.since_baseline.iter();
        keys.map(|a| a.extract_key.as_str()).collect()
    };
    for r in eligible
        .iter()
        .filter(|r| r.kind == ExtractKind::Differential)
    {
        if r.created <= base_created || done.contains(r.id().key().as_str()) {
            continue;
        }
        plan.steps.push(if has_key {
            Step::Differential((*r).clone())
        } else {
            Step::SkipDifferential((*r).clone())
        });
    }
    plan.gaps = find_gaps(&eligible, base_created, options.max_gap);
    plan.gaps.extend(gaps.iter().map(describe_gap_record));
    plan
}

fn no_baseline_note(options: PlanOptions, ledger: &LedgerState) -> String {
    match (options.as_of, &ledger.baseline) {
        (Some(t), Some(_)) => format!(
            "no full extract created at or before {}: the table is left as it is",
            utc_text(t)
        ),
        _ => "no full extract archived yet: differentials wait for one".into(),
    }
}

/// Why the table must be reloaded from `target_full`, or `None`.
fn reload_reason(
    eligible: &[&ExtractRecord],
    target_full: Option<&ExtractRecord>,
    ledger: &LedgerState,
    options: PlanOptions,
) -> Option<String> {
    let full = target_full?;
    let full_key = full.id().key();
    let Some(baseline) = &ledger.baseline else {
        return Some("the table has not been loaded yet".into());
    };
    if options.rebuild {
        return Some("--rebuild".into());
    }
    if baseline.extract_key != full_key {
        let relation = if baseline.created < full.created {
            "a newer full is archived"
        } else {
            "the loaded full is newer than --as-of"
        };
        return Some(relation.into());
    }

    let eligible_keys: HashSet<String> = eligible.iter().map(|r| r.id().key()).collect();
    if let Some(late) = ledger
        .since_baseline
        .iter()
        .find(|a| !eligible_keys.contains(&a.extract_key))
    {
        return Some(format!(
            "a differential created {} (after --as-of) was applied",
            utc_text(late.created)
        ));
    }

    let last_applied = ledger
        .since_baseline
        .iter()
        .map(|a| (a.queued, a.created))
        .max()?;
    let applied: HashSet<&str> = ledger
        .since_baseline
        .iter()
        .map(|a| a.extract_key.as_str())
        .collect();
    let out_of_order = eligible.iter().find(|r| {
        r.kind == ExtractKind::Differential
            && r.created > full.created
            && (r.queued, r.created) < last_applied
            && !applied.contains(r.id().key().as_str())
    })?;
    Some(format!(
        "a differential queued {} arrived after later ones were applied",
        utc_text(out_of_order.queued)
    ))
}

/// Consecutive differentials further apart than `max_gap`, where the later
/// one is needed after the baseline.
fn find_gaps(
    eligible: &[&ExtractRecord],
    base_created: DateTime<Utc>,
    max_gap: Duration,
) -> Vec<String> {
    let mut differentials: Vec<DateTime<Utc>> = eligible
        .iter()
        .filter(|r| r.kind == ExtractKind::Differential)
        .map(|r| r.created)
        .collect();
    differentials.sort();

    let mut gaps = Vec::new();
    let mut previous: Option<DateTime<Utc>> = None;
    for created in differentials {
        // The baseline full covers whatever came before it.
        let start = previous.map_or(base_created, |p| p.max(base_created));
        if created > base_created && created - start > max_gap {
            gaps.push(format!(
                "no differential between {} and {} ({} hours)",
                utc_text(start),
                utc_text(created),
                (created - start).num_hours()
            ));
        }
        previous = Some(created);
    }
    gaps
}

fn describe_gap_record(gap: &GapRecord) -> String {
    let newest = gap.newest_archived.map_or("none".to_string(), utc_text);
    format!(
        "bds-fetch detected a gap on {}: newest archived differential {newest}, oldest still \
         offered {}",
        utc_text(gap.detected_at),
        utc_text(gap.oldest_offered)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: ExtractKind, day: u32, hour: u32) -> ExtractRecord {
        let queued = chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc();
        ExtractRecord {
            dataset: "Users".into(),
            table: "users".into(),
            schema_id: "s".into(),
            plugin_id: kind.as_str().into(),
            kind,
            version: Some("9.1".into()),
            queued,
            created: queued + Duration::minutes(30),
            size: 1,
            sha256: "x".into(),
            key: format!("k{day}{hour}"),
            csv_entry: "Users.csv".into(),
            csv_size: 1,
            fetched_at: queued,
            tool_version: "0".into(),
        }
    }

    fn applied(r: &ExtractRecord) -> Applied {
        Applied {
            extract_key: r.id().key(),
            queued: r.queued,
            created: r.created,
        }
    }

    fn full(day: u32) -> ExtractRecord {
        record(ExtractKind::Full, day, 3)
    }

    fn differential(day: u32) -> ExtractRecord {
        record(ExtractKind::Differential, day, 2)
    }

    fn keys(plan: &DatasetPlan) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| format!("{:?}{}", s.record().kind, s.record().queued.format("%d")))
            .collect()
    }

    fn history() -> Vec<ExtractRecord> {
        vec![
            differential(2),
            full(1),
            differential(3),
            full(8),
            differential(9),
            differential(10),
            differential(8),
        ]
    }

    #[test]
    fn empty_ledger_loads_the_latest_full_then_later_differentials() {
        let plan = plan_dataset(
            &history(),
            &[],
            &LedgerState::default(),
            true,
            Default::default(),
        );
        // The differential queued on the 8th at 02:00 is older than the full
        // queued at 03:00 on the 8th, so it is never applied.
        assert_eq!(keys(&plan), ["Full08", "Differential09", "Differential10"]);
    }

    #[test]
    fn up_to_date_ledger_plans_nothing() {
        let ledger = LedgerState {
            baseline: Some(applied(&full(8))),
            since_baseline: vec![applied(&differential(9)), applied(&differential(10))],
        };
        let plan = plan_dataset(&history(), &[], &ledger, true, Default::default());
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert!(plan.reload_reason.is_none());
    }

    #[test]
    fn only_new_differentials_are_applied() {
        let ledger = LedgerState {
            baseline: Some(applied(&full(8))),
            since_baseline: vec![applied(&differential(9))],
        };
        let plan = plan_dataset(&history(), &[], &ledger, true, Default::default());
        assert_eq!(keys(&plan), ["Differential10"]);
    }

    #[test]
    fn an_older_baseline_is_replaced_by_the_newer_full() {
        let ledger = LedgerState {
            baseline: Some(applied(&full(1))),
            since_baseline: vec![applied(&differential(2))],
        };
        let plan = plan_dataset(&history(), &[], &ledger, true, Default::default());
        assert_eq!(keys(&plan), ["Full08", "Differential09", "Differential10"]);
    }

    #[test]
    fn as_of_before_the_oldest_full_is_refused() {
        let extracts = vec![full(3), differential(4)];
        let options = PlanOptions {
            as_of: Some(full(3).created - Duration::days(1)),
            ..PlanOptions::default()
        };
        let plan = plan_dataset(&extracts, &[], &LedgerState::default(), true, options);
        assert!(plan.steps.is_empty());
        assert!(
            plan.refused
                .as_deref()
                .is_some_and(|r| r.contains("no full extract"))
        );
    }

    #[test]
    fn as_of_goes_back_to_the_full_before_it() {
        let ledger = LedgerState {
            baseline: Some(applied(&full(8))),
            since_baseline: vec![applied(&differential(9))],
        };
        let as_of = full(3).created;
        let options = PlanOptions {
            as_of: Some(as_of),
            ..Default::default()
        };
        let plan = plan_dataset(&history(), &[], &ledger, true, options);
        assert_eq!(keys(&plan), ["Full01", "Differential02", "Differential03"]);
    }

    #[test]
    fn as_of_before_an_applied_differential_reloads() {
        let ledger = LedgerState {
            baseline: Some(applied(&full(8))),
            since_baseline: vec![applied(&differential(9)), applied(&differential(10))],
        };
        let options = PlanOptions {
            as_of: Some(differential(9).created),
            ..Default::default()
        };
        let plan = plan_dataset(&history(), &[], &ledger, true, options);
        assert_eq!(keys(&plan), ["Full08", "Differential09"]);
    }

    #[test]
    fn a_late_differential_forces_a_reload_in_order() {
        let mut extracts = history();
        let late = record(ExtractKind::Differential, 9, 1);
        extracts.push(late);
        let ledger = LedgerState {
            baseline: Some(applied(&full(8))),
            since_baseline: vec![applied(&differential(9)), applied(&differential(10))],
        };
        let plan = plan_dataset(&extracts, &[], &ledger, true, Default::default());
        assert!(plan.reload_reason.is_some());
        assert_eq!(plan.steps.len(), 4);
    }

    #[test]
    fn keyless_datasets_skip_differentials_and_rebuild_reloads() {
        let ledger = LedgerState {
            baseline: Some(applied(&full(8))),
            since_baseline: vec![],
        };
        let options = PlanOptions {
            rebuild: true,
            ..Default::default()
        };
        let plan = plan_dataset(&history(), &[], &ledger, false, options);
        assert!(matches!(plan.steps[0], Step::Full(_)));
        assert!(matches!(plan.steps[1], Step::SkipDifferential(_)));
    }

    #[test]
    fn nothing_without_a_full() {
        let plan = plan_dataset(
            &[differential(2)],
            &[],
            &LedgerState::default(),
            true,
            Default::default(),
        );
        assert!(plan.steps.is_empty());
        assert_eq!(plan.notes.len(), 1);
    }

    /// The gaps a first run would report for `extracts`.
    fn gaps_of(extracts: &[ExtractRecord]) -> Vec<String> {
        let fresh = LedgerState::default();
        plan_dataset(extracts, &[], &fresh, true, Default::default()).gaps
    }

    #[test]
    fn gaps_longer_than_the_cadence_are_reported() {
        let gaps = gaps_of(&[full(8), differential(9), differential(12)]);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0].contains("72 hours"), "{gaps:?}");
    }

    #[test]
    fn a_hole_before_the_baseline_full_is_no_gap() {
        let gaps = gaps_of(&[differential(5), full(10), differential(11)]);
        assert_eq!(gaps, Vec::<String>::new());
    }
}
