//! The command line: one module per command, each holding its arguments,
//! their checks and the rendering of its result; the work is the library's.

mod backfill;
mod bench;
mod export;
mod gc;
mod generate;
mod import;
mod plan;
mod register;
mod run;
mod runs;
mod status;
mod step;
mod validate;

use chainbatch::conf::error::ConfigError;
use chainbatch::conf::project::{LoadOptions, Project, load, parse_override};
use chainbatch::error::DriverError;
use chainbatch::plan::dates::DateRange;
use chainbatch::progress::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;

const EXIT_HELP: &str = "\
Exit codes: 0 success; 1 the run failed (a task, the storage, or the commit);
2 a usage or configuration error (nothing was run or written).";

#[derive(Parser)]
#[command(name = "chainbatch", version, about = "A batch engine for ETL over public blockchain data", after_help = EXIT_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (or the selected nodes of it) and commit its outputs.
    Run(run::RunArgs),
    /// Show the stages and tasks a run would execute, and why.
    Plan(plan::PlanArgs),
    /// Check the configuration and every node's SQL without running anything.
    Validate(validate::ValidateArgs),
    /// List past runs with status, rows, bytes and duration.
    Runs(runs::RunsArgs),
    /// Finish or roll back unfinished runs, then remove what finished runs
    /// left in staging, shuffle and trash, and vacuum the Delta tables
    /// pipelines write (`format: delta`): files only versions older than
    /// `--delta-retain-hours` read are deleted.
    Gc(gc::GcArgs),
    /// Create or update the Glue tables of datasets already written, and
    /// register every partition found under their paths (runs do this for
    /// what they commit). Needs `glue:` in globals.yml and the dataset's
    /// `glue:` in catalog.yml.
    #[command(after_help = "Example: chainbatch register clean_transactions --env aws")]
    Register(register::RegisterArgs),
    /// Show each output partition: the run that wrote it and when, its rows
    /// and bytes, the configuration hash it was written with, and whether
    /// it is stale (its node's SQL, layout or input definitions changed
    /// since, or its input files did); then the dates with no partition.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// Run a long window in chunks, each an ordinary run (its own journal
    /// and commit), a few at once, recorded under
    /// `<out_root>/_chainbatch/backfills/<id>/` so `--resume ID` continues
    /// it. Chunks whose partitions are current (same configuration, input
    /// unchanged; see `status`) are skipped unless --force; in the others
    /// only the nodes with work run, with everything downstream of them.
    #[command(after_help = backfill::AFTER_HELP)]
    Backfill(backfill::BackfillArgs),
    /// Generate synthetic `eth` tables (transactions, blocks, logs, token transfers) in the AWS layout.
    Gen(generate::GenArgs),
    /// Import data exported by other tools into the AWS layout.
    Import {
        #[command(subcommand)]
        source: import::ImportSource,
    },
    /// Measure which partition layout serves a query workload best.
    Bench {
        #[command(subcommand)]
        what: bench::BenchWhat,
    },
    /// Print a pipeline in another system's terms (an AWS Step Functions
    /// state machine).
    Export {
        #[command(subcommand)]
        what: export::ExportWhat,
    },
    /// One step of a run an orchestrator carries (begin, plan, commit,
    /// finish): what `export step-functions` state machines run.
    #[command(after_help = step::AFTER_HELP)]
    Step(step::StepArgs),
}

impl Cli {
    /// How a failure of this command maps to an exit code: a step also
    /// tells retryable failures apart (exit 4).
    pub fn exit_codes(&self) -> fn(&DriverError) -> u8 {
        match self.command {
            Command::Step(_) => step::StepArgs::exit_code,
            _ => DriverError::exit_code,
        }
    }

    /// Runs the command.
    pub async fn dispatch(self) -> Result<(), DriverError> {
        match self.command {
            Command::Run(a) => run::run(a).await,
            Command::Plan(a) => plan::plan(a).await,
            Command::Validate(a) => validate::validate(a).await,
            Command::Runs(a) => runs::runs(a).await,
            Command::Gc(a) => gc::gc(a).await,
            Command::Register(a) => register::register(a).await,
            Command::Status(a) => status::status(a).await,
            Command::Backfill(a) => backfill::backfill(a).await,
            Command::Gen(a) => generate::generate(a).await,
            Command::Import { source } => import::import(source).await,
            Command::Bench { what } => bench::bench(what).await,
            Command::Export { what } => export::export(what).await,
            Command::Step(a) => step::step(a).await,
        }
    }
}

/// How a command prints what it found.
#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

/// How progress lines are written.
#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// Where the configuration comes from and what overrides it.
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

impl ProjectArgs {
    /// The project as these arguments configure it, for the run `run_id`.
    fn load(&self, run_id: &str) -> Result<Project, ConfigError> {
        let mut runtime = BTreeMap::new();
        runtime.insert("run_date".to_string(), self.run_date()?);
        runtime.insert("run_id".to_string(), run_id.to_string());
        let globals = self
            .globals
            .iter()
            .map(|g| parse_override(g, "--globals"))
            .collect::<Result<_, _>>()?;
        let params = self
            .params
            .iter()
            .map(|g| parse_override(g, "--params"))
            .collect::<Result<_, _>>()?;
        let remote = chainbatch::conf::remote::is_remote(&self.conf);
        let conf_dir = match remote {
            // Loading is synchronous; the copy is made once, before it.
            true => tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(chainbatch::conf::remote::fetch(
                    &self.conf.display().to_string(),
                ))
            })?,
            false => self.conf.clone(),
        };
        let loaded = load(&LoadOptions {
            conf_dir: conf_dir.clone(),
            env: self.env.clone(),
            globals,
            params,
            runtime,
        });
        if remote {
            let _ = std::fs::remove_dir_all(&conf_dir);
            return loaded
                .map(|project| project.relocate_conf(&self.conf))
                .map_err(|e| chainbatch::conf::remote::remote_error(e, &conf_dir, &self.conf));
        }
        loaded
    }

    /// `--run-date`, or today (UTC).
    fn run_date(&self) -> Result<String, ConfigError> {
        let today = chainbatch::plan::dates::today();
        match &self.run_date {
            None => Ok(today),
            Some(d) => chainbatch::plan::dates::parse(d, &today)
                .map(|r| r.from)
                .map_err(|e| ConfigError::new("--run-date", e)),
        }
    }
}

/// A date window given as `flag` (`A..B`, `today`, `yesterday`).
fn parse_window(flag: &str, text: Option<&str>) -> Result<Option<DateRange>, ConfigError> {
    let today = chainbatch::plan::dates::today();
    text.map(|d| chainbatch::plan::dates::parse(d, &today).map_err(|e| ConfigError::new(flag, e)))
        .transpose()
}

/// Run and backfill ids name folders in storage: letters, digits, `-`,
/// `_` and `.` only.
fn check_id(flag: &str, id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match ok {
        true => Ok(()),
        false => Err(ConfigError::new(
            flag,
            format!("{id:?} must be letters, digits, '-', '_' or '.'"),
        )),
    }
}

/// A new run's id: the UTC time to the millisecond and the pipeline's name.
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

/// Writes `body` to `uri` (a path, file:// or s3://).
async fn write_text(uri: &str, body: String) -> Result<(), DriverError> {
    let loc = chainbatch_executor::storage::resolve(uri)
        .map_err(|e| DriverError::Storage(format!("{uri}: {e}")))?;
    object_store::ObjectStoreExt::put(&*loc.store, &loc.path, body.into_bytes().into())
        .await
        .map_err(|e| DriverError::Storage(format!("cannot write {uri}: {e}")))?;
    Ok(())
}
