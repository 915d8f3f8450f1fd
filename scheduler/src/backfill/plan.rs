//! Cutting a backfill's window into chunks, and finding in each the nodes
//! whose partitions are not current (by the partition ledger).

use crate::catalog::Catalog;
use crate::ledger::status::{DatasetStatus, dataset_status};
use crate::pipeline::Node;
use crate::plan::dates::{DateRange, each_day};
use crate::plan::listing::list_dataset;
use std::collections::{BTreeMap, BTreeSet};

/// `30d` (or `30`): days a chunk spans.
pub fn parse_chunk(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (n, unit) = match t.strip_suffix('d') {
        Some(n) => (n, 1),
        None => match t.strip_suffix('w') {
            Some(n) => (n, 7),
            None => (t, 1),
        },
    };
    match n.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n * unit),
        _ => Err(format!(
            "{text:?} is not a chunk size; expected days such as 7d or 30d, or weeks such as 2w"
        )),
    }
}

/// The window in chunks of `days`, the last one shorter if need be.
pub fn chunks(window: &DateRange, days: u32) -> Vec<DateRange> {
    each_day(window)
        .chunks(days as usize)
        .map(|c| DateRange {
            from: c[0].clone(),
            to: c[c.len() - 1].clone(),
        })
        .collect()
}

/// Per node, the dates of the window where it has work: a partition that
/// is stale, missing or unrecorded, or a date its input has and its
/// output lacks.
pub struct Work {
    by_node: Vec<(String, BTreeSet<String>)>,
    pub statuses: Vec<DatasetStatus>,
}

impl Work {
    pub async fn find(
        nodes: &[Node],
        catalog: &Catalog,
        window: &DateRange,
    ) -> Result<Self, String> {
        let mut by_node = vec![];
        let mut statuses = vec![];
        let mut input_dates: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for n in nodes {
            let out = &catalog[&n.output];
            let status = dataset_status(out, Some(n), catalog, Some(window)).await?;
            let mut dates = status.stale_dates();
            let mut has_input: BTreeSet<String> = BTreeSet::new();
            for i in &n.inputs {
                if !input_dates.contains_key(i.as_str()) {
                    let ds = &catalog[i];
                    let idx = ds
                        .partitions
                        .iter()
                        .position(|p| Some(&p.name) == ds.date_column.as_ref());
                    let found: BTreeSet<String> = match idx {
                        // An Athena query is UNLOADed by the run itself:
                        // nothing to list beforehand.
                        Some(idx) if ds.athena.is_none() => list_dataset(ds, Some(window))
                            .await?
                            .into_iter()
                            .map(|f| f.partition_values[idx].clone())
                            .collect(),
                        // Undated input: every date of the window has it.
                        _ => each_day(window).into_iter().collect(),
                    };
                    input_dates.insert(i.as_str(), found);
                }
                has_input.extend(input_dates[i.as_str()].iter().cloned());
            }
            dates.extend(
                status
                    .gaps
                    .iter()
                    .filter(|g| has_input.contains(*g))
                    .cloned(),
            );
            by_node.push((n.name.clone(), dates));
            statuses.push(status);
        }
        Ok(Self { by_node, statuses })
    }

    /// The nodes with work in a chunk, in pipeline order.
    pub fn nodes_in(&self, chunk: &DateRange) -> Vec<String> {
        self.by_node
            .iter()
            .filter(|(_, dates)| dates.iter().any(|d| chunk.contains(d)))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_days_or_weeks() {
        assert_eq!(parse_chunk("30d").unwrap(), 30);
        assert_eq!(parse_chunk("7").unwrap(), 7);
        assert_eq!(parse_chunk("2w").unwrap(), 14);
        assert!(parse_chunk("0d").is_err());
        assert!(parse_chunk("a month").unwrap_err().contains("7d or 30d"));
    }

    #[test]
    fn a_window_is_cut_into_chunks_with_a_short_last_one() {
        let w = DateRange {
            from: "2024-02-26".into(),
            to: "2024-03-04".into(),
        };
        let c = chunks(&w, 3);
        let got: Vec<(String, String)> = c.into_iter().map(|r| (r.from, r.to)).collect();
        assert_eq!(
            got,
            vec![
                ("2024-02-26".into(), "2024-02-28".into()),
                ("2024-02-29".into(), "2024-03-02".into()),
                ("2024-03-03".into(), "2024-03-04".into()),
            ]
        );
    }
}
