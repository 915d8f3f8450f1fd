//! What earlier runs decide about this one: `--since-last-success` widens
//! the window from the journals, `--resume` takes a failed run's journal,
//! and a retried driver job continues its first attempt's run.

use super::{RunOptions, lease_options, out_root, pick_pipeline};
use crate::commit::journal::{self, Journal, RunStatus};
use crate::conf::error::ConfigError;
use crate::conf::project::Project;
use crate::error::DriverError;
use crate::plan::dates::DateRange;
use crate::progress::Progress;

/// `--since-last-success`: the window widened back to the day after the
/// last date a successful run of the pipeline covered (with every node
/// this run selects), so that a scheduled run after a failed one also
/// covers the days that one missed. Returns the window and a note.
pub async fn since_last_success(
    project: &Project,
    opts: &RunOptions,
) -> Result<(DateRange, String), DriverError> {
    let asked = opts.dates.clone().ok_or_else(|| {
        ConfigError::new(
            "--since-last-success",
            "needs --dates (the newest day to cover, e.g. --dates yesterday)",
        )
    })?;
    let pipeline = pick_pipeline(project, opts.pipeline.as_deref())?;
    let wanted: Vec<String> = pipeline
        .select(&opts.selection)?
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let out_root = out_root(project)?;
    let runs = journal::list(&out_root)
        .await
        .map_err(DriverError::Storage)?;
    let last = runs
        .iter()
        .filter(|j| j.status == RunStatus::Succeeded && j.pipeline == pipeline.name)
        .filter(|j| wanted.iter().all(|n| j.nodes.contains(n)))
        .filter_map(|j| {
            j.dates
                .as_deref()?
                .split_once("..")
                .map(|(_, to)| to.to_string())
        })
        .max();
    let Some(last) = last else {
        return Ok((
            asked.clone(),
            format!(
                "--since-last-success: no successful run of `{}` yet; running {}..{}",
                pipeline.name, asked.from, asked.to
            ),
        ));
    };
    let day_after = crate::time::days_since_epoch(&last)
        .map(|d| crate::time::civil_date(d + 1))
        .unwrap_or_else(|| asked.from.clone());
    let window = DateRange {
        from: day_after.min(asked.from.clone()),
        to: asked.to.clone(),
    };
    let note = match window.from == asked.from {
        true => format!(
            "--since-last-success: the last successful run covered up to {last}; nothing missed"
        ),
        false => format!(
            "--since-last-success: the last successful run covered up to {last}; running {}..{} \
             to cover the days missed since",
            window.from, window.to
        ),
    };
    Ok((window, note))
}

/// The journal of a run that can be resumed, or why it cannot.
pub(super) async fn resumable_journal(
    out_root: &str,
    run_id: &str,
) -> Result<Journal, DriverError> {
    let j = journal::load(out_root, run_id)
        .await
        .map_err(DriverError::Storage)?
        .ok_or_else(|| {
            ConfigError::new(
                "--resume",
                format!("no run `{run_id}` under {out_root}; `chainbatch runs` lists them"),
            )
        })?;
    let why = match j.status {
        RunStatus::Failed if j.resumable => return Ok(j),
        RunStatus::Failed => format!(
            "failed for a reason a rerun does not fix ({}); start a new run",
            j.error.as_deref().unwrap_or("no error recorded")
        ),
        RunStatus::Succeeded => "succeeded; there is nothing to resume".to_string(),
        RunStatus::RolledBack => "was rolled back; start a new run".to_string(),
        // The driver died, or lost its storage before it could record the
        // failure: resuming is the user's call (no other driver may be on it).
        RunStatus::Running => return Ok(j),
    };
    Err(ConfigError::new("--resume", format!("run `{run_id}` {why}")).into())
}

/// A later attempt of the job that ran `opts.run_id`: resume the run its
/// earlier attempt left (after that attempt's lease expires), start it if
/// none was recorded, or do nothing if it succeeded.
pub(super) async fn continued_options(
    project: &Project,
    out_root: &str,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<Option<RunOptions>, DriverError> {
    let earlier = journal::load(out_root, &opts.run_id)
        .await
        .map_err(DriverError::Storage)?;
    let Some(j) = earlier else {
        return Ok(Some(opts.clone()));
    };
    if j.status == RunStatus::Succeeded {
        progress.note(&format!(
            "run {} succeeded in an earlier attempt of this job; nothing to do",
            j.run_id
        ));
        return Ok(None);
    }
    let ttl = lease_options(project, &opts.run_id, opts.wait)?.ttl_seconds;
    progress.note(&format!(
        "continuing run {} left by an earlier attempt of this job",
        j.run_id
    ));
    Ok(Some(RunOptions {
        resume: true,
        // The earlier attempt's lease outlives its host by up to its time to live.
        wait: opts.wait.max(std::time::Duration::from_secs(ttl + ttl / 2)),
        ..opts.clone()
    }))
}

/// The options of the run being resumed: its pipeline, its window, and the
/// nodes it has not committed yet.
pub(super) fn resumed_options(opts: &RunOptions, j: &Journal) -> Result<RunOptions, DriverError> {
    let committed: Vec<&str> = j
        .commits
        .iter()
        // A publish still in progress is finished by recovery before any
        // node runs: its node is as good as committed.
        .map(|c| c.node.as_str())
        .collect();
    let left: Vec<String> = j
        .nodes
        .iter()
        .filter(|n| !committed.contains(&n.as_str()))
        .cloned()
        .collect();
    let dates = j
        .dates
        .as_deref()
        .map(|d| crate::plan::dates::parse(d, &crate::plan::dates::today()))
        .transpose()
        .map_err(|e| DriverError::Storage(format!("journal of `{}`: dates: {e}", j.run_id)))?;
    Ok(RunOptions {
        pipeline: Some(j.pipeline.clone()),
        selection: crate::pipeline::Selection {
            nodes: left,
            ..Default::default()
        },
        dates,
        ..opts.clone()
    })
}
