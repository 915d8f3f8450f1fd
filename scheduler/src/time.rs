//! Civil time without a calendar crate: dates as `YYYY-MM-DD` strings and
//! days since 1970-01-01 (Howard Hinnant's algorithms), all in UTC.

/// The date of a Unix timestamp (seconds).
pub fn date_of(ts: i64) -> String {
    civil_date(ts.div_euclid(86_400))
}

/// The date `days` after 1970-01-01.
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}

/// Today's date, UTC.
pub fn today() -> String {
    date_of(now_secs() as i64)
}

/// Seconds since the epoch by this machine's clock.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Days from 1970-01-01 to `date` (YYYY-MM-DD), if it is a real date.
pub fn days_since_epoch(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Reject dates like 2023-02-30 that do not round-trip.
    (civil_date(days) == date).then_some(days)
}

/// Seconds since the epoch as `2024-03-01 12:00:00 UTC`.
pub fn utc_time(secs: u64) -> String {
    let s = secs % 86_400;
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        date_of(secs as i64),
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(date_of(1_683_029_999), "2023-05-02");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(days_since_epoch("2000-02-29"), Some(11_016));
        assert_eq!(days_since_epoch("2023-02-30"), None);
        assert_eq!(utc_time(1_683_029_999), "2023-05-02 12:19:59 UTC");
    }
}
