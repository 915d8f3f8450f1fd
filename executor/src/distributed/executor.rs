//! A Ballista executor that runs chainbatch plans: chainbatch's codec and
//! SQL functions, inputs and outputs through chainbatch's storage (local
//! paths and S3 with the same credentials and retries as a task), spills
//! and shuffle files in its work directory, and a memory pool of a fixed
//! size that Ballista splits between the tasks it runs at once.

use super::SCHEDULING_POLICY;
use super::codec::DistributedCodec;
use crate::storage::StoreRegistry;
use ballista_core::error::BallistaError;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Where an executor runs and what it may use.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Host of the Ballista scheduler the executor registers with and polls for tasks.
    pub scheduler_host: String,
    /// The scheduler's gRPC port; also watched to notice that the scheduler is gone.
    pub scheduler_port: u16,
    /// The address the executor's servers listen on.
    pub bind_host: String,
    /// The address the scheduler and other executors reach it at.
    pub external_host: String,
    /// Arrow Flight port: other executors fetch shuffle output here.
    pub flight_port: u16,
    /// Port of the executor's gRPC service, advertised to the scheduler; under the pull
    /// policy ([`SCHEDULING_POLICY`]) Ballista does not listen on it.
    pub grpc_port: u16,
    /// Tasks run at once.
    pub vcores: usize,
    /// The memory pool every running task shares; sorts, joins and
    /// aggregates spill to `work_dir` beyond it.
    pub memory_bytes: u64,
    /// Shuffle files and spills.
    pub work_dir: PathBuf,
    /// How long to wait for the scheduler at startup.
    pub connect_timeout_seconds: u16,
    /// Exit once the scheduler has not answered for this long: a driver
    /// that died (its embedded scheduler with it) leaves no executor behind.
    pub orphan_timeout: std::time::Duration,
}

/// The session settings both sides plan and run with: chainbatch's (plain
/// strings) on top of Ballista's.
pub fn session_config() -> SessionConfig {
    crate::session::with_chainbatch_settings(SessionConfig::new_with_ballista())
}

/// Every SQL function an executor knows: DataFusion's and chainbatch's.
pub fn function_registry() -> datafusion::error::Result<BallistaFunctionRegistry> {
    let ctx = crate::session::context(
        crate::session::config(),
        Arc::new(RuntimeEnvBuilder::new().build()?),
    )?;
    Ok(BallistaFunctionRegistry::from(&ctx.state()))
}

/// Returns once the scheduler at `host:port` has refused or ignored
/// connections for `give_up` in a row.
async fn scheduler_gone(host: String, port: u16, give_up: std::time::Duration) {
    use std::time::{Duration, Instant};
    let mut last_answer = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        if answered {
            last_answer = Instant::now();
        } else if last_answer.elapsed() >= give_up {
            return;
        }
    }
}

/// Runs the executor until it is told to stop (SIGINT or SIGTERM), or its
/// scheduler is gone for `opts.orphan_timeout`.
pub async fn serve(opts: ExecutorOptions) -> Result<(), BallistaError> {
    let gone = scheduler_gone(
        opts.scheduler_host.clone(),
        opts.scheduler_port,
        opts.orphan_timeout,
    );
    tokio::select! {
        r = serve_until_stopped(opts) => r,
        () = gone => {
            eprintln!("chainbatch-executor: the scheduler stopped answering; exiting");
            Ok(())
        }
    }
}

async fn serve_until_stopped(opts: ExecutorOptions) -> Result<(), BallistaError> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let spill_dir = opts.work_dir.clone();
    let runtime_producer = Arc::new(move |_: &SessionConfig| {
        let disk = DiskManagerBuilder::default()
            .with_mode(DiskManagerMode::Directories(vec![spill_dir.clone()]));
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(StoreRegistry))
            .with_disk_manager_builder(disk)
            .build_arc()
    });
    crate::allocator::fit_free_heap_to_pool(opts.memory_bytes);
    let config = ExecutorProcessConfig {
        bind_host: opts.bind_host,
        external_host: Some(opts.external_host),
        port: opts.flight_port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host,
        scheduler_port: opts.scheduler_port,
        scheduler_connect_timeout_seconds: opts.connect_timeout_seconds,
        vcores: opts.vcores.max(1),
        task_scheduling_policy: SCHEDULING_POLICY,
        work_dir: Some(opts.work_dir.to_string_lossy().into_owned()),
        print_thread_info: false,
        memory_pool_size: Some(opts.memory_bytes),
        override_function_registry: Some(Arc::new(function_registry()?)),
        override_runtime_producer: Some(runtime_producer),
        override_config_producer: Some(Arc::new(session_config)),
        override_physical_codec: Some(Arc::new(DistributedCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await
}
