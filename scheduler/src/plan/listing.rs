//! Lists a dataset's files with their hive partition values, pruned by the
//! date window before anything is read.

use crate::catalog::{Dataset, DatasetType};
use crate::plan::dates::DateRange;
use chainbatch_executor::layout::hive::unescape_value;
use chainbatch_executor::storage;
use futures::TryStreamExt;

#[derive(Debug, Clone, PartialEq)]
pub struct ListedFile {
    pub uri: String,
    pub size: u64,
    /// Values of the dataset's partition columns, in order.
    pub partition_values: Vec<String>,
    /// When the file was last written (Unix seconds; 0 if unknown).
    pub modified: u64,
}

impl ListedFile {
    pub fn partition_key(&self) -> String {
        self.partition_values.join("/")
    }
}

fn extension_matches(kind: DatasetType, name: &str) -> bool {
    match kind {
        DatasetType::Parquet => name.ends_with(".parquet"),
        DatasetType::Jsonl => {
            name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".json.gz")
        }
        DatasetType::Csv => name.ends_with(".csv") || name.ends_with(".csv.gz"),
    }
}

/// Lists the files of `ds`, keeping those whose date is in `dates` (when
/// the dataset has a date partition column). A Delta table's files are
/// those of the version it is read at, from its log.
pub async fn list_dataset(
    ds: &Dataset,
    dates: Option<&DateRange>,
) -> Result<Vec<ListedFile>, String> {
    if let Some(d) = &ds.delta {
        return crate::delta::read::list_files(ds, &d.read_at, dates)
            .await
            .map_err(|e| e.to_string());
    }
    let root = storage::resolve(&ds.path).map_err(|e| format!("{}: {e}", ds.name))?;
    let prefix = root.path.clone();
    let date_idx = ds
        .date_column
        .as_ref()
        .and_then(|c| ds.partitions.iter().position(|p| &p.name == c));
    let listed: Vec<object_store::ObjectMeta> =
        match root.store.list(Some(&prefix)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => {
                return Err(format!(
                    "cannot list dataset `{}` at {}: {e}",
                    ds.name, ds.path
                ));
            }
        };
    let mut out = vec![];
    for meta in listed {
        let full = meta.location.as_ref();
        let rel = full
            .strip_prefix(prefix.as_ref())
            .unwrap_or(full)
            .trim_start_matches('/');
        let segments: Vec<&str> = rel.split('/').collect();
        let (file, dirs) = segments.split_last().expect("a path has a last segment");
        // Skip chainbatch's own state, hidden files and other formats.
        if dirs
            .iter()
            .chain(std::iter::once(file))
            .any(|s| s.starts_with('_') || s.starts_with('.'))
            // Athena names UNLOAD's Parquet files without an extension.
            || !(ds.athena.is_some() || extension_matches(ds.kind, file))
        {
            continue;
        }
        let mut values = Vec::with_capacity(ds.partitions.len());
        for col in &ds.partitions {
            let v = dirs
                .iter()
                .find_map(|d| d.strip_prefix(&format!("{}=", col.name)));
            match v {
                Some(v) => values.push(unescape_value(v).unwrap_or_default()),
                None => {
                    return Err(format!(
                        "dataset `{}`: {} is not under a `{}=` directory; the catalog declares partitions {:?}",
                        ds.name,
                        rel,
                        col.name,
                        ds.partitions.iter().map(|p| &p.name).collect::<Vec<_>>()
                    ));
                }
            }
        }
        if let (Some(range), Some(i)) = (dates, date_idx)
            && !range.contains(&values[i])
        {
            continue;
        }
        out.push(ListedFile {
            uri: format!("{}{}", root.store_url.as_str(), full),
            size: meta.size,
            partition_values: values,
            modified: u64::try_from(meta.last_modified.timestamp()).unwrap_or(0),
        });
    }
    sort_listed(&mut out);
    Ok(out)
}

/// The order tasks are planned in: by partition, then by file.
pub fn sort_listed(files: &mut [ListedFile]) {
    files.sort_by(|a, b| {
        a.partition_values
            .cmp(&b.partition_values)
            .then(a.uri.cmp(&b.uri))
    });
}
