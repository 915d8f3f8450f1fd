//! Hive partition paths: `col=value/` segments, escaped as Hive and Spark do,
//! so that no partition value can name a path outside the table.

/// The directory name Hive and Spark use for a NULL (or empty) value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

fn needs_escape(c: char) -> bool {
    // Hive's FileUtils.escapePathName set, plus every control character.
    (c as u32) < 0x20
        || matches!(
            c,
            '"' | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '\\'
                | '\x7f'
                | '{'
                | '['
                | ']'
                | '^'
        )
}

/// Escapes one partition value for use in a path segment.
pub fn escape_value(value: Option<&str>) -> String {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return NULL_PARTITION.to_string();
    };
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if needs_escape(c) {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    // `.` and `..` alone are path navigation on a filesystem: escape them.
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

/// Reverses [`escape_value`]; `None` for the NULL partition.
pub fn unescape_value(segment: &str) -> Option<String> {
    if segment == NULL_PARTITION {
        return None;
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `a=1/b=x%2Fy` for the given column names and values.
pub fn partition_path(columns: &[String], values: &[Option<String>]) -> String {
    columns
        .iter()
        .zip(values)
        .map(|(c, v)| format!("{c}={}", escape_value(v.as_deref())))
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses `a=1/b=x%2Fy/file.parquet` into `[(a, 1), (b, x/y)]`, ignoring
/// segments without `=`.
pub fn parse_partition_path(path: &str) -> Vec<(String, Option<String>)> {
    path.split('/')
        .filter_map(|seg| seg.split_once('='))
        .map(|(k, v)| (k.to_string(), unescape_value(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_in_one_segment() {
        for v in [
            "../../etc",
            "a/b",
            "..",
            ".",
            "x=y",
            "100%",
            "a\nb",
            "C:\\x",
            "#?*",
        ] {
            let e = escape_value(Some(v));
            assert!(!e.contains('/'), "{v:?} -> {e}");
            assert!(e != ".." && e != ".", "{v:?} -> {e}");
            assert_eq!(
                unescape_value(&e).as_deref(),
                Some(v),
                "round trip of {v:?}"
            );
        }
    }

    #[test]
    fn null_and_empty_use_the_hive_default() {
        assert_eq!(escape_value(None), NULL_PARTITION);
        assert_eq!(escape_value(Some("")), NULL_PARTITION);
        assert_eq!(unescape_value(NULL_PARTITION), None);
    }

    #[test]
    fn escapes_like_hive() {
        assert_eq!(escape_value(Some("2023-05-02")), "2023-05-02");
        assert_eq!(escape_value(Some("a/b=c")), "a%2Fb%3Dc");
        assert_eq!(escape_value(Some("50%")), "50%25");
        assert_eq!(
            partition_path(
                &["date".into(), "h".into()],
                &[Some("2023-05-02".into()), None]
            ),
            "date=2023-05-02/h=__HIVE_DEFAULT_PARTITION__"
        );
    }
}
