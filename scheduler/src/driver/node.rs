//! One node of a run: plan it against what is there now, check its input,
//! run the stages it has left (a resume reuses tasks planned alike), and
//! commit its output through the journal, then register it in Glue.

use super::{NodeSummary, RunOptions};
use crate::backend::{Backend, StageRun};
use crate::commit::journal::{self, Journal, StageRecord};
use crate::commit::lease::{LeaseSet, Scope};
use crate::commit::{self, crash_point};
use crate::conf::project::Project;
use crate::error::DriverError;
use crate::pipeline::Node;
use crate::pipeline::validate::SqlShape;
use crate::plan::{NodePlan, PlanSettings, plan_node};
use crate::progress::Progress;
use chainbatch_executor::{TaskManifest, TaskSpec};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// What every node of a run shares: the project, the options, where the run
/// keeps its state, the backend, the leases, and the catalogs to update.
pub(super) struct NodeRunner<'a> {
    pub project: &'a Project,
    pub opts: &'a RunOptions,
    pub progress: &'a Progress,
    pub settings: &'a PlanSettings,
    pub out_root: &'a str,
    pub runs_root: &'a str,
    pub backend: &'a Backend,
    pub leases: &'a LeaseSet,
    pub glue: Option<&'a crate::glue::GlueRun>,
    pub delta_targets: &'a HashMap<String, crate::delta::commit::DeltaTarget>,
}

/// The stages of a node that have tasks to run, and for each stage of its
/// plan the finished tasks a resume reuses (`None` where a task runs).
pub(super) struct StageWork {
    pub runs: Vec<StageRun>,
    reused: Vec<Vec<Option<TaskManifest>>>,
}

/// A node planned, its stage specs written, before its stages run.
pub(super) struct PlannedStages {
    pub plan: NodePlan,
    pub work: StageWork,
    /// When its inputs were listed (the ledger's staleness check).
    pub inputs_listed_at: u64,
}

/// The first stage id after every node the journal planned.
pub(super) fn next_stage(j: &Journal) -> u32 {
    j.planned
        .iter()
        .map(|p| p.first_stage + p.stages)
        .max()
        .unwrap_or(0)
}

/// How the ledger finds the input of each partition a plan writes.
pub(super) fn input_scope(plan: &NodePlan) -> crate::ledger::InputScope {
    use crate::ledger::InputScope;
    match plan.stages.len() {
        _ if plan.expected_output_partitions.is_some() && !plan.output_partition_by.is_empty() => {
            InputScope::SamePartition
        }
        1 => InputScope::Tasks,
        _ => InputScope::Whole,
    }
}

impl NodeRunner<'_> {
    /// Runs and commits `nodes` in order; each is planned after the nodes
    /// it reads from have committed.
    pub async fn run_all(
        &self,
        nodes: &[Node],
        shapes: &HashMap<String, SqlShape>,
        j: &mut Journal,
    ) -> Result<Vec<NodeSummary>, DriverError> {
        let mut next_stage = next_stage(j);
        let mut summaries = vec![];
        for node in nodes {
            let started = Instant::now();
            let planned = self
                .plan_stages(node, &shapes[&node.name], &mut next_stage, j)
                .await?;
            summaries.push(self.run_planned(node, planned, started, j).await?);
        }
        Ok(summaries)
    }

    /// Plans a node against what is there now (after the nodes it reads
    /// from have committed), checks its input, records it in the journal
    /// and writes the specs of the stages it has left to run.
    pub(super) async fn plan_stages(
        &self,
        node: &Node,
        shape: &SqlShape,
        next_stage: &mut u32,
        j: &mut Journal,
    ) -> Result<PlannedStages, DriverError> {
        // A node planned before (by the run being resumed) keeps its ids.
        let recorded = j.planned.iter().find(|p| p.node == node.name).cloned();
        let first_stage = recorded.as_ref().map_or(*next_stage, |p| p.first_stage);
        let inputs_listed_at = journal::now_secs();
        // Only listing the input can fail here.
        let plan = plan_node(
            node,
            shape,
            &self.project.catalog,
            self.settings,
            first_stage,
        )
        .await
        .map_err(|e| DriverError::Storage(format!("node `{}`: {e}", node.name)))?;
        self.check_input(node, &plan, j).await?;
        if recorded.is_none() {
            j.planned.push(journal::PlannedNode {
                node: node.name.clone(),
                first_stage,
                stages: plan.stages.len() as u32,
            });
            self.save(j).await?;
        }
        *next_stage = (*next_stage).max(first_stage + plan.stages.len() as u32);
        let work = self.stage_work(node, &plan).await?;
        Ok(PlannedStages {
            plan,
            work,
            inputs_listed_at,
        })
    }

    /// Runs a planned node's stages on the backend and commits its output.
    pub(super) async fn run_planned(
        &self,
        node: &Node,
        planned: PlannedStages,
        started: Instant,
        j: &mut Journal,
    ) -> Result<NodeSummary, DriverError> {
        let PlannedStages {
            plan,
            work,
            inputs_listed_at,
        } = planned;
        let outcomes = self
            .backend
            .run_stages(&work.runs, self.progress)
            .await
            .map_err(|f| DriverError::Task {
                node: node.name.clone(),
                message: f.to_string(),
                retryable: f.retryable,
            })?;
        // Each stage's manifests in task order: reused ones and new ones.
        let mut ran = work.runs.iter().zip(&outcomes);
        let mut manifests = vec![];
        for (stage, found) in plan.stages.iter().zip(work.reused) {
            let mut seconds = 0.0;
            let mut fresh: HashMap<u32, TaskManifest> = HashMap::new();
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
                    DriverError::Output(format!(
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
        self.save(j).await?;
        crash_point("after_tasks");
        let first_specs = plan.stages.first().map_or(&[][..], |s| &s.specs);
        let mut summary = self
            .commit_node(
                node,
                first_specs,
                input_scope(&plan),
                &manifests,
                inputs_listed_at,
                j,
            )
            .await?;
        summary.tasks = plan.stages.iter().map(|s| s.specs.len()).sum();
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    async fn save(&self, j: &Journal) -> Result<(), DriverError> {
        journal::save(self.out_root, j)
            .await
            .map_err(DriverError::Storage)
    }

    /// Nothing to read is a mistake worth stopping for (a wrong window or
    /// root), not an empty success that replaces nothing; incomplete days
    /// stop the node unless `--allow-incomplete`, which notes them.
    async fn check_input(
        &self,
        node: &Node,
        plan: &NodePlan,
        j: &mut Journal,
    ) -> Result<(), DriverError> {
        if let Some(why) = plan.empty_inputs.first() {
            return Err(DriverError::Input(format!("node `{}`: {why}", node.name)));
        }
        let incomplete = crate::completeness::check_node(plan, &self.project.catalog)
            .await
            .map_err(DriverError::Storage)?;
        if incomplete.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = incomplete.iter().map(|i| format!("  {i}")).collect();
        if !self.opts.allow_incomplete {
            return Err(DriverError::Input(format!(
                "node `{}`: its input is incomplete, so nothing of it was run or \
                 published:\n{}\nrerun once the data is delivered (the public eth \
                 dataset completes a day around 01:45 UTC the next morning), or pass \
                 --allow-incomplete to publish it anyway",
                node.name,
                list.join("\n")
            )));
        }
        self.progress.note(&format!(
            "node `{}`: publishing incomplete input as asked (--allow-incomplete):\n{}",
            node.name,
            list.join("\n")
        ));
        j.incomplete
            .extend(incomplete.iter().map(|i| format!("{}: {i}", node.name)));
        Ok(())
    }

    /// Writes every stage's specs before the first runs, so a backend can
    /// hand the whole chain to its scheduler at once. A resumed run runs
    /// only the tasks with no finished attempt of the same work.
    async fn stage_work(&self, node: &Node, plan: &NodePlan) -> Result<StageWork, DriverError> {
        let (opts, progress) = (self.opts, self.progress);
        let mut work = StageWork {
            runs: vec![],
            reused: vec![],
        };
        // Once a stage runs a task again, the stages after it read its new
        // output: none of their finished tasks can be reused.
        let mut upstream_reran = false;
        for stage in &plan.stages {
            let found = match opts.resume && !upstream_reran {
                true => {
                    self.finished_alike(node, stage.stage_id, &stage.specs)
                        .await?
                }
                false => vec![None; stage.specs.len()],
            };
            if opts.resume {
                // A task run again starts from an empty folder: an older
                // attempt of other work must not be read as its output.
                for (spec, f) in stage.specs.iter().zip(&found) {
                    if f.is_none() {
                        commit::remove_prefix(&spec.task_dir())
                            .await
                            .map_err(DriverError::Storage)?;
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
                let name = match reused {
                    0 => stage.stage_id.to_string(),
                    _ => format!("{}-resume", stage.stage_id),
                };
                let spec_uri = self.write_stage_specs(&name, &todo).await?;
                work.runs.push(StageRun {
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
            work.reused.push(found);
        }
        Ok(work)
    }

    /// The finished tasks of the resumed run that did the same work as
    /// these specs (same input files, SQL and output), by task.
    async fn finished_alike(
        &self,
        node: &Node,
        stage_id: u32,
        specs: &[TaskSpec],
    ) -> Result<Vec<Option<TaskManifest>>, DriverError> {
        use crate::backend::resume;
        let recorded = resume::recorded_specs(self.runs_root, &self.opts.run_id, stage_id)
            .await
            .map_err(DriverError::Storage)?;
        let changed = specs
            .iter()
            .filter(|s| {
                !recorded
                    .get(&s.task_index)
                    .is_some_and(|r| resume::same_work(r, s))
            })
            .count();
        if changed > 0 {
            self.progress.note(&format!(
                "{} stage {stage_id}: {changed} task(s) are planned differently than \
                 before the failure (configuration or input changed); those \
                 whose work differs run again",
                node.name
            ));
        }
        resume::finished_tasks(specs, &recorded)
            .await
            .map_err(DriverError::Storage)
    }

    /// Writes a stage's task specs where backends and resumes read them.
    async fn write_stage_specs(
        &self,
        name: &str,
        specs: &[TaskSpec],
    ) -> Result<String, DriverError> {
        let uri = format!("{}/{}/stage-{name}.json", self.runs_root, self.opts.run_id);
        crate::json_object::put(&uri, &specs, "stage specs")
            .await
            .map_err(DriverError::Storage)?;
        Ok(uri)
    }

    /// Plans the node's commit from its last stage's manifests, records its
    /// ledger and Glue registration in the plan, publishes it while the run
    /// holds the partitions, and removes the node's staging.
    pub(super) async fn commit_node(
        &self,
        node: &Node,
        first_specs: &[TaskSpec],
        input_scope: crate::ledger::InputScope,
        manifests: &[TaskManifest],
        inputs_listed_at: u64,
        j: &mut Journal,
    ) -> Result<NodeSummary, DriverError> {
        let (project, opts, out_root) = (self.project, self.opts, self.out_root);
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
            manifests,
            self.delta_targets.get(&ds.name),
        )
        .await
        .map_err(DriverError::Storage)?;
        let made = crate::ledger::Provenance {
            node,
            run_id: &opts.run_id,
            config_hash: crate::ledger::config_hash(node, &project.catalog),
            inputs_listed_at,
        };
        record.ledger = crate::ledger::records(&made, ds, first_specs, input_scope, manifests);
        record.registration =
            self.glue
                .and_then(|g| g.tables.get(&ds.name))
                .map(|t| journal::Registration {
                    table: t.clone(),
                    done: false,
                });
        check_lease(self.leases, &node.name, &record)?;
        let summary = NodeSummary {
            node: node.name.clone(),
            dataset: ds.name.clone(),
            tasks: 0,
            partitions: record.partitions.len(),
            files: record.publish.len(),
            rows: record.rows,
            bytes: record.bytes,
            seconds: 0.0,
        };
        commit::commit(out_root, j, record)
            .await
            .map_err(DriverError::Storage)?;
        for prefix in [
            trash,
            crate::paths::run_staging(ds, &opts.run_id),
            crate::paths::run_shuffle(&ds.path, &opts.run_id),
        ] {
            commit::remove_prefix(&prefix)
                .await
                .map_err(DriverError::Storage)?;
        }
        if let Some(g) = self.glue {
            register_and_verify(g, out_root, node, manifests, self.progress, j).await?;
        }
        Ok(summary)
    }
}

/// UNLOADs the run's Athena inputs, recording each finished one in the
/// journal so that `--resume` does not query it again.
pub(super) async fn unload_sources(
    s: &crate::athena::unload::Sources,
    out_root: &str,
    progress: &Progress,
    j: &mut Journal,
) -> Result<(), DriverError> {
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
    .map_err(|e| DriverError::Service(e.to_string()))?;
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
) -> Result<(), DriverError> {
    let idx = j.commits.len() - 1;
    let committed = |e: String| {
        DriverError::Service(format!(
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
    journal::save(out_root, j)
        .await
        .map_err(DriverError::Storage)?;
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
        return Err(DriverError::Output(format!(
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
) -> Result<(), DriverError> {
    if leases.lost() {
        return Err(DriverError::Lease(format!(
            "node `{node}`: this run's lease was taken over by another run (its heartbeat \
             stopped for longer than `lease_seconds`); nothing of the node was published"
        )));
    }
    let scope = leases.scope_of(&record.dataset).unwrap_or(&Scope::All);
    if let Some(p) = record.partitions.iter().find(|p| !scope.covers(p)) {
        return Err(DriverError::Output(format!(
            "node `{node}` wrote partition `{p}` of dataset `{}`, outside the {scope} this \
             run holds; nothing of the node was published (its SQL moves rows out of the \
             --dates window: widen the window or run without --dates)",
            record.dataset
        )));
    }
    Ok(())
}
