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
