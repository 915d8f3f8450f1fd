//! `chainbatch-executor`: runs one task of a stage, as a child process or in
//! a container on AWS Batch.

use chainbatch_executor::distributed::executor::{ExecutorOptions, serve};
use chainbatch_executor::distributed::job::SchedulerAddress;
use chainbatch_executor::distributed::net::{pick_port, route_address};
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
    /// Join a Ballista cluster as an executor and run the tasks of
    /// distributed nodes until SIGINT or SIGTERM.
    Ballista(BallistaArgs),
}

#[derive(clap::Args)]
struct BallistaArgs {
    /// The scheduler, host:port or df://host:port (a driver's embedded
    /// scheduler or a cluster's).
    #[arg(long, env = "CHAINBATCH_BALLISTA_SCHEDULER")]
    scheduler: String,
    /// The address the scheduler and the other executors reach this one at
    /// [default: the address this host reaches the scheduler from].
    #[arg(long, env = "CHAINBATCH_BALLISTA_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// The address the executor listens on.
    #[arg(long, env = "CHAINBATCH_BALLISTA_BIND_HOST", default_value = "0.0.0.0")]
    bind_host: String,
    /// Arrow Flight port: the other executors fetch shuffle output here
    /// (0: a free port, for several executors on one host).
    #[arg(long, env = "CHAINBATCH_BALLISTA_FLIGHT_PORT", default_value_t = 50051)]
    flight_port: u16,
    /// gRPC port of the executor (0: a free port).
    #[arg(long, env = "CHAINBATCH_BALLISTA_GRPC_PORT", default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once [default: the cores available].
    #[arg(long, env = "CHAINBATCH_BALLISTA_VCORES")]
    vcores: Option<usize>,
    /// The executor's memory pool in MiB, split evenly between its vcores
    /// (each running task gets its share); beyond it sorts, joins and
    /// aggregates spill to --work-dir.
    #[arg(long, env = "CHAINBATCH_BALLISTA_MEMORY_MIB", default_value_t = 2048)]
    memory_mib: u64,
    /// Shuffle files and spills.
    #[arg(
        long,
        env = "CHAINBATCH_BALLISTA_WORK_DIR",
        default_value = "/tmp/chainbatch-ballista"
    )]
    work_dir: std::path::PathBuf,
    /// How long to wait for the scheduler to answer at startup, in seconds.
    #[arg(
        long,
        env = "CHAINBATCH_BALLISTA_CONNECT_TIMEOUT",
        default_value_t = 60
    )]
    connect_timeout: u16,
    /// Exit (code 0) once the scheduler has not answered for this many
    /// seconds: the driver that ran it is gone.
    #[arg(
        long,
        env = "CHAINBATCH_BALLISTA_ORPHAN_TIMEOUT",
        default_value_t = 120
    )]
    orphan_timeout: u64,
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
    let (spec, index, attempt) = match cli.command {
        Command::Run {
            spec,
            index,
            attempt,
        } => (spec, index, attempt),
        Command::Ballista(args) => return serve_ballista(&runtime, args),
    };
    match runtime.block_on(run(&spec, index, attempt)) {
        Ok(()) => ExitCode::from(EXIT_OK as u8),
        Err(e) => {
            eprintln!("chainbatch-executor: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn serve_ballista(runtime: &tokio::runtime::Runtime, args: BallistaArgs) -> ExitCode {
    let (host, port) = match SchedulerAddress::parse(&args.scheduler) {
        Ok(a) => (a.host, a.port),
        Err(e) => {
            eprintln!("chainbatch-executor: --scheduler {e}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    let external_host = match args.external_host {
        Some(h) => h,
        None => match route_address(&host, port) {
            Ok(ip) => ip,
            Err(e) => {
                eprintln!(
                    "chainbatch-executor: cannot tell this host's address towards {host}:{port} ({e}); pass --external-host"
                );
                return ExitCode::from(EXIT_RETRYABLE as u8);
            }
        },
    };
    let (flight_port, grpc_port) = match (pick_port(args.flight_port), pick_port(args.grpc_port)) {
        (Ok(f), Ok(g)) => (f, g),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("chainbatch-executor: cannot find a free port: {e}");
            return ExitCode::from(EXIT_RETRYABLE as u8);
        }
    };
    let opts = ExecutorOptions {
        scheduler_host: host,
        scheduler_port: port,
        bind_host: args.bind_host,
        external_host,
        flight_port,
        grpc_port,
        vcores: args
            .vcores
            .unwrap_or_else(|| chainbatch_executor::effective_parallelism(0)),
        memory_bytes: args.memory_mib * 1024 * 1024,
        work_dir: args.work_dir,
        connect_timeout_seconds: args.connect_timeout,
        orphan_timeout: std::time::Duration::from_secs(args.orphan_timeout),
    };
    eprintln!(
        "chainbatch-executor: Ballista executor {}:{} joining scheduler {}:{} ({} vcores, {} MiB pool)",
        opts.external_host,
        opts.flight_port,
        opts.scheduler_host,
        opts.scheduler_port,
        opts.vcores,
        args.memory_mib
    );
    match runtime.block_on(serve(opts)) {
        Ok(()) => ExitCode::from(EXIT_OK as u8),
        Err(e) => {
            eprintln!("chainbatch-executor: Ballista executor stopped: {e}");
            ExitCode::from(EXIT_RETRYABLE as u8)
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
