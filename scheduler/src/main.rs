//! `chainbatch`: run, plan and validate pipelines; list runs; generate data.

use chainbatch::backend::BackendKind;
use chainbatch::conf::error::ConfigError;
use chainbatch::conf::project::{LoadOptions, Project, load, parse_override};
use chainbatch::driver::{self, DriverError, RunOptions};
use chainbatch::pipeline::Selection;
use chainbatch::progress::{LogFormat, Progress, human_bytes, human_count};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_HELP: &str = "\
Exit codes: 0 success; 1 the run failed (a task, the storage, or the commit);
2 a usage or configuration error (nothing was run or written).";

#[derive(Parser)]
#[command(name = "chainbatch", version, about = "A batch engine for ETL over public blockchain data", after_help = EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (or the selected nodes of it) and commit its outputs.
    Run(RunArgs),
    /// Show the stages and tasks a run would execute, and why.
    Plan {
        #[command(flatten)]
        run: RunArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
    /// Check the configuration and every node's SQL without running anything.
    Validate {
        #[command(flatten)]
        project: ProjectArgs,
        /// The pipeline to check (default: all).
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// List past runs with status, rows, bytes and duration.
    Runs {
        #[command(flatten)]
        project: ProjectArgs,
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
    /// Finish or roll back unfinished runs, then remove what finished runs
    /// left in staging, shuffle and trash, and vacuum the Delta tables
    /// pipelines write (`format: delta`): files only versions older than
    /// `--delta-retain-hours` read are deleted.
    Gc {
        #[command(flatten)]
        project: ProjectArgs,
        /// How long a Delta table's replaced files stay for readers of older
        /// versions (time travel, and queries running while a run commits).
        #[arg(long, default_value_t = 168, value_name = "HOURS")]
        delta_retain_hours: u64,
    },
    /// Create or update the Glue tables of datasets already written, and
    /// register every partition found under their paths (runs do this for
    /// what they commit). Needs `glue:` in globals.yml and the dataset's
    /// `glue:` in catalog.yml.
    #[command(after_help = "Example: chainbatch register clean_transactions --env aws")]
    Register {
        #[command(flatten)]
        project: ProjectArgs,
        /// Catalog datasets to register.
        #[arg(required = true, value_name = "DATASET")]
        datasets: Vec<String>,
    },
    /// Show each output partition: the run that wrote it and when, its rows
    /// and bytes, the configuration hash it was written with, and whether
    /// it is stale (its node's SQL, layout or input definitions changed
    /// since, or its input files did); then the dates with no partition.
    #[command(after_help = "\
States: current; stale (the reasons follow the line); unrecorded (files with no
ledger record: written before chainbatch kept one, by `import` or by another
tool); missing (a ledger record whose files are gone).
Exit codes: 0 whatever the states; 1 storage could not be read; 2 a usage or
configuration error.
Example: chainbatch status --dataset daily_summary --dates 2024-03-01..2024-03-31")]
    Status {
        #[command(flatten)]
        project: ProjectArgs,
        /// The pipeline whose nodes decide staleness and whose outputs are
        /// shown (default: every pipeline).
        #[arg(long)]
        pipeline: Option<String>,
        /// Only these datasets (repeatable; default: every pipeline output).
        #[arg(long = "dataset", value_name = "NAME")]
        datasets: Vec<String>,
        /// Only partitions of these dates; the gaps are the dates of this
        /// window with no partition (default: the dates the partitions span).
        #[arg(long)]
        dates: Option<String>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
    /// Run a long window in chunks, each an ordinary run (its own journal
    /// and commit), a few at once, recorded under
    /// `<out_root>/_chainbatch/backfills/<id>/` so `--resume ID` continues
    /// it. Chunks whose partitions are current (same configuration, input
    /// unchanged; see `status`) are skipped unless --force; in the others
    /// only the nodes with work run, with everything downstream of them.
    #[command(after_help = "\
Example: chainbatch backfill --dates 2015-08-07..2024-12-31 --chunk 30d --concurrency 2
A killed backfill leaves its running chunks as runs to resume: `--resume ID`
resumes those, runs failed chunks again and skips committed ones.
Exit codes: 0 every chunk committed or current; 1 a chunk failed (the others
are kept); 2 a usage or configuration error.")]
    Backfill(BackfillArgs),
    /// Generate synthetic `eth` tables (transactions, blocks, logs, token transfers) in the AWS layout.
    Gen(GenArgs),
    /// Import data exported by other tools into the AWS layout.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Measure which partition layout serves a query workload best.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Write one dataset in each layout (time, CPU, peak memory, files, file
    /// sizes, rows per row group), run a query suite against each (median
    /// latency, bytes read, files and row groups skipped), and recommend one.
    /// Writes <out>/report.json and <out>/report.html beside the data.
    #[command(after_help = "\
Query files are SQL over a table named `transactions` (the node's output).
They may use placeholders filled from the data: {{tx_hash}}, {{address}},
{{day}}, {{day_end}}, {{week_start}}, {{week_end}}, {{month_start}},
{{month_end}}, {{block_from}}, {{block_to}}. The built-in suite is the one in
benches/queries/: a point lookup by hash, one address over a month, one
day's summary, a block range, and the top senders by fees over a week.

Example: chainbatch bench layouts --rows 2000000 --days 14")]
    Layouts(BenchLayoutsArgs),
}

#[derive(Args)]
struct BenchLayoutsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Layouts to compare: names under `layouts:` in globals.yml.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "daily,hourly,daily_bucketed,block_chunks"
    )]
    layouts: Vec<String>,
    /// A folder of .sql files (default: the built-in suite).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Generate this many transactions as input (with --days).
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    rows: Option<u64>,
    /// Days the generated transactions span.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// First generated day.
    #[arg(long, default_value = "2024-03-01")]
    start: String,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Read this raw root (holding transactions/date=.../) instead of generating.
    #[arg(long)]
    input: Option<String>,
    /// Runs of each query per layout; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The node whose output is written in each layout.
    #[arg(long, default_value = "clean_transactions")]
    node: String,
    /// Where the input, each layout's output and the reports go.
    #[arg(long, default_value = "bench-out/layouts")]
    out: String,
    /// What to print: the table, or the JSON report.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    format: PlanFormat,
}

#[derive(Subcommand)]
enum ImportSource {
    /// ethereum-etl JSON exports (blocks, transactions, logs, token_transfers
    /// .jsonl) to `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, exact.
    EthereumEtl {
        /// The folder holding the .jsonl files.
        dir: PathBuf,
        /// Where to write (a path, file:// or s3://).
        #[arg(long)]
        out: String,
        /// Only these tables (default: every file found).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Args, Clone)]
struct ProjectArgs {
    /// The configuration folder (holding base/ and one folder per
    /// environment): a local path, or `s3://bucket/prefix` (read once at start).
    #[arg(long, default_value = "conf", env = "CHAINBATCH_CONF")]
    conf: PathBuf,
    /// The environment whose files override base/.
    #[arg(long, default_value = "local", env = "CHAINBATCH_ENV")]
    env: String,
    /// Override a global: `--globals out_root=/data/out` (YAML-typed value; repeatable).
    #[arg(long = "globals", value_name = "KEY=VALUE")]
    globals: Vec<String>,
    /// Override a parameter: `--params min_value=0` (YAML-typed value; repeatable).
    #[arg(long = "params", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// The run date `${runtime:run_date}` resolves to (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    run_date: Option<String>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// The pipeline to run (default: the only one defined).
    #[arg(long)]
    pipeline: Option<String>,
    /// Run only these nodes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Run these nodes and everything downstream of them.
    #[arg(long, value_delimiter = ',')]
    from_nodes: Vec<String>,
    /// Run these nodes and everything upstream of them.
    #[arg(long, value_delimiter = ',')]
    to_nodes: Vec<String>,
    /// Run only nodes carrying one of these tags.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Input date window, inclusive: `2024-05-01..2024-05-07`, `yesterday`, `today`.
    #[arg(long)]
    dates: Option<String>,
    /// Where tasks run: local (in-process), process (chainbatch-executor
    /// children), batch (AWS Batch array jobs; settings under `batch:` in
    /// globals.yml, out_root on s3://; distributed nodes on Ballista
    /// executors in a Batch array job, `batch.ballista`) or ballista
    /// (distributed nodes as Ballista jobs on an embedded cluster or
    /// --ballista-url; other stages in-process).
    #[arg(long, default_value = "local")]
    backend: String,
    /// With --backend ballista: the scheduler of an existing cluster,
    /// df://host:50050, whose executors run `chainbatch-executor ballista`.
    /// Without it the driver starts a scheduler on 127.0.0.1 and
    /// --executors executor processes, and stops them when the run ends.
    #[arg(long, value_name = "URL")]
    ballista_url: Option<String>,
    /// With --backend ballista: executor processes of the embedded cluster.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// With --backend ballista: tasks each embedded executor runs at once.
    #[arg(long, default_value_t = 1)]
    executor_vcores: usize,
    /// With --backend ballista: each embedded executor's memory pool in MiB;
    /// joins, aggregates and sorts spill to disk beyond it.
    #[arg(long, default_value_t = 1024)]
    executor_memory_mib: u64,
    /// With --ballista-url: partitions of a distributed node's stages
    /// (default 8; an embedded cluster uses executors x vcores).
    #[arg(long)]
    ballista_partitions: Option<usize>,
    /// Tasks at once (default: the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Attempts per task for retryable failures.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// The run id (default: a UTC timestamp and the pipeline name).
    #[arg(long)]
    run_id: Option<String>,
    /// Continue a failed run: its pipeline, nodes and dates come from its
    /// journal; committed nodes and finished tasks are not redone.
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = [
        "run_id", "pipeline", "nodes", "from_nodes", "to_nodes", "tags", "dates", "dry_run"
    ])]
    resume: Option<String>,
    /// When another live run holds some of the same output partitions, wait
    /// up to SECONDS for it to finish instead of failing at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    wait: u64,
    /// Publish input dates that the completeness gate finds incomplete (a
    /// day still being delivered, blocks missing), noting them in the
    /// journal; by default such a run fails and publishes nothing.
    #[arg(long)]
    allow_incomplete: bool,
    /// After registering the outputs in Glue, count each written
    /// partition's rows through Athena (globals.yml `athena:`) and fail
    /// unless they equal the commit's; reports the bytes Athena scanned.
    #[arg(long)]
    verify_athena: bool,
    /// Widen --dates back to the day after the last date a successful run
    /// of the pipeline covered, so a scheduled run after a failed night
    /// also covers the days it missed (`--dates yesterday
    /// --since-last-success`). Read from the run journals.
    #[arg(long, conflicts_with = "resume")]
    since_last_success: bool,
    /// Plan and print, but run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Log lines as text (a live line per stage on a terminal) or JSON.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

#[derive(Args)]
struct BackfillArgs {
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

#[derive(Args)]
struct GenArgs {
    /// Transactions in all.
    #[arg(long)]
    rows: u64,
    /// Days they span.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// The first day.
    #[arg(long, default_value = "2024-01-01")]
    start: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Files per day (the AWS dataset has one).
    #[arg(long, default_value_t = 1)]
    files_per_day: u32,
    /// Tables to write: transactions, blocks, logs, token_transfers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "transactions,blocks,logs,token_transfers"
    )]
    tables: Vec<String>,
    /// Where to write: `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`.
    #[arg(long)]
    out: String,
}

fn main() -> ExitCode {
    chainbatch_executor::allocator::configure_malloc();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(DriverError::Config(e)) => {
            eprintln!("chainbatch: config error: {e}");
            ExitCode::from(2)
        }
        Err(DriverError::Run(e)) => {
            eprintln!("chainbatch: run failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn today_or(run_date: &Option<String>) -> Result<String, ConfigError> {
    let today = chainbatch::plan::dates::today();
    match run_date {
        None => Ok(today),
        Some(d) => chainbatch::plan::dates::parse(d, &today)
            .map(|r| r.from)
            .map_err(|e| ConfigError::new("--run-date", e)),
    }
}

fn load_project(p: &ProjectArgs, run_id: &str) -> Result<Project, ConfigError> {
    let mut runtime = BTreeMap::new();
    runtime.insert("run_date".to_string(), today_or(&p.run_date)?);
    runtime.insert("run_id".to_string(), run_id.to_string());
    let globals = p
        .globals
        .iter()
        .map(|g| parse_override(g, "--globals"))
        .collect::<Result<_, _>>()?;
    let params = p
        .params
        .iter()
        .map(|g| parse_override(g, "--params"))
        .collect::<Result<_, _>>()?;
    let remote = chainbatch::conf::remote::is_remote(&p.conf);
    let conf_dir = match remote {
        // Loading is synchronous; the copy is made once, before it.
        true => tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(chainbatch::conf::remote::fetch(
                &p.conf.display().to_string(),
            ))
        })?,
        false => p.conf.clone(),
    };
    let loaded = load(&LoadOptions {
        conf_dir: conf_dir.clone(),
        env: p.env.clone(),
        globals,
        params,
        runtime,
    });
    if remote {
        let _ = std::fs::remove_dir_all(&conf_dir);
        return loaded
            .map(|project| project.relocate_conf(&p.conf))
            .map_err(|e| chainbatch::conf::remote::remote_error(e, &conf_dir, &p.conf));
    }
    loaded
}

/// `batch-<job id>` and the attempt number, when this process is an AWS
/// Batch job (`AWS_BATCH_JOB_ID`, `AWS_BATCH_JOB_ATTEMPT`).
fn batch_job_run_id() -> Option<(String, u32)> {
    let id = std::env::var("AWS_BATCH_JOB_ID").ok()?;
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let attempt = std::env::var("AWS_BATCH_JOB_ATTEMPT")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    Some((format!("batch-{id}"), attempt))
}

fn default_run_id(pipeline: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let date = chainbatch::time::date_of(secs).replace('-', "");
    let t = secs.rem_euclid(86_400);
    format!(
        "{date}T{:02}{:02}{:02}.{:03}Z-{}",
        t / 3600,
        t / 60 % 60,
        t % 60,
        now.subsec_millis(),
        pipeline.unwrap_or("run")
    )
}

fn run_options(a: &RunArgs, run_id: String) -> Result<RunOptions, ConfigError> {
    let today = chainbatch::plan::dates::today();
    let dates = a
        .dates
        .as_deref()
        .map(|d| {
            chainbatch::plan::dates::parse(d, &today).map_err(|e| ConfigError::new("--dates", e))
        })
        .transpose()?;
    let backend = BackendKind::parse(&a.backend).map_err(|e| ConfigError::new("--backend", e))?;
    if a.parallelism == Some(0) {
        return Err(ConfigError::new("--parallelism", "must be at least 1"));
    }
    let run_id_ok = !run_id.is_empty()
        && run_id != "."
        && run_id != ".."
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !run_id_ok {
        return Err(ConfigError::new(
            "--run-id",
            format!("{run_id:?} must be letters, digits, '-', '_' or '.'"),
        ));
    }
    if a.max_attempts == 0 {
        return Err(ConfigError::new("--max-attempts", "must be at least 1"));
    }
    for (flag, given) in [
        ("--ballista-url", a.ballista_url.is_some()),
        ("--ballista-partitions", a.ballista_partitions.is_some()),
    ] {
        if given && backend != BackendKind::Ballista {
            return Err(ConfigError::new(flag, "applies to --backend ballista only"));
        }
    }
    if let Some(url) = &a.ballista_url {
        chainbatch_executor::distributed::job::SchedulerAddress::parse(url)
            .map_err(|e| ConfigError::new("--ballista-url", e))?;
    }
    for (flag, v) in [
        ("--executors", a.executors),
        ("--executor-vcores", a.executor_vcores),
        ("--ballista-partitions", a.ballista_partitions.unwrap_or(1)),
    ] {
        if v == 0 {
            return Err(ConfigError::new(flag, "must be at least 1"));
        }
    }
    if a.executor_memory_mib < 64 {
        return Err(ConfigError::new(
            "--executor-memory-mib",
            "must be at least 64",
        ));
    }
    let defaults = chainbatch::driver::BallistaOptions::default();
    Ok(RunOptions {
        pipeline: a.pipeline.clone(),
        selection: Selection {
            nodes: a.nodes.clone(),
            from_nodes: a.from_nodes.clone(),
            to_nodes: a.to_nodes.clone(),
            tags: a.tags.clone(),
        },
        dates,
        run_id,
        backend,
        parallelism: a
            .parallelism
            .unwrap_or_else(|| chainbatch_executor::runner::effective_parallelism(0)),
        max_attempts: a.max_attempts,
        resume: a.resume.is_some(),
        wait: std::time::Duration::from_secs(a.wait),
        allow_incomplete: a.allow_incomplete,
        verify_athena: a.verify_athena,
        continue_attempt: false,
        ballista: chainbatch::driver::BallistaOptions {
            url: a.ballista_url.clone(),
            executors: a.executors,
            executor_vcores: a.executor_vcores,
            executor_memory_bytes: a.executor_memory_mib * 1024 * 1024,
            partitions: a.ballista_partitions.unwrap_or(defaults.partitions),
        },
    })
}

async fn status(
    project: ProjectArgs,
    pipeline: Option<String>,
    datasets: Vec<String>,
    dates: Option<String>,
    format: PlanFormat,
) -> Result<(), DriverError> {
    let p = load_project(&project, "status")?;
    let today = chainbatch::plan::dates::today();
    let window = dates
        .as_deref()
        .map(|d| {
            chainbatch::plan::dates::parse(d, &today).map_err(|e| ConfigError::new("--dates", e))
        })
        .transpose()?;
    let all =
        chainbatch::ledger::status::status(&p, pipeline.as_deref(), &datasets, window.as_ref())
            .await?;
    match format {
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("statuses serialise")
        ),
        PlanFormat::Table => print!("{}", chainbatch::ledger::status::render(&all)),
    }
    Ok(())
}

async fn backfill(a: BackfillArgs) -> Result<(), DriverError> {
    let id = a
        .resume
        .clone()
        .or_else(|| a.id.clone())
        .unwrap_or_else(|| default_run_id(Some("backfill")));
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || id.is_empty()
    {
        return Err(ConfigError::new(
            if a.resume.is_some() {
                "--resume"
            } else {
                "--id"
            },
            format!("{id:?} must be letters, digits, '-', '_' or '.'"),
        )
        .into());
    }
    let chunk_days = chainbatch::backfill::plan::parse_chunk(&a.chunk)
        .map_err(|e| ConfigError::new("--chunk", e))?;
    if a.concurrency == 0 {
        return Err(ConfigError::new("--concurrency", "must be at least 1").into());
    }
    let today = chainbatch::plan::dates::today();
    let window = a
        .dates
        .as_deref()
        .map(|d| {
            chainbatch::plan::dates::parse(d, &today).map_err(|e| ConfigError::new("--dates", e))
        })
        .transpose()?;
    BackendKind::parse(&a.backend).map_err(|e| ConfigError::new("--backend", e))?;
    let p = load_project(&a.project, &id)?;
    let out_root = driver::out_root(&p)?;
    // A resumed backfill keeps its pipeline; a new one names it.
    let resumed = match &a.resume {
        Some(r) => chainbatch::backfill::record::load(&out_root, r)
            .await
            .map_err(DriverError::Run)?,
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
    let progress = Progress::new(match a.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
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

fn print_plan(plans: &[chainbatch::plan::NodePlan], format: PlanFormat) {
    match format {
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(plans).expect("plans serialise")
        ),
        PlanFormat::Table => {
            for p in plans {
                println!("node {} -> {} ({})", p.node, p.output, p.output_path);
                println!("  strategy: {:?}: {}", p.strategy, p.reason);
                let parts = match p.input_partitions.as_slice() {
                    [] => "none".to_string(),
                    [one] => one.clone(),
                    [first, .., last] => {
                        format!("{first} .. {last} ({})", p.input_partitions.len())
                    }
                };
                println!(
                    "  input: {} files, {}, partitions {parts}",
                    p.input_files,
                    human_bytes(p.input_bytes)
                );
                for why in &p.empty_inputs {
                    println!("  note: {why}");
                }
                println!(
                    "  output partitioned by: {}",
                    if p.output_partition_by.is_empty() {
                        "nothing".into()
                    } else {
                        p.output_partition_by.join(", ")
                    }
                );
                match &p.expected_output_partitions {
                    Some(parts) if parts.len() > 3 => println!(
                        "  expected output partitions: {} .. {} ({})",
                        parts[0],
                        parts[parts.len() - 1],
                        parts.len()
                    ),
                    Some(parts) => println!("  expected output partitions: {}", parts.join(", ")),
                    None => println!(
                        "  expected output partitions: decided by the data (derived partition columns)"
                    ),
                }
                for s in &p.stages {
                    println!(
                        "  stage {} ({}): {} task(s), {} input",
                        s.stage_id,
                        s.kind,
                        s.tasks,
                        human_bytes(s.input_bytes)
                    );
                }
                for s in p.ballista_stages.iter().flatten() {
                    println!(
                        "    ballista stage {}: {} task(s), {}: {}",
                        s.stage_id,
                        s.tasks,
                        s.output,
                        s.operators.join(" <- ")
                    );
                }
            }
        }
    }
}

async fn dispatch(cmd: Command) -> Result<(), DriverError> {
    match cmd {
        Command::Run(a) => {
            // A driver running as an AWS Batch job names its run after the
            // job, so that a retried attempt continues the same run.
            let batch_job = (a.resume.is_none() && a.run_id.is_none())
                .then(batch_job_run_id)
                .flatten();
            let run_id = a
                .resume
                .clone()
                .or_else(|| a.run_id.clone())
                .or_else(|| batch_job.as_ref().map(|(id, _)| id.clone()))
                .unwrap_or_else(|| default_run_id(a.pipeline.as_deref()));
            let project = load_project(&a.project, &run_id)?;
            let mut opts = run_options(&a, run_id.clone())?;
            opts.continue_attempt = batch_job.is_some_and(|(_, attempt)| attempt > 1);
            let format = match a.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
            let progress = Progress::new(format);
            // Widened before anything else: a later attempt of a driver job
            // that continues its first attempt's run still takes that run's
            // window from its journal.
            if a.since_last_success {
                let (window, note) = driver::since_last_success(&project, &opts).await?;
                progress.note(&note);
                opts.dates = Some(window);
            }
            if a.dry_run {
                let plans = driver::plan(&project, &opts).await?;
                print_plan(&plans, PlanFormat::Table);
                return Ok(());
            }
            let started = std::time::Instant::now();
            let summary = driver::run(&project, &opts, &progress).await?;
            println!(
                "run {run_id} succeeded in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            println!(
                "{:<24} {:<24} {:>6} {:>10} {:>6} {:>10} {:>11} {:>8}",
                "node", "dataset", "tasks", "partitions", "files", "rows", "bytes", "seconds"
            );
            for s in summary {
                println!(
                    "{:<24} {:<24} {:>6} {:>10} {:>6} {:>10} {:>11} {:>8.1}",
                    s.node,
                    s.dataset,
                    s.tasks,
                    s.partitions,
                    s.files,
                    human_count(s.rows),
                    human_bytes(s.bytes),
                    s.seconds
                );
            }
            Ok(())
        }
        Command::Plan { run, format } => {
            let run_id = run
                .run_id
                .clone()
                .unwrap_or_else(|| default_run_id(run.pipeline.as_deref()));
            let project = load_project(&run.project, &run_id)?;
            let opts = run_options(&run, run_id)?;
            let plans = driver::plan(&project, &opts).await?;
            print_plan(&plans, format);
            Ok(())
        }
        Command::Validate { project, pipeline } => {
            let p = load_project(&project, "validate")?;
            let names: Vec<String> = match pipeline {
                Some(n) => vec![driver::pick_pipeline(&p, Some(&n))?.name.clone()],
                None => p.pipelines.keys().cloned().collect(),
            };
            for name in &names {
                let opts = RunOptions::checking(name, "validate", None);
                let (nodes, _) = driver::checked_nodes(&p, &opts).await?;
                println!("pipeline {name}: {} node(s) ok", nodes.len());
            }
            println!(
                "{} dataset(s), {} pipeline(s): configuration is valid",
                p.catalog.len(),
                names.len()
            );
            Ok(())
        }
        Command::Runs { project, format } => {
            let p = load_project(&project, "runs")?;
            let root = driver::out_root(&p)?;
            let runs = chainbatch::commit::journal::list(&root)
                .await
                .map_err(DriverError::Run)?;
            match format {
                PlanFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&runs).expect("journals serialise")
                ),
                PlanFormat::Table => {
                    println!(
                        "{:<40} {:<12} {:>10} {:>11} {:>9}",
                        "run", "status", "rows", "bytes", "seconds"
                    );
                    for r in runs {
                        let secs = r
                            .finished_at
                            .map(|f| (f - r.started_at).to_string())
                            .unwrap_or_else(|| "-".into());
                        println!(
                            "{:<40} {:<12} {:>10} {:>11} {:>9}",
                            r.run_id,
                            format!("{:?}", r.status).to_lowercase(),
                            human_count(r.rows()),
                            human_bytes(r.bytes()),
                            secs
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Status {
            project,
            pipeline,
            datasets,
            dates,
            format,
        } => status(project, pipeline, datasets, dates, format).await,
        Command::Backfill(b) => backfill(b).await,
        Command::Gen(g) => generate(g).await,
        Command::Bench {
            what: BenchWhat::Layouts(b),
        } => bench_layouts(b).await,
        Command::Gc {
            project,
            delta_retain_hours,
        } => {
            let p = load_project(&project, "gc")?;
            let root = driver::out_root(&p)?;
            let gc_id = format!(
                "gc-{}-{}",
                chainbatch::commit::journal::now_secs(),
                std::process::id()
            );
            let lease_opts = driver::lease_options(&p, &gc_id, std::time::Duration::ZERO)?;
            let mut notes = chainbatch::commit::collect_garbage(&root, &p.catalog, &lease_opts)
                .await
                .map_err(DriverError::Run)?;
            // Registrations a crash or an unreachable Glue left pending.
            let glue = chainbatch::glue::settings::GlueSettings::from_globals(&p.globals)
                .map_err(|e| p.globals_origin.locate(e))?;
            if let Some(g) = glue {
                let registrar = chainbatch::glue::register::Registrar::connect(&g).await;
                notes.extend(
                    chainbatch::glue::finish_pending(&root, &registrar)
                        .await
                        .map_err(DriverError::Run)?,
                );
            }
            let retain = std::time::Duration::from_secs(delta_retain_hours.saturating_mul(3600));
            let written: std::collections::BTreeSet<&str> = p
                .pipelines
                .values()
                .flat_map(|pl| pl.nodes.iter().map(|n| n.output.as_str()))
                .collect();
            for ds in p.catalog.values().filter(|d| d.delta.is_some()) {
                if !written.contains(ds.name.as_str()) {
                    continue;
                }
                let n = chainbatch::delta::vacuum(&ds.path, retain)
                    .await
                    .map_err(|e| DriverError::Run(e.to_string()))?;
                if n > 0 {
                    notes.push(format!(
                        "vacuumed {n} file(s) of Delta table `{}` older than {delta_retain_hours} h",
                        ds.name
                    ));
                }
            }
            for n in &notes {
                println!("{n}");
            }
            println!("gc: {} item(s)", notes.len());
            Ok(())
        }
        Command::Register { project, datasets } => {
            let p = load_project(&project, "register")?;
            for d in &datasets {
                println!("{}", chainbatch::glue::register_existing(&p, d).await?);
            }
            Ok(())
        }
        Command::Import {
            source: ImportSource::EthereumEtl { dir, out, tables },
        } => {
            let known: Vec<&str> = chainbatch::eth::import::tables()
                .iter()
                .map(|t| t.table)
                .collect();
            check_tables(&tables, &known)?;
            let done = chainbatch::eth::import::import_ethereum_etl(&dir, &out, &tables)
                .await
                .map_err(DriverError::Run)?;
            for t in done {
                println!(
                    "{:<16} {:>8} rows  {}",
                    t.table,
                    t.rows,
                    t.partitions.join(", ")
                );
            }
            Ok(())
        }
    }
}

async fn bench_layouts(b: BenchLayoutsArgs) -> Result<(), DriverError> {
    use chainbatch::bench::layouts::{BenchOptions, Source};
    if b.runs == 0 {
        return Err(ConfigError::new("--runs", "must be at least 1").into());
    }
    let source = match (&b.input, b.rows) {
        (Some(uri), _) => Source::Input(uri.clone()),
        (None, Some(0)) | (None, None) => {
            return Err(ConfigError::new("--rows", "must be at least 1").into());
        }
        (None, Some(rows)) => {
            if b.days == 0 {
                return Err(ConfigError::new("--days", "must be at least 1").into());
            }
            Source::Generate {
                rows,
                days: b.days,
                start: b.start.clone(),
                seed: b.seed,
            }
        }
    };
    let opts = BenchOptions {
        layouts: b.layouts.clone(),
        queries: b.queries.clone(),
        source,
        runs: b.runs,
        out: b.out.clone(),
        node: b.node.clone(),
    };
    // The user's overrides, then the bench's own (raw_root, out_root).
    let loader = |extra: Vec<(String, serde_norway::Value)>| {
        let mut args = b.project.clone();
        for (k, v) in extra {
            let text = match v {
                serde_norway::Value::String(s) => s,
                other => serde_norway::to_string(&other).unwrap_or_default(),
            };
            args.globals.push(format!("{k}={text}"));
        }
        load_project(&args, "bench")
    };
    let progress = Progress::new(LogFormat::Text);
    let report = chainbatch::bench::layouts::run(&loader, &opts, &progress).await?;
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    let out = b.out.trim_end_matches('/');
    for (name, body) in [
        ("report.json", json.clone()),
        ("report.html", chainbatch::bench::report::html(&report)),
    ] {
        let uri = format!("{out}/{name}");
        let loc = chainbatch_executor::storage::resolve(&uri)
            .map_err(|e| DriverError::Run(e.to_string()))?;
        object_store::ObjectStoreExt::put(&*loc.store, &loc.path, body.into_bytes().into())
            .await
            .map_err(|e| DriverError::Run(format!("cannot write {uri}: {e}")))?;
    }
    match b.format {
        PlanFormat::Json => println!("{json}"),
        PlanFormat::Table => {
            print!("{}", chainbatch::bench::report::table(&report));
            println!("reports: {out}/report.json, {out}/report.html");
        }
    }
    Ok(())
}

/// `--tables`: every name must be one the command knows (a usage error,
/// exit 2, before anything is read or written).
fn check_tables(tables: &[String], known: &[&str]) -> Result<(), ConfigError> {
    match tables.iter().find(|t| !known.contains(&t.as_str())) {
        Some(bad) => {
            let hint = chainbatch::conf::error::suggest(bad, known.iter().copied())
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            Err(ConfigError::new(
                "--tables",
                format!(
                    "unknown table `{bad}`; {hint}expected some of: {}",
                    known.join(", ")
                ),
            ))
        }
        None => Ok(()),
    }
}

async fn generate(g: GenArgs) -> Result<(), DriverError> {
    if g.rows == 0 || g.days == 0 || g.files_per_day == 0 {
        return Err(
            ConfigError::new("--rows", "rows, days and files per day must be at least 1").into(),
        );
    }
    let known: Vec<&str> = chainbatch::eth::synth_write::TABLES
        .iter()
        .map(|t| t.name())
        .collect();
    check_tables(&g.tables, &known)?;
    let start = chainbatch::plan::dates::parse(&g.start, &chainbatch::plan::dates::today())
        .map_err(|e| ConfigError::new("--start", e))?;
    let start_ts =
        chainbatch::plan::dates::days_since_epoch(&start.from).expect("parsed date") * 86_400;
    let cfg = chainbatch::eth::synth::GenConfig {
        rows: g.rows,
        days: g.days,
        start_ts,
        seed: g.seed,
        files_per_day: g.files_per_day,
        batch_rows: 8192,
    };
    let started = std::time::Instant::now();
    let threads = chainbatch_executor::runner::effective_parallelism(0);
    let total = g.days as u64 * g.files_per_day as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress: chainbatch::eth::synth_write::Progress =
        std::sync::Arc::new(move |unit: &str, rows: u64| {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            eprintln!(
                "chainbatch gen: {n}/{total} · {unit} · {} transactions",
                human_count(rows)
            );
        });
    let totals =
        chainbatch::eth::synth_write::write_tables(&cfg, &g.out, &g.tables, threads, progress)
            .await
            .map_err(DriverError::Run)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote to {} in {secs:.1}s ({:.0} transactions/s)",
        g.out,
        g.rows as f64 / secs
    );
    for (t, s) in totals.tables {
        println!(
            "{t:<16} {:>10} rows {:>5} files {:>11}  checksum {}",
            s.rows,
            s.files,
            human_bytes(s.bytes),
            s.checksum
        );
    }
    Ok(())
}
