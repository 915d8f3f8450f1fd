//! `TaskFilesTable`: exactly the files a spec lists, read with DataFusion's
//! own Parquet, JSON and CSV scanners, with hive partition values attached.

use crate::error::{TaskError, TaskResult};
use crate::parquet_footer::{arrow_schema, read_metadata};
use crate::schema::{compatible, to_schema, type_name};
use crate::spec::{InputFormat, InputTable};
use crate::storage;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{
    CsvSource, FileGroup, FileScanConfigBuilder, JsonSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use object_store::ObjectStoreExt;
use std::sync::Arc;

#[derive(Debug)]
pub struct TaskFilesTable {
    format: InputFormat,
    store_url: ObjectStoreUrl,
    file_schema: SchemaRef,
    partition_fields: Vec<Arc<Field>>,
    files: Vec<PartitionedFile>,
    schema: SchemaRef,
}

impl TaskFilesTable {
    /// Checks every file exists (and, for Parquet, matches the declared
    /// schema) and builds the table. `field` names the spec's input.
    pub async fn open(runtime: &RuntimeEnv, input: &InputTable, field: &str) -> TaskResult<Self> {
        let declared = match &input.schema {
            Some(cols) => Some(to_schema(cols, &format!("{field}.schema"))?),
            None => None,
        };
        let partition_fields: Vec<Arc<Field>> = to_schema(
            &input.partition_columns,
            &format!("{field}.partition_columns"),
        )?
        .fields()
        .iter()
        .cloned()
        .collect();
        let mut store_url = None;
        let mut files = Vec::with_capacity(input.files.len());
        let mut file_schema = declared.clone();
        for (j, f) in input.files.iter().enumerate() {
            let ffield = format!("{field}.files[{j}]");
            let loc = storage::register(runtime, &f.uri)
                .map_err(|e| TaskError::bad_spec(format!("{ffield}.uri"), e.to_string()))?;
            match &store_url {
                None => store_url = Some(loc.store_url.clone()),
                Some(u) if u != &loc.store_url => {
                    return Err(TaskError::bad_spec(
                        format!("{ffield}.uri"),
                        format!(
                            "all files of one input must be in one store; {} is not in {}",
                            f.uri,
                            u.as_str()
                        ),
                    ));
                }
                _ => {}
            }
            let meta = loc
                .store
                .head(&loc.path)
                .await
                .map_err(|e| TaskError::from_store(&format!("{ffield}.uri"), e))?;
            let mut row_group_count = 0;
            if input.format == InputFormat::Parquet {
                let (found, groups) = parquet_schema(&loc, &meta).await.map_err(|e| {
                    TaskError::bad_spec(format!("{ffield}.uri"), format!("{}: {e}", f.uri))
                })?;
                row_group_count = groups;
                match &file_schema {
                    Some(expected) => {
                        check_schema(expected, &found, &f.uri, &format!("{field}.schema"))?
                    }
                    None => file_schema = Some(found),
                }
            }
            let mut pf = PartitionedFile::new_from_meta(meta);
            pf.partition_values = f
                .partition_values
                .iter()
                .zip(&partition_fields)
                .enumerate()
                .map(|(k, (v, pfield))| {
                    ScalarValue::try_from_string(v.clone(), pfield.data_type()).map_err(|e| {
                        TaskError::bad_spec(
                            format!("{ffield}.partition_values[{k}]"),
                            format!("{v:?} is not a {}: {e}", type_name(pfield.data_type())),
                        )
                    })
                })
                .collect::<TaskResult<_>>()?;
            if let Some(r) = f.range {
                pf = pf.with_range(r.start as i64, r.end as i64);
            }
            if let Some(groups) = &f.row_groups {
                let mut plan = ParquetAccessPlan::new_none(row_group_count);
                for g in groups {
                    if *g >= row_group_count {
                        return Err(TaskError::bad_spec(
                            format!("{ffield}.row_groups"),
                            format!(
                                "row group {g} does not exist; {} has {row_group_count}",
                                f.uri
                            ),
                        ));
                    }
                    plan.scan(*g);
                }
                pf = pf.with_extension(plan);
            }
            files.push(pf);
        }
        let file_schema = file_schema.ok_or_else(|| {
            TaskError::bad_spec(
                format!("{field}.schema"),
                "no files to infer a schema from and no schema declared",
            )
        })?;
        let mut fields: Vec<Arc<Field>> = file_schema.fields().iter().cloned().collect();
        fields.extend(partition_fields.iter().cloned());
        Ok(Self {
            format: input.format,
            store_url: store_url.unwrap_or_else(ObjectStoreUrl::local_filesystem),
            file_schema,
            partition_fields,
            files,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.object_meta.size).sum()
    }
}

async fn parquet_schema(
    loc: &storage::Location,
    meta: &object_store::ObjectMeta,
) -> Result<(SchemaRef, usize), String> {
    let md = read_metadata(loc, meta.size).await?;
    Ok((arrow_schema(&md)?, md.num_row_groups()))
}

/// Every declared column must be in the file with a compatible type.
fn check_schema(expected: &Schema, found: &Schema, uri: &str, field: &str) -> TaskResult<()> {
    for (i, e) in expected.fields().iter().enumerate() {
        match found.field_with_name(e.name()) {
            Err(_) => {
                return Err(TaskError::bad_spec(
                    format!("{field}[{i}]"),
                    format!("column {:?} is declared but missing from {uri}", e.name()),
                ));
            }
            Ok(f) if !compatible(e.data_type(), f.data_type()) => {
                return Err(TaskError::bad_spec(
                    format!("{field}[{i}].type"),
                    format!(
                        "column {:?} is declared {} but {uri} holds {}",
                        e.name(),
                        type_name(e.data_type()),
                        type_name(f.data_type())
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

#[async_trait]
impl TableProvider for TaskFilesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let table_schema =
            datafusion::datasource::table_schema::TableSchema::builder(self.file_schema.clone())
                .with_table_partition_cols(self.partition_fields.clone())
                .build();
        let source: Arc<dyn datafusion::datasource::physical_plan::FileSource> = match self.format {
            InputFormat::Parquet => Arc::new(ParquetSource::new(table_schema)),
            InputFormat::Jsonl => Arc::new(JsonSource::new(table_schema)),
            InputFormat::Csv => {
                let opts = datafusion::common::config::CsvOptions {
                    has_header: Some(true),
                    ..Default::default()
                };
                Arc::new(CsvSource::new(table_schema).with_csv_options(opts))
            }
            InputFormat::Shuffle => unreachable!("shuffle inputs use ShuffleTable"),
        };
        // Spread files over the session's parallelism, largest first.
        let parts = state.config().target_partitions().max(1);
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, vec![]); parts];
        let mut sorted = self.files.clone();
        sorted.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        for f in sorted {
            let g = groups
                .iter_mut()
                .min_by_key(|g| g.0)
                .expect("at least one group");
            g.0 += f.object_meta.size;
            g.1.push(f);
        }
        let groups: Vec<FileGroup> = groups
            .into_iter()
            .filter(|g| !g.1.is_empty())
            .map(|g| FileGroup::new(g.1))
            .collect();
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
