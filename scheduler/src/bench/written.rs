//! What a layout wrote: files, bytes, file sizes and rows per row group,
//! read from the listing and the Parquet footers.

use chainbatch_executor::storage;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use parquet::file::metadata::ParquetMetaDataReader;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Written {
    pub files: usize,
    pub bytes: u64,
    pub partitions: usize,
    pub min_file_bytes: u64,
    pub median_file_bytes: u64,
    pub max_file_bytes: u64,
    pub rows: u64,
    pub row_groups: usize,
    pub rows_per_row_group: u64,
}

/// Lists the data files below `uri` (not chainbatch's `_chainbatch/` state)
/// and reads each footer.
pub async fn inspect(uri: &str) -> Result<Written, String> {
    let loc = storage::resolve(uri).map_err(|e| e.to_string())?;
    let metas: Vec<_> = loc
        .store
        .list(Some(&loc.path))
        .try_collect()
        .await
        .map_err(|e| format!("cannot list {uri}: {e}"))?;
    let mut sizes = vec![];
    let mut partitions = std::collections::BTreeSet::new();
    let mut w = Written::default();
    for m in metas {
        let key = m.location.as_ref();
        if crate::paths::is_state(key) || !key.ends_with(".parquet") {
            continue;
        }
        if let Some((dir, _)) = key.rsplit_once('/') {
            partitions.insert(dir.to_string());
        }
        sizes.push(m.size);
        let footer = loc
            .store
            .get_range(&m.location, m.size.saturating_sub(64 * 1024)..m.size)
            .await
            .map_err(|e| format!("cannot read {key}: {e}"))?;
        let mut reader = ParquetMetaDataReader::new();
        let meta = match reader.try_parse_sized(&footer, m.size) {
            Ok(()) => reader.finish().map_err(|e| format!("{key}: {e}"))?,
            Err(_) => {
                // A footer larger than the tail read: read the whole file.
                let all = loc
                    .store
                    .get(&m.location)
                    .await
                    .map_err(|e| format!("cannot read {key}: {e}"))?
                    .bytes()
                    .await
                    .map_err(|e| format!("cannot read {key}: {e}"))?;
                ParquetMetaDataReader::new()
                    .parse_and_finish(&all)
                    .map_err(|e| format!("{key}: {e}"))?
            }
        };
        w.rows += meta.file_metadata().num_rows() as u64;
        w.row_groups += meta.num_row_groups();
    }
    sizes.sort_unstable();
    w.files = sizes.len();
    w.bytes = sizes.iter().sum();
    w.partitions = partitions.len();
    w.min_file_bytes = sizes.first().copied().unwrap_or(0);
    w.median_file_bytes = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    w.max_file_bytes = sizes.last().copied().unwrap_or(0);
    w.rows_per_row_group = w.rows / (w.row_groups.max(1) as u64);
    Ok(w)
}
