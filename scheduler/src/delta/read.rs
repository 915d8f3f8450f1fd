//! Reading a Delta dataset: the files of one version, from its log.

use super::{DeltaError, ReadAt, table_builder};
use crate::catalog::Dataset;
use crate::plan::dates::DateRange;
use crate::plan::listing::ListedFile;
use futures::TryStreamExt;

/// The live files of `ds` at the version its catalog entry reads (latest,
/// `version` or `as_of`), with their partition values in the catalog's
/// partition order, keeping those whose date is in `dates`. A table that
/// does not exist yet has no files.
pub async fn list_files(
    ds: &Dataset,
    read_at: &ReadAt,
    dates: Option<&DateRange>,
) -> Result<Vec<ListedFile>, DeltaError> {
    let (builder, table) = table_builder(&ds.path)?;
    let delta = |source| DeltaError::Delta {
        table: table.clone(),
        source,
    };
    if !super::exists(&ds.path).await? {
        if *read_at != ReadAt::Latest {
            return Err(DeltaError::Invalid {
                table: table.clone(),
                message: format!(
                    "dataset `{}` reads {read_at}, but there is no Delta table there",
                    ds.name
                ),
            });
        }
        return Ok(vec![]);
    }
    let builder = match read_at {
        ReadAt::Latest => builder,
        ReadAt::Version(v) => builder.with_version(*v),
        ReadAt::AsOf(t) => builder.with_datestring(t).map_err(delta)?,
    };
    let t = builder.load().await.map_err(delta)?;
    let columns = t
        .snapshot()
        .map_err(delta)?
        .metadata()
        .partition_columns()
        .to_vec();
    for p in &ds.partitions {
        if !columns.contains(&p.name) {
            return Err(DeltaError::Invalid {
                table: table.clone(),
                message: format!(
                    "the catalog gives dataset `{}` the partition column `{}`; the table is \
                     partitioned by {columns:?}",
                    ds.name, p.name
                ),
            });
        }
    }
    let date_idx = ds
        .date_column
        .as_ref()
        .and_then(|c| ds.partitions.iter().position(|p| &p.name == c));
    let views: Vec<_> = t
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .map_err(delta)?;
    let mut out = Vec::with_capacity(views.len());
    for f in views {
        let values = f.partition_values_map();
        let ordered: Vec<String> = ds
            .partitions
            .iter()
            .map(|p| values.get(&p.name).cloned().flatten().unwrap_or_default())
            .collect();
        if let (Some(range), Some(i)) = (dates, date_idx)
            && !range.contains(&ordered[i])
        {
            continue;
        }
        out.push(ListedFile {
            uri: format!("{table}/{}", f.path()),
            size: u64::try_from(f.size()).unwrap_or(0),
            partition_values: ordered,
            // The log records milliseconds.
            modified: u64::try_from(f.modification_time() / 1000).unwrap_or(0),
        });
    }
    crate::plan::listing::sort_listed(&mut out);
    Ok(out)
}
