//! The tables of the AWS Public Blockchain Data `eth` dataset
//! (`s3://aws-public-blockchain/v1.0/eth/<table>/date=YYYY-MM-DD/`), one
//! file per table, each listing its columns as the public producer writes
//! them (`analytics/producer/copilot/ethereum-worker/worker.py` in
//! `aws-solutions-library-samples/guidance-for-digital-assets-on-aws`).
//!
//! The producer turns each block's JSON-RPC data into pandas DataFrames and
//! writes them with pyarrow (through awswrangler), snappy-compressed:
//!
//! - every file also stores `date` (the `YYYY-MM-DD` string of the hive
//!   path) and `last_modified` (when the row was written). `date` is the
//!   partition column here: it is not part of a table's columns, since the
//!   path gives it; see `docs/datasets.md` for how the copy inside the files
//!   is checked;
//! - timestamps are naive (no time zone) pandas `datetime64` values, stored
//!   in nanoseconds (INT96 with awswrangler's default Spark flavour),
//!   microseconds or milliseconds; they are UTC, and read as such whatever
//!   the unit;
//! - integers may be nullable (pandas `Int64`), amounts are DOUBLE.
//!
//! A column is `required` when the producer writes a value for every row:
//! those that identify a row and place it in its block. Named schemas declare
//! them non-nullable, and a file that lacks one is refused; a file that lacks
//! any other column reads it as null.

pub mod blocks;
pub mod contracts;
pub mod logs;
pub mod token_transfers;
pub mod traces;
pub mod transactions;

use chainbatch_executor::schema::ColumnSpec;

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The type the public dataset stores.
    pub aws: &'static str,
    /// The type chainbatch writes (the `exact` variant): wei and other
    /// uint256 amounts as decimals instead of doubles.
    pub exact: &'static str,
    /// Every row has a value: declared non-nullable.
    pub required: bool,
}

impl Column {
    /// A column every row has, typed alike in both variants.
    pub const fn required(name: &'static str, ty: &'static str) -> Self {
        Self {
            name,
            aws: ty,
            exact: ty,
            required: true,
        }
    }

    /// A column that may be null or absent, typed alike in both variants.
    pub const fn optional(name: &'static str, ty: &'static str) -> Self {
        Self {
            name,
            aws: ty,
            exact: ty,
            required: false,
        }
    }

    /// An amount the public dataset stores as `aws` (DOUBLE) and chainbatch
    /// writes as `exact`; may be null.
    pub const fn amount(name: &'static str, aws: &'static str, exact: &'static str) -> Self {
        Self {
            name,
            aws,
            exact,
            required: false,
        }
    }

    pub fn spec(&self, exact: bool) -> ColumnSpec {
        let mut c = ColumnSpec::new(self.name, if exact { self.exact } else { self.aws });
        c.nullable = !self.required;
        c
    }
}

/// When the producer wrote the row: `datetime.now()` of its worker, naive.
/// Milliseconds keep what the dataset's files hold at their coarsest unit.
pub const LAST_MODIFIED: Column = Column::optional("last_modified", "timestamp(ms)");

/// What chainbatch knows about one table.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    /// In the order of the producer's schema (`eth.md`), `date` left out.
    pub columns: &'static [Column],
    /// The timestamp whose UTC date is the row's `date` partition.
    pub timestamp: &'static str,
    /// The order the producer writes rows in (block by block).
    pub sort_by: &'static [&'static str],
    /// The ethereum-etl export `chainbatch import` reads, if any.
    pub ethereum_etl_file: Option<&'static str>,
}

/// The `eth` tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EthTable {
    Blocks,
    Transactions,
    Logs,
    TokenTransfers,
    Traces,
    Contracts,
}

impl EthTable {
    pub const ALL: [EthTable; 6] = [
        EthTable::Blocks,
        EthTable::Transactions,
        EthTable::Logs,
        EthTable::TokenTransfers,
        EthTable::Traces,
        EthTable::Contracts,
    ];

    pub fn def(self) -> &'static TableDef {
        match self {
            EthTable::Blocks => &blocks::TABLE,
            EthTable::Transactions => &transactions::TABLE,
            EthTable::Logs => &logs::TABLE,
            EthTable::TokenTransfers => &token_transfers::TABLE,
            EthTable::Traces => &traces::TABLE,
            EthTable::Contracts => &contracts::TABLE,
        }
    }

    /// The table's directory name: `transactions`.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether an `exact` variant differs from the public dataset's types.
    pub fn has_exact(self) -> bool {
        self.def().columns.iter().any(|c| c.aws != c.exact)
    }

    /// The columns stored in files, in either variant.
    pub fn columns(self, exact: bool) -> Vec<ColumnSpec> {
        self.def().columns.iter().map(|c| c.spec(exact)).collect()
    }

    /// The schema name of a variant: `eth.transactions.exact`; a table
    /// without amounts has one variant, `eth.logs`.
    pub fn schema_name(self, exact: bool) -> String {
        if exact && self.has_exact() {
            format!("eth.{}.exact", self.name())
        } else {
            format!("eth.{}", self.name())
        }
    }

    /// The names a catalog's `schema:` accepts for this table.
    pub fn schema_names(self) -> Vec<String> {
        let mut names = vec![self.schema_name(false)];
        if self.has_exact() {
            names.push(self.schema_name(true));
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_keys_required_and_ends_with_last_modified() {
        for t in EthTable::ALL {
            let d = t.def();
            assert_eq!(EthTable::from_name(d.name), Some(t));
            let col = |n: &str| d.columns.iter().find(|c| c.name == n);
            assert!(col(d.timestamp).unwrap().required, "{}", d.name);
            for k in d.sort_by {
                assert!(col(k).unwrap().required, "{}.{k}", d.name);
            }
            assert_eq!(d.columns.last(), Some(&LAST_MODIFIED), "{}", d.name);
            assert!(col("date").is_none(), "{}: date is the partition", d.name);
            let mut names: Vec<&str> = d.columns.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), d.columns.len(), "{}", d.name);
        }
    }
}
