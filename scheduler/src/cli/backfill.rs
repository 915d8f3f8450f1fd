//! `chainbatch backfill`: a long window in chunks, each an ordinary run.

use super::{LogFormatArg, ProjectArgs, check_id, default_run_id, parse_window};
use chainbatch::backend::BackendKind;
use chainbatch::conf::error::ConfigError;
use chainbatch::driver::{self, RunOptions};
use chainbatch::error::DriverError;
use chainbatch::progress::{Progress, human_count};
use clap::Args;

pub(super) const AFTER_HELP: &str = "\
Example: chainbatch backfill --dates 2015-08-07..2024-12-31 --chunk 30d --concurrency 2
A killed backfill leaves its running chunks as runs to resume: `--resume ID`
resumes those, runs failed chunks again and skips committed ones.
Exit codes: 0 every chunk committed or current; 1 a chunk failed (the others
are kept); 2 a usage or configuration error.";

#[derive(Args)]
pub(super) struct BackfillArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// The pipeline to run (default: the only one defined).
    #[arg(long)]
    pipeline: Option<String>,
    /// The whole window, inclusive: `2024-01-01..2024-12-31`.
    #[arg(long, required_unless_present = "resume")]
    dates: Option<String>,
    /// Days a chunk spans: `30d`, `7d`, `2w`.
    #[arg(long, default_value = "30d")]
    chunk: String,
    /// Chunks run at once (each a `chainbatch run` of its own).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// The backfill's id (default: a UTC timestamp and `-backfill`); its
    /// chunks' runs are `<id>-001`, `<id>-002`, ...
    #[arg(long)]
    id: Option<String>,
    /// Continue the backfill ID: its window, chunks and run arguments
    /// (backend, parallelism, attempts) come from its record.
    #[arg(long, value_name = "ID", conflicts_with_all = [
        "id", "pipeline", "dates", "chunk", "force", "backend", "parallelism", "max_attempts",
        "allow_incomplete"
    ])]
    resume: Option<String>,
    /// Run every chunk, current or not.
    #[arg(long)]
    force: bool,
    /// Where each chunk's tasks run (see `run --help`).
    #[arg(long, default_value = "local")]
    backend: String,
    /// Tasks at once within each chunk (default: the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Attempts per task for retryable failures.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// How long a chunk waits for another run holding its partitions.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    wait: u64,
    /// Publish input dates the completeness gate finds incomplete.
    #[arg(long)]
    allow_incomplete: bool,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

pub(super) async fn backfill(a: BackfillArgs) -> Result<(), DriverError> {
    let id = a
        .resume
        .clone()
        .or_else(|| a.id.clone())
        .unwrap_or_else(|| default_run_id(Some("backfill")));
    check_id(
        if a.resume.is_some() {
            "--resume"
        } else {
            "--id"
        },
        &id,
    )?;
    let chunk_days = chainbatch::backfill::plan::parse_chunk(&a.chunk)
        .map_err(|e| ConfigError::new("--chunk", e))?;
    if a.concurrency == 0 {
        return Err(ConfigError::new("--concurrency", "must be at least 1").into());
    }
    let window = parse_window("--dates", a.dates.as_deref())?;
    BackendKind::parse(&a.backend).map_err(|e| ConfigError::new("--backend", e))?;
    let p = a.project.load(&id)?;
    let out_root = driver::out_root(&p)?;
    // A resumed backfill keeps its pipeline; a new one names it.
    let resumed = match &a.resume {
        Some(r) => chainbatch::backfill::record::load(&out_root, r)
            .await
            .map_err(DriverError::Storage)?,
        None => None,
    };
    let pipeline_name = resumed
        .as_ref()
        .map(|b| b.pipeline.clone())
        .or(a.pipeline.clone());
    let pipeline = driver::pick_pipeline(&p, pipeline_name.as_deref())?
        .name
        .clone();
    let opts = RunOptions::checking(&pipeline, &id, window.clone());
    let (nodes, _) = driver::checked_nodes(&p, &opts).await?;
    let mut run_args = vec!["--conf".to_string(), a.project.conf.display().to_string()];
    run_args.extend(["--env".into(), a.project.env.clone()]);
    for g in &a.project.globals {
        run_args.extend(["--globals".into(), g.clone()]);
    }
    for g in &a.project.params {
        run_args.extend(["--params".into(), g.clone()]);
    }
    if let Some(d) = &a.project.run_date {
        run_args.extend(["--run-date".into(), d.clone()]);
    }
    run_args.extend(["--backend".into(), a.backend.clone()]);
    if let Some(n) = a.parallelism {
        run_args.extend(["--parallelism".into(), n.to_string()]);
    }
    run_args.extend(["--max-attempts".into(), a.max_attempts.to_string()]);
    if a.allow_incomplete {
        run_args.push("--allow-incomplete".into());
    }
    let progress = Progress::new(a.log_format.into());
    let bopts = chainbatch::backfill::BackfillOptions {
        id: id.clone(),
        window,
        chunk_days,
        concurrency: a.concurrency,
        force: a.force,
        resume: a.resume.is_some(),
        run_args: match &resumed {
            Some(b) => b.run_args.clone(),
            None => run_args,
        },
        wait_seconds: a.wait,
    };
    let started = std::time::Instant::now();
    let b =
        chainbatch::backfill::backfill(&p, &pipeline, &nodes, &out_root, &bopts, &progress).await?;
    use chainbatch::backfill::record::ChunkState;
    let rows: u64 = b.chunks.iter().map(|c| c.rows).sum();
    println!(
        "backfill {} succeeded in {:.1}s: {} chunk(s), {} committed, {} current (skipped); {} rows",
        b.id,
        started.elapsed().as_secs_f64(),
        b.chunks.len(),
        b.count(ChunkState::Committed),
        b.count(ChunkState::Skipped),
        human_count(rows)
    );
    Ok(())
}
