//! Writes one node's output in each layout, in-process with the local
//! backend, measuring time, CPU and peak memory; then runs the query suite
//! against every layout and picks the one that serves it best.

use crate::backend::BackendKind;
use crate::bench::cost;
use crate::bench::measure::{Meter, Usage};
use crate::bench::queries::{self, QueryResult};
use crate::bench::written::{self, Written};
use crate::catalog::parse_layout;
use crate::conf::error::ConfigError;
use crate::conf::project::Project;
use crate::driver::{self, RunOptions};
use crate::error::DriverError;
use crate::pipeline::Selection;
use crate::progress::Progress;
use chainbatch_executor::schema::ColumnSpec;
use serde::Serialize;
use serde_norway::Value;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Source {
    /// `chainbatch gen` data: rows over days from a start date.
    Generate {
        rows: u64,
        days: u32,
        start: String,
        seed: u64,
    },
    /// An existing raw root holding `transactions/date=.../`.
    Input(String),
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub layouts: Vec<String>,
    pub queries: Option<PathBuf>,
    pub source: Source,
    pub runs: usize,
    /// Where inputs, outputs and the reports go.
    pub out: String,
    /// The node whose output is written in each layout.
    pub node: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayoutResult {
    pub layout: String,
    pub partition_by: Vec<String>,
    pub table_uri: String,
    pub write: Usage,
    pub written: Written,
    pub queries: Vec<QueryResult>,
    /// Sum of the queries' median latencies.
    pub suite_ms: f64,
    pub suite_bytes_scanned: u64,
    /// What Athena would bill for one run of the suite.
    pub suite_athena_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub layout: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub input: String,
    pub rows: u64,
    pub runs: usize,
    pub placeholders: std::collections::BTreeMap<String, String>,
    pub layouts: Vec<LayoutResult>,
    pub recommendation: Recommendation,
}

/// Loads the project with extra global overrides (raw_root, out_root).
pub type Loader<'a> = &'a dyn Fn(Vec<(String, Value)>) -> Result<Project, ConfigError>;

fn layout_value(project: &Project, name: &str) -> Result<Value, ConfigError> {
    let layouts = crate::conf::interpolate::lookup(&project.globals, "layouts");
    let names: Vec<String> = match layouts {
        Some(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect(),
        _ => vec![],
    };
    crate::conf::interpolate::lookup(&project.globals, &format!("layouts.{name}"))
        .cloned()
        .ok_or_else(|| {
            ConfigError::new(
                "--layouts",
                format!(
                    "no layout `{name}` under `layouts:` in globals.yml; layouts: {}",
                    names.join(", ")
                ),
            )
        })
}

/// The project with `node` writing its output in `layout` under `out_root`.
fn project_for(
    load: Loader,
    raw_root: &str,
    out_root: &str,
    node: &str,
    layout_name: &str,
) -> Result<(Project, String, Vec<String>), DriverError> {
    let mut p = load(vec![
        ("raw_root".into(), Value::String(raw_root.into())),
        ("out_root".into(), Value::String(out_root.into())),
    ])?;
    let layout = parse_layout(
        &layout_value(&p, layout_name)?,
        &format!("layouts.{layout_name}"),
    )?;
    let names: Vec<String> = layout
        .partition_by
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut output = None;
    for pipeline in p.pipelines.values_mut() {
        for n in pipeline.nodes.iter_mut().filter(|n| n.name == node) {
            n.layout = None;
            output = Some(n.output.clone());
        }
    }
    let output = output
        .ok_or_else(|| ConfigError::new("--node", format!("no node `{node}` in any pipeline")))?;
    let ds = p
        .catalog
        .get_mut(&output)
        .expect("a node's output is in the catalog");
    ds.partitions = names
        .iter()
        .map(|n| ColumnSpec {
            name: n.clone(),
            data_type: if n == "date" { "date" } else { "string" }.into(),
            nullable: true,
        })
        .collect();
    ds.date_column = names
        .iter()
        .any(|n| n == "date")
        .then(|| "date".to_string());
    ds.layout = Some(layout);
    let table_uri = ds.path.clone();
    Ok((p, table_uri, names))
}

fn pipeline_of(p: &Project, node: &str) -> Option<String> {
    p.pipelines
        .values()
        .find(|pl| pl.nodes.iter().any(|n| n.name == node))
        .map(|pl| pl.name.clone())
}

pub async fn run(
    load: Loader<'_>,
    opts: &BenchOptions,
    progress: &Progress,
) -> Result<BenchReport, DriverError> {
    if opts.layouts.is_empty() {
        return Err(ConfigError::new("--layouts", "name at least one layout").into());
    }
    // Every layout must exist before anything is written.
    let base = load(vec![])?;
    for l in &opts.layouts {
        layout_value(&base, l)?;
    }
    let suite = queries::load_suite(opts.queries.as_deref())
        .and_then(|s| queries::check_placeholders(&s).map(|_| s))
        .map_err(|e| DriverError::Config(ConfigError::new("--queries", e)))?;
    let out = opts.out.trim_end_matches('/').to_string();

    let raw_root = match &opts.source {
        Source::Input(uri) => uri.trim_end_matches('/').to_string(),
        Source::Generate {
            rows,
            days,
            start,
            seed,
        } => {
            let raw = format!("{out}/input");
            progress.note(&format!(
                "generating {rows} transactions over {days} day(s) in {raw}"
            ));
            let start_day = crate::plan::dates::days_since_epoch(start).ok_or_else(|| {
                ConfigError::new("--start", format!("{start:?} is not a YYYY-MM-DD date"))
            })?;
            let cfg = crate::eth::synth::GenConfig {
                rows: *rows,
                days: *days,
                start_ts: start_day * 86_400,
                seed: *seed,
                files_per_day: 1,
                batch_rows: 8192,
            };
            let threads = chainbatch_executor::effective_parallelism(0);
            let quiet: crate::eth::synth_write::Progress = std::sync::Arc::new(|_: &str, _| {});
            crate::eth::synth_write::write_tables(
                &cfg,
                &raw,
                &["transactions".to_string()],
                threads,
                quiet,
            )
            .await
            .map_err(DriverError::Storage)?;
            raw
        }
    };

    let mut results = vec![];
    for name in &opts.layouts {
        let out_root = format!("{out}/layouts/{name}");
        let (project, table_uri, partition_by) =
            project_for(load, &raw_root, &out_root, &opts.node, name)?;
        let run = RunOptions {
            pipeline: pipeline_of(&project, &opts.node),
            selection: Selection {
                nodes: vec![opts.node.clone()],
                ..Default::default()
            },
            dates: None,
            run_id: format!("bench-{name}"),
            backend: BackendKind::Local,
            parallelism: chainbatch_executor::effective_parallelism(0),
            max_attempts: 1,
            resume: false,
            wait: std::time::Duration::ZERO,
            allow_incomplete: true,
            verify_athena: false,
            continue_attempt: false,
            ballista: Default::default(),
        };
        progress.note(&format!("writing layout {name} to {table_uri}"));
        let meter = Meter::start();
        driver::run(&project, &run, progress).await?;
        let usage = meter.stop();
        let written = written::inspect(&table_uri)
            .await
            .map_err(DriverError::Storage)?;
        results.push(LayoutResult {
            layout: name.clone(),
            partition_by,
            table_uri,
            write: usage,
            written,
            queries: vec![],
            suite_ms: 0.0,
            suite_bytes_scanned: 0,
            suite_athena_usd: 0.0,
        });
    }

    // Placeholders come from the first layout: every layout holds the same rows.
    let first = &results[0];
    let ctx = queries::session(&first.table_uri, &first.partition_by)
        .await
        .map_err(DriverError::Storage)?;
    let values = queries::placeholders(&ctx)
        .await
        .map_err(DriverError::Failed)?;
    let filled: Vec<(String, String)> = suite
        .iter()
        .map(|q| Ok((q.name.clone(), queries::fill(q, &values)?)))
        .collect::<Result<_, String>>()
        .map_err(|e| DriverError::Config(ConfigError::new("--queries", e)))?;
    for r in &mut results {
        progress.note(&format!(
            "querying layout {} ({} runs per query)",
            r.layout, opts.runs
        ));
        let ctx = queries::session(&r.table_uri, &r.partition_by)
            .await
            .map_err(DriverError::Storage)?;
        for (name, sql) in &filled {
            let mut q = queries::run_query(&ctx, name, sql, opts.runs)
                .await
                .map_err(DriverError::Failed)?;
            q.percent_of_dataset = cost::percent(q.bytes_scanned, r.written.bytes);
            q.athena_usd = cost::athena_usd(q.bytes_scanned);
            r.suite_ms += q.median_ms;
            r.suite_bytes_scanned += q.bytes_scanned;
            r.suite_athena_usd += q.athena_usd;
            r.queries.push(q);
        }
    }
    // The layouts hold the same rows, so every query must answer alike.
    for (i, (name, _)) in filled.iter().enumerate() {
        let counts: Vec<usize> = results.iter().map(|r| r.queries[i].rows).collect();
        if counts.windows(2).any(|w| w[0] != w[1]) {
            return Err(DriverError::Output(format!(
                "query {name} returned different row counts per layout: {counts:?}"
            )));
        }
    }
    let rows = results[0].written.rows;
    let recommendation = recommend(&results);
    Ok(BenchReport {
        input: raw_root,
        rows,
        runs: opts.runs,
        placeholders: values,
        layouts: results,
        recommendation,
    })
}

/// The layout that serves the suite best, time and scan cost weighed
/// alike: the least geometric mean of its suite time over the fastest
/// layout's and its bytes read over the most frugal layout's (what Athena
/// bills by, whatever the data's size). The reason says what it costs to
/// write and what the others would have given.
pub fn recommend(results: &[LayoutResult]) -> Recommendation {
    let fastest = results
        .iter()
        .map(|r| r.suite_ms)
        .fold(f64::INFINITY, f64::min)
        .max(1e-9);
    let least_bytes = results
        .iter()
        .map(|r| r.suite_bytes_scanned)
        .min()
        .unwrap_or(0)
        .max(1);
    let score = |r: &LayoutResult| {
        let time = r.suite_ms.max(1e-9) / fastest;
        let bytes = r.suite_bytes_scanned.max(1) as f64 / least_bytes as f64;
        (time * bytes).sqrt()
    };
    let mut order: Vec<&LayoutResult> = results.iter().collect();
    order.sort_by(|a, b| score(a).total_cmp(&score(b)));
    let best = order[0];
    let mut why = format!(
        "`{}` serves the suite best, time and bytes read weighed alike: {:.1} ms in all \
         (the median of each query, summed; {:.2}x the fastest layout), {} read per suite \
         run ({:.2}x the least; ${:.6} on Athena at ${}/TB)",
        best.layout,
        best.suite_ms,
        best.suite_ms / fastest,
        crate::progress::human_bytes(best.suite_bytes_scanned),
        best.suite_bytes_scanned.max(1) as f64 / least_bytes as f64,
        best.suite_athena_usd,
        cost::ATHENA_USD_PER_TB
    );
    if let Some(next) = order.get(1) {
        why.push_str(&format!(
            "; next `{}` ({:.1} ms, {} read, score {:.2} against {:.2})",
            next.layout,
            next.suite_ms,
            crate::progress::human_bytes(next.suite_bytes_scanned),
            score(next),
            score(best)
        ));
    }
    let wins: Vec<&str> = best
        .queries
        .iter()
        .enumerate()
        .filter(|(i, q)| {
            results
                .iter()
                .all(|r| r.queries[*i].median_ms >= q.median_ms)
        })
        .map(|(_, q)| q.query.as_str())
        .collect();
    if !wins.is_empty() {
        why.push_str(&format!(
            "; fastest on {} of {} queries ({})",
            wins.len(),
            best.queries.len(),
            wins.join(", ")
        ));
    }
    let fastest_write = results
        .iter()
        .map(|r| r.write.seconds)
        .fold(f64::INFINITY, f64::min);
    why.push_str(&format!(
        "; writing it took {:.1} s ({:.2}x the quickest write) into {} files of median {}.",
        best.write.seconds,
        best.write.seconds / fastest_write.max(1e-9),
        best.written.files,
        crate::progress::human_bytes(best.written.median_file_bytes)
    ));
    Recommendation {
        layout: best.layout.clone(),
        why,
    }
}
