//! Reads a Parquet file's footer from any object store with ranged GETs,
//! to check schemas and count row groups before a scan.

use crate::storage::Location;
use arrow::datatypes::SchemaRef;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStoreExt};
use parquet::file::metadata::{
    FooterTail, KeyValue, ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader,
    ParquetStatisticsPolicy,
};
use parquet::schema::types::SchemaDescPtr;
use std::sync::{Arc, Mutex};

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
/// Pages' encoding and size statistics are not decoded: a task checks
/// schemas, row groups and min/max before its scan, and with thousands of
/// one-block files decoding the footers is a measurable share of the task.
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
    let options = ParquetMetaDataOptions::new()
        .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
    let md = ParquetMetaDataReader::decode_metadata_with_options(&metadata, Some(&options))
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

/// The schemas of many files' footers, each distinct one converted to Arrow
/// once and shared: a day of one-block files is ~7,200 footers of one
/// schema, and converting each (with the Arrow schema pyarrow embeds, a
/// base64 IPC message) cost more than reading it.
#[derive(Debug, Default)]
pub struct FileSchemas {
    seen: Mutex<Vec<SeenSchema>>,
}

#[derive(Debug)]
struct SeenSchema {
    parquet: SchemaDescPtr,
    key_value: Option<Vec<KeyValue>>,
    arrow: SchemaRef,
}

/// Distinct schemas kept: inputs hold one or a few; files whose key-value
/// metadata differs each time (pandas records each file's row range) are
/// converted one by one rather than searched for in a growing list.
const FILE_SCHEMAS_KEPT: usize = 8;

impl FileSchemas {
    /// The file's Parquet schema and Arrow schema (as [`arrow_schema`]
    /// gives it), shared with an earlier file whose schema and key-value
    /// metadata are equal.
    pub fn of(&self, meta: &ParquetMetaData) -> Result<(SchemaDescPtr, SchemaRef), String> {
        let fm = meta.file_metadata();
        let same = |s: &SeenSchema| {
            s.key_value.as_ref() == fm.key_value_metadata()
                && s.parquet.root_schema() == fm.schema_descr().root_schema()
        };
        if let Some(s) = self
            .seen
            .lock()
            .expect("file schemas")
            .iter()
            .find(|s| same(s))
        {
            return Ok((s.parquet.clone(), s.arrow.clone()));
        }
        let arrow = arrow_schema(meta)?;
        let parquet = fm.schema_descr_ptr();
        let mut seen = self.seen.lock().expect("file schemas");
        if seen.len() < FILE_SCHEMAS_KEPT && !seen.iter().any(same) {
            seen.push(SeenSchema {
                parquet: parquet.clone(),
                key_value: fm.key_value_metadata().cloned(),
                arrow: arrow.clone(),
            });
        }
        Ok((parquet, arrow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    /// The metadata of a one-column file, with `pandas` key-value metadata.
    fn footer(column: &str, pandas: &str) -> ParquetMetaData {
        let schema = Arc::new(Schema::new(vec![Field::new(
            column,
            DataType::Int64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "pandas".to_string(),
                pandas.to_string(),
            )]))
            .build();
        let mut buf = vec![];
        let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::from(buf))
            .unwrap()
    }

    #[test]
    fn files_of_one_schema_share_it_and_others_keep_their_own() {
        let schemas = FileSchemas::default();
        let (p1, a1) = schemas.of(&footer("block_number", "a")).unwrap();
        let (p2, a2) = schemas.of(&footer("block_number", "a")).unwrap();
        assert!(Arc::ptr_eq(&p1, &p2) && Arc::ptr_eq(&a1, &a2));
        // Another column, or other key-value metadata: converted anew.
        let (p3, a3) = schemas.of(&footer("number", "a")).unwrap();
        assert_eq!(a3.field(0).name(), "number");
        assert!(!Arc::ptr_eq(&p1, &p3));
        let (_, a4) = schemas.of(&footer("block_number", "b")).unwrap();
        assert_eq!(a4.metadata().get("pandas").map(String::as_str), Some("b"));
        assert_eq!(a1.metadata().get("pandas").map(String::as_str), Some("a"));
    }
}
