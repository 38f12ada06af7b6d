//! UTC timestamps with nanosecond resolution (chrono), ISO-8601 in and out.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use thiserror::Error;

/// A UTC instant with nanosecond resolution.
pub type UtcTime = DateTime<Utc>;

/// A timestamp that could not be parsed or lies outside the plausible range.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TimeError {
    #[error("cannot parse time {0:?} as ISO-8601 UTC (e.g. 2019-07-06T03:19:53.040Z)")]
    Parse(String),
    #[error("time {0} is outside the plausible range 1900-01-01 .. 2200-01-01")]
    OutOfRange(String),
}

/// Parses ISO-8601 UTC (`Z`, an explicit offset, or no zone meaning UTC); sub-second digits
/// up to nanoseconds are kept.
pub fn parse_utc(text: &str) -> Result<UtcTime, TimeError> {
    let s = text.trim();
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            let naive = s.trim_end_matches('Z');
            NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f"))
                .map(|n| n.and_utc())
        })
        .map_err(|_| TimeError::Parse(text.to_string()))?;
    check_plausible(parsed)
}

/// Rejects instants no seismic archive can hold (before 1900 or after 2200).
pub fn check_plausible(t: UtcTime) -> Result<UtcTime, TimeError> {
    let y = chrono::Datelike::year(&t);
    if !(1900..2200).contains(&y) {
        return Err(TimeError::OutOfRange(t.to_rfc3339()));
    }
    Ok(t)
}

/// Formats as ISO-8601 UTC with microseconds and a `Z`: `2019-07-06T03:19:53.040000Z`.
pub fn format_utc(t: &UtcTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `b - a` in seconds (f64; exact to the nanosecond for spans under ~100 days).
pub fn seconds_between(a: &UtcTime, b: &UtcTime) -> f64 {
    let d = *b - *a;
    d.num_seconds() as f64 + f64::from(d.subsec_nanos()) * 1e-9
}

/// `t + seconds`, rounded to the nanosecond.
pub fn add_seconds(t: &UtcTime, seconds: f64) -> UtcTime {
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9).round() as i64;
    *t + TimeDelta::seconds(whole as i64) + TimeDelta::nanoseconds(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_keeps_sub_millisecond_digits() {
        let t = parse_utc("2018-11-30T17:29:37.0400Z").unwrap();
        let u = parse_utc("2018-11-30T17:29:37.040125").unwrap();
        assert!((seconds_between(&t, &u) - 0.000125).abs() < 1e-9);
        assert_eq!(format_utc(&u), "2018-11-30T17:29:37.040125Z");
    }

    #[test]
    fn rejects_garbage_and_the_year_3000() {
        assert!(matches!(parse_utc("yesterday"), Err(TimeError::Parse(_))));
        assert!(matches!(
            parse_utc("3000-01-01T00:00:00Z"),
            Err(TimeError::OutOfRange(_))
        ));
    }

    #[test]
    fn add_seconds_round_trips() {
        let t = parse_utc("2000-01-01T00:00:00Z").unwrap();
        let u = add_seconds(&t, -1.234567891);
        assert!((seconds_between(&u, &t) - 1.234567891).abs() < 2e-9);
    }
}
