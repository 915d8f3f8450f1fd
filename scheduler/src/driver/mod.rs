//! The driver: select, validate, plan, run each stage on a backend, commit
//! each node's output, and journal every step.

mod node;
mod previous;
pub mod steps;

pub use previous::since_last_success;

use crate::backend::ballista::{Cluster, EmbeddedOptions};
use crate::backend::batch::{BatchBackend, BatchSettings};
use crate::backend::{Backend, BackendKind};
use crate::commit;
use crate::commit::journal::{self, Journal, RunStatus};
use crate::commit::lease::{self, Claim, LeaseOptions, LeaseSet, Scope};
use crate::conf::error::ConfigError;
use crate::conf::project::Project;
use crate::error::DriverError;
use crate::pipeline::validate::validate_nodes;
use crate::pipeline::{Node, Selection};
use crate::plan::dates::DateRange;
use crate::plan::{DEFAULT_TASK_BYTES, NodePlan, PlanSettings, infer_schema, plan_node};
use crate::progress::Progress;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub pipeline: Option<String>,
    pub selection: Selection,
    pub dates: Option<DateRange>,
    pub run_id: String,
    pub backend: BackendKind,
    pub parallelism: usize,
    pub max_attempts: u32,
    /// Continue the failed run `run_id`: its nodes, window and pipeline come
    /// from its journal; committed nodes and finished tasks are not redone.
    pub resume: bool,
    /// How long to wait for live runs holding overlapping output partitions.
    pub wait: std::time::Duration,
    /// Publish input dates that fail the completeness gate (with a note).
    pub allow_incomplete: bool,
    /// Count the registered partitions' rows through Athena after commit.
    pub verify_athena: bool,
    /// This is a later attempt of a job (AWS Batch retried the driver after
    /// losing its host): continue the earlier attempt's run `run_id` if it
    /// left a journal, else start it.
    pub continue_attempt: bool,
    /// Where distributed nodes run on `--backend ballista`.
    pub ballista: BallistaOptions,
}

impl RunOptions {
    /// Options that select a pipeline's nodes to check or plan them
    /// (`validate`, `backfill`), not to run them.
    pub fn checking(pipeline: &str, run_id: &str, dates: Option<DateRange>) -> Self {
        Self {
            pipeline: Some(pipeline.to_string()),
            selection: Selection::default(),
            dates,
            run_id: run_id.to_string(),
            backend: BackendKind::Local,
            parallelism: 1,
            max_attempts: 1,
            resume: false,
            wait: std::time::Duration::ZERO,
            allow_incomplete: false,
            verify_athena: false,
            continue_attempt: false,
            ballista: BallistaOptions::default(),
        }
    }
}

/// The Ballista cluster of `--backend ballista`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BallistaOptions {
    /// An existing cluster's scheduler (`df://host:50050`); none: start an
    /// embedded one.
    pub url: Option<String>,
    /// Executor processes of the embedded cluster.
    pub executors: usize,
    /// Tasks each embedded executor runs at once.
    pub executor_vcores: usize,
    /// Each embedded executor's memory pool.
    pub executor_memory_bytes: u64,
    /// Partitions of a distributed node on an existing cluster.
    pub partitions: usize,
}

impl Default for BallistaOptions {
    fn default() -> Self {
        Self {
            url: None,
            executors: 2,
            executor_vcores: 1,
            executor_memory_bytes: 1024 * 1024 * 1024,
            partitions: 8,
        }
    }
}

pub fn out_root(project: &Project) -> Result<String, ConfigError> {
    project.global_str("out_root").ok_or_else(|| {
        project.globals_origin.locate(ConfigError::new(
            "out_root",
            "is required in globals.yml: the root under which outputs and run journals live",
        ))
    })
}

fn pipeline_names(project: &Project) -> String {
    project
        .pipelines
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pipeline to use: the one named, or the only one, or the one the
/// `default_pipeline` global names.
pub fn pick_pipeline<'p>(
    project: &'p Project,
    name: Option<&str>,
) -> Result<&'p crate::pipeline::Pipeline, ConfigError> {
    match name {
        Some(n) => project.pipelines.get(n).ok_or_else(|| {
            let hint = crate::conf::error::suggest(n, project.pipelines.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ConfigError::new(
                "--pipeline",
                format!(
                    "no pipeline `{n}`{hint}; pipelines: {}",
                    pipeline_names(project)
                ),
            )
        }),
        None if project.pipelines.len() == 1 => {
            Ok(project.pipelines.values().next().expect("one pipeline"))
        }
        None => match project.global_str("default_pipeline") {
            Some(d) => project.pipelines.get(&d).ok_or_else(|| {
                project.globals_origin.locate(ConfigError::new(
                    "default_pipeline",
                    format!(
                        "names no pipeline `{d}`; pipelines: {}",
                        pipeline_names(project)
                    ),
                ))
            }),
            None => Err(ConfigError::new(
                "--pipeline",
                format!(
                    "several pipelines are defined and globals set no default_pipeline; name one of: {}",
                    pipeline_names(project)
                ),
            )),
        },
    }
}

/// Selects and validates nodes: everything `validate` checks.
pub async fn checked_nodes(
    project: &Project,
    opts: &RunOptions,
) -> Result<
    (
        Vec<Node>,
        HashMap<String, crate::pipeline::validate::SqlShape>,
    ),
    DriverError,
> {
    let pipeline = pick_pipeline(project, opts.pipeline.as_deref())?;
    let nodes = pipeline.select(&opts.selection)?;
    // Upstream nodes that are not selected still tell downstream ones their
    // input schemas, so the whole pipeline is checked in dependency order:
    // only nodes upstream of the selection (or in it) are planned.
    let needed = pipeline.with_upstream(nodes.iter().map(|n| n.name.clone()).collect());
    let mut inferred = HashMap::new();
    for n in &needed {
        for i in &n.inputs {
            if let Some(s) = infer_schema(&project.catalog[i]).await {
                inferred.insert(i.clone(), s);
            }
        }
    }
    let shapes = validate_nodes(&needed, &project.catalog, &inferred)
        .await
        .map_err(|e| {
            let file = project.conf_dir.join("base/pipelines.yml");
            DriverError::Config(e.at(Some(file), None))
        })?;
    Ok((nodes, shapes))
}

fn settings(project: &Project, opts: &RunOptions) -> Result<PlanSettings, ConfigError> {
    Ok(PlanSettings {
        run_id: opts.run_id.clone(),
        target_task_bytes: project
            .global_u64("target_task_bytes")?
            .unwrap_or(DEFAULT_TASK_BYTES),
        memory_bytes: project
            .global_u64("task_memory_bytes")?
            .unwrap_or(512 * 1024 * 1024),
        dates: opts.dates.clone(),
    })
}

/// Plans every selected node without running anything. Nodes that read a
/// dataset an earlier selected node writes are planned against what is there
/// now; at run time they are planned after that node commits.
pub async fn plan(project: &Project, opts: &RunOptions) -> Result<Vec<NodePlan>, DriverError> {
    let staged = crate::athena::unload::staged(project, &out_root(project)?, &opts.run_id);
    let project = &staged;
    let (nodes, shapes) = checked_nodes(project, opts).await?;
    let settings = settings(project, opts)?;
    let mut out = vec![];
    let mut stage = 0;
    for n in &nodes {
        let p = plan_node(n, &shapes[&n.name], &project.catalog, &settings, stage)
            .await
            .map_err(|e| DriverError::Storage(format!("node `{}`: {e}", n.name)))?;
        stage += p.stages.len() as u32;
        let mut p = p;
        if opts.backend == BackendKind::Ballista && p.strategy == crate::plan::Strategy::Distributed
        {
            let o = &opts.ballista;
            let partitions = match o.url {
                Some(_) => o.partitions,
                None => {
                    (o.executors * o.executor_vcores).max(crate::backend::ballista::MIN_PARTITIONS)
                }
            };
            let spec = &p.stages[0].specs[0];
            p.ballista_stages = Some(
                crate::backend::ballista::describe_stages(spec, partitions)
                    .await
                    .map_err(|e| DriverError::Service(format!("node `{}`: {e}", p.node)))?,
            );
        }
        out.push(p);
    }
    Ok(out)
}

/// The backend, checked before the run starts: Batch needs its settings,
/// a reachable queue and definition, and an `out_root` containers can read.
async fn connect_backend(
    project: &Project,
    opts: &RunOptions,
    out_root: &str,
) -> Result<Backend, DriverError> {
    match opts.backend {
        BackendKind::Local => Ok(Backend::Local),
        BackendKind::Process => Ok(Backend::Process),
        BackendKind::Ballista => {
            let o = &opts.ballista;
            let cluster = match &o.url {
                Some(url) => Cluster::connect(url, o.partitions).await,
                None => {
                    Cluster::start_embedded(&EmbeddedOptions {
                        executors: o.executors,
                        vcores: o.executor_vcores,
                        memory_bytes: o.executor_memory_bytes,
                    })
                    .await
                }
            }
            .map_err(|e| DriverError::Service(e.to_string()))?;
            Ok(Backend::Ballista(cluster))
        }
        BackendKind::Batch => {
            let globals = project
                .conf_dir
                .join(format!("{}/globals.yml", project.env));
            let settings = BatchSettings::from_globals(&project.globals)
                .map_err(|e| DriverError::Config(e.at(Some(globals.clone()), None)))?;
            if !out_root.starts_with("s3://") {
                return Err(ConfigError::new(
                    "out_root",
                    format!(
                        "is `{out_root}`; --backend batch needs it on s3://, where \
                         executor containers read their specs and write their output"
                    ),
                )
                .at(Some(globals), None)
                .into());
            }
            let b = BatchBackend::connect(settings)
                .await
                .map_err(DriverError::Service)?;
            Ok(Backend::Batch(b))
        }
    }
}

/// Takes a run's leases, waiting as its options say; a run in the way
/// refuses the start (`Lease`), a store that cannot be read fails it
/// (`Storage`, worth retrying).
async fn take_leases(
    claims: &[Claim],
    opts: &LeaseOptions,
    progress: &Progress,
) -> Result<LeaseSet, DriverError> {
    lease::acquire(claims, opts, |holder| {
        progress.note(&format!(
            "waiting up to {} s: {holder}",
            opts.wait.as_secs()
        ))
    })
    .await
    .map_err(|e| {
        let message = format!("run `{}` cannot start: {e}", opts.run_id);
        match e {
            lease::LeaseError::Storage { .. } => DriverError::Storage(message),
            _ => DriverError::Lease(message),
        }
    })
}

/// Seconds a run's lease lives without a heartbeat (globals `lease_seconds`).
pub const DEFAULT_LEASE_SECONDS: u64 = 120;

/// How this project takes leases, for the run `run_id`.
pub fn lease_options(
    project: &Project,
    run_id: &str,
    wait: std::time::Duration,
) -> Result<LeaseOptions, ConfigError> {
    let ttl_seconds = project
        .global_u64("lease_seconds")?
        .unwrap_or(DEFAULT_LEASE_SECONDS);
    if ttl_seconds < 4 {
        return Err(project.globals_origin.locate(ConfigError::new(
            "lease_seconds",
            "must be at least 4: the heartbeat writes every quarter of it",
        )));
    }
    Ok(LeaseOptions {
        run_id: run_id.to_string(),
        purpose: "run".into(),
        ttl_seconds,
        wait,
        detached: false,
    })
}

/// The partitions a run may publish in each dataset it writes: the dates of
/// its window where the dataset is partitioned by `date`, else all.
pub fn claims(project: &Project, nodes: &[Node], dates: Option<&DateRange>) -> Vec<Claim> {
    let mut out: Vec<Claim> = vec![];
    for n in nodes {
        if out.iter().any(|c| c.dataset == n.output) {
            continue;
        }
        let ds = &project.catalog[&n.output];
        let by_date = n
            .layout
            .as_ref()
            .or(ds.layout.as_ref())
            .and_then(|l| l.partition_by.first())
            .map(|p| p.name() == "date")
            .unwrap_or_else(|| ds.partitions.first().is_some_and(|p| p.name == "date"));
        let scope = match dates {
            Some(d) if by_date => Scope::Dates {
                from: d.from.clone(),
                to: d.to.clone(),
            },
            _ => Scope::All,
        };
        out.push(Claim {
            dataset: n.output.clone(),
            path: ds.path.clone(),
            scope,
        });
    }
    out
}

/// The summary of a finished run, one row per node.
#[derive(Debug, Clone)]
pub struct NodeSummary {
    pub node: String,
    pub dataset: String,
    pub tasks: usize,
    pub partitions: usize,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
}

pub async fn run(
    project: &Project,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<Vec<NodeSummary>, DriverError> {
    let out_root = out_root(project)?;
    let continued;
    let opts = match opts.continue_attempt && !opts.resume {
        true => match previous::continued_options(project, &out_root, opts, progress).await? {
            Some(o) => {
                continued = o;
                &continued
            }
            None => return Ok(vec![]),
        },
        false => opts,
    };
    let resumed = match opts.resume {
        true => Some(previous::resumable_journal(&out_root, &opts.run_id).await?),
        false => None,
    };
    let resumed_opts;
    let opts = match &resumed {
        Some(j) => {
            resumed_opts = previous::resumed_options(opts, j)?;
            progress.note(&format!(
                "resuming run {}: nodes {}",
                j.run_id,
                resumed_opts.selection.nodes.join(", ")
            ));
            &resumed_opts
        }
        None => opts,
    };
    // Athena inputs are read from the run's own UNLOAD prefixes.
    let staged = crate::athena::unload::staged(project, &out_root, &opts.run_id);
    let project = &staged;
    let (nodes, shapes) = checked_nodes(project, opts).await?;
    let mut roots = vec![("out_root".to_string(), out_root.clone())];
    for n in &nodes {
        for ds in n.inputs.iter().chain(std::iter::once(&n.output)) {
            roots.push((format!("dataset `{ds}`"), project.catalog[ds].path.clone()));
        }
    }
    crate::bucket_check::check(&roots)
        .await
        .map_err(DriverError::Storage)?;
    let settings = settings(project, opts)?;
    let glue = crate::glue::prepare(project, &nodes, &shapes, opts.verify_athena).await?;
    let delta_targets = crate::delta::plan_targets(project, &nodes, &shapes).map_err(|e| {
        DriverError::Config(e.at(Some(project.conf_dir.join("base/catalog.yml")), None))
    })?;
    let sources = crate::athena::unload::prepare(project, &nodes, opts.dates.as_ref()).await?;
    let runs_root = journal::runs_root(&out_root);
    if resumed.is_none()
        && journal::load(&out_root, &opts.run_id)
            .await
            .map_err(DriverError::Storage)?
            .is_some()
    {
        return Err(ConfigError::new(
            "--run-id",
            format!("run `{}` exists already; pick a new run id", opts.run_id),
        )
        .into());
    }
    let pipeline = pick_pipeline(project, opts.pipeline.as_deref())?;
    let backend = connect_backend(project, opts, &out_root).await?;
    if let Backend::Ballista(c) = &backend {
        progress.note(&format!(
            "Ballista scheduler {} ({} partitions a distributed stage)",
            c.scheduler, c.partitions
        ));
    }
    // The partitions this run publishes are its own until it ends: no other
    // run publishes or recovers them meanwhile.
    let claims = match &resumed {
        Some(j) if !j.claims.is_empty() => j.claims.clone(),
        _ => claims(project, &nodes, opts.dates.as_ref()),
    };
    let lease_opts = lease_options(project, &opts.run_id, opts.wait)?;
    let leases = take_leases(&claims, &lease_opts, progress).await?;
    let resuming = resumed.as_ref().map(|j| j.run_id.as_str());
    let recovered = commit::recover(&out_root, &project.catalog, resuming, &lease_opts).await;
    let recovered = match recovered {
        Ok(notes) => notes,
        Err(e) => {
            leases.release().await;
            return Err(DriverError::Storage(e));
        }
    };
    for note in recovered {
        progress.note(&note);
    }
    // Recovery may have finished the resumed run's own recorded publish.
    let resumed = match resumed {
        Some(j) => match journal::load(&out_root, &j.run_id).await {
            Ok(again) => again.or(Some(j)),
            Err(e) => {
                leases.release().await;
                return Err(DriverError::Storage(e));
            }
        },
        None => None,
    };
    if let Some(g) = &glue {
        match crate::glue::finish_pending(&out_root, &g.registrar).await {
            Ok(notes) => notes.iter().for_each(|n| progress.note(n)),
            Err(e) => {
                leases.release().await;
                return Err(DriverError::Service(e));
            }
        }
    }
    let mut j = match resumed {
        Some(mut j) => {
            j.status = RunStatus::Running;
            j.error = None;
            j.resumable = false;
            j.finished_at = None;
            j
        }
        None => Journal::start(journal::RunStart {
            run_id: opts.run_id.clone(),
            pipeline: pipeline.name.clone(),
            nodes: nodes.iter().map(|n| n.name.clone()).collect(),
            outputs: nodes.iter().map(|n| n.output.clone()).collect(),
            dates: opts.dates.as_ref().map(|d| format!("{}..{}", d.from, d.to)),
            backend: opts.backend.name().to_string(),
            claims: claims.clone(),
        }),
    };
    if let Err(e) = journal::save(&out_root, &j).await {
        leases.release().await;
        return Err(DriverError::Storage(e));
    }
    let unloaded = match &sources {
        Some(s) => node::unload_sources(s, &out_root, progress, &mut j).await,
        None => Ok(()),
    };
    let result = match unloaded {
        Err(f) => Err(f),
        Ok(()) => {
            let runner = node::NodeRunner {
                project,
                opts,
                progress,
                settings: &settings,
                out_root: &out_root,
                runs_root: &runs_root,
                backend: &backend,
                leases: &leases,
                glue: glue.as_ref(),
                delta_targets: &delta_targets,
            };
            runner.run_all(&nodes, &shapes, &mut j).await
        }
    };
    j.finished_at = Some(journal::now_secs());
    let publish_cut = finish_cut_publish(&mut j, &result, &leases, progress).await;
    let result = match result {
        Ok(s) => {
            j.status = RunStatus::Succeeded;
            Ok(s)
        }
        Err(f) => {
            let message = f.to_string();
            j.status = RunStatus::Failed;
            j.error = Some(message.clone());
            j.resumable = f.resumable();
            Err(if let Some(cut) = &publish_cut {
                // Recorded as still running: recovery finishes the publish.
                j.status = RunStatus::Running;
                format!("{message}\n{cut}")
            } else if j.resumable {
                format!(
                    "{message}\nfinished tasks are kept: `chainbatch run --resume {}` continues \
                     the run (`chainbatch gc` removes them)",
                    j.run_id
                )
            } else {
                message
            })
        }
    };
    // A failed run published nothing it had not finished. Its staging goes,
    // unless a resume can reuse the tasks that finished.
    if result.is_err() && !j.resumable && publish_cut.is_none() {
        for n in &nodes {
            let ds = &project.catalog[&n.output];
            let _ = commit::remove_prefix(&crate::paths::run_staging(ds, &j.run_id)).await;
        }
    }
    // Athena inputs unloaded for this run go with it (a resume reuses them).
    if sources.is_some() && (result.is_ok() || !j.resumable) {
        let root = crate::paths::run_athena(&out_root, &j.run_id);
        let _ = commit::remove_prefix(&root).await;
    }
    backend.shutdown().await;
    let saved = journal::save(&out_root, &j).await;
    // Released once the journal says how the run ended (or, for a publish
    // cut short, that recovery is to finish it); if the save failed the
    // lease expires and a later run recovers this one.
    if saved.is_ok() {
        leases.release().await;
    }
    match (result, saved) {
        (Ok(s), Ok(())) => Ok(s),
        (Ok(_), Err(e)) => Err(DriverError::Storage(e)),
        (Err(e), Ok(())) => Err(DriverError::Failed(e)),
        // The run's own error matters more; the journal still says Running,
        // which `--resume` accepts.
        (Err(e), Err(save)) => Err(DriverError::Failed(format!(
            "{e}\n(the journal could not record the failure: {save})"
        ))),
    }
}

/// A failed run may have stopped in the middle of a recorded publish (its
/// storage went away while it moved files). The publish is finished now if
/// the storage is back; if not, returns what the user is told: the run's
/// journal then stays `running`, and the next run over these partitions,
/// `gc` or `--resume` finishes the publish from its durable plan.
async fn finish_cut_publish<T>(
    j: &mut Journal,
    result: &Result<T, DriverError>,
    leases: &LeaseSet,
    progress: &Progress,
) -> Option<String> {
    let cut: Vec<String> = j
        .commits
        .iter()
        .filter(|c| c.state == journal::CommitState::Publishing)
        .map(|c| format!("`{}`", c.node))
        .collect();
    if result.is_ok() || cut.is_empty() {
        return None;
    }
    // Another run holds these partitions now: recovery decides, not us.
    if leases.lost() {
        return Some(format!(
            "the publish of {} stopped half-way and this run's lease was taken over; the run \
             holding the partitions finishes it",
            cut.join(", ")
        ));
    }
    match commit::roll_forward(j).await {
        Ok(_) => {
            progress.note(&format!(
                "finished the interrupted publish of {}",
                cut.join(", ")
            ));
            None
        }
        Err(e) => Some(format!(
            "the publish of {} stopped half-way ({e}); its plan is recorded, and the next \
             run over these partitions, `chainbatch gc` or `chainbatch run --resume {}` \
             finishes it",
            cut.join(", "),
            j.run_id
        )),
    }
}
