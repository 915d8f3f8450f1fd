//! `${...}` interpolation: `${globals:a.b}`, `${globals:a.b, default}`,
//! `${params:x}`, `${env:VAR}`, `${runtime:run_date}`, `${runtime:run_id}`.
//! `$${` stands for a literal `${`. A value that is exactly one reference
//! keeps the referenced value's type: a list stays a list.

use crate::conf::error::{ConfigError, suggest};
use serde_norway::{Mapping, Value};
use std::collections::BTreeMap;

pub struct Sources<'a> {
    pub globals: &'a Value,
    pub params: &'a Value,
    pub runtime: &'a BTreeMap<String, String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

enum Piece {
    Text(String),
    Ref {
        source: String,
        key: String,
        default: Option<String>,
    },
}

fn parse(s: &str, key_path: &str) -> Result<Vec<Piece>, ConfigError> {
    let mut pieces = vec![];
    let mut text = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("$${") {
            text.push_str("${");
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r.find('}').ok_or_else(|| {
                ConfigError::new(
                    key_path,
                    format!("unclosed `${{` in {s:?}; write `$${{` for a literal"),
                )
            })?;
            let inner = &r[..end];
            let (reference, default) = match inner.split_once(',') {
                Some((a, b)) => (a.trim(), Some(b.trim().to_string())),
                None => (inner.trim(), None),
            };
            let (source, key) = reference.split_once(':').ok_or_else(|| {
                ConfigError::new(
                    key_path,
                    format!("`${{{inner}}}` needs a source: globals:, params:, env: or runtime:"),
                )
            })?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Ref {
                source: source.trim().to_string(),
                key: key.trim().to_string(),
                default,
            });
            rest = &r[end + 1..];
        } else {
            let c = rest.chars().next().expect("not empty");
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Looks up a dotted key (`layouts.daily`) in a mapping.
pub fn lookup<'v>(root: &'v Value, key: &str) -> Option<&'v Value> {
    let mut cur = root;
    for part in key.split('.') {
        cur = cur.as_mapping()?.get(Value::String(part.to_string()))?;
    }
    Some(cur)
}

fn keys_of(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            if let Some(k) = k.as_str() {
                let full = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                keys_of(child, &full, out);
                out.push(full);
            }
        }
    }
}

pub struct Interpolator<'a> {
    sources: Sources<'a>,
    /// Globals being resolved, to name cycles.
    stack: Vec<String>,
}

impl<'a> Interpolator<'a> {
    pub fn new(sources: Sources<'a>) -> Self {
        Self {
            sources,
            stack: vec![],
        }
    }

    /// Resolves every string in `v`, recursively.
    pub fn resolve(&mut self, v: &Value, key_path: &str) -> Result<Value, ConfigError> {
        Ok(match v {
            Value::String(s) => self.resolve_str(s, key_path)?,
            Value::Sequence(items) => Value::Sequence(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.resolve(x, &format!("{key_path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Mapping(m) => {
                let mut out = Mapping::new();
                for (k, x) in m {
                    let name = k
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{k:?}"));
                    let child = if key_path.is_empty() {
                        name
                    } else {
                        format!("{key_path}.{name}")
                    };
                    out.insert(k.clone(), self.resolve(x, &child)?);
                }
                Value::Mapping(out)
            }
            other => other.clone(),
        })
    }

    fn resolve_str(&mut self, s: &str, key_path: &str) -> Result<Value, ConfigError> {
        if !s.contains("${") {
            return Ok(Value::String(s.to_string()));
        }
        let pieces = parse(s, key_path)?;
        if let [
            Piece::Ref {
                source,
                key,
                default,
            },
        ] = pieces.as_slice()
        {
            return self.reference(source, key, default.as_deref(), key_path);
        }
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(&t),
                Piece::Ref {
                    source,
                    key,
                    default,
                } => match self.reference(&source, &key, default.as_deref(), key_path)? {
                    Value::String(v) => out.push_str(&v),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    Value::Bool(b) => out.push_str(&b.to_string()),
                    Value::Null => {}
                    _ => {
                        return Err(ConfigError::new(
                            key_path,
                            format!(
                                "`${{{source}:{key}}}` is a list or mapping; it can only be a whole value, not part of a string"
                            ),
                        ));
                    }
                },
            }
        }
        Ok(Value::String(out))
    }

    fn reference(
        &mut self,
        source: &str,
        key: &str,
        default: Option<&str>,
        key_path: &str,
    ) -> Result<Value, ConfigError> {
        let default_value = || {
            default.map(|d| {
                serde_norway::from_str::<Value>(d).unwrap_or_else(|_| Value::String(d.to_string()))
            })
        };
        match source {
            "globals" | "params" => {
                let root = if source == "globals" { self.sources.globals } else { self.sources.params };
                let Some(found) = lookup(root, key) else {
                    return default_value().ok_or_else(|| {
                        let mut keys = vec![];
                        keys_of(root, "", &mut keys);
                        let hint = suggest(key, keys.iter().map(String::as_str))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        ConfigError::new(key_path, format!("`${{{source}:{key}}}`: {source} has no key `{key}`{hint}"))
                    });
                };
                let id = format!("{source}:{key}");
                if let Some(pos) = self.stack.iter().position(|k| *k == id) {
                    let mut cycle = self.stack[pos..].to_vec();
                    cycle.push(id);
                    return Err(ConfigError::new(key_path, format!("interpolation cycle: {}", cycle.join(" -> "))));
                }
                self.stack.push(id);
                let found = found.clone();
                let r = self.resolve(&found, key_path);
                self.stack.pop();
                r
            }
            "env" => match (self.sources.env)(key) {
                Some(v) => Ok(Value::String(v)),
                None => default_value().ok_or_else(|| {
                    ConfigError::new(key_path, format!("environment variable {key} is not set and `${{env:{key}}}` has no default"))
                }),
            },
            "runtime" => match self.sources.runtime.get(key) {
                Some(v) => Ok(Value::String(v.clone())),
                None => {
                    let known: Vec<&str> = self.sources.runtime.keys().map(String::as_str).collect();
                    Err(ConfigError::new(
                        key_path,
                        format!("unknown runtime value `{key}`; expected one of: {}", known.join(", ")),
                    ))
                }
            },
            other => Err(ConfigError::new(
                key_path,
                format!("unknown interpolation source `{other}:`; expected globals:, params:, env: or runtime:"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(globals: &str, value: &str) -> Result<Value, ConfigError> {
        let g: Value = serde_norway::from_str(globals).unwrap();
        let p = Value::Mapping(Default::default());
        let mut rt = BTreeMap::new();
        rt.insert("run_date".to_string(), "2024-01-02".to_string());
        let env = |k: &str| (k == "HOME_X").then(|| "/h".to_string());
        let mut i = Interpolator::new(Sources {
            globals: &g,
            params: &p,
            runtime: &rt,
            env: &env,
        });
        i.resolve(&serde_norway::from_str(value).unwrap(), "k")
    }

    #[test]
    fn keeps_types_of_whole_values() {
        let v = run("l: [a, b]\nn: 3", "'${globals:l}'").unwrap();
        assert_eq!(v, serde_norway::from_str::<Value>("[a, b]").unwrap());
        assert_eq!(
            run("n: 3", "'${globals:n}'").unwrap(),
            Value::Number(3.into())
        );
    }

    #[test]
    fn substitutes_inside_strings_with_defaults_and_escapes() {
        assert_eq!(
            run("r: /data", "'${globals:r}/tx/${runtime:run_date}'").unwrap(),
            Value::String("/data/tx/2024-01-02".into())
        );
        assert_eq!(
            run("{}", "'${globals:missing, 7}'").unwrap(),
            Value::Number(7.into())
        );
        assert_eq!(
            run("{}", "'$${globals:x}'").unwrap(),
            Value::String("${globals:x}".into())
        );
        assert_eq!(
            run("{}", "'${env:HOME_X}'").unwrap(),
            Value::String("/h".into())
        );
    }

    #[test]
    fn names_cycles_and_suggests_keys() {
        let e = run("a: '${globals:b}'\nb: '${globals:a}'", "'${globals:a}'").unwrap_err();
        assert!(
            e.message
                .contains("cycle: globals:a -> globals:b -> globals:a"),
            "{e}"
        );
        let e = run("out_root: x", "'${globals:out_rot}'").unwrap_err();
        assert!(e.message.contains("did you mean `out_root`"), "{e}");
    }
}
