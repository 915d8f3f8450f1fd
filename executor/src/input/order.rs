//! The sort order a Parquet file declares (its row groups' `sorting_columns`)
//! and the range of those columns over the row groups a task reads.
//!
//! A task whose inputs are already sorted the way its layout wants can write
//! them as they stream in, with no sort and no spill: DataFusion proves from
//! these ranges that the files of each scan partition follow one another.

use arrow::array::Array;
use arrow::compute::SortOptions;
use arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::common::stats::{ColumnStatistics, Precision, Statistics};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use std::cmp::Ordering;

/// One column of a declared order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// The column, a top-level column of the file.
    pub column: String,
    /// Direction and null placement, as the footer declares them.
    pub options: SortOptions,
}

/// A file's declared order and, per key, the least and greatest value it
/// holds in the row groups read.
#[derive(Debug, Clone)]
pub struct FileOrder {
    /// The declared sort keys, most significant first.
    pub keys: Vec<OrderKey>,
    /// Per key (same index as `keys`), the least and greatest value in the row groups read.
    pub ranges: Vec<(ScalarValue, ScalarValue)>,
}

impl FileOrder {
    /// Reads the order from the footer. `None` when the row groups declare
    /// none, declare different ones, or a key lacks statistics (or has nulls,
    /// whose place the ranges cannot show); keys after such a key are dropped.
    pub fn from_metadata(
        md: &ParquetMetaData,
        schema: &Schema,
        row_groups: Option<&[usize]>,
    ) -> Option<Self> {
        let selected = selected_row_groups(md, row_groups)?;
        let selected = selected.as_slice();
        let first = md.row_group(*selected.first()?).sorting_columns()?;
        if selected
            .iter()
            .any(|&g| md.row_group(g).sorting_columns() != Some(first))
        {
            return None;
        }
        let descr = md.file_metadata().schema_descr();
        let mut order = FileOrder {
            keys: vec![],
            ranges: vec![],
        };
        for sc in first {
            let leaf = usize::try_from(sc.column_idx).ok()?;
            if leaf >= descr.num_columns() {
                break;
            }
            let path = descr.column(leaf).path().parts().to_vec();
            let [name] = path.as_slice() else { break };
            let Some(range) = column_range(md, schema, name, selected) else {
                break;
            };
            order.keys.push(OrderKey {
                column: name.clone(),
                options: SortOptions {
                    descending: sc.descending,
                    nulls_first: sc.nulls_first,
                },
            });
            order.ranges.push(range);
        }
        (!order.keys.is_empty()).then_some(order)
    }

    /// The range of `column` over the selected row groups, as an ascending
    /// one-key order that the file does not declare: where its rows lie,
    /// not how they are ordered (see `input::range_sort`). `None` without
    /// statistics, with nulls, or when the file lacks the column.
    pub fn observed(
        md: &ParquetMetaData,
        schema: &Schema,
        column: &str,
        row_groups: Option<&[usize]>,
    ) -> Option<Self> {
        let selected = selected_row_groups(md, row_groups)?;
        let range = column_range(md, schema, column, &selected)?;
        Some(FileOrder {
            keys: vec![OrderKey {
                column: column.to_string(),
                options: SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            }],
            ranges: vec![range],
        })
    }

    /// Statistics over `file_schema` carrying the key ranges, as DataFusion
    /// reads them to check that files in one scan partition do not overlap.
    pub fn statistics(&self, file_schema: &Schema) -> Statistics {
        let mut stats = Statistics::new_unknown(file_schema);
        for (key, (min, max)) in self.keys.iter().zip(&self.ranges) {
            if let Ok(i) = file_schema.index_of(&key.column) {
                stats.column_statistics[i] = ColumnStatistics {
                    min_value: Precision::Exact(min.clone()),
                    max_value: Precision::Exact(max.clone()),
                    null_count: Precision::Exact(0),
                    ..ColumnStatistics::new_unknown()
                };
            }
        }
        stats
    }

    /// Keeps the first `n` keys (the order common to all files).
    pub fn truncate(&mut self, n: usize) {
        self.keys.truncate(n);
        self.ranges.truncate(n);
    }

    /// Widens the ranges to cover `other`'s too (same keys).
    pub fn extend(&mut self, other: &FileOrder) {
        for ((lo, hi), (olo, ohi)) in self.ranges.iter_mut().zip(&other.ranges) {
            if olo.partial_cmp(lo) == Some(Ordering::Less) {
                *lo = olo.clone();
            }
            if ohi.partial_cmp(hi) == Some(Ordering::Greater) {
                *hi = ohi.clone();
            }
        }
    }

    /// Where the file starts in its own order: its first key's least value
    /// (its greatest, for a descending key).
    pub fn start(&self) -> &ScalarValue {
        let (min, max) = &self.ranges[0];
        if self.keys[0].options.descending {
            max
        } else {
            min
        }
    }

    /// Compares where two files start in the order of the first key.
    pub fn cmp_start(&self, other: &Self) -> Ordering {
        self.start()
            .partial_cmp(other.start())
            .unwrap_or(Ordering::Equal)
    }
}

/// The row groups read (all of them without a selection); `None` when none
/// is, or the selection names one the file lacks.
fn selected_row_groups(md: &ParquetMetaData, row_groups: Option<&[usize]>) -> Option<Vec<usize>> {
    let selected = match row_groups {
        Some(s) => s.to_vec(),
        None => (0..md.num_row_groups()).collect(),
    };
    (!selected.is_empty() && selected.iter().all(|&g| g < md.num_row_groups())).then_some(selected)
}

/// The keys all files share, from the first: the order the whole input has.
pub fn common_keys<'a>(orders: impl IntoIterator<Item = Option<&'a FileOrder>>) -> Vec<OrderKey> {
    let mut common: Option<Vec<OrderKey>> = None;
    for order in orders {
        let Some(order) = order else { return vec![] };
        common = Some(match common {
            None => order.keys.clone(),
            Some(c) => c
                .into_iter()
                .zip(&order.keys)
                .take_while(|(a, b)| a == *b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.unwrap_or_default()
}

/// Least and greatest value of `name` over the selected row groups; `None`
/// without statistics or with nulls.
fn column_range(
    md: &ParquetMetaData,
    schema: &Schema,
    name: &str,
    selected: &[usize],
) -> Option<(ScalarValue, ScalarValue)> {
    let descr = md.file_metadata().schema_descr();
    let converter = StatisticsConverter::try_new(name, schema, descr).ok()?;
    let groups = selected.iter().map(|&g| md.row_group(g));
    let nulls = converter.row_group_null_counts(groups.clone()).ok()?;
    if nulls.null_count() > 0 || nulls.values().iter().any(|&n| n > 0) {
        return None;
    }
    let mins = converter.row_group_mins(groups.clone()).ok()?;
    let maxs = converter.row_group_maxes(groups).ok()?;
    let mut lo: Option<ScalarValue> = None;
    let mut hi: Option<ScalarValue> = None;
    for g in 0..selected.len() {
        let min = ScalarValue::try_from_array(&mins, g).ok()?;
        let max = ScalarValue::try_from_array(&maxs, g).ok()?;
        if min.is_null() || max.is_null() {
            return None;
        }
        if lo
            .as_ref()
            .is_none_or(|l| min.partial_cmp(l) == Some(Ordering::Less))
        {
            lo = Some(min);
        }
        if hi
            .as_ref()
            .is_none_or(|h| max.partial_cmp(h) == Some(Ordering::Greater))
        {
            hi = Some(max);
        }
    }
    Some((lo?, hi?))
}
