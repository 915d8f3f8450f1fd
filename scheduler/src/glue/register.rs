//! Talks to the Glue Data Catalog: creates or updates a dataset's table and
//! registers its committed partitions. Every call is idempotent, so a
//! registration cut short is simply done again.

use crate::glue::settings::GlueSettings;
use crate::glue::table::TableDef;
use crate::glue::types::GlueColumn;
use aws_sdk_glue::Client;
use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{Column, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use std::collections::HashMap;

/// Glue takes at most this many partitions a `BatchCreatePartition` call.
pub const PARTITIONS_PER_CALL: usize = 100;

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";

#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    #[error(
        "Glue database `{database}` does not exist{region}: create it (terraform creates \
         `<name>_eth`) or name another in globals.yml `glue.database`"
    )]
    MissingDatabase { database: String, region: String },
    #[error(
        "Glue table `{table}` is partitioned by ({found}) but the dataset by ({expected}); \
         Glue cannot change a table's partition keys: drop the table or register the dataset \
         under another `glue.table`"
    )]
    PartitionKeys {
        table: String,
        found: String,
        expected: String,
    },
    #[error("Glue {operation} on `{target}` failed: {message}")]
    Api {
        operation: &'static str,
        target: String,
        message: String,
    },
}

/// What one registration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registered {
    pub table_created: bool,
    pub table_updated: bool,
    pub partitions_created: usize,
    pub partitions_existing: usize,
}

impl Registered {
    pub fn describe(&self, table: &TableDef) -> String {
        let t = match (self.table_created, self.table_updated) {
            (true, _) => "created table",
            (_, true) => "updated table",
            _ => "table",
        };
        match table.registers_partitions() {
            true => format!(
                "Glue: {t} {}; {} partition(s) registered, {} already there",
                table.name(),
                self.partitions_created,
                self.partitions_existing
            ),
            false if !table.projection.is_empty() => {
                format!("Glue: {t} {} (partition projection)", table.name())
            }
            false => format!("Glue: {t} {}", table.name()),
        }
    }
}

pub struct Registrar {
    client: Client,
    region: String,
}

impl Registrar {
    pub async fn connect(settings: &GlueSettings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &settings.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let conf = loader.load().await;
        let region = conf.region().map(|r| r.to_string()).unwrap_or_default();
        Self {
            client: Client::new(&conf),
            region,
        }
    }

    /// Fails unless `database` exists: checked before a run writes anything.
    pub async fn check_database(&self, database: &str) -> Result<(), GlueError> {
        match self.client.get_database().name(database).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Err(GlueError::MissingDatabase {
                    database: database.to_string(),
                    region: match self.region.is_empty() {
                        true => String::new(),
                        false => format!(" in {}", self.region),
                    },
                })
            }
            Err(e) => Err(api("GetDatabase", database, e)),
        }
    }

    /// Creates or updates the table, then registers `partitions` (hive
    /// paths) unless the table projects them.
    pub async fn register(
        &self,
        table: &TableDef,
        partitions: &[String],
    ) -> Result<Registered, GlueError> {
        let mut done = self.ensure_table(table).await?;
        if table.registers_partitions() {
            let (created, existing) = self.add_partitions(table, partitions).await?;
            done.partitions_created = created;
            done.partitions_existing = existing;
        }
        Ok(done)
    }

    async fn ensure_table(&self, t: &TableDef) -> Result<Registered, GlueError> {
        let found = self
            .client
            .get_table()
            .database_name(&t.database)
            .name(&t.table)
            .send()
            .await;
        let existing = match found {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(api("GetTable", &t.name(), e)),
        };
        let Some(existing) = existing else {
            self.client
                .create_table()
                .database_name(&t.database)
                .table_input(table_input(t)?)
                .send()
                .await
                .map_err(|e| api("CreateTable", &t.name(), e))?;
            return Ok(Registered {
                table_created: true,
                ..Default::default()
            });
        };
        let found_keys: Vec<String> = existing
            .partition_keys()
            .iter()
            .map(|c| c.name().to_ascii_lowercase())
            .collect();
        let expected_keys: Vec<String> = t
            .glue_partition_keys()
            .iter()
            .map(|k| k.name.clone())
            .collect();
        if found_keys != expected_keys {
            return Err(GlueError::PartitionKeys {
                table: t.name(),
                found: found_keys.join(", "),
                expected: expected_keys.join(", "),
            });
        }
        let sd = existing.storage_descriptor();
        let same_columns = sd.is_some_and(|sd| {
            columns_of(sd.columns()) == t.glue_columns()
                && sd.location() == Some(t.location.as_str())
        }) && columns_of(existing.partition_keys()) == t.glue_partition_keys();
        let params = existing.parameters().cloned().unwrap_or_default();
        let same_params = table_parameters(t)
            .iter()
            .all(|(k, v)| params.get(k) == Some(v));
        if same_columns && same_params {
            return Ok(Registered::default());
        }
        self.client
            .update_table()
            .database_name(&t.database)
            .table_input(table_input(t)?)
            .send()
            .await
            .map_err(|e| api("UpdateTable", &t.name(), e))?;
        Ok(Registered {
            table_updated: true,
            ..Default::default()
        })
    }

    /// Registers partitions 100 a call; a partition already there counts as
    /// registered (its location never changes: a rerun replaces its files).
    async fn add_partitions(
        &self,
        t: &TableDef,
        partitions: &[String],
    ) -> Result<(usize, usize), GlueError> {
        let (mut created, mut existing) = (0, 0);
        for chunk in partitions.chunks(PARTITIONS_PER_CALL) {
            let inputs = chunk
                .iter()
                .map(|p| {
                    let values = t.partition_values(p).map_err(|message| GlueError::Api {
                        operation: "BatchCreatePartition",
                        target: t.name(),
                        message,
                    })?;
                    Ok(PartitionInput::builder()
                        .set_values(Some(values))
                        .storage_descriptor(storage(t, &t.partition_location(p))?)
                        .build())
                })
                .collect::<Result<Vec<_>, GlueError>>()?;
            let out = self
                .client
                .batch_create_partition()
                .database_name(&t.database)
                .table_name(&t.table)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| api("BatchCreatePartition", &t.name(), e))?;
            for err in out.errors() {
                let detail = err.error_detail();
                match detail.and_then(|d| d.error_code()) {
                    Some("AlreadyExistsException") => existing += 1,
                    code => {
                        return Err(GlueError::Api {
                            operation: "BatchCreatePartition",
                            target: t.name(),
                            message: format!(
                                "partition ({}): {}: {}",
                                err.partition_values().join(", "),
                                code.unwrap_or("error"),
                                detail.and_then(|d| d.error_message()).unwrap_or_default()
                            ),
                        });
                    }
                }
            }
            created += chunk.len() - out.errors().len();
        }
        Ok((created, existing))
    }
}

fn api<E: std::error::Error>(operation: &'static str, target: &str, e: E) -> GlueError {
    GlueError::Api {
        operation,
        target: target.to_string(),
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn columns_of(cols: &[Column]) -> Vec<GlueColumn> {
    cols.iter()
        .map(|c| GlueColumn {
            name: c.name().to_ascii_lowercase(),
            glue_type: c.r#type().unwrap_or_default().to_string(),
        })
        .collect()
}

fn glue_columns(cols: &[GlueColumn], target: &str) -> Result<Vec<Column>, GlueError> {
    cols.iter()
        .map(|c| {
            Column::builder()
                .name(&c.name)
                .r#type(&c.glue_type)
                .build()
                .map_err(|e| GlueError::Api {
                    operation: "CreateTable",
                    target: target.to_string(),
                    message: e.to_string(),
                })
        })
        .collect()
}

fn storage(t: &TableDef, location: &str) -> Result<StorageDescriptor, GlueError> {
    let mut serde = SerDeInfo::builder()
        .serialization_library(SERDE)
        .parameters("serialization.format", "1");
    if t.delta {
        // Where Spark and Glue's Delta crawler look for the table.
        serde = serde.parameters("path", location);
    }
    Ok(StorageDescriptor::builder()
        .set_columns(Some(glue_columns(&t.glue_columns(), &t.name())?))
        .location(location)
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .serde_info(serde.build())
        .build())
}

fn table_parameters(t: &TableDef) -> HashMap<String, String> {
    let mut p: HashMap<String, String> =
        HashMap::from([("EXTERNAL".to_string(), "TRUE".to_string())]);
    if t.delta {
        // Athena reads a table with these from its Delta log.
        p.insert("table_type".into(), "DELTA".into());
        p.insert("spark.sql.sources.provider".into(), "delta".into());
    } else {
        p.insert("classification".into(), "parquet".into());
    }
    p.extend(t.projection.clone());
    p
}

fn table_input(t: &TableDef) -> Result<TableInput, GlueError> {
    TableInput::builder()
        .name(&t.table)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(table_parameters(t)))
        .set_partition_keys(Some(glue_columns(t.glue_partition_keys(), &t.name())?))
        .storage_descriptor(storage(t, &t.location)?)
        .build()
        .map_err(|e| GlueError::Api {
            operation: "CreateTable",
            target: t.name(),
            message: e.to_string(),
        })
}
