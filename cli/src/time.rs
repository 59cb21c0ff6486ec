//! Time formatting without a date library: the daemon sends milliseconds
//! since the Unix epoch; bmcctl shows ISO-8601 in UTC, whatever the local
//! time zone is.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2024-05-01T12:34:56Z` for milliseconds since the Unix epoch.
pub fn iso8601_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of the day `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A short duration: `42s`, `5m03s`, `2h05m`, `3d04h`.
pub fn short_duration(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600)
    }
}

/// `2024-05-01T12:34:56Z (in 5m03s)` for a moment in the future; without the
/// relative part if it has passed.
pub fn iso8601_with_remaining(ms: u64, now_ms: u64) -> String {
    let abs = iso8601_utc(ms);
    if ms > now_ms {
        let secs = (ms - now_ms).div_ceil(1000);
        format!("{abs} (in {})", short_duration(secs))
    } else {
        abs
    }
}

/// `2026-12-03 14:05:09` in the local time zone (libc's `localtime_r`,
/// `$TZ` or /etc/localtime) for microseconds since the Unix epoch; UTC
/// with a `Z` if the conversion fails.
// libc's `time_t` alias is deprecated on musl (it will become 64-bit).
#[allow(deprecated)]
pub fn local_compact(us: u64) -> String {
    let secs = us / 1_000_000;
    let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
    // SAFETY: localtime_r fills a `tm` we own from a time_t we own.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            None
        } else {
            Some(tm)
        }
    };
    match tm {
        Some(tm) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => iso8601_utc(secs.saturating_mul(1000)),
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), for years from 1970 on.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time given on the command line, as microseconds since the Unix epoch:
/// `now`; relative to now, `-30s`, `-15m`, `-2h`, `-7d`; RFC 3339
/// (`2026-12-03T10:00:00Z`, `…+01:00`, fractions ignored); without a zone
/// (`2026-12-03 10:00`, `2026-12-03T10:00:00`) or a bare date, local time.
pub fn parse_time(s: &str, now_us: u64) -> Option<u64> {
    let s = s.trim();
    if s == "now" {
        return Some(now_us);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let unit = match rel.as_bytes().last()? {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            _ => return None,
        };
        let n: u64 = rel.get(..rel.len() - 1)?.parse().ok()?;
        return Some(now_us.saturating_sub(n.saturating_mul(unit).saturating_mul(1_000_000)));
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || y < 1970
    {
        return None;
    }
    let (mut h, mut mi, mut sec) = (0, 0, 0);
    let mut rest = &s[10..];
    if !rest.is_empty() {
        if !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        h = num(11, 2)?;
        if b.get(13) != Some(&b':') {
            return None;
        }
        mi = num(14, 2)?;
        rest = &s[16..];
        if rest.starts_with(':') {
            sec = num(17, 2)?;
            rest = &s[19..];
            if let Some(frac) = rest.strip_prefix('.') {
                rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
            }
        }
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
    }
    let offset = match rest {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = rest.get(1..)?;
            let (oh, om) = z.split_once(':').unwrap_or((z.get(..2)?, z.get(2..)?));
            let oh: i64 = oh.parse().ok()?;
            let om: i64 = om.parse().ok()?;
            Some(sign * (oh * 3600 + om * 60))
        }
    };
    let secs = match offset {
        Some(off) => days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - off,
        None => local_to_epoch(y, mo, d, h, mi, sec)?,
    };
    u64::try_from(secs).ok()?.checked_mul(1_000_000)
}

/// libc's `mktime` for a local date and time (the zone's DST rules apply).
#[allow(deprecated)]
fn local_to_epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, sec: i64) -> Option<i64> {
    let c = |v: i64| libc::c_int::try_from(v).ok();
    // SAFETY: mktime reads and normalizes a `tm` we own.
    let t = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = c(y - 1900)?;
        tm.tm_mon = c(mo - 1)?;
        tm.tm_mday = c(d)?;
        tm.tm_hour = c(h)?;
        tm.tm_min = c(mi)?;
        tm.tm_sec = c(sec)?;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    // time_t is i32 on some targets.
    #[allow(clippy::useless_conversion)]
    let t = i64::from(t);
    (t != -1).then_some(t)
}

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(999), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_714_566_896_123), "2024-05-01T12:34:56Z");
        assert_eq!(iso8601_utc(4_102_444_799_000), "2099-12-31T23:59:59Z");
        assert_eq!(iso8601_utc(4_107_542_400_000), "2100-03-01T00:00:00Z");
        // Far future must not panic.
        assert!(iso8601_utc(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn times_parse() {
        let now = 1_764_763_200_000_000; // 2025-12-03T12:00:00Z
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("-1h", now), Some(now - 3_600_000_000));
        assert_eq!(parse_time("-2d", now), Some(now - 172_800_000_000));
        assert_eq!(parse_time("-5x", now), None);
        assert_eq!(
            parse_time("2024-05-01T12:34:56Z", now),
            Some(1_714_566_896_000_000)
        );
        assert_eq!(
            parse_time("2024-05-01T14:34:56.250+02:00", now),
            Some(1_714_566_896_000_000)
        );
        assert_eq!(
            parse_time("2000-02-29t00:00Z", now),
            Some(951_782_400_000_000)
        );
        assert!(parse_time("2024-05-01", now).is_some());
        assert!(parse_time("2024-05-01 10:00", now).is_some());
        for bad in [
            "",
            "2024-13-01",
            "2024-05-01X",
            "2024-05-01T25:00Z",
            "yesterday",
            "-h",
        ] {
            assert_eq!(parse_time(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn local_times_are_compact() {
        let s = local_compact(1_714_566_896_000_000);
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[..4], "2024");
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(0), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(303), "5m03s");
        assert_eq!(short_duration(7500), "2h05m");
        assert_eq!(short_duration(273_600), "3d04h");
    }

    #[test]
    fn remaining() {
        assert_eq!(
            iso8601_with_remaining(61_000, 500),
            "1970-01-01T00:01:01Z (in 1m01s)"
        );
        assert_eq!(iso8601_with_remaining(1000, 5000), "1970-01-01T00:00:01Z");
    }
}
