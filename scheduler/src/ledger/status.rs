//! `chainbatch status`: each output partition with the run that wrote it,
//! its rows and bytes, and whether it is stale (its node's configuration
//! or its input changed since); the dates of the window that have none.

use super::{InputSpan, PartitionRecord};
use crate::catalog::{Catalog, Dataset};
use crate::pipeline::Node;
use crate::plan::dates::{DateRange, each_day};
use crate::plan::listing::{ListedFile, list_dataset};
use crate::progress::{human_bytes, human_count};
use chainbatch_executor::storage;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A partition's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Written by the current configuration from the input as it is.
    Current,
    /// Its node's configuration or its input changed since it was written.
    Stale,
    /// Files with no ledger record: written before the ledger, by
    /// `import`, by another tool, or by appends (`save_mode: append`
    /// keeps no records).
    Unrecorded,
    /// A ledger record whose files are gone.
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: String,
    pub date: Option<String>,
    pub state: State,
    /// Why it is stale or missing; empty when current.
    pub reasons: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    /// From the ledger (none for unrecorded partitions).
    pub rows: Option<u64>,
    pub run_id: Option<String>,
    pub node: Option<String>,
    pub committed_at: Option<u64>,
    pub config_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetStatus {
    pub dataset: String,
    pub path: String,
    /// The node that writes the dataset now, and its configuration hash.
    pub node: Option<String>,
    pub config_hash: Option<String>,
    /// The dates looked at: `--dates`, else those the partitions span.
    pub window: Option<String>,
    pub partitions: Vec<PartitionStatus>,
    /// Dates of the window with no partition.
    pub gaps: Vec<String>,
}

impl DatasetStatus {
    pub fn count(&self, state: State) -> usize {
        self.partitions.iter().filter(|p| p.state == state).count()
    }

    /// Dates with at least one partition that is not current.
    pub fn stale_dates(&self) -> BTreeSet<String> {
        self.partitions
            .iter()
            .filter(|p| p.state != State::Current)
            .filter_map(|p| p.date.clone())
            .collect()
    }
}

/// The status of the named datasets (default: every output of the
/// pipelines), each judged by the node of `pipeline` (or of any pipeline)
/// that writes it.
pub async fn status(
    project: &crate::conf::project::Project,
    pipeline: Option<&str>,
    datasets: &[String],
    dates: Option<&DateRange>,
) -> Result<Vec<DatasetStatus>, crate::error::DriverError> {
    use crate::conf::error::ConfigError;
    let pipelines: Vec<&crate::pipeline::Pipeline> = match pipeline {
        Some(name) => vec![crate::driver::pick_pipeline(project, Some(name))?],
        None => project.pipelines.values().collect(),
    };
    let writers: BTreeMap<&str, &Node> = pipelines
        .iter()
        .flat_map(|p| p.nodes.iter())
        .map(|n| (n.output.as_str(), n))
        .collect();
    let names: Vec<String> = match datasets.is_empty() {
        true => writers.keys().map(|s| s.to_string()).collect(),
        false => datasets.to_vec(),
    };
    let mut out = vec![];
    for name in &names {
        let ds = project.catalog.get(name).ok_or_else(|| {
            let hint =
                crate::conf::error::suggest(name, project.catalog.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
            ConfigError::new(
                "--dataset",
                format!("no dataset `{name}` in the catalog{hint}"),
            )
        })?;
        let writer = writers.get(name.as_str()).copied();
        out.push(
            dataset_status(ds, writer, &project.catalog, dates)
                .await
                .map_err(crate::error::DriverError::Storage)?,
        );
    }
    Ok(out)
}

/// The status of one dataset: `writer` is the node that writes it in the
/// selected pipelines (its configuration hash decides staleness).
pub async fn dataset_status(
    ds: &Dataset,
    writer: Option<&Node>,
    catalog: &Catalog,
    dates: Option<&DateRange>,
) -> Result<DatasetStatus, String> {
    let current_hash = writer.map(|n| super::config_hash(n, catalog));
    let in_window = |d: &Option<String>| match (dates, d) {
        (Some(w), Some(d)) => w.contains(d),
        _ => true,
    };
    let records: BTreeMap<String, PartitionRecord> = super::read(ds, dates)
        .await?
        .into_iter()
        .filter(|(_, r)| in_window(&r.date))
        .collect();
    let on_disk = partition_dirs(ds, dates).await?;
    let inputs = InputListings::load(&records, catalog).await?;
    let date_of_dir = |dir: &str| {
        ds.date_column.as_ref().and_then(|c| {
            dir.split('/')
                .find_map(|seg| seg.strip_prefix(&format!("{c}=")))
                .map(str::to_string)
        })
    };
    let paths: BTreeSet<&String> = records.keys().chain(on_disk.keys()).collect();
    let mut partitions = vec![];
    for path in paths {
        let disk = on_disk.get(path);
        let (files, bytes) = disk.map_or((0, 0), |d| (d.files, d.bytes));
        let Some(r) = records.get(path) else {
            partitions.push(PartitionStatus {
                partition: path.clone(),
                date: date_of_dir(path),
                state: State::Unrecorded,
                reasons: vec![],
                files,
                bytes,
                rows: None,
                run_id: None,
                node: None,
                committed_at: None,
                config_hash: None,
            });
            continue;
        };
        let mut reasons = vec![];
        let state = if disk.is_none() {
            reasons.push("the ledger records it, but its files are gone".to_string());
            State::Missing
        } else {
            match (writer, &current_hash) {
                (Some(n), _) if n.name != r.node => reasons.push(format!(
                    "written by node `{}`; node `{}` writes it now",
                    r.node, n.name
                )),
                (Some(_), Some(h)) if *h != r.config_hash => reasons.push(format!(
                    "node `{}`'s configuration changed ({} then, {h} now)",
                    r.node, r.config_hash
                )),
                _ => {}
            }
            for span in &r.inputs {
                if let Some(why) = inputs.changed(span, r.inputs_listed_at) {
                    reasons.push(why);
                }
            }
            if reasons.is_empty() {
                State::Current
            } else {
                State::Stale
            }
        };
        partitions.push(PartitionStatus {
            partition: path.clone(),
            date: r.date.clone(),
            state,
            reasons,
            files,
            bytes,
            rows: Some(r.rows),
            run_id: Some(r.run_id.clone()),
            node: Some(r.node.clone()),
            committed_at: Some(r.committed_at),
            config_hash: Some(r.config_hash.clone()),
        });
    }
    let seen: BTreeSet<String> = partitions.iter().filter_map(|p| p.date.clone()).collect();
    let window = match dates {
        Some(w) => Some(w.clone()),
        None => match (seen.first(), seen.last()) {
            (Some(a), Some(b)) => Some(DateRange {
                from: a.clone(),
                to: b.clone(),
            }),
            _ => None,
        },
    };
    let gaps = match (&window, &ds.date_column) {
        (Some(w), Some(_)) => each_day(w)
            .into_iter()
            .filter(|d| !seen.contains(d))
            .collect(),
        _ => vec![],
    };
    Ok(DatasetStatus {
        dataset: ds.name.clone(),
        path: ds.path.clone(),
        node: writer.map(|n| n.name.clone()),
        config_hash: current_hash,
        window: window.map(|w| format!("{}..{}", w.from, w.to)),
        partitions,
        gaps,
    })
}

struct DirSize {
    files: u64,
    bytes: u64,
}

/// The dataset's data files grouped by partition directory.
async fn partition_dirs(
    ds: &Dataset,
    dates: Option<&DateRange>,
) -> Result<BTreeMap<String, DirSize>, String> {
    let root = storage::resolve(&ds.path).map_err(|e| e.to_string())?;
    let root_uri = root.uri();
    let root_uri = root_uri.trim_end_matches('/');
    let mut dirs: BTreeMap<String, DirSize> = BTreeMap::new();
    for f in list_dataset(ds, dates).await? {
        let rel = f
            .uri
            .strip_prefix(root_uri)
            .unwrap_or(&f.uri)
            .trim_start_matches('/');
        let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        let e = dirs
            .entry(dir.to_string())
            .or_insert(DirSize { files: 0, bytes: 0 });
        e.files += 1;
        e.bytes += f.size;
    }
    Ok(dirs)
}

/// Each input dataset the records read, listed once over the span of
/// partitions they read.
struct InputListings {
    /// `None` for inputs that cannot be listed again (Athena queries).
    listed: BTreeMap<String, Option<Vec<ListedFile>>>,
}

impl InputListings {
    async fn load(
        records: &BTreeMap<String, PartitionRecord>,
        catalog: &Catalog,
    ) -> Result<Self, String> {
        let mut spans: BTreeMap<&str, Vec<&InputSpan>> = BTreeMap::new();
        for s in records.values().flat_map(|r| &r.inputs) {
            spans.entry(s.dataset.as_str()).or_default().push(s);
        }
        let mut listed = BTreeMap::new();
        for (name, spans) in spans {
            let Some(ds) = catalog.get(name) else {
                continue;
            };
            // An Athena query's result exists only inside the run that
            // UNLOADed it: there is nothing to compare with.
            if ds.athena.is_some() {
                listed.insert(name.to_string(), None);
                continue;
            }
            let window = date_window(ds, &spans);
            listed.insert(
                name.to_string(),
                Some(list_dataset(ds, window.as_ref()).await?),
            );
        }
        Ok(Self { listed })
    }

    /// Why an input span is no longer what the partition was computed
    /// from, if it is not.
    fn changed(&self, span: &InputSpan, listed_at: u64) -> Option<String> {
        let files = match self.listed.get(&span.dataset) {
            None => {
                return Some(format!(
                    "input `{}` is no longer in the catalog",
                    span.dataset
                ));
            }
            Some(None) => return None,
            Some(Some(files)) => files,
        };
        let now: Vec<&ListedFile> = files
            .iter()
            .filter(|f| {
                let k = f.partition_key();
                span.first.as_str() <= k.as_str() && k.as_str() <= span.last.as_str()
            })
            .collect();
        let (n, bytes) = (now.len() as u64, now.iter().map(|f| f.size).sum::<u64>());
        let keys = match span.first == span.last {
            true => span.first.clone(),
            false => format!("{}..{}", span.first, span.last),
        };
        if (n, bytes) != (span.files, span.bytes) {
            return Some(format!(
                "input `{}` {keys} changed: {} file(s), {} then; {n} file(s), {} now",
                span.dataset,
                span.files,
                human_bytes(span.bytes),
                human_bytes(bytes)
            ));
        }
        if now.iter().any(|f| f.modified > listed_at) {
            return Some(format!(
                "input `{}` {keys} was rewritten after the partition was computed",
                span.dataset
            ));
        }
        None
    }
}

/// The dates an input's spans cover, when the input is partitioned by date
/// (its listing is pruned to them); else the whole input is listed.
fn date_window(ds: &Dataset, spans: &[&InputSpan]) -> Option<DateRange> {
    let i = ds
        .partitions
        .iter()
        .position(|p| Some(&p.name) == ds.date_column.as_ref())?;
    let date = |key: &str| key.split('/').nth(i).map(str::to_string);
    let from = spans.iter().filter_map(|s| date(&s.first)).min()?;
    let to = spans.iter().filter_map(|s| date(&s.last)).max()?;
    Some(DateRange { from, to })
}

/// The `status` table: one line per partition, then a summary per dataset.
pub fn render(all: &[DatasetStatus]) -> String {
    let mut out = String::new();
    for d in all {
        out.push_str(&format!(
            "{} ({}){}\n",
            d.dataset,
            d.path,
            match (&d.node, &d.config_hash) {
                (Some(n), Some(h)) => format!(", written by node `{n}`, configuration {h}"),
                _ => ", written by no node of the selected pipelines".to_string(),
            }
        ));
        out.push_str(&format!(
            "  {:<28} {:<10} {:>12} {:>10} {:<28} {:<23} {}\n",
            "PARTITION", "STATE", "ROWS", "BYTES", "RUN", "COMMITTED", "CONFIG"
        ));
        for p in &d.partitions {
            out.push_str(&format!(
                "  {:<28} {:<10} {:>12} {:>10} {:<28} {:<23} {}\n",
                p.partition,
                format!("{:?}", p.state).to_lowercase(),
                p.rows.map(human_count).unwrap_or_else(|| "-".into()),
                human_bytes(p.bytes),
                p.run_id.as_deref().unwrap_or("-"),
                p.committed_at
                    .map(crate::time::utc_time)
                    .unwrap_or_else(|| "-".into()),
                p.config_hash.as_deref().unwrap_or("-"),
            ));
            for r in &p.reasons {
                out.push_str(&format!("      {r}\n"));
            }
        }
        out.push_str(&format!(
            "  {} partition(s): {} current, {} stale, {} unrecorded, {} missing; {} gap(s){}{}\n\n",
            d.partitions.len(),
            d.count(State::Current),
            d.count(State::Stale),
            d.count(State::Unrecorded),
            d.count(State::Missing),
            d.gaps.len(),
            d.window
                .as_ref()
                .map(|w| format!(" in {w}"))
                .unwrap_or_default(),
            match d.gaps.is_empty() {
                true => String::new(),
                false => format!(": {}", compress_dates(&d.gaps)),
            }
        ));
    }
    out
}

/// `2024-01-01..2024-01-03, 2024-01-07`: runs of consecutive dates.
pub fn compress_dates(dates: &[String]) -> String {
    let mut runs: Vec<(String, String)> = vec![];
    for d in dates {
        let next = match runs.last() {
            Some((_, last)) => crate::time::days_since_epoch(last)
                .zip(crate::time::days_since_epoch(d))
                .is_some_and(|(a, b)| b == a + 1),
            None => false,
        };
        match next {
            true => runs.last_mut().expect("a run").1 = d.clone(),
            false => runs.push((d.clone(), d.clone())),
        }
    }
    runs.into_iter()
        .map(|(a, b)| if a == b { a } else { format!("{a}..{b}") })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_dates_are_shown_as_ranges() {
        let d = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            compress_dates(&d(&[
                "2024-02-28",
                "2024-02-29",
                "2024-03-01",
                "2024-03-05"
            ])),
            "2024-02-28..2024-03-01, 2024-03-05"
        );
        assert_eq!(compress_dates(&[]), "");
    }
}
