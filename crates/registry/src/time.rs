//! Times: Unix milliseconds on the wire (as in the client API), UTC dates and RFC 3339 for
//! people. The conversions are the proleptic Gregorian calendar's (Howard Hinnant's algorithms).

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

const DAY_MS: i64 = 86_400_000;

/// Now, in Unix milliseconds.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2026-03-20T12:00:00Z`.
pub fn format_millis(at: Millis) -> String {
    let (year, month, day) = civil_from_days(at.div_euclid(DAY_MS));
    let secs = at.rem_euclid(DAY_MS) / 1000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Reads `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` as Unix milliseconds.
pub fn parse_utc(text: &str) -> Option<Millis> {
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next().filter(|p| p.len() == 4)?.parse().ok()?;
    let month: u32 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let day: u32 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = 0i64;
    if let Some(time) = time {
        let fields: Vec<&str> = time.split(':').collect();
        let [h, m, s] = fields.as_slice() else { return None };
        let (h, m, s): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&s) {
            return None;
        }
        secs = h * 3600 + m * 60 + s;
    }
    Some(days_from_civil(year, month, day) * DAY_MS + secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_utc("1970-01-01"), Some(0));
        assert_eq!(parse_utc("2000-03-01T00:00:01Z"), Some(951_868_801_000));
        assert_eq!(format_millis(951_868_801_000), "2000-03-01T00:00:01Z");
        let at = parse_utc("2026-03-20T12:34:56Z").expect("parses");
        assert_eq!(format_millis(at), "2026-03-20T12:34:56Z");
        assert_eq!(parse_utc("2028-02-29"), parse_utc("2028-02-29T00:00:00Z"));
    }

    #[test]
    fn nonsense_is_refused() {
        for text in
            ["", "2026-13-01", "2027-02-29", "2026-1-01", "tomorrow", "2026-01-01T25:00:00Z", "2026-01-01T10:00"]
        {
            assert_eq!(parse_utc(text), None, "{text}");
        }
    }
}
