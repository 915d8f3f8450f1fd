//! Plans every node's SQL against the catalog's schemas before anything
//! runs: parse errors, unknown tables and unknown columns are caught here.

use crate::catalog::{Catalog, Dataset, DatasetType};
use crate::conf::error::ConfigError;
use crate::pipeline::Node;
use arrow::datatypes::{Field, Schema, SchemaRef};
use chainbatch_executor::schema::to_schema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use std::collections::HashMap;
use std::sync::Arc;

/// What the planner needs to know about a node's SQL.
#[derive(Debug, Clone)]
pub struct SqlShape {
    pub output_schema: SchemaRef,
    /// A join, or a subquery (`IN (SELECT ..)`, `EXISTS`, a scalar
    /// subquery): rows meet rows that another task may hold.
    pub has_join: bool,
    pub has_aggregate: bool,
    /// Column names in the GROUP BY of the outermost aggregate.
    pub group_columns: Vec<String>,
    /// Window functions, ORDER BY, LIMIT or DISTINCT: need all rows at once.
    pub needs_all_rows: bool,
}

/// The session nodes are validated in: the one tasks run in.
pub fn session() -> SessionContext {
    use chainbatch_executor::session;
    session::context(session::config(), Default::default()).expect("functions register")
}

/// The schema a dataset is read with: declared columns plus partition columns.
pub fn read_schema(ds: &Dataset, inferred: Option<SchemaRef>) -> Result<SchemaRef, String> {
    let file_schema = match (&ds.schema, inferred) {
        (Some(cols), _) => {
            to_schema(cols, &format!("{}.schema", ds.name)).map_err(|e| e.message)?
        }
        (None, Some(s)) => s,
        (None, None) => {
            return Err(match ds.kind {
                DatasetType::Parquet => format!(
                    "dataset `{}` declares no schema and has no files to read one from",
                    ds.name
                ),
                _ => format!(
                    "dataset `{}` is {:?} and needs a declared schema",
                    ds.name, ds.kind
                ),
            });
        }
    };
    let mut fields: Vec<Arc<Field>> = file_schema
        .fields()
        .iter()
        .filter(|f| !ds.partitions.iter().any(|p| p.name == *f.name()))
        .cloned()
        .collect();
    let parts =
        to_schema(&ds.partitions, &format!("{}.partitions", ds.name)).map_err(|e| e.message)?;
    fields.extend(parts.fields().iter().cloned());
    Ok(Arc::new(Schema::new(fields)))
}

/// Plans `node`'s SQL with its inputs registered as empty tables.
pub async fn plan_sql(
    node: &Node,
    schemas: &HashMap<String, SchemaRef>,
) -> Result<SqlShape, ConfigError> {
    let ctx = session();
    for input in &node.inputs {
        let schema = schemas.get(input).ok_or_else(|| {
            ConfigError::new(
                format!("{}.inputs", node.key),
                format!("no schema known for `{input}`"),
            )
        })?;
        let table = MemTable::try_new(schema.clone(), vec![vec![]])
            .map_err(|e| ConfigError::new(&node.key, e.to_string()))?;
        ctx.register_table(input.as_str(), Arc::new(table))
            .map_err(|e| ConfigError::new(&node.key, e.to_string()))?;
    }
    let df = ctx.sql(&node.sql).await.map_err(|e| {
        ConfigError::new(
            format!("{}.sql", node.key),
            format!("node `{}`: {}", node.name, e.find_root()),
        )
    })?;
    let plan = df.logical_plan().clone();
    let mut shape = SqlShape {
        output_schema: Arc::new(df.schema().as_arrow().clone()),
        has_join: false,
        has_aggregate: false,
        group_columns: vec![],
        needs_all_rows: false,
    };
    inspect(&plan, &mut shape);
    Ok(shape)
}

fn inspect(plan: &LogicalPlan, shape: &mut SqlShape) {
    // A subquery in an expression is no input of the plan: found here.
    let _ = plan.apply_subqueries(|_| {
        shape.has_join = true;
        Ok(TreeNodeRecursion::Stop)
    });
    match plan {
        LogicalPlan::Join(_) => shape.has_join = true,
        LogicalPlan::Aggregate(a) => {
            if !shape.has_aggregate {
                shape.group_columns = a
                    .group_expr
                    .iter()
                    .flat_map(|e| {
                        e.column_refs()
                            .into_iter()
                            .map(|c| c.name.clone())
                            .collect::<Vec<_>>()
                    })
                    .collect();
            }
            shape.has_aggregate = true;
        }
        LogicalPlan::Window(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Distinct(_) => shape.needs_all_rows = true,
        _ => {}
    }
    for child in plan.inputs() {
        inspect(child, shape);
    }
}

/// Checks every node of a selection in order; later nodes see the output
/// schemas of earlier ones. `inferred` holds schemas read from existing files.
pub async fn validate_nodes(
    nodes: &[Node],
    catalog: &Catalog,
    inferred: &HashMap<String, SchemaRef>,
) -> Result<HashMap<String, SqlShape>, ConfigError> {
    let mut schemas: HashMap<String, SchemaRef> = HashMap::new();
    let mut shapes = HashMap::new();
    for node in nodes {
        for input in &node.inputs {
            if schemas.contains_key(input) {
                continue;
            }
            let ds = &catalog[input];
            let s = read_schema(ds, inferred.get(input).cloned())
                .map_err(|e| ConfigError::new(format!("{}.inputs", node.key), e))?;
            schemas.insert(input.clone(), s);
        }
        let shape = plan_sql(node, &schemas).await?;
        let out = &catalog[&node.output];
        let layout = node
            .layout
            .clone()
            .or_else(|| out.layout.clone())
            .unwrap_or_default();
        check_layout_columns(&layout, &shape.output_schema, &node.key)?;
        // Downstream nodes read the written table: partition columns come from the path.
        let mut written = (*shape.output_schema).clone();
        if !layout.partition_by.is_empty() {
            let names: Vec<&str> = layout.partition_by.iter().map(|p| p.name()).collect();
            let mut fields: Vec<Arc<Field>> = written
                .fields()
                .iter()
                .filter(|f| !names.contains(&f.name().as_str()))
                .cloned()
                .collect();
            for p in &out.partitions {
                fields.push(Arc::new(
                    to_schema(std::slice::from_ref(p), "partitions")
                        .map_err(|e| ConfigError::new(&node.key, e.message))?
                        .field(0)
                        .clone(),
                ));
            }
            written = Schema::new(fields);
        }
        schemas.insert(node.output.clone(), Arc::new(written));
        shapes.insert(node.name.clone(), shape);
    }
    Ok(shapes)
}

fn check_layout_columns(
    layout: &chainbatch_executor::layout::Layout,
    schema: &Schema,
    node_key: &str,
) -> Result<(), ConfigError> {
    let has = |c: &str| schema.field_with_name(c).is_ok();
    let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for (i, k) in layout.sort_keys().iter().enumerate() {
        if !has(&k.column) {
            return Err(ConfigError::new(
                format!("{node_key}.layout.sort_by[{i}]"),
                format!(
                    "unknown column `{}`; the node returns {}",
                    k.column,
                    cols.join(", ")
                ),
            ));
        }
    }
    if let Some(b) = &layout.bucket_by {
        for (i, c) in b.columns.iter().enumerate() {
            if !has(c) {
                return Err(ConfigError::new(
                    format!("{node_key}.layout.bucket_by.columns[{i}]"),
                    format!("unknown column `{c}`; the node returns {}", cols.join(", ")),
                ));
            }
        }
    }
    for (i, p) in layout.partition_by.iter().enumerate() {
        if let chainbatch_executor::layout::PartitionColumn::Column(c) = p
            && !has(c)
        {
            return Err(ConfigError::new(
                format!("{node_key}.layout.partition_by[{i}]"),
                format!("unknown column `{c}`; the node returns {}", cols.join(", ")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    async fn shape_of(sql: &str) -> SqlShape {
        let schema = Arc::new(Schema::new(vec![
            Field::new("hash", DataType::Utf8, false),
            Field::new("value", DataType::Int64, true),
        ]));
        let schemas = HashMap::from([("a".to_string(), schema.clone()), ("b".to_string(), schema)]);
        let node = Node {
            name: "n".into(),
            inputs: vec!["a".into(), "b".into()],
            output: "o".into(),
            sql: sql.into(),
            tags: vec![],
            layout: None,
            key: "p.nodes[0]".into(),
        };
        plan_sql(&node, &schemas).await.unwrap()
    }

    #[tokio::test]
    async fn subqueries_count_as_joins_and_a_union_does_not() {
        for sql in [
            "SELECT * FROM a WHERE hash IN (SELECT hash FROM b)",
            "SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.hash = a.hash)",
            "SELECT hash, value > (SELECT avg(value) FROM b) AS high FROM a",
            "SELECT * FROM a WHERE hash IN (SELECT hash FROM a WHERE value > 0)",
        ] {
            assert!(shape_of(sql).await.has_join, "{sql}");
        }
        let union = shape_of("SELECT * FROM a UNION ALL SELECT * FROM b WHERE value > 0").await;
        assert!(!union.has_join && !union.has_aggregate && !union.needs_all_rows);
        assert!(
            shape_of("SELECT * FROM a UNION SELECT * FROM b")
                .await
                .needs_all_rows
        );
    }
}
