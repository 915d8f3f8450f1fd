//! The completeness gate: a run does not publish a day of input that is
//! still being written or half-compacted.
//!
//! The public `eth` dataset writes the current day one file per block and
//! replaces those files by compacted ones each night; a run over such a day
//! would commit part of it. An input dataset that declares `completeness`
//! is checked, per date of the planned window, against a table of blocks
//! (the dataset itself, or the one named in `blocks`):
//!
//! - the day's block numbers have no gap;
//! - the day starts right after the previous day ends, when both are in the
//!   window;
//! - with `count_column`, each block holds as many of the input's rows as
//!   the blocks table says (`transaction_count` for transactions).
//!
//! Only the planned files are read, one column (two for the blocks table),
//! so the check costs a fraction of the task that follows.

use crate::catalog::{Catalog, Dataset};
use crate::plan::NodePlan;
use crate::plan::listing::list_dataset;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::prelude::{ParquetReadOptions, SessionContext, col};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An input dataset's `completeness` setting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completeness {
    /// The column holding the block number (`block_number`; `number` in blocks).
    #[serde(default = "default_block_column")]
    pub block_column: String,
    /// The dataset of blocks to check against (default: this dataset).
    #[serde(default)]
    pub blocks: Option<String>,
    /// The column of the blocks dataset that counts this dataset's rows per block.
    #[serde(default)]
    pub count_column: Option<String>,
    /// The block-number column of the blocks dataset.
    #[serde(default = "default_blocks_number_column")]
    pub blocks_number_column: String,
}

fn default_block_column() -> String {
    "block_number".into()
}

fn default_blocks_number_column() -> String {
    "number".into()
}

/// One date that is not complete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub dataset: String,
    pub date: String,
    pub problem: String,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}: {}", self.dataset, self.date, self.problem)
    }
}

/// Checks every input of a planned node that declares `completeness`.
pub async fn check_node(plan: &NodePlan, catalog: &Catalog) -> Result<Vec<Incomplete>, String> {
    let mut out = vec![];
    for (name, by_date) in planned_files(plan) {
        let Some(ds) = catalog.get(&name) else {
            continue;
        };
        let Some(rule) = &ds.completeness else {
            continue;
        };
        out.extend(check_dataset(ds, rule, &by_date, catalog).await?);
    }
    Ok(out)
}

/// The files each input of a node reads, by date, from its task specs.
fn planned_files(plan: &NodePlan) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for spec in plan.stages.iter().flat_map(|s| &s.specs) {
        for input in &spec.inputs {
            let Some(date_idx) = input
                .partition_columns
                .iter()
                .position(|c| c.name == "date")
            else {
                continue;
            };
            for f in &input.files {
                if let Some(date) = f.partition_values.get(date_idx) {
                    out.entry(input.name.clone())
                        .or_default()
                        .entry(date.clone())
                        .or_default()
                        .insert(f.uri.clone());
                }
            }
        }
    }
    out
}

async fn check_dataset(
    ds: &Dataset,
    rule: &Completeness,
    by_date: &BTreeMap<String, BTreeSet<String>>,
    catalog: &Catalog,
) -> Result<Vec<Incomplete>, String> {
    let ctx = SessionContext::new();
    // The blocks of each date: from this dataset, or the blocks dataset.
    let blocks_files: BTreeMap<String, BTreeSet<String>> = match &rule.blocks {
        None => by_date.clone(),
        Some(b) => {
            let bds = catalog.get(b).ok_or_else(|| {
                format!(
                    "dataset `{}`: completeness.blocks: no dataset `{b}`",
                    ds.name
                )
            })?;
            let from = by_date.keys().next().cloned().unwrap_or_default();
            let to = by_date.keys().next_back().cloned().unwrap_or_default();
            let window = crate::plan::dates::DateRange { from, to };
            let date_idx = bds.partitions.iter().position(|p| p.name == "date");
            let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for f in list_dataset(bds, Some(&window)).await? {
                if let Some(d) = date_idx.and_then(|i| f.partition_values.get(i)) {
                    m.entry(d.clone()).or_default().insert(f.uri);
                }
            }
            m
        }
    };
    let (number_col, count_col) = match &rule.blocks {
        None => (rule.block_column.as_str(), None),
        Some(_) => (
            rule.blocks_number_column.as_str(),
            rule.count_column.as_deref(),
        ),
    };
    let mut out = vec![];
    let mut previous: Option<(String, i64)> = None;
    for date in by_date.keys() {
        let problem = |p: String| Incomplete {
            dataset: ds.name.clone(),
            date: date.clone(),
            problem: p,
        };
        let files = blocks_files.get(date).cloned().unwrap_or_default();
        let blocks = block_counts(&ctx, &files, number_col, count_col).await?;
        let (Some(first), Some(last)) = (blocks.keys().next(), blocks.keys().next_back()) else {
            out.push(problem(match &rule.blocks {
                Some(b) => format!("no blocks in `{b}` for this date"),
                None => "no rows".into(),
            }));
            previous = None;
            continue;
        };
        let (first, last) = (*first, *last);
        if let Some(gaps) = describe_gaps(blocks.keys().copied()) {
            out.push(problem(format!("blocks {gaps} are missing")));
        }
        if let Some((prev_date, prev_last)) = &previous
            && is_next_day(prev_date, date)
            && first != prev_last + 1
        {
            out.push(problem(if first > prev_last + 1 {
                format!(
                    "blocks {}..{} between {prev_date} and this date are missing",
                    prev_last + 1,
                    first - 1
                )
            } else {
                format!("starts at block {first}, but {prev_date} ends at block {prev_last}")
            }));
        }
        previous = Some((date.clone(), last));
        if let Some(count_col) = count_col {
            let have = block_counts(&ctx, &by_date[date], &rule.block_column, None).await?;
            let short: Vec<(i64, i64, i64)> = blocks
                .iter()
                .filter_map(|(b, want)| {
                    let got = have.get(b).copied().unwrap_or(0);
                    (got != *want).then_some((*b, got, *want))
                })
                .collect();
            let stray = have.keys().filter(|b| !blocks.contains_key(b)).count();
            if !short.is_empty() {
                let (rows, want): (i64, i64) =
                    short.iter().fold((0, 0), |a, s| (a.0 + s.1, a.1 + s.2));
                let examples: Vec<String> = short
                    .iter()
                    .take(3)
                    .map(|(b, g, w)| format!("{b} has {g} of {w}"))
                    .collect();
                out.push(problem(format!(
                    "{} block(s) in {}..{} hold {rows} of the {want} rows `{count_col}` counts ({}{})",
                    short.len(),
                    short[0].0,
                    short[short.len() - 1].0,
                    examples.join(", "),
                    if short.len() > 3 { ", ..." } else { "" }
                )));
            }
            if stray > 0 {
                out.push(problem(format!(
                    "{stray} block(s) with rows are not in the blocks table of this date"
                )));
            }
        }
    }
    Ok(out)
}

/// Per block number: the value of `count_col`, or the number of rows.
async fn block_counts(
    ctx: &SessionContext,
    files: &BTreeSet<String>,
    number_col: &str,
    count_col: Option<&str>,
) -> Result<BTreeMap<i64, i64>, String> {
    let mut out = BTreeMap::new();
    if files.is_empty() {
        return Ok(out);
    }
    let mut fields = vec![Field::new(number_col, DataType::Int64, true)];
    if let Some(c) = count_col {
        fields.push(Field::new(c, DataType::Int64, true));
    }
    let schema = Schema::new(fields);
    let uris: Vec<String> = files.iter().cloned().collect();
    // The files of one dataset live in one store: registered once.
    chainbatch_executor::storage::register(&ctx.runtime_env(), &uris[0])
        .map_err(|e| e.to_string())?;
    let opts = ParquetReadOptions::default().schema(&schema);
    let df = ctx
        .read_parquet(uris, opts)
        .await
        .map_err(|e| format!("completeness check: {e}"))?;
    let df = match count_col {
        Some(c) => df.select(vec![col(number_col), col(c)]),
        None => df.aggregate(
            vec![col(number_col)],
            vec![datafusion::functions_aggregate::count::count_all()],
        ),
    }
    .map_err(|e| format!("completeness check: {e}"))?;
    for batch in df
        .collect()
        .await
        .map_err(|e| format!("completeness check: {e}"))?
    {
        let numbers = batch.column(0).as_primitive::<Int64Type>();
        let counts = batch.column(1);
        let counts: Arc<dyn Array> = arrow::compute::cast(counts, &DataType::Int64)
            .map_err(|e| format!("completeness check: {e}"))?;
        let counts = counts.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if numbers.is_valid(i) {
                *out.entry(numbers.value(i)).or_insert(0) += counts.value(i);
            }
        }
    }
    Ok(out)
}

/// `100..120, 130` for the numbers missing between the first and the last.
fn describe_gaps(sorted: impl Iterator<Item = i64>) -> Option<String> {
    let mut gaps = vec![];
    let mut prev: Option<i64> = None;
    for n in sorted {
        if let Some(p) = prev
            && n > p + 1
        {
            gaps.push(if n == p + 2 {
                (p + 1).to_string()
            } else {
                format!("{}..{}", p + 1, n - 1)
            });
        }
        prev = Some(n);
    }
    (!gaps.is_empty()).then(|| gaps.join(", "))
}

fn is_next_day(a: &str, b: &str) -> bool {
    use crate::plan::dates::days_since_epoch;
    matches!((days_since_epoch(a), days_since_epoch(b)), (Some(x), Some(y)) if y == x + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_named_as_ranges() {
        assert_eq!(describe_gaps([1, 2, 3].into_iter()), None);
        assert_eq!(
            describe_gaps([1, 2, 5, 7, 8, 20].into_iter()).as_deref(),
            Some("3..4, 6, 9..19")
        );
        assert!(is_next_day("2024-02-29", "2024-03-01"));
        assert!(!is_next_day("2024-03-01", "2024-03-03"));
    }
}
