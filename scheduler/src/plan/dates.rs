//! `--dates FROM..TO` (inclusive), with `today` and `yesterday`.

use crate::time::civil_date;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    pub from: String,
    pub to: String,
}

impl DateRange {
    pub fn contains(&self, date: &str) -> bool {
        self.from.as_str() <= date && date <= self.to.as_str()
    }
}

pub use crate::time::{days_since_epoch, today};

fn one(text: &str, today: &str) -> Result<String, String> {
    let t = text.trim();
    match t {
        "today" => Ok(today.to_string()),
        "yesterday" => {
            let d = days_since_epoch(today).ok_or("bad clock")?;
            Ok(civil_date(d - 1))
        }
        _ => days_since_epoch(t)
            .map(|_| t.to_string())
            .ok_or_else(|| format!("{t:?} is not a date; expected YYYY-MM-DD, today or yesterday")),
    }
}

/// Parses `2024-05-01..2024-05-07`, `2024-05-01`, `yesterday`, `yesterday..today`.
pub fn parse(text: &str, today: &str) -> Result<DateRange, String> {
    let (a, b) = match text.split_once("..") {
        Some((a, b)) => (a, b),
        None => (text, text),
    };
    let r = DateRange {
        from: one(a, today)?,
        to: one(b, today)?,
    };
    if r.from > r.to {
        return Err(format!("--dates {text}: {} is after {}", r.from, r.to));
    }
    Ok(r)
}

/// The dates of a range, in order.
pub fn each_day(r: &DateRange) -> Vec<String> {
    let (Some(a), Some(b)) = (days_since_epoch(&r.from), days_since_epoch(&r.to)) else {
        return vec![];
    };
    (a..=b).map(civil_date).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_words() {
        assert_eq!(
            parse("2024-05-01..2024-05-03", "2024-06-01").unwrap(),
            DateRange {
                from: "2024-05-01".into(),
                to: "2024-05-03".into()
            }
        );
        assert_eq!(parse("yesterday", "2024-03-01").unwrap().from, "2024-02-29");
        assert_eq!(
            parse("yesterday..today", "2024-01-01").unwrap(),
            DateRange {
                from: "2023-12-31".into(),
                to: "2024-01-01".into()
            }
        );
        assert!(parse("2024-02-30", "2024-06-01").is_err());
        assert!(
            parse("2024-05-03..2024-05-01", "2024-06-01")
                .unwrap_err()
                .contains("after")
        );
        assert_eq!(
            each_day(&parse("2024-02-28..2024-03-01", "x").unwrap()).len(),
            3
        );
    }
}
