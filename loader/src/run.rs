//! A load run: read the manifest, plan every data set against the ledger,
//! then apply the plans, `jobs` data sets at a time (one connection each,
//! extracts of a data set strictly in order), under the advisory lock.
//!
//! One failing data set stops at the failing extract (later ones depend on
//! it) and does not stop the others; the run reports it at the end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use bds_common::archive::Archive;
use bds_common::catalog::Catalog;
use bds_common::extract::utc_text;
use bds_common::manifest::{ExtractRecord, GapRecord, Manifest};
use chrono::Duration;
use postgres::Client;
use tokio::runtime::Runtime;

use crate::apply::{Source, apply_step};
use crate::connect::{Database, lock};
use crate::ddl::{KeyOverrides, TableSpec};
use crate::error::LoadError;
use crate::ledger;
use crate::plan::{DatasetPlan, LedgerState, PlanOptions, Step, plan_dataset};

/// What a run should do.
#[derive(Debug)]
pub struct RunOptions {
    /// Archive location (path, file:// or s3://).
    pub archive: String,
    /// Target database.
    pub database: Database,
    /// Data sets to load (names, tables or schema ids); empty: all archived.
    pub datasets: Vec<String>,
    /// Target schema.
    pub schema: String,
    /// Planning options (`--as-of`, `--rebuild`, gap threshold).
    pub plan: PlanOptions,
    /// Print the plan and change nothing.
    pub dry_run: bool,
    /// Data sets loaded in parallel.
    pub jobs: usize,
    /// Wait for another run's lock (else give up).
    pub wait: bool,
    /// User-declared keys.
    pub key_overrides: KeyOverrides,
}

/// How a run ended (fatal problems are errors instead).
#[derive(Debug, Default)]
pub struct RunReport {
    /// Data sets planned.
    pub datasets: usize,
    /// Extracts applied or skipped.
    pub steps_done: usize,
    /// Extracts a dry run would apply or skip.
    pub steps_planned: usize,
    /// Data sets that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Another run held the lock and `wait` was false.
    pub lock_busy: bool,
}

/// One data set's extracts and gap records.
#[derive(Debug, Clone)]
pub struct DatasetWork {
    /// How it loads.
    pub spec: TableSpec,
    /// Its archived extracts.
    pub extracts: Vec<ExtractRecord>,
    /// Gaps the fetcher recorded for it.
    pub gaps: Vec<GapRecord>,
}

/// The small runtime that drives archive calls. One worker thread, shared by
/// every job: `block_on` is only ever called around archive calls, never
/// around the blocking postgres client (which runs its own runtime), and a
/// single runtime keeps the S3 client's connection pool alive between calls.
pub fn archive_runtime() -> Result<Runtime, LoadError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bds-load-archive")
        .enable_all()
        .build()
        .map_err(|source| LoadError::Io {
            context: "start the archive runtime".into(),
            source,
        })
}

/// Opens the archive and reads its manifest.
pub fn read_archive(location: &str, runtime: &Runtime) -> Result<(Archive, Manifest), LoadError> {
    let archive = Archive::open_existing(location).map_err(|e| LoadError::Config {
        problem: crate::error_chain(&e),
    })?;
    let manifest = runtime
        .block_on(Manifest::read(&archive))
        .map_err(LoadError::Manifest)?;
    if manifest.extracts.is_empty() {
        tracing::warn!(
            "the archive {location} records no extract: nothing has been fetched into it \
             yet, or --archive points somewhere else"
        );
    }
    Ok((archive, manifest))
}

/// The manifest's extracts grouped per data set (by table), filtered to the
/// wanted data sets. A wanted name neither archived nor in the catalog is a
/// configuration error.
pub fn group(
    manifest: &Manifest,
    wanted: &[String],
    schema: &str,
    overrides: &KeyOverrides,
) -> Result<Vec<DatasetWork>, LoadError> {
    let mut groups: BTreeMap<String, DatasetWork> = BTreeMap::new();
    for record in &manifest.extracts {
        let spec = spec_for(
            &record.dataset,
            &record.schema_id,
            &record.table,
            schema,
            overrides,
        );
        groups
            .entry(spec.table.clone())
            .or_insert_with(|| DatasetWork {
                spec,
                extracts: Vec::new(),
                gaps: Vec::new(),
            })
            .extracts
            .push(record.clone());
    }
    for gap in &manifest.gaps {
        let spec = spec_for(&gap.dataset, &gap.schema_id, &gap.table, schema, overrides);
        if let Some(work) = groups.get_mut(&spec.table) {
            work.gaps.push(gap.clone());
        }
    }

    let matches = |work: &DatasetWork, name: &str| {
        let name = name.trim();
        work.spec.dataset.eq_ignore_ascii_case(name)
            || work.spec.table.eq_ignore_ascii_case(name)
            || work.extracts.iter().any(|r| {
                r.dataset.eq_ignore_ascii_case(name) || r.schema_id.eq_ignore_ascii_case(name)
            })
    };
    for name in wanted {
        if groups.values().any(|w| matches(w, name)) {
            continue;
        }
        if Catalog::builtin().find(name).is_none() {
            return Err(LoadError::Config {
                problem: format!(
                    "data set {name:?} is neither archived nor in the catalog{}",
                    did_you_mean(name)
                ),
            });
        }
        tracing::warn!("data set {name:?}: no extract archived yet");
    }
    Ok(groups
        .into_values()
        .filter(|w| wanted.is_empty() || wanted.iter().any(|n| matches(w, n)))
        .collect())
}

fn spec_for(
    dataset: &str,
    schema_id: &str,
    table: &str,
    schema: &str,
    overrides: &KeyOverrides,
) -> TableSpec {
    match Catalog::builtin().find(schema_id) {
        Some(known) => TableSpec::from_catalog(known, schema, overrides),
        None => TableSpec::resolve(dataset, Some(table), schema, overrides),
    }
}

/// Plans every data set against the ledger (`None`: no ledger yet).
pub fn plan_all(
    client: &mut Client,
    work: &[DatasetWork],
    schema: &str,
    options: PlanOptions,
) -> Result<Vec<DatasetPlan>, LoadError> {
    let has_ledger = ledger::table_exists(client, schema, ledger::LEDGER_TABLE)?;
    work.iter()
        .map(|w| {
            let state = if has_ledger {
                ledger::state(client, schema, &w.spec.table)?
            } else {
                LedgerState::default()
            };
            Ok(plan_dataset(
                &w.extracts,
                &w.gaps,
                &state,
                w.spec.has_key(),
                options,
            ))
        })
        .collect()
}

/// Runs a load.
pub fn run(options: &RunOptions) -> Result<RunReport, LoadError> {
    let runtime = archive_runtime()?;
    let (archive, manifest) = read_archive(&options.archive, &runtime)?;
    let work = group(
        &manifest,
        &options.datasets,
        &options.schema,
        &options.key_overrides,
    )?;

    let mut control = options.database.connect()?;
    if !options.dry_run {
        if !lock(&mut control, options.wait, options.database.display())? {
            return Ok(RunReport {
                lock_busy: true,
                ..Default::default()
            });
        }
        ledger::ensure(&mut control, &options.schema)?;
    }
    let plans = plan_all(&mut control, &work, &options.schema, options.plan)?;
    for (w, plan) in work.iter().zip(&plans) {
        log_plan(w, plan);
    }
    if options.dry_run {
        print_plans(&work, &plans);
        return Ok(RunReport {
            datasets: work.len(),
            steps_planned: plans.iter().map(|p| p.steps.len()).sum(),
            ..Default::default()
        });
    }

    let source = Source {
        archive: &archive,
        runtime: &runtime,
    };
    let report = execute(options, source, &work, &plans);
    // The lock is held by `control` until here.
    drop(control);
    Ok(report)
}

fn log_plan(work: &DatasetWork, plan: &DatasetPlan) {
    let dataset = &work.spec.dataset;
    for note in &plan.notes {
        tracing::warn!(dataset = %dataset, "{dataset}: {note}");
    }
    for gap in &plan.gaps {
        tracing::warn!(dataset = %dataset, "{dataset}: gap: {gap}");
    }
    if let Some(reason) = &plan.reload_reason {
        tracing::debug!(dataset = %dataset, "{dataset}: reloading from a full: {reason}");
    }
    if plan.steps.is_empty() {
        tracing::debug!(dataset = %dataset, "{dataset}: up to date");
    }
}

fn print_plans(work: &[DatasetWork], plans: &[DatasetPlan]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (w, plan) in work.iter().zip(plans) {
        let what = match (&plan.refused, &plan.reload_reason) {
            (Some(refused), _) => format!("fails: {refused}"),
            (None, Some(reason)) => format!("reload from a full ({reason})"),
            (None, None) if plan.steps.is_empty() => "up to date".into(),
            (None, None) => "apply new differentials".into(),
        };
        let _ = writeln!(out, "{} ({}): {what}", w.spec.dataset, w.spec.table);
        for step in &plan.steps {
            let r = step.record();
            let action = match step {
                Step::Full(_) => "load full        ",
                Step::Differential(_) => "apply differential",
                Step::SkipDifferential(_) => "skip differential ",
            };
            let _ = writeln!(
                out,
                "  {action} queued {} created {} {}",
                utc_text(r.queued),
                utc_text(r.created),
                r.key
            );
        }
        for note in plan.notes.iter().chain(&plan.gaps) {
            let _ = writeln!(out, "  note: {note}");
        }
    }
}

fn execute(
    options: &RunOptions,
    source: Source<'_>,
    work: &[DatasetWork],
    plans: &[DatasetPlan],
) -> RunReport {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..work.len()).collect());
    let report = Mutex::new(RunReport {
        datasets: work.len(),
        ..Default::default()
    });
    let jobs = options.jobs.clamp(1, work.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(i) = queue.lock().expect("queue lock").pop_front() {
                    let (done, failure) =
                        load_dataset(&options.database, source, &work[i], &plans[i]);
                    let mut report = report.lock().expect("report lock");
                    report.steps_done += done;
                    if let Some(error) = failure {
                        report.failed.push((work[i].spec.dataset.clone(), error));
                    }
                }
            });
        }
    });
    report.into_inner().expect("report lock")
}

/// Applies one data set's plan; returns the steps done and the error that
/// stopped it, if any.
fn load_dataset(
    database: &Database,
    source: Source<'_>,
    work: &DatasetWork,
    plan: &DatasetPlan,
) -> (usize, Option<String>) {
    let dataset = &work.spec.dataset;
    if let Some(refused) = &plan.refused {
        tracing::error!(dataset = %dataset, "{dataset}: {refused}");
        return (0, Some(refused.clone()));
    }
    if plan.steps.is_empty() {
        return (0, None);
    }
    let mut client = match database.connect() {
        Ok(client) => client,
        Err(e) => {
            let message = crate::error_chain(&e);
            tracing::error!(dataset = %dataset, "{dataset}: {message}");
            return (0, Some(message));
        }
    };
    for (done, step) in plan.steps.iter().enumerate() {
        if let Err(e) = apply_step(&mut client, source, &work.spec, step, plan.rebuild) {
            let message = crate::error_chain(&e);
            let left = plan.steps.len() - done - 1;
            tracing::error!(
                dataset = %dataset,
                "{message}; {dataset} stops here ({left} later extract(s) not applied)"
            );
            return (done, Some(message));
        }
    }
    (plan.steps.len(), None)
}

/// ` (did you mean "Users"?)` for a name close to a catalog data set.
pub fn did_you_mean(name: &str) -> String {
    Catalog::builtin()
        .suggest(name)
        .map(|near| format!(" (did you mean {near:?}?)"))
        .unwrap_or_default()
}

/// Default gap threshold: a little over a day, for daily differentials.
pub fn default_max_gap() -> Duration {
    Duration::hours(36)
}
