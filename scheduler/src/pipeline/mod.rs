//! Pipelines of SQL nodes, their DAG, and node selection.

pub mod validate;

use crate::catalog::{Catalog, DatasetType, parse_layout};
use crate::conf::error::{ConfigError, suggest};
use crate::conf::typed::{check_keys, get, mapping, optional_str, required_str, str_list};
use chainbatch_executor::layout::Layout;
use serde_norway::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub sql: String,
    pub tags: Vec<String>,
    /// Overrides the output dataset's layout for this node's write.
    pub layout: Option<Layout>,
    /// Key path of the node in pipelines.yml, for messages.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// Nodes in dependency order.
    pub nodes: Vec<Node>,
}

pub type Pipelines = BTreeMap<String, Pipeline>;

const PIPELINE_KEYS: &[&str] = &["nodes", "description"];
const NODE_KEYS: &[&str] = &[
    "name", "inputs", "outputs", "sql", "sql_file", "tags", "layout",
];

pub fn parse_pipelines(
    root: &Value,
    conf_dir: &Path,
    catalog: &Catalog,
) -> Result<Pipelines, ConfigError> {
    let mut out = Pipelines::new();
    for (name, v) in mapping(root, "")? {
        let name = name.as_str().unwrap_or_default().to_string();
        let m = mapping(v, &name)?;
        check_keys(m, PIPELINE_KEYS, &name)?;
        let nodes_v = get(m, "nodes").ok_or_else(|| {
            ConfigError::new(format!("{name}.nodes"), "is required: a list of nodes")
        })?;
        let items = nodes_v
            .as_sequence()
            .ok_or_else(|| ConfigError::new(format!("{name}.nodes"), "expected a list of nodes"))?;
        let mut nodes = vec![];
        for (i, item) in items.iter().enumerate() {
            nodes.push(parse_node(
                item,
                &format!("{name}.nodes[{i}]"),
                conf_dir,
                catalog,
            )?);
        }
        let nodes = topo_sort(nodes, &name)?;
        out.insert(
            name.clone(),
            Pipeline {
                description: optional_str(m, "description", &name)?,
                name,
                nodes,
            },
        );
    }
    Ok(out)
}

fn check_dataset(catalog: &Catalog, ds: &str, key: &str) -> Result<(), ConfigError> {
    if catalog.contains_key(ds) {
        return Ok(());
    }
    let hint = suggest(ds, catalog.keys().map(String::as_str))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_else(|| {
            format!(
                "; the catalog has: {}",
                catalog.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        });
    Err(ConfigError::new(
        key,
        format!("unknown dataset `{ds}`{hint}"),
    ))
}

fn parse_node(
    v: &Value,
    key: &str,
    conf_dir: &Path,
    catalog: &Catalog,
) -> Result<Node, ConfigError> {
    let m = mapping(v, key)?;
    check_keys(m, NODE_KEYS, key)?;
    let name = required_str(m, "name", key)?;
    let inputs = str_list(m, "inputs", key)?;
    if inputs.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.inputs"),
            "a node needs at least one input dataset",
        ));
    }
    for (i, ds) in inputs.iter().enumerate() {
        check_dataset(catalog, ds, &format!("{key}.inputs[{i}]"))?;
    }
    let outputs = str_list(m, "outputs", key)?;
    let [output] = outputs.as_slice() else {
        return Err(ConfigError::new(
            format!("{key}.outputs"),
            format!(
                "an SQL node writes exactly one dataset, found {}",
                outputs.len()
            ),
        ));
    };
    check_dataset(catalog, output, &format!("{key}.outputs"))?;
    if catalog[output].athena.is_some() {
        return Err(ConfigError::new(
            format!("{key}.outputs"),
            format!("dataset `{output}` is an Athena query; nodes write parquet datasets"),
        ));
    }
    if catalog[output].kind != DatasetType::Parquet {
        return Err(ConfigError::new(
            format!("{key}.outputs"),
            format!("dataset `{output}` is not parquet; nodes write parquet"),
        ));
    }
    let sql = crate::conf::typed::text_or_file(m, "sql", "sql_file", key, conf_dir)?;
    let layout = match get(m, "layout") {
        None | Some(Value::Null) => None,
        Some(l) => Some(parse_layout(l, &format!("{key}.layout"))?),
    };
    Ok(Node {
        name,
        inputs,
        output: output.clone(),
        sql,
        tags: str_list(m, "tags", key)?,
        layout,
        key: key.to_string(),
    })
}

/// Orders nodes so that each comes after the nodes producing its inputs;
/// names cycles, duplicate names and datasets written twice.
fn topo_sort(nodes: Vec<Node>, pipeline: &str) -> Result<Vec<Node>, ConfigError> {
    let mut producer: HashMap<&str, &Node> = HashMap::new();
    let mut names = HashSet::new();
    for n in &nodes {
        if !names.insert(n.name.as_str()) {
            return Err(ConfigError::new(
                format!("{}.name", n.key),
                format!("node name `{}` is used twice in {pipeline}", n.name),
            ));
        }
        if let Some(other) = producer.insert(n.output.as_str(), n) {
            return Err(ConfigError::new(
                format!("{}.outputs", n.key),
                format!(
                    "dataset `{}` is written by both `{}` and `{}`",
                    n.output, other.name, n.name
                ),
            ));
        }
    }
    let mut order: Vec<Node> = vec![];
    let mut state: HashMap<String, u8> = HashMap::new();
    fn visit(
        n: &Node,
        producer: &HashMap<&str, &Node>,
        state: &mut HashMap<String, u8>,
        path: &mut Vec<String>,
        order: &mut Vec<Node>,
    ) -> Result<(), ConfigError> {
        match state.get(&n.name) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = path.iter().position(|p| *p == n.name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.name.clone());
                return Err(ConfigError::new(
                    format!("{}.inputs", n.key),
                    format!("cycle between nodes: {}", cycle.join(" -> ")),
                ));
            }
            _ => {}
        }
        state.insert(n.name.clone(), 1);
        path.push(n.name.clone());
        for input in &n.inputs {
            if let Some(p) = producer.get(input.as_str()) {
                visit(p, producer, state, path, order)?;
            }
        }
        path.pop();
        state.insert(n.name.clone(), 2);
        order.push(n.clone());
        Ok(())
    }
    for n in &nodes {
        visit(n, &producer, &mut state, &mut vec![], &mut order)?;
    }
    Ok(order)
}

/// Which nodes of a pipeline to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub nodes: Vec<String>,
    pub from_nodes: Vec<String>,
    pub to_nodes: Vec<String>,
    pub tags: Vec<String>,
}

impl Pipeline {
    fn node(&self, name: &str, flag: &str) -> Result<&Node, ConfigError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let hint = suggest(name, self.nodes.iter().map(|n| n.name.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ConfigError::new(
                flag,
                format!("pipeline `{}` has no node `{name}`{hint}", self.name),
            )
        })
    }

    fn downstream(&self, start: &str) -> HashSet<String> {
        let mut out: HashSet<String> = HashSet::from([start.to_string()]);
        for n in &self.nodes {
            let feeds = self
                .nodes
                .iter()
                .any(|p| out.contains(&p.name) && n.inputs.contains(&p.output));
            if feeds {
                out.insert(n.name.clone());
            }
        }
        out
    }

    /// Names of `names` and every node upstream of them.
    fn upstream_names(&self, mut out: HashSet<String>) -> HashSet<String> {
        for n in self.nodes.iter().rev() {
            if out.contains(&n.name) {
                for p in &self.nodes {
                    if n.inputs.contains(&p.output) {
                        out.insert(p.name.clone());
                    }
                }
            }
        }
        out
    }

    fn upstream(&self, start: &str) -> HashSet<String> {
        self.upstream_names(HashSet::from([start.to_string()]))
    }

    /// The named nodes and everything upstream of them, in dependency order.
    pub fn with_upstream(&self, names: HashSet<String>) -> Vec<Node> {
        let keep = self.upstream_names(names);
        self.nodes
            .iter()
            .filter(|n| keep.contains(&n.name))
            .cloned()
            .collect()
    }

    /// The selected nodes, in dependency order.
    pub fn select(&self, sel: &Selection) -> Result<Vec<Node>, ConfigError> {
        let mut keep: HashSet<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        if !sel.nodes.is_empty() {
            let mut s = HashSet::new();
            for n in &sel.nodes {
                s.insert(self.node(n, "--nodes")?.name.clone());
            }
            keep.retain(|n| s.contains(n));
        }
        if !sel.from_nodes.is_empty() {
            let mut s = HashSet::new();
            for n in &sel.from_nodes {
                s.extend(self.downstream(&self.node(n, "--from-nodes")?.name));
            }
            keep.retain(|n| s.contains(n));
        }
        if !sel.to_nodes.is_empty() {
            let mut s = HashSet::new();
            for n in &sel.to_nodes {
                s.extend(self.upstream(&self.node(n, "--to-nodes")?.name));
            }
            keep.retain(|n| s.contains(n));
        }
        if !sel.tags.is_empty() {
            keep.retain(|name| {
                self.nodes
                    .iter()
                    .any(|n| n.name == *name && n.tags.iter().any(|t| sel.tags.contains(t)))
            });
        }
        let out: Vec<Node> = self
            .nodes
            .iter()
            .filter(|n| keep.contains(&n.name))
            .cloned()
            .collect();
        if out.is_empty() {
            return Err(ConfigError::new(
                "--nodes",
                format!("the selection matches no node of pipeline `{}`", self.name),
            ));
        }
        Ok(out)
    }
}
