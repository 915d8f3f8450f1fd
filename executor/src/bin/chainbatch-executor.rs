//! `chainbatch-executor`: runs one task of a stage, as a child process or in
//! a container on AWS Batch.

use chainbatch_executor::error::{EXIT_OK, EXIT_RETRYABLE, EXIT_USAGE};
use chainbatch_executor::spec::parse_specs;
use chainbatch_executor::{TaskError, storage};
use clap::{Parser, Subcommand};
use object_store::ObjectStoreExt;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  the task finished; its manifest is written
  2  command-line usage error
  3  bad spec: missing input, schema mismatch, SQL error, bad layout, or an
     output that cannot be written. A retry cannot help.
  4  I/O, network or resource failure. A retry may help.
Killed by a signal (e.g. 137 for SIGKILL): the process backend retries it;
the next attempt starts clean.

Retries on AWS Batch (the job's retry strategy, at most --max-attempts
attempts in all):
  retried      exit code 4; an attempt whose status reason starts with
               `Host EC2` (EC2 instance terminated or Spot reclaimed) or
               `Your Spot Task was interrupted` (Fargate Spot), or is
               `Task failed to start` (the task never started; the
               container reason says why, e.g. `CannotPullContainerError:`
               or `ResourceInitializationError:`)
  not retried  exit code 3 and every other exit code (137 included, e.g.
               an out-of-memory kill); an attempt that ran past
               job_timeout_seconds; a job the driver terminated";

#[derive(Parser)]
#[command(
    name = "chainbatch-executor",
    version,
    about = "Runs one chainbatch task: read inputs, run SQL with DataFusion, write Parquet in a layout",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one task of a stage's spec list and write its manifest.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// URI of the stage's task specs (a JSON list, or one spec): a path,
        /// file:// or s3://.
        #[arg(long)]
        spec: String,
        /// Which task of the list to run [default: $AWS_BATCH_JOB_ARRAY_INDEX,
        /// or 0 when the list holds one spec].
        #[arg(long, env = "AWS_BATCH_JOB_ARRAY_INDEX")]
        index: Option<usize>,
        /// The attempt number; output goes to attempt-<N>/ [default:
        /// $AWS_BATCH_JOB_ATTEMPT, or the spec's attempt].
        #[arg(long, env = "AWS_BATCH_JOB_ATTEMPT")]
        attempt: Option<u32>,
    },
}

fn main() -> ExitCode {
    chainbatch_executor::allocator::configure_malloc();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let Command::Run {
        spec,
        index,
        attempt,
    } = cli.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chainbatch-executor: cannot start runtime: {e}");
            return ExitCode::from(EXIT_RETRYABLE as u8);
        }
    };
    match runtime.block_on(run(&spec, index, attempt)) {
        Ok(()) => ExitCode::from(EXIT_OK as u8),
        Err(e) => {
            eprintln!("chainbatch-executor: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn run(spec_uri: &str, index: Option<usize>, attempt: Option<u32>) -> Result<(), TaskError> {
    let loc =
        storage::resolve(spec_uri).map_err(|e| TaskError::bad_spec("--spec", e.to_string()))?;
    let bytes = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| TaskError::from_store("--spec", e))?
        .bytes()
        .await
        .map_err(|e| TaskError::from_store("--spec", e))?;
    let specs = parse_specs(&bytes)?;
    let index = match index {
        Some(i) => i,
        None if specs.len() == 1 => 0,
        None => {
            return Err(TaskError::bad_spec(
                "--index",
                format!(
                    "the spec list holds {} tasks: pass --index or set AWS_BATCH_JOB_ARRAY_INDEX",
                    specs.len()
                ),
            ));
        }
    };
    let spec = specs.get(index).ok_or_else(|| {
        TaskError::bad_spec(
            "--index",
            format!(
                "task {index} does not exist; the list holds {}",
                specs.len()
            ),
        )
    })?;
    let attempt = attempt.unwrap_or(spec.attempt);
    eprintln!(
        "chainbatch-executor: run {} stage {} task {} attempt {attempt}",
        spec.run_id, spec.stage_id, spec.task_index
    );
    let manifest = chainbatch_executor::run_task(spec, attempt).await?;
    println!(
        "{}",
        serde_json::json!({
            "manifest": format!("{}/_manifest.json", manifest.attempt_dir),
            "rows": manifest.rows,
            "bytes": manifest.bytes,
            "files": manifest.files.len(),
            "partitions": manifest.partitions.len(),
            "checksum": manifest.checksum,
            "elapsed_ms": manifest.elapsed_ms,
        })
    );
    Ok(())
}
