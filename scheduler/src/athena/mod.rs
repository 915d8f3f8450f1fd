//! Athena: the reader's check (after registration, `--verify-athena` counts
//! each written partition's rows through Athena in the configured workgroup
//! and compares them with the commit's manifests) and a source (`unload`).

use crate::glue::settings::AthenaSettings;
use crate::glue::table::TableDef;
use aws_sdk_athena::Client;
use aws_sdk_athena::error::DisplayErrorContext;
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use chainbatch_executor::layout::hive;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub mod unload;

/// Partitions one count query filters on, to keep its text well inside
/// Athena's 256 KB limit.
const PARTITIONS_PER_QUERY: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum AthenaError {
    #[error(
        "Athena workgroup `{0}` does not exist: create it (terraform creates one named like \
         the deployment) or name another in globals.yml `athena.workgroup`"
    )]
    MissingWorkgroup(String),
    #[error("Athena query {id} {state}: {reason}\n  query: {query}")]
    QueryFailed {
        id: String,
        state: String,
        reason: String,
        query: String,
    },
    #[error("Athena query {id} did not finish within {seconds} s (athena.timeout_seconds)")]
    Timeout { id: String, seconds: u64 },
    #[error("Athena {operation} failed: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
    #[error("Athena query {id} returned a row chainbatch cannot read: {row:?}")]
    BadRow { id: String, row: Vec<String> },
}

/// Rows per partition path as Athena counts them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub rows: BTreeMap<String, u64>,
    pub bytes_scanned: u64,
    pub queries: usize,
}

pub struct Athena {
    client: Client,
    settings: AthenaSettings,
}

impl Athena {
    pub async fn connect(settings: &AthenaSettings, fallback_region: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = settings.region.as_deref().or(fallback_region) {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        Self {
            client: Client::new(&loader.load().await),
            settings: settings.clone(),
        }
    }

    /// Fails unless the workgroup exists: checked before a run writes anything.
    pub async fn check_workgroup(&self) -> Result<(), AthenaError> {
        let name = &self.settings.workgroup;
        match self.client.get_work_group().work_group(name).send().await {
            Ok(out) if out.work_group().is_some() => Ok(()),
            Ok(_) => Err(AthenaError::MissingWorkgroup(name.clone())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_invalid_request_exception()) =>
            {
                Err(AthenaError::MissingWorkgroup(name.clone()))
            }
            Err(e) => Err(api("GetWorkGroup", e)),
        }
    }

    /// Counts the rows of `partitions` (hive paths; `""` for an
    /// unpartitioned table) of `table`.
    pub async fn count_rows(
        &self,
        table: &TableDef,
        partitions: &[String],
    ) -> Result<Counts, AthenaError> {
        let mut counts = Counts::default();
        let keys = table.key_names();
        let chunks: Vec<&[String]> = match keys.is_empty() {
            true => vec![&[]],
            false => partitions.chunks(PARTITIONS_PER_QUERY).collect(),
        };
        for chunk in chunks {
            let query = count_query(table, chunk).map_err(|message| AthenaError::Api {
                operation: "StartQueryExecution",
                message,
            })?;
            let (id, scanned) = self.run_query(&query, &table.database).await?;
            counts.bytes_scanned += scanned;
            counts.queries += 1;
            for row in self.result_rows(&id).await? {
                let bad = || AthenaError::BadRow {
                    id: id.clone(),
                    row: row.clone(),
                };
                let (n, values) = row.split_last().ok_or_else(bad)?;
                let n: u64 = n.parse().map_err(|_| bad())?;
                if values.len() != keys.len() {
                    return Err(bad());
                }
                let path = keys
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("{k}={}", hive::escape_value(Some(v))))
                    .collect::<Vec<_>>()
                    .join("/");
                *counts.rows.entry(path).or_default() += n;
            }
        }
        Ok(counts)
    }

    /// Starts a query and waits for it; returns its id and bytes scanned.
    pub async fn run_query(
        &self,
        query: &str,
        database: &str,
    ) -> Result<(String, u64), AthenaError> {
        let mut start = self
            .client
            .start_query_execution()
            .query_string(query)
            .work_group(&self.settings.workgroup)
            .query_execution_context(QueryExecutionContext::builder().database(database).build());
        if let Some(out) = &self.settings.output_location {
            start = start
                .result_configuration(ResultConfiguration::builder().output_location(out).build());
        }
        let id = start
            .send()
            .await
            .map_err(|e| api("StartQueryExecution", e))?
            .query_execution_id
            .unwrap_or_default();
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let out = self
                .client
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|e| api("GetQueryExecution", e))?;
            let qe = out.query_execution();
            let status = qe.and_then(|q| q.status());
            match status.and_then(|s| s.state()) {
                Some(QueryExecutionState::Succeeded) => {
                    let scanned = qe
                        .and_then(|q| q.statistics())
                        .and_then(|s| s.data_scanned_in_bytes())
                        .unwrap_or(0);
                    return Ok((id, scanned.max(0) as u64));
                }
                Some(s @ (QueryExecutionState::Failed | QueryExecutionState::Cancelled)) => {
                    return Err(AthenaError::QueryFailed {
                        id,
                        state: s.as_str().to_ascii_lowercase(),
                        reason: status
                            .and_then(|s| s.state_change_reason())
                            .unwrap_or("no reason given")
                            .to_string(),
                        query: query.to_string(),
                    });
                }
                _ => {}
            }
            if started.elapsed() > Duration::from_secs(self.settings.timeout_seconds) {
                return Err(AthenaError::Timeout {
                    id,
                    seconds: self.settings.timeout_seconds,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// The data rows of a finished query, every page; Athena's first row of
    /// a SELECT is the header.
    async fn result_rows(&self, id: &str) -> Result<Vec<Vec<String>>, AthenaError> {
        let mut rows = vec![];
        let mut token: Option<String> = None;
        let mut first = true;
        loop {
            let out = self
                .client
                .get_query_results()
                .query_execution_id(id)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| api("GetQueryResults", e))?;
            if let Some(rs) = out.result_set() {
                for (i, r) in rs.rows().iter().enumerate() {
                    if first && i == 0 {
                        continue;
                    }
                    rows.push(
                        r.data()
                            .iter()
                            .map(|d| d.var_char_value().unwrap_or_default().to_string())
                            .collect(),
                    );
                }
            }
            first = false;
            token = out.next_token;
            if token.is_none() {
                return Ok(rows);
            }
        }
    }
}

fn api<E: std::error::Error>(operation: &'static str, e: E) -> AthenaError {
    AthenaError::Api {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// `SELECT <keys as varchar>, count(*) FROM t WHERE <these partitions> GROUP BY <keys>`.
pub fn count_query(table: &TableDef, partitions: &[String]) -> Result<String, String> {
    let from = format!("\"{}\".\"{}\"", table.database, table.table);
    if table.partition_keys.is_empty() {
        return Ok(format!("SELECT count(*) AS row_count FROM {from}"));
    }
    let select: Vec<String> = table
        .partition_keys
        .iter()
        .map(|k| format!("CAST(\"{}\" AS varchar)", k.name))
        .collect();
    let mut filters = vec![];
    for p in partitions {
        let values = table.partition_values(p)?;
        let conds: Vec<String> = table
            .partition_keys
            .iter()
            .zip(&values)
            .map(|(k, v)| match v.as_str() {
                hive::NULL_PARTITION => format!("\"{}\" IS NULL", k.name),
                v => format!("\"{}\" = {}", k.name, literal(&k.glue_type, v)),
            })
            .collect();
        filters.push(format!("({})", conds.join(" AND ")));
    }
    let group: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
    Ok(format!(
        "SELECT {}, count(*) AS row_count FROM {from} WHERE {} GROUP BY {}",
        select.join(", "),
        filters.join(" OR "),
        group.join(", ")
    ))
}

fn literal(glue_type: &str, v: &str) -> String {
    let quoted = format!("'{}'", v.replace('\'', "''"));
    match glue_type {
        "date" => format!("DATE {quoted}"),
        "timestamp" => format!("TIMESTAMP {quoted}"),
        "tinyint" | "smallint" | "int" | "bigint" | "float" | "double" | "boolean"
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-+.".contains(c)) =>
        {
            v.to_string()
        }
        t if t.starts_with("decimal") => format!("DECIMAL {quoted}"),
        _ => quoted,
    }
}
