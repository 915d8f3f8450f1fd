//! YAML files with the line of every key, so errors can point at them.

use crate::conf::error::ConfigError;
use serde_norway::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One loaded YAML file.
#[derive(Debug, Clone)]
pub struct YamlFile {
    pub path: PathBuf,
    pub value: Value,
    lines: HashMap<String, usize>,
}

impl YamlFile {
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ConfigError::new("", format!("cannot read: {e}"))
                    .at(Some(path.to_path_buf()), None));
            }
        };
        Self::parse(path, &text).map(Some)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let value: Value = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_norway::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                ConfigError::new("", format!("not valid YAML: {e}"))
                    .at(Some(path.to_path_buf()), line)
            })?
        };
        let value = match value {
            Value::Null => Value::Mapping(Default::default()),
            v @ Value::Mapping(_) => v,
            _ => {
                return Err(
                    ConfigError::new("", "expected a mapping of keys at the top level")
                        .at(Some(path.to_path_buf()), Some(1)),
                );
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            value,
            lines: index_lines(text),
        })
    }

    /// The line of `key` (dotted path), or of its nearest parent that has one.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let mut k = key.to_string();
        loop {
            if let Some(l) = self.lines.get(&k) {
                return Some(*l);
            }
            let cut = k.rfind(['.', '['])?;
            k.truncate(cut);
        }
    }
}

/// Maps dotted key paths (`a.b[2].c`) to 1-based line numbers for block-style YAML.
fn index_lines(text: &str) -> HashMap<String, usize> {
    struct Level {
        indent: usize,
        path: String,
        item: bool,
    }
    let mut out = HashMap::new();
    let mut stack: Vec<Level> = vec![];
    let mut counters: HashMap<String, usize> = HashMap::new();
    let mut block_scalar_indent: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        if let Some(bi) = block_scalar_indent {
            if indent > bi {
                continue;
            }
            block_scalar_indent = None;
        }
        let mut content = trimmed;
        if content == "-" || content.starts_with("- ") {
            while stack
                .last()
                .is_some_and(|t| t.indent > indent || (t.indent == indent && t.item))
            {
                stack.pop();
            }
            let parent = stack.last().map(|t| t.path.clone()).unwrap_or_default();
            let idx = counters.entry(parent.clone()).or_insert(0);
            let path = format!("{parent}[{idx}]");
            *idx += 1;
            out.insert(path.clone(), line_no);
            stack.push(Level {
                indent,
                path,
                item: true,
            });
            content = content[1..].trim_start();
            indent = raw.len() - content.len();
            if content.is_empty() {
                continue;
            }
        }
        let Some((key, rest)) = split_key(content) else {
            continue;
        };
        while stack.last().is_some_and(|t| t.indent >= indent) {
            stack.pop();
        }
        let parent = stack.last().map(|t| t.path.clone()).unwrap_or_default();
        let path = if parent.is_empty() {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        };
        out.entry(path.clone()).or_insert(line_no);
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            block_scalar_indent = Some(indent);
        }
        stack.push(Level {
            indent,
            path,
            item: false,
        });
    }
    out
}

fn split_key(content: &str) -> Option<(&str, &str)> {
    let (key, rest) = content.split_once(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    let plain = !key.is_empty() && !key.starts_with(['{', '[', '"', '\'']);
    plain.then_some((key, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_keys_and_items() {
        let text = "a:\n  b: 1\n  c:\n    - name: x\n      sql: |\n        SELECT 1\n        d: no\n    - name: y\ne: 2\n";
        let f = YamlFile::parse(Path::new("t.yml"), text).unwrap();
        assert_eq!(f.line_of("a.b"), Some(2));
        assert_eq!(f.line_of("a.c[0].name"), Some(4));
        assert_eq!(f.line_of("a.c[0].sql"), Some(5));
        assert_eq!(f.line_of("a.c[1].name"), Some(8));
        assert_eq!(f.line_of("e"), Some(9));
        assert_eq!(f.line_of("a.c[1].missing"), Some(8));
    }
}
