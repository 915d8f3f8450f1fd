//! `chainbatch bench`: which partition layout serves a query workload best.

use super::{OutputFormat, ProjectArgs};
use chainbatch::conf::error::ConfigError;
use chainbatch::error::DriverError;
use chainbatch::progress::{LogFormat, Progress};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum BenchWhat {
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
pub(super) struct BenchLayoutsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Layouts to compare: names under `layouts:` in globals.yml.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "daily,hourly,daily_bucketed,daily_indexed,block_chunks"
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
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub(super) async fn bench(what: BenchWhat) -> Result<(), DriverError> {
    match what {
        BenchWhat::Layouts(b) => bench_layouts(b).await,
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
        args.load("bench")
    };
    let progress = Progress::new(LogFormat::Text);
    let report = chainbatch::bench::layouts::run(&loader, &opts, &progress).await?;
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    let out = b.out.trim_end_matches('/');
    for (name, body) in [
        ("report.json", json.clone()),
        ("report.html", chainbatch::bench::report::html(&report)),
    ] {
        super::write_text(&format!("{out}/{name}"), body).await?;
    }
    match b.format {
        OutputFormat::Json => println!("{json}"),
        OutputFormat::Table => {
            print!("{}", chainbatch::bench::report::table(&report));
            println!("reports: {out}/report.json, {out}/report.html");
        }
    }
    Ok(())
}
