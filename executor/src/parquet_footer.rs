//! Reads a Parquet file's footer from any object store with ranged GETs,
//! to check schemas and count row groups before a scan.

use crate::storage::Location;
use arrow::datatypes::SchemaRef;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use std::sync::Arc;

const FOOTER: u64 = 8;

/// Bytes read from the end of a file in the first request of
/// [`read_footer`]: the whole metadata of most files, and all of a small one.
pub const FOOTER_HINT: u64 = 64 * 1024;

/// Why [`read_footer`] failed.
#[derive(Debug)]
pub enum FooterError {
    /// The store failed (the file is missing, access denied, network...).
    Store(object_store::Error),
    /// The bytes are not a Parquet file.
    Format(String),
}

/// Reads a file's metadata with one GET of its last [`FOOTER_HINT`] bytes
/// (a second when the metadata is larger), and its size, modification
/// time and ETag from the same response: no HEAD, no size needed up front.
pub async fn read_footer(loc: &Location) -> Result<(ObjectMeta, ParquetMetaData), FooterError> {
    let options = GetOptions {
        range: Some(GetRange::Suffix(FOOTER_HINT)),
        ..Default::default()
    };
    let got = loc
        .store
        .get_opts(&loc.path, options)
        .await
        .map_err(FooterError::Store)?;
    let meta = got.meta.clone();
    let size = meta.size;
    let bytes = got.bytes().await.map_err(FooterError::Store)?;
    let format = |m: String| FooterError::Format(m);
    if size < FOOTER + 4 || (bytes.len() as u64) < FOOTER {
        return Err(format(format!(
            "{size} bytes is too small for a Parquet file"
        )));
    }
    let n = bytes.len() as u64;
    let tail = FooterTail::try_from(&bytes[(n - FOOTER) as usize..])
        .map_err(|e| format(format!("not a Parquet file: {e}")))?;
    let len = tail.metadata_length() as u64;
    if len + FOOTER > size {
        return Err(format(format!(
            "corrupt Parquet footer: metadata of {len} bytes in a {size}-byte file"
        )));
    }
    let metadata = if len + FOOTER <= n {
        bytes.slice((n - FOOTER - len) as usize..(n - FOOTER) as usize)
    } else {
        loc.store
            .get_range(&loc.path, size - FOOTER - len..size - FOOTER)
            .await
            .map_err(FooterError::Store)?
    };
    let md = ParquetMetaDataReader::decode_metadata(&metadata)
        .map_err(|e| format(format!("corrupt Parquet metadata: {e}")))?;
    Ok((meta, md))
}

/// Reads the metadata of a Parquet file of `size` bytes with two ranged GETs (the
/// 8-byte tail, then the metadata); errors are plain messages.
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

/// The Arrow schema of a Parquet file, from its metadata (and the Arrow schema
/// stored in it, if any).
pub fn arrow_schema(meta: &ParquetMetaData) -> Result<SchemaRef, String> {
    let fm = meta.file_metadata();
    parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}
