//! Loads a project: `conf/base/*.yml`, overridden key by key at the top level
//! by `conf/<env>/*.yml`, then command-line overrides, then interpolation.

use crate::catalog::{Catalog, parse_catalog};
use crate::conf::error::ConfigError;
use crate::conf::interpolate::{Interpolator, Sources};
use crate::conf::yaml::YamlFile;
use crate::pipeline::{Pipelines, parse_pipelines};
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const FILES: &[&str] = &["globals", "catalog", "pipelines", "parameters"];

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub conf_dir: PathBuf,
    pub env: String,
    /// `--globals key=value`, in order.
    pub globals: Vec<(String, Value)>,
    /// `--params key=value`, in order.
    pub params: Vec<(String, Value)>,
    /// `${runtime:...}` values: run_date, run_id.
    pub runtime: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub conf_dir: PathBuf,
    pub env: String,
    pub globals: Value,
    pub params: Value,
    pub catalog: Catalog,
    pub pipelines: Pipelines,
    /// Where each global came from, for errors about its value.
    pub globals_origin: GlobalsOrigin,
}

/// Where the globals came from: a file per top-level key, or `--globals`.
#[derive(Debug, Clone)]
pub struct GlobalsOrigin {
    files: HashMap<String, YamlFile>,
    /// Keys set with `--globals key=value`.
    overrides: Vec<String>,
    /// The file a key that is nowhere belongs in.
    fallback: PathBuf,
}

impl GlobalsOrigin {
    /// The same origins, with files below `from` named below `to`.
    fn relocated(mut self, from: &Path, to: &Path) -> Self {
        use crate::conf::remote::relocate;
        for f in self.files.values_mut() {
            f.path = relocate(&f.path, from, to);
        }
        self.fallback = relocate(&self.fallback, from, to);
        self
    }

    /// Points an error about the global `e.key` at the place its value
    /// came from: `--globals`, `conf/<env>/globals.yml` or `conf/base/...`.
    pub fn locate(&self, e: ConfigError) -> ConfigError {
        let key = e.key.clone();
        let overridden = self.overrides.iter().any(|o| {
            key == *o || key.starts_with(&format!("{o}.")) || o.starts_with(&format!("{key}."))
        });
        if overridden {
            return ConfigError {
                key: format!("--globals {key}"),
                ..e
            };
        }
        let top = key.split(['.', '[']).next().unwrap_or_default();
        match self.files.get(top) {
            Some(f) => {
                let line = f.line_of(&key);
                e.at(Some(f.path.clone()), line)
            }
            None => e.at(Some(self.fallback.clone()), None),
        }
    }
}

/// One merged config file, remembering which file each top-level key came from.
struct Merged {
    value: Mapping,
    origin: HashMap<String, YamlFile>,
}

impl Merged {
    fn locate(&self, e: ConfigError, fallback: &Path) -> ConfigError {
        let top = e
            .key
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_string();
        match self.origin.get(&top) {
            Some(f) => {
                let line = f.line_of(&e.key);
                e.at(Some(f.path.clone()), line)
            }
            None => e.at(Some(fallback.to_path_buf()), None),
        }
    }
}

fn load_merged(opts: &LoadOptions, name: &str, required: bool) -> Result<Merged, ConfigError> {
    let base_path = opts.conf_dir.join("base").join(format!("{name}.yml"));
    let env_path = opts.conf_dir.join(&opts.env).join(format!("{name}.yml"));
    let mut merged = Merged {
        value: Mapping::new(),
        origin: HashMap::new(),
    };
    let base = YamlFile::load(&base_path)?;
    if base.is_none() && required {
        return Err(ConfigError::new(
            "",
            format!(
                "missing {name}.yml; expected it in {}",
                base_path.parent().unwrap_or(Path::new(".")).display()
            ),
        )
        .at(Some(base_path), None));
    }
    for file in [base, YamlFile::load(&env_path)?].into_iter().flatten() {
        if let Value::Mapping(m) = &file.value {
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default().to_string();
                merged.value.insert(k.clone(), v.clone());
                merged.origin.insert(key, file.clone());
            }
        }
    }
    Ok(merged)
}

/// Sets `a.b.c` in a mapping, creating levels as needed.
pub fn set_path(root: &mut Value, key: &str, value: Value) {
    let mut cur = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let m = cur.as_mapping_mut().expect("mapping");
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            m.insert(k, value);
            return;
        }
        if !m.contains_key(&k) {
            m.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        cur = m.get_mut(&k).expect("just inserted");
    }
}

/// Parses `key=value` with the value typed as YAML: `3`, `true`, `[a, b]`.
pub fn parse_override(text: &str, flag: &str) -> Result<(String, Value), ConfigError> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| ConfigError::new(flag, format!("expected key=value, got {text:?}")))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(ConfigError::new(flag, format!("empty key in {text:?}")));
    }
    let value = serde_norway::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()));
    let value = if v.is_empty() {
        Value::String(String::new())
    } else {
        value
    };
    Ok((k.to_string(), value))
}

pub fn load(opts: &LoadOptions) -> Result<Project, ConfigError> {
    if !opts.conf_dir.join("base").is_dir() {
        return Err(ConfigError::new(
            "--conf",
            format!(
                "{} has no base/ folder; expected conf/base/*.yml",
                opts.conf_dir.display()
            ),
        ));
    }
    if opts.env != "base" && !opts.conf_dir.join(&opts.env).is_dir() {
        let envs: Vec<String> = std::fs::read_dir(&opts.conf_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "base")
            .collect();
        return Err(ConfigError::new(
            "--env",
            format!(
                "no environment `{}` in {}; found: {}",
                opts.env,
                opts.conf_dir.display(),
                envs.join(", ")
            ),
        ));
    }
    let base_dir = opts.conf_dir.join("base");
    let globals_m = load_merged(opts, "globals", false)?;
    let catalog_m = load_merged(opts, "catalog", true)?;
    let pipelines_m = load_merged(opts, "pipelines", true)?;
    let params_m = load_merged(opts, "parameters", false)?;

    let mut raw_globals = Value::Mapping(globals_m.value.clone());
    for (k, v) in &opts.globals {
        set_path(&mut raw_globals, k, v.clone());
    }
    let mut raw_params = Value::Mapping(params_m.value.clone());
    for (k, v) in &opts.params {
        set_path(&mut raw_params, k, v.clone());
    }
    let env = |k: &str| std::env::var(k).ok();
    let mut interp = Interpolator::new(Sources {
        globals: &raw_globals,
        params: &raw_params,
        runtime: &opts.runtime,
        env: &env,
    });
    let globals_file = base_dir.join("globals.yml");
    let globals = interp
        .resolve(&raw_globals, "")
        .map_err(|e| globals_m.locate(e, &globals_file))?;
    let params = interp
        .resolve(&raw_params, "")
        .map_err(|e| params_m.locate(e, &base_dir.join("parameters.yml")))?;
    let catalog_file = base_dir.join("catalog.yml");
    let catalog_v = interp
        .resolve(&Value::Mapping(catalog_m.value.clone()), "")
        .map_err(|e| catalog_m.locate(e, &catalog_file))?;
    let catalog = parse_catalog(&catalog_v, &opts.conf_dir)
        .map_err(|e| catalog_m.locate(e, &catalog_file))?;
    let pipelines_file = base_dir.join("pipelines.yml");
    let pipelines_v = interp
        .resolve(&Value::Mapping(pipelines_m.value.clone()), "")
        .map_err(|e| pipelines_m.locate(e, &pipelines_file))?;
    let pipelines = parse_pipelines(&pipelines_v, &opts.conf_dir, &catalog)
        .map_err(|e| pipelines_m.locate(e, &pipelines_file))?;
    Ok(Project {
        conf_dir: opts.conf_dir.clone(),
        env: opts.env.clone(),
        globals,
        params,
        catalog,
        pipelines,
        globals_origin: GlobalsOrigin {
            files: globals_m.origin,
            overrides: opts.globals.iter().map(|(k, _)| k.clone()).collect(),
            fallback: globals_file,
        },
    })
}

impl Project {
    /// Names `to` (a remote `--conf`) wherever the project would name the
    /// local copy it was loaded from.
    pub fn relocate_conf(mut self, to: &Path) -> Self {
        self.globals_origin = self.globals_origin.relocated(&self.conf_dir, to);
        self.conf_dir = to.to_path_buf();
        self
    }

    pub fn global_str(&self, key: &str) -> Option<String> {
        crate::conf::interpolate::lookup(&self.globals, key).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    pub fn global_u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match crate::conf::interpolate::lookup(&self.globals, key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => Err(self.globals_origin.locate(ConfigError::new(
                key,
                format!(
                    "expected a whole number, found {}",
                    crate::conf::typed::kind_of(other)
                ),
            ))),
        }
    }
}
