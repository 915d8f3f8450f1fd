//! Reading typed values out of resolved YAML with errors that name the key
//! and what was expected.

use crate::conf::error::{ConfigError, unknown_key_message};
use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

pub fn mapping<'v>(v: &'v Value, key: &str) -> Result<&'v Mapping, ConfigError> {
    v.as_mapping()
        .ok_or_else(|| ConfigError::new(key, format!("expected a mapping, found {}", kind_of(v))))
}

/// Fails on the first key not in `allowed`, suggesting the nearest.
pub fn check_keys(m: &Mapping, allowed: &[&str], key: &str) -> Result<(), ConfigError> {
    for k in m.keys() {
        let name = k.as_str().unwrap_or_default();
        if !allowed.contains(&name) {
            let path = if key.is_empty() {
                name.to_string()
            } else {
                format!("{key}.{name}")
            };
            return Err(ConfigError::new(path, unknown_key_message(name, allowed)));
        }
    }
    Ok(())
}

pub fn get<'v>(m: &'v Mapping, name: &str) -> Option<&'v Value> {
    m.get(Value::String(name.to_string()))
}

pub fn required_str(m: &Mapping, name: &str, key: &str) -> Result<String, ConfigError> {
    let path = format!("{key}.{name}");
    match get(m, name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ConfigError::new(
            path,
            format!("expected a string, found {}", kind_of(other)),
        )),
        None => Err(ConfigError::new(path, "is required")),
    }
}

pub fn optional_str(m: &Mapping, name: &str, key: &str) -> Result<Option<String>, ConfigError> {
    match get(m, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ConfigError::new(
            format!("{key}.{name}"),
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

/// A string or a list of strings.
pub fn str_list(m: &Mapping, name: &str, key: &str) -> Result<Vec<String>, ConfigError> {
    let path = format!("{key}.{name}");
    match get(m, name) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}[{i}]"),
                        format!("expected a string, found {}", kind_of(v)),
                    )
                })
            })
            .collect(),
        Some(other) => Err(ConfigError::new(
            path,
            format!(
                "expected a string or a list of strings, found {}",
                kind_of(other)
            ),
        )),
    }
}

/// Deserialises `v` into `T`, turning serde's message into one that names the key.
pub fn deserialize<T: DeserializeOwned>(
    v: &Value,
    key: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    serde_norway::from_value(v.clone()).map_err(|e| {
        let msg = e.to_string();
        // serde names unknown fields as "unknown field `x`, expected one of `a`, `b`".
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            let allowed: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            return ConfigError::new(
                format!("{key}.{field}"),
                unknown_key_message(field, &allowed),
            );
        }
        ConfigError::new(key, format!("expected {expected}: {msg}"))
    })
}

/// Text given inline under `inline` or in a file named by `file` (relative
/// to `conf_dir`): exactly one of the two.
pub fn text_or_file(
    m: &Mapping,
    inline: &str,
    file: &str,
    key: &str,
    conf_dir: &std::path::Path,
) -> Result<String, ConfigError> {
    match (optional_str(m, inline, key)?, optional_str(m, file, key)?) {
        (Some(s), None) => Ok(s),
        (None, Some(f)) => {
            let path = conf_dir.join(&f);
            std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    format!("{key}.{file}"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        }
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{key}.{inline}"),
            format!("give either {inline} or {file}, not both"),
        )),
        (None, None) => Err(ConfigError::new(
            format!("{key}.{inline}"),
            format!("is required (or {file})"),
        )),
    }
}
