//! Reads a Parquet file's footer from any object store with two ranged GETs,
//! to check schemas and count row groups before a scan.

use crate::storage::Location;
use arrow::datatypes::SchemaRef;
use object_store::ObjectStoreExt;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use std::sync::Arc;

const FOOTER: u64 = 8;

pub async fn read_metadata(loc: &Location, size: u64) -> Result<ParquetMetaData, String> {
    if size < FOOTER + 4 {
        return Err(format!("{size} bytes is too small for a Parquet file"));
    }
    let tail = loc
        .store
        .get_range(&loc.path, size - FOOTER..size)
        .await
        .map_err(|e| e.to_string())?;
    let tail =
        FooterTail::try_from(tail.as_ref()).map_err(|e| format!("not a Parquet file: {e}"))?;
    let len = tail.metadata_length() as u64;
    if len + FOOTER > size {
        return Err(format!(
            "corrupt Parquet footer: metadata of {len} bytes in a {size}-byte file"
        ));
    }
    let meta = loc
        .store
        .get_range(&loc.path, size - FOOTER - len..size - FOOTER)
        .await
        .map_err(|e| e.to_string())?;
    ParquetMetaDataReader::decode_metadata(&meta)
        .map_err(|e| format!("corrupt Parquet metadata: {e}"))
}

pub fn arrow_schema(meta: &ParquetMetaData) -> Result<SchemaRef, String> {
    let fm = meta.file_metadata();
    parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}
