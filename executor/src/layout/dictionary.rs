//! Which columns get Parquet dictionary encoding.
//!
//! A dictionary pays where values repeat (addresses, block numbers, status
//! codes) and only costs where they do not: a writer interns every value of
//! a hash or calldata column until the dictionary page overflows, then
//! starts over in plain encoding, once per row group. With `auto`, the first
//! batch a writer sees decides: a column whose sampled values are mostly
//! distinct is written without a dictionary.

use arrow::array::Array;
use arrow::datatypes::{DataType, FieldRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The layout's `dictionary` setting: `auto` (the default), `true` or `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Setting", into = "Setting")]
pub enum Dictionary {
    /// Per column, from the first rows written.
    #[default]
    Auto,
    /// Every column.
    On,
    /// No column.
    Off,
}

/// How the setting is written in YAML and JSON.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Setting {
    Flag(bool),
    Word(String),
}

impl TryFrom<Setting> for Dictionary {
    type Error = String;

    fn try_from(s: Setting) -> Result<Self, String> {
        match s {
            Setting::Flag(true) => Ok(Dictionary::On),
            Setting::Flag(false) => Ok(Dictionary::Off),
            Setting::Word(w) if w == "auto" => Ok(Dictionary::Auto),
            Setting::Word(w) => Err(format!(
                "dictionary: expected true, false or auto, found {w:?}"
            )),
        }
    }
}

impl From<Dictionary> for Setting {
    fn from(d: Dictionary) -> Self {
        match d {
            Dictionary::Auto => Setting::Word("auto".into()),
            Dictionary::On => Setting::Flag(true),
            Dictionary::Off => Setting::Flag(false),
        }
    }
}

/// Fewer sampled values than this decide nothing: too few to tell.
const MIN_SAMPLE: usize = 256;
/// A column whose sample is at least this share distinct skips the dictionary.
const DISTINCT_SHARE: f64 = 0.5;

/// The flat columns of `batch` whose non-null values are mostly distinct.
pub fn mostly_distinct_columns(batch: &RecordBatch) -> Vec<FieldRef> {
    let state = RandomState::with_seed(0x6469_6374);
    let mut out = vec![];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() || matches!(field.data_type(), DataType::Boolean) {
            continue;
        }
        let values = column.len() - column.null_count();
        if values < MIN_SAMPLE {
            continue;
        }
        let mut hashes = vec![0u64; column.len()];
        if create_hashes(std::slice::from_ref(column), &state, &mut hashes).is_err() {
            continue;
        }
        let distinct: HashSet<u64> = hashes
            .iter()
            .enumerate()
            .filter(|(i, _)| column.is_valid(*i))
            .map(|(_, h)| *h)
            .collect();
        if distinct.len() as f64 >= DISTINCT_SHARE * values as f64 {
            out.push(field.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn unique_columns_are_found_and_repeating_ones_kept() {
        let n = 1000;
        let hashes: Vec<String> = (0..n).map(|i| format!("0x{i:064x}")).collect();
        let batch = RecordBatch::try_from_iter([
            (
                "hash",
                Arc::new(StringArray::from(hashes)) as Arc<dyn Array>,
            ),
            (
                "status",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 2))),
            ),
            (
                "block_number",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i / 100))),
            ),
        ])
        .unwrap();
        let names: Vec<String> = mostly_distinct_columns(&batch)
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, vec!["hash"]);
    }

    #[test]
    fn settings_read_as_written() {
        for (text, want) in [
            ("true", Dictionary::On),
            ("false", Dictionary::Off),
            ("\"auto\"", Dictionary::Auto),
        ] {
            let d: Dictionary = serde_json::from_str(text).unwrap();
            assert_eq!(d, want);
            assert_eq!(serde_json::to_string(&d).unwrap(), text);
        }
        let err = serde_json::from_str::<Dictionary>("\"sometimes\"").unwrap_err();
        assert!(err.to_string().contains("true, false or auto"), "{err}");
    }
}
