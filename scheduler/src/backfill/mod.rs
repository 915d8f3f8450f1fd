//! `chainbatch backfill`: a long window in chunks, each an ordinary run
//! (its own journal, leases and commit, so a failure costs one chunk), a
//! few at once, recorded so that `--resume` continues where it stopped.
//! Chunks whose partitions the ledger shows current are skipped; in the
//! others only the nodes with work run (with everything downstream).

pub mod plan;
pub mod record;

use crate::commit::journal::{self, RunStatus};
use crate::conf::error::ConfigError;
use crate::conf::project::Project;
use crate::error::DriverError;
use crate::pipeline::Node;
use crate::plan::dates::DateRange;
use crate::progress::{Progress, human_count};
use record::{Backfill, BackfillStatus, Chunk, ChunkState};
use std::time::Instant;
use tokio::io::AsyncReadExt;

/// What `backfill` was asked to do.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub id: String,
    /// `None` when resuming: the document has it.
    pub window: Option<DateRange>,
    pub chunk_days: u32,
    pub concurrency: usize,
    pub force: bool,
    pub resume: bool,
    /// Arguments for every chunk's `chainbatch run`.
    pub run_args: Vec<String>,
    /// How long a chunk's run waits for another run's lease.
    pub wait_seconds: u64,
}

/// How one chunk's run ended.
struct Outcome {
    index: usize,
    run_id: String,
    exit: Option<i32>,
    seconds: f64,
    /// The end of its stderr, for the failure note.
    tail: String,
}

/// Runs (or continues) a backfill; returns its document once every chunk
/// was tried. Fails if any chunk failed, naming them and how to resume.
pub async fn backfill(
    project: &Project,
    pipeline: &str,
    nodes: &[Node],
    out_root: &str,
    opts: &BackfillOptions,
    progress: &Progress,
) -> Result<Backfill, DriverError> {
    for n in nodes {
        let ds = &project.catalog[&n.output];
        if ds.save_mode == crate::catalog::SaveMode::Append {
            return Err(ConfigError::new(
                "backfill",
                format!(
                    "node `{}` appends to `{}`: a chunk run again would add its rows a second \
                     time, and appended partitions keep no ledger record to skip them by; run \
                     such nodes with `chainbatch run`",
                    n.name, ds.name
                ),
            )
            .into());
        }
        if ds.date_column.is_none() {
            return Err(ConfigError::new(
                "backfill",
                format!(
                    "node `{}` writes `{}`, which is not partitioned by date, so a chunk's \
                     run would replace what the others wrote; run it with `chainbatch run` \
                     over the whole window",
                    n.name, ds.name
                ),
            )
            .into());
        }
    }
    let mut b = match opts.resume {
        true => {
            let mut b = record::load(out_root, &opts.id)
                .await
                .map_err(DriverError::Storage)?
                .ok_or_else(|| {
                    ConfigError::new(
                        "--resume",
                        format!("no backfill `{}` under {out_root}", opts.id),
                    )
                })?;
            b.status = BackfillStatus::Running;
            b.finished_at = None;
            b
        }
        false => {
            if record::load(out_root, &opts.id)
                .await
                .map_err(DriverError::Storage)?
                .is_some()
            {
                return Err(ConfigError::new(
                    "--id",
                    format!(
                        "backfill `{}` exists already; `--resume {}` continues it",
                        opts.id, opts.id
                    ),
                )
                .into());
            }
            let window = opts.window.clone().expect("a new backfill has a window");
            Backfill {
                id: opts.id.clone(),
                pipeline: pipeline.to_string(),
                dates: format!("{}..{}", window.from, window.to),
                chunk_days: opts.chunk_days,
                run_args: opts.run_args.clone(),
                force: opts.force,
                status: BackfillStatus::Running,
                started_at: journal::now_secs(),
                finished_at: None,
                chunks: plan::chunks(&window, opts.chunk_days)
                    .into_iter()
                    .enumerate()
                    .map(|(index, r)| Chunk {
                        index,
                        from: r.from,
                        to: r.to,
                        state: ChunkState::Pending,
                        run_id: None,
                        attempts: 0,
                        from_nodes: vec![],
                        rows: 0,
                        bytes: 0,
                        seconds: 0.0,
                        note: None,
                    })
                    .collect(),
            }
        }
    };
    // Runs a chunk's earlier attempt left: finished, resumable, or gone.
    for c in b.chunks.iter_mut() {
        if let (ChunkState::Running | ChunkState::Failed, Some(run)) = (c.state, &c.run_id) {
            let j = journal::load(out_root, run)
                .await
                .map_err(DriverError::Storage)?;
            if let Some(j) = j.filter(|j| j.status == RunStatus::Succeeded) {
                c.state = ChunkState::Committed;
                c.rows = j.rows();
                c.bytes = j.bytes();
                c.note = None;
            }
        }
    }
    // What is left to do, by the ledger, in one pass over the window.
    let window = crate::plan::dates::parse(&b.dates, &crate::plan::dates::today())
        .map_err(DriverError::Storage)?;
    let work = plan::Work::find(nodes, &project.catalog, &window)
        .await
        .map_err(DriverError::Storage)?;
    let all: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for c in b.chunks.iter_mut() {
        if c.state != ChunkState::Pending {
            continue;
        }
        let range = DateRange {
            from: c.from.clone(),
            to: c.to.clone(),
        };
        let with_work = match b.force {
            true => all.clone(),
            false => work.nodes_in(&range),
        };
        if with_work.is_empty() {
            c.state = ChunkState::Skipped;
            c.note = Some("every partition is current".into());
        } else if with_work != all {
            c.from_nodes = with_work;
        }
    }
    record::save(out_root, &b)
        .await
        .map_err(DriverError::Storage)?;
    let todo: Vec<usize> = b
        .chunks
        .iter()
        .filter(|c| !matches!(c.state, ChunkState::Committed | ChunkState::Skipped))
        .map(|c| c.index)
        .collect();
    progress.note(&format!(
        "backfill {}: {} over {} chunk(s) of {} day(s): {} to run, {} committed before, {} \
         current (skipped){}",
        b.id,
        b.dates,
        b.chunks.len(),
        b.chunk_days,
        todo.len(),
        b.count(ChunkState::Committed),
        b.count(ChunkState::Skipped),
        match b.force {
            true => ", --force",
            false => "",
        }
    ));
    let stopped = run_chunks(&mut b, &todo, out_root, opts, progress).await?;
    b.finished_at = Some(journal::now_secs());
    if let Some(why) = stopped {
        b.status = BackfillStatus::Failed;
        record::save(out_root, &b)
            .await
            .map_err(DriverError::Storage)?;
        return Err(DriverError::Failed(format!(
            "backfill {}: stopped: a chunk's run refused its configuration: {why}\n`chainbatch \
             backfill --resume {}` continues once it is fixed",
            b.id, b.id
        )));
    }
    let failed: Vec<&Chunk> = b
        .chunks
        .iter()
        .filter(|c| c.state == ChunkState::Failed)
        .collect();
    b.status = match failed.is_empty() {
        true => BackfillStatus::Succeeded,
        false => BackfillStatus::Failed,
    };
    record::save(out_root, &b)
        .await
        .map_err(DriverError::Storage)?;
    if !failed.is_empty() {
        let lines: Vec<String> = failed
            .iter()
            .map(|c| {
                format!(
                    "  chunk {} {}..{} (run {}): {}",
                    c.index + 1,
                    c.from,
                    c.to,
                    c.run_id.as_deref().unwrap_or("-"),
                    c.note.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        return Err(DriverError::Failed(format!(
            "backfill {}: {} of {} chunk(s) failed:\n{}\ncommitted chunks stay; `chainbatch \
             backfill --resume {}` runs the failed ones again",
            b.id,
            failed.len(),
            b.chunks.len(),
            lines.join("\n"),
            b.id
        )));
    }
    Ok(b)
}

/// Runs the chunks `todo`, `opts.concurrency` at once, saving the document
/// as each starts and ends and reporting throughput and time left. Returns
/// why it stopped early: a chunk's run refused the configuration (exit 2),
/// which every chunk would.
async fn run_chunks(
    b: &mut Backfill,
    todo: &[usize],
    out_root: &str,
    opts: &BackfillOptions,
    progress: &Progress,
) -> Result<Option<String>, DriverError> {
    let exe = std::env::current_exe()
        .map_err(|e| DriverError::Failed(format!("cannot find the chainbatch binary: {e}")))?;
    let started = Instant::now();
    let total = todo.len();
    let (mut done, mut rows, mut stop) = (0usize, 0u64, None::<String>);
    let mut queue = todo.iter().copied();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while stop.is_none() && running.len() < opts.concurrency.max(1) {
            let Some(i) = queue.next() else { break };
            let c = &mut b.chunks[i];
            let resume = resumable_run(out_root, c).await?;
            c.attempts += 1;
            let run_id = match &resume {
                Some(r) => r.clone(),
                None if c.attempts == 1 => format!("{}-{:03}", b.id, i + 1),
                None => format!("{}-{:03}-{}", b.id, i + 1, c.attempts),
            };
            c.run_id = Some(run_id.clone());
            c.state = ChunkState::Running;
            c.note = None;
            let args = chunk_args(b, i, &run_id, resume.is_some(), opts.wait_seconds);
            record::save(out_root, b)
                .await
                .map_err(DriverError::Storage)?;
            let c = &b.chunks[i];
            progress.note(&format!(
                "backfill {}: chunk {}/{} {}..{} started: run {run_id}{}{}",
                b.id,
                i + 1,
                b.chunks.len(),
                c.from,
                c.to,
                match &resume {
                    Some(_) => " (resumed)",
                    None => "",
                },
                match c.from_nodes.is_empty() {
                    true => String::new(),
                    false => format!(", from nodes {}", c.from_nodes.join(", ")),
                }
            ));
            let exe = exe.clone();
            running.spawn(async move { run_child(&exe, args, i, run_id).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let o = joined.map_err(|e| DriverError::Failed(format!("a chunk's task panicked: {e}")))?;
        let c = &mut b.chunks[o.index];
        c.seconds += o.seconds;
        match o.exit {
            Some(0) => {
                let j = journal::load(out_root, &o.run_id)
                    .await
                    .map_err(DriverError::Storage)?;
                c.state = ChunkState::Committed;
                c.rows = j.as_ref().map_or(0, |j| j.rows());
                c.bytes = j.as_ref().map_or(0, |j| j.bytes());
                rows += c.rows;
            }
            exit => {
                c.state = ChunkState::Failed;
                c.note = Some(o.tail.clone());
                // A configuration error fails every chunk alike.
                if exit == Some(2) {
                    stop = Some(o.tail.clone());
                }
            }
        }
        done += 1;
        let c = &b.chunks[o.index];
        let elapsed = started.elapsed().as_secs_f64();
        let left = total - done;
        let eta = match left {
            0 => String::new(),
            // Chunks finish at the pace they have finished so far.
            _ => format!(", about {:.0} s left", elapsed / done as f64 * left as f64),
        };
        progress.note(&format!(
            "backfill {}: chunk {}/{} {}..{} {} by run {} in {:.1} s ({} rows); {done} of \
             {total} done, {} rows/s{eta}",
            b.id,
            c.index + 1,
            b.chunks.len(),
            c.from,
            c.to,
            match c.state {
                ChunkState::Committed => "committed",
                _ => "FAILED",
            },
            o.run_id,
            o.seconds,
            human_count(c.rows),
            human_count((rows as f64 / elapsed.max(0.001)) as u64),
        ));
        if c.state == ChunkState::Failed {
            progress.note(&format!("  {}", c.note.as_deref().unwrap_or_default()));
        }
        record::save(out_root, b)
            .await
            .map_err(DriverError::Storage)?;
    }
    Ok(stop)
}

/// The run to resume for a chunk: its last run, if that left a journal a
/// resume accepts (it was cut off, or failed for a reason a rerun fixes).
async fn resumable_run(out_root: &str, c: &Chunk) -> Result<Option<String>, DriverError> {
    let Some(run) = &c.run_id else {
        return Ok(None);
    };
    let j = journal::load(out_root, run)
        .await
        .map_err(DriverError::Storage)?;
    Ok(j.filter(|j| {
        j.status == RunStatus::Running || (j.status == RunStatus::Failed && j.resumable)
    })
    .map(|j| j.run_id))
}

/// `chainbatch run` arguments for a chunk.
fn chunk_args(b: &Backfill, i: usize, run_id: &str, resume: bool, wait: u64) -> Vec<String> {
    let c = &b.chunks[i];
    let mut args = vec!["run".to_string()];
    args.extend(b.run_args.iter().cloned());
    match resume {
        // A resumed run takes its window and nodes from its journal.
        true => args.extend(["--resume".into(), run_id.into()]),
        false => {
            args.extend([
                "--run-id".into(),
                run_id.into(),
                "--pipeline".into(),
                b.pipeline.clone(),
                "--dates".into(),
                format!("{}..{}", c.from, c.to),
            ]);
            if !c.from_nodes.is_empty() {
                args.extend(["--from-nodes".into(), c.from_nodes.join(",")]);
            }
        }
    }
    args.extend(["--wait".into(), wait.to_string()]);
    args
}

/// Runs one chunk as a child `chainbatch run`, which dies with this
/// process (a killed backfill leaves runs that `--resume` continues).
async fn run_child(
    exe: &std::path::Path,
    args: Vec<String>,
    index: usize,
    run_id: String,
) -> Outcome {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let outcome = |exit, tail: String| Outcome {
        index,
        run_id: run_id.clone(),
        exit,
        seconds: started.elapsed().as_secs_f64(),
        tail,
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return outcome(None, format!("cannot start {}: {e}", exe.display())),
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err).await;
    }
    let status = child.wait().await;
    let tail = last_error(&err);
    match status {
        Ok(s) => outcome(s.code(), tail),
        Err(e) => outcome(None, format!("lost the run's process: {e}")),
    }
}

/// The lines that say why a run failed: from its `chainbatch:` error on.
fn last_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("chainbatch: "))
        .unwrap_or(lines.len().saturating_sub(3));
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_note_is_the_runs_error_and_what_follows() {
        let err = "stage 1: 3/3\nchainbatch: run failed: node `x`: boom\nfinished tasks are kept";
        assert_eq!(
            last_error(err),
            "chainbatch: run failed: node `x`: boom\nfinished tasks are kept"
        );
        assert_eq!(last_error("a\nb\nc\nd"), "b\nc\nd");
    }
}
