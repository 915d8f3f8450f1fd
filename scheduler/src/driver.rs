//! The driver: select, validate, plan, run each stage on a backend, commit
//! each node's output, and journal every step.

use crate::backend::ballista::{Cluster, EmbeddedOptions};
use crate::backend::batch::{BatchBackend, BatchSettings};
use crate::backend::{Backend, BackendKind, StageRun};
use crate::commit::journal::{self, Journal, RunStatus, StageRecord};
use crate::commit::lease::{self, Claim, LeaseOptions, LeaseSet, Scope};
use crate::commit::{self, crash_point};
use crate::conf::error::ConfigError;
use crate::conf::project::Project;
use crate::pipeline::validate::validate_nodes;
use crate::pipeline::{Node, Selection};
use crate::plan::dates::DateRange;
use crate::plan::{DEFAULT_TASK_BYTES, NodePlan, PlanSettings, infer_schema, plan_node};
use crate::progress::Progress;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

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

/// Why a command failed: the config (exit 2) or the run (exit 1).
#[derive(Debug)]
pub enum DriverError {
    Config(ConfigError),
    Run(String),
}

impl From<ConfigError> for DriverError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::Run(e) => write!(f, "{e}"),
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
            .map_err(DriverError::Run)?;
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
                    .map_err(|e| DriverError::Run(format!("node `{}`: {e}", p.node)))?,
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
            .map_err(|e| DriverError::Run(e.to_string()))?;
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
                .map_err(DriverError::Run)?;
            Ok(Backend::Batch(b))
        }
    }
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

/// Why a run failed, and whether resuming it can finish it.
#[derive(Debug)]
struct RunFailure {
    message: String,
    resumable: bool,
}

impl RunFailure {
    /// A failure a rerun of the same tasks does not fix.
    fn final_(message: String) -> Self {
        Self {
            message,
            resumable: false,
        }
    }
}

/// Storage and commit errors of the driver itself: worth resuming.
impl From<String> for RunFailure {
    fn from(message: String) -> Self {
        Self {
            message,
            resumable: true,
        }
    }
}

async fn write_stage_specs(
    runs_root: &str,
    run_id: &str,
    stage_id: impl std::fmt::Display,
    specs: &[chainbatch_executor::TaskSpec],
) -> Result<String, String> {
    let uri = format!("{runs_root}/{run_id}/stage-{stage_id}.json");
    crate::json_object::put(&uri, &specs, "stage specs").await?;
    Ok(uri)
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
    let runs = journal::list(&out_root).await.map_err(DriverError::Run)?;
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
async fn resumable_journal(out_root: &str, run_id: &str) -> Result<Journal, DriverError> {
    let j = journal::load(out_root, run_id)
        .await
        .map_err(DriverError::Run)?
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
async fn continued_options(
    project: &Project,
    out_root: &str,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<Option<RunOptions>, DriverError> {
    let earlier = journal::load(out_root, &opts.run_id)
        .await
        .map_err(DriverError::Run)?;
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
fn resumed_options(opts: &RunOptions, j: &Journal) -> Result<RunOptions, DriverError> {
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
        .map_err(|e| DriverError::Run(format!("journal of `{}`: dates: {e}", j.run_id)))?;
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

pub async fn run(
    project: &Project,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<Vec<NodeSummary>, DriverError> {
    let out_root = out_root(project)?;
    let continued;
    let opts = match opts.continue_attempt && !opts.resume {
        true => match continued_options(project, &out_root, opts, progress).await? {
            Some(o) => {
                continued = o;
                &continued
            }
            None => return Ok(vec![]),
        },
        false => opts,
    };
    let resumed = match opts.resume {
        true => Some(resumable_journal(&out_root, &opts.run_id).await?),
        false => None,
    };
    let resumed_opts;
    let opts = match &resumed {
        Some(j) => {
            resumed_opts = resumed_options(opts, j)?;
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
        .map_err(DriverError::Run)?;
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
            .map_err(DriverError::Run)?
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
    let leases = lease::acquire(&claims, &lease_opts, |holder| {
        progress.note(&format!(
            "waiting up to {} s: {holder}",
            opts.wait.as_secs()
        ))
    })
    .await
    .map_err(|e| DriverError::Run(format!("run `{}` cannot start: {e}", opts.run_id)))?;
    let resuming = resumed.as_ref().map(|j| j.run_id.as_str());
    let recovered = commit::recover(&out_root, &project.catalog, resuming, &lease_opts).await;
    let recovered = match recovered {
        Ok(notes) => notes,
        Err(e) => {
            leases.release().await;
            return Err(DriverError::Run(e));
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
                return Err(DriverError::Run(e));
            }
        },
        None => None,
    };
    if let Some(g) = &glue {
        match crate::glue::finish_pending(&out_root, &g.registrar).await {
            Ok(notes) => notes.iter().for_each(|n| progress.note(n)),
            Err(e) => {
                leases.release().await;
                return Err(DriverError::Run(e));
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
        None => Journal {
            run_id: opts.run_id.clone(),
            pipeline: pipeline.name.clone(),
            nodes: nodes.iter().map(|n| n.name.clone()).collect(),
            outputs: nodes.iter().map(|n| n.output.clone()).collect(),
            dates: opts.dates.as_ref().map(|d| format!("{}..{}", d.from, d.to)),
            backend: opts.backend.name().to_string(),
            status: RunStatus::Running,
            started_at: journal::now_secs(),
            finished_at: None,
            stages: vec![],
            commits: vec![],
            error: None,
            resumable: false,
            planned: vec![],
            claims: claims.clone(),
            incomplete: vec![],
            unloads: vec![],
        },
    };
    if let Err(e) = journal::save(&out_root, &j).await {
        leases.release().await;
        return Err(DriverError::Run(e));
    }
    let unloaded = match &sources {
        Some(s) => unload_sources(s, &out_root, progress, &mut j).await,
        None => Ok(()),
    };
    let result = match unloaded {
        Err(f) => Err(f),
        Ok(()) => {
            run_nodes(
                project,
                opts,
                progress,
                &nodes,
                &shapes,
                &settings,
                &out_root,
                &runs_root,
                &backend,
                &leases,
                glue.as_ref(),
                &delta_targets,
                &mut j,
            )
            .await
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
            j.status = RunStatus::Failed;
            j.error = Some(f.message.clone());
            j.resumable = f.resumable;
            Err(if let Some(cut) = &publish_cut {
                // Recorded as still running: recovery finishes the publish.
                j.status = RunStatus::Running;
                format!("{}\n{cut}", f.message)
            } else if f.resumable {
                format!(
                    "{}\nfinished tasks are kept: `chainbatch run --resume {}` continues the run \
                     (`chainbatch gc` removes them)",
                    f.message, j.run_id
                )
            } else {
                f.message
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
        (Ok(_), Err(e)) => Err(DriverError::Run(e)),
        (Err(e), Ok(())) => Err(DriverError::Run(e)),
        // The run's own error matters more; the journal still says Running,
        // which `--resume` accepts.
        (Err(e), Err(save)) => Err(DriverError::Run(format!(
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
    result: &Result<T, RunFailure>,
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

#[allow(clippy::too_many_arguments)]
async fn run_nodes(
    project: &Project,
    opts: &RunOptions,
    progress: &Progress,
    nodes: &[Node],
    shapes: &HashMap<String, crate::pipeline::validate::SqlShape>,
    settings: &PlanSettings,
    out_root: &str,
    runs_root: &str,
    backend: &Backend,
    leases: &LeaseSet,
    glue: Option<&crate::glue::GlueRun>,
    delta_targets: &HashMap<String, crate::delta::commit::DeltaTarget>,
    j: &mut Journal,
) -> Result<Vec<NodeSummary>, RunFailure> {
    let mut summaries = vec![];
    let mut next_stage = j
        .planned
        .iter()
        .map(|p| p.first_stage + p.stages)
        .max()
        .unwrap_or(0);
    for node in nodes {
        let started = Instant::now();
        // A node planned before (by the run being resumed) keeps its ids.
        let recorded = j.planned.iter().find(|p| p.node == node.name).cloned();
        let first_stage = recorded.as_ref().map_or(next_stage, |p| p.first_stage);
        let inputs_listed_at = journal::now_secs();
        // Planned now, after the nodes it reads from have committed.
        let plan = plan_node(
            node,
            &shapes[&node.name],
            &project.catalog,
            settings,
            first_stage,
        )
        .await?;
        // Nothing to read is a mistake worth stopping for (a wrong window or
        // root), not an empty success that replaces nothing.
        if let Some(why) = plan.empty_inputs.first() {
            return Err(RunFailure::final_(format!("node `{}`: {why}", node.name)));
        }
        let incomplete = crate::completeness::check_node(&plan, &project.catalog).await?;
        if !incomplete.is_empty() {
            let list: Vec<String> = incomplete.iter().map(|i| format!("  {i}")).collect();
            if !opts.allow_incomplete {
                return Err(RunFailure::final_(format!(
                    "node `{}`: its input is incomplete, so nothing of it was run or \
                     published:\n{}\nrerun once the data is delivered (the public eth \
                     dataset completes a day around 01:45 UTC the next morning), or pass \
                     --allow-incomplete to publish it anyway",
                    node.name,
                    list.join("\n")
                )));
            }
            progress.note(&format!(
                "node `{}`: publishing incomplete input as asked (--allow-incomplete):\n{}",
                node.name,
                list.join("\n")
            ));
            j.incomplete
                .extend(incomplete.iter().map(|i| format!("{}: {i}", node.name)));
        }
        if recorded.is_none() {
            j.planned.push(journal::PlannedNode {
                node: node.name.clone(),
                first_stage,
                stages: plan.stages.len() as u32,
            });
            journal::save(out_root, j).await?;
        }
        next_stage = next_stage.max(first_stage + plan.stages.len() as u32);
        // Every stage's specs are written before the first runs, so a backend
        // can hand the whole chain to its scheduler at once. A resumed run
        // runs only the tasks that have no finished attempt.
        let mut runs = vec![];
        let mut found_by_stage = vec![];
        // Once a stage runs a task again, the stages after it read its new
        // output: none of their finished tasks can be reused.
        let mut upstream_reran = false;
        for stage in &plan.stages {
            let found = match opts.resume && !upstream_reran {
                true => {
                    let recorded = crate::backend::resume::recorded_specs(
                        runs_root,
                        &opts.run_id,
                        stage.stage_id,
                    )
                    .await?;
                    let changed = stage
                        .specs
                        .iter()
                        .filter(|s| {
                            !recorded
                                .get(&s.task_index)
                                .is_some_and(|r| crate::backend::resume::same_work(r, s))
                        })
                        .count();
                    if changed > 0 {
                        progress.note(&format!(
                            "{} stage {}: {changed} task(s) are planned differently than \
                             before the failure (configuration or input changed); those \
                             whose work differs run again",
                            node.name, stage.stage_id
                        ));
                    }
                    crate::backend::resume::finished_tasks(&stage.specs, &recorded).await?
                }
                false => vec![None; stage.specs.len()],
            };
            if opts.resume {
                // A task run again starts from an empty folder: an older
                // attempt of other work must not be read as its output.
                for (spec, f) in stage.specs.iter().zip(&found) {
                    if f.is_none() {
                        commit::remove_prefix(&spec.task_dir()).await?;
                    }
                }
            }
            upstream_reran |= found.iter().any(Option::is_none);
            let todo: Vec<_> = stage
                .specs
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(s, _)| s.clone())
                .collect();
            let reused = stage.specs.len() - todo.len();
            if reused > 0 {
                progress.note(&format!(
                    "{} stage {}: reusing {reused} task(s) finished before the run failed",
                    node.name, stage.stage_id
                ));
            }
            if !todo.is_empty() {
                let spec_uri = match reused {
                    0 => write_stage_specs(runs_root, &opts.run_id, stage.stage_id, &todo).await?,
                    _ => {
                        let name = format!("{}-resume", stage.stage_id);
                        write_stage_specs(runs_root, &opts.run_id, &name, &todo).await?
                    }
                };
                runs.push(StageRun {
                    node: node.name.clone(),
                    stage_id: stage.stage_id,
                    kind: stage.kind.to_string(),
                    input_bytes: stage.input_bytes,
                    spec_uri,
                    specs: todo,
                    parallelism: opts.parallelism,
                    max_attempts: opts.max_attempts,
                });
            }
            found_by_stage.push(found);
        }
        let outcomes = backend
            .run_stages(&runs, progress)
            .await
            .map_err(|f| RunFailure {
                message: format!("node `{}`: {f}", node.name),
                resumable: f.retryable,
            })?;
        // Each stage's manifests in task order: reused ones and new ones.
        let mut ran = runs.iter().zip(&outcomes);
        let mut manifests = vec![];
        for (stage, found) in plan.stages.iter().zip(found_by_stage) {
            let mut seconds = 0.0;
            let mut fresh: HashMap<u32, chainbatch_executor::TaskManifest> = HashMap::new();
            if found.iter().any(Option::is_none) {
                let (_, outcome) = ran.next().expect("a run per stage with work");
                seconds = outcome.seconds;
                fresh = outcome
                    .manifests
                    .iter()
                    .map(|m| (m.task_index, m.clone()))
                    .collect();
            }
            manifests = stage
                .specs
                .iter()
                .zip(found)
                .map(|(s, f)| f.or_else(|| fresh.remove(&s.task_index)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    RunFailure::final_(format!(
                        "node `{}` stage {}: a task returned no manifest",
                        node.name, stage.stage_id
                    ))
                })?;
            j.stages.push(StageRecord {
                node: node.name.clone(),
                stage_id: stage.stage_id,
                kind: stage.kind.to_string(),
                tasks: stage.specs.len(),
                rows: manifests.iter().map(|m| m.rows).sum(),
                bytes: manifests.iter().map(|m| m.bytes).sum(),
                seconds,
            });
        }
        journal::save(out_root, j).await?;
        let tasks = plan.stages.iter().map(|s| s.specs.len()).sum();
        crash_point("after_tasks");
        let ds = &project.catalog[&node.output];
        let trash = format!(
            "{}/{}",
            crate::paths::run_trash(out_root, &opts.run_id),
            node.name
        );
        let mut record = commit::plan_commit(
            &node.name,
            ds,
            &opts.run_id,
            &trash,
            &manifests,
            delta_targets.get(&ds.name),
        )
        .await?;
        let made = crate::ledger::Provenance {
            node,
            run_id: &opts.run_id,
            config_hash: crate::ledger::config_hash(node, &project.catalog),
            inputs_listed_at,
        };
        record.ledger = crate::ledger::records(
            &made,
            ds,
            plan.stages.first().map_or(&[][..], |s| &s.specs),
            match plan.stages.len() {
                _ if plan.expected_output_partitions.is_some()
                    && !plan.output_partition_by.is_empty() =>
                {
                    crate::ledger::InputScope::SamePartition
                }
                1 => crate::ledger::InputScope::Tasks,
                _ => crate::ledger::InputScope::Whole,
            },
            &manifests,
        );
        record.registration =
            glue.and_then(|g| g.tables.get(&ds.name))
                .map(|t| journal::Registration {
                    table: t.clone(),
                    done: false,
                });
        check_lease(leases, &node.name, &record)?;
        let (rows, bytes, partitions, files) = (
            record.rows,
            record.bytes,
            record.partitions.len(),
            record.publish.len(),
        );
        commit::commit(out_root, j, record).await?;
        commit::remove_prefix(&trash).await?;
        commit::remove_prefix(&crate::paths::run_staging(ds, &opts.run_id)).await?;
        commit::remove_prefix(&crate::paths::run_shuffle(&ds.path, &opts.run_id)).await?;
        if let Some(g) = glue {
            register_and_verify(g, out_root, node, &manifests, progress, j).await?;
        }
        summaries.push(NodeSummary {
            node: node.name.clone(),
            dataset: ds.name.clone(),
            tasks,
            partitions,
            files,
            rows,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(summaries)
}

/// UNLOADs the run's Athena inputs, recording each finished one in the
/// journal so that `--resume` does not query it again.
async fn unload_sources(
    s: &crate::athena::unload::Sources,
    out_root: &str,
    progress: &Progress,
    j: &mut Journal,
) -> Result<(), RunFailure> {
    let done = j.unloads.clone();
    crate::athena::unload::run_unloads(
        &s.athena,
        &s.unloads,
        &done,
        &s.default_database,
        async |u, scanned| {
            progress.note(&format!(
                "Athena: unloaded dataset `{}` to {} ({} scanned)",
                u.dataset,
                u.target,
                crate::progress::human_bytes(scanned)
            ));
            j.unloads.push(u.target.clone());
            journal::save(out_root, j).await
        },
    )
    .await
    .map_err(|e| RunFailure::final_(e.to_string()))?;
    if !done.is_empty() {
        progress.note(&format!(
            "Athena: {} UNLOAD(s) of the resumed run reused",
            done.len()
        ));
    }
    Ok(())
}

/// Registers a node's commit in Glue (the last commit of `j`), records that
/// in the journal, and with `--verify-athena` compares Athena's row counts
/// with the manifests'. The data is committed either way: a failure here
/// says so, and a pending registration is finished by the next run or `gc`.
async fn register_and_verify(
    g: &crate::glue::GlueRun,
    out_root: &str,
    node: &Node,
    manifests: &[chainbatch_executor::TaskManifest],
    progress: &Progress,
    j: &mut Journal,
) -> Result<(), RunFailure> {
    let idx = j.commits.len() - 1;
    let committed = |e: String| {
        RunFailure::final_(format!(
            "node `{}` is committed, but {e}; the next run or `chainbatch gc` finishes its \
             Glue registration",
            node.name
        ))
    };
    crash_point("before_register");
    let Some(done) = crate::glue::register_commit(&g.registrar, &j.commits[idx])
        .await
        .map_err(|e| committed(e.to_string()))?
    else {
        return Ok(());
    };
    let reg = j.commits[idx].registration.as_mut().expect("registered");
    reg.done = true;
    let table = reg.table.clone();
    progress.note(&format!("{}: {}", node.name, done.describe(&table)));
    journal::save(out_root, j).await?;
    let Some(athena) = &g.athena else {
        return Ok(());
    };
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for p in manifests.iter().flat_map(|m| &m.partitions) {
        *expected
            .entry(p.path.trim_matches('/').to_string())
            .or_default() += p.rows;
    }
    let partitions: Vec<String> = expected.keys().cloned().collect();
    let counts = athena
        .count_rows(&table, &partitions)
        .await
        .map_err(|e| committed(format!("--verify-athena failed: {e}")))?;
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(p, n)| counts.rows.get(*p).copied().unwrap_or(0) != **n)
        .map(|(p, n)| {
            format!(
                "  {}: Athena counts {} row(s), the commit has {n}",
                if p.is_empty() { "(table)" } else { p },
                counts.rows.get(p).copied().unwrap_or(0)
            )
        })
        .collect();
    if !wrong.is_empty() {
        return Err(RunFailure::final_(format!(
            "node `{}` is committed, but Athena reads other row counts from {}:\n{}",
            node.name,
            table.name(),
            wrong.join("\n")
        )));
    }
    progress.note(&format!(
        "{}: Athena counts the same rows in {} partition(s) of {} ({} query(ies), {} scanned)",
        node.name,
        expected.len(),
        table.name(),
        counts.queries,
        crate::progress::human_bytes(counts.bytes_scanned)
    ));
    Ok(())
}

/// A node publishes only while its run still holds the dataset's lease, and
/// only partitions the lease covers.
fn check_lease(
    leases: &LeaseSet,
    node: &str,
    record: &journal::CommitRecord,
) -> Result<(), RunFailure> {
    if leases.lost() {
        return Err(RunFailure::final_(format!(
            "node `{node}`: this run's lease was taken over by another run (its heartbeat \
             stopped for longer than `lease_seconds`); nothing of the node was published"
        )));
    }
    let scope = leases.scope_of(&record.dataset).unwrap_or(&Scope::All);
    if let Some(p) = record.partitions.iter().find(|p| !scope.covers(p)) {
        return Err(RunFailure::final_(format!(
            "node `{node}` wrote partition `{p}` of dataset `{}`, outside the {scope} this \
             run holds; nothing of the node was published (its SQL moves rows out of the \
             --dates window: widen the window or run without --dates)",
            record.dataset
        )));
    }
    Ok(())
}
