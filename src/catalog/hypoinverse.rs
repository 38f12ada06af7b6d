//! Hypoinverse Y2000 archive (summary line, station phase lines, terminator): reader.
//!
//! Column positions are those of the Hypoinverse 2000 manual (Klein 2002), written below as
//! 0-based half-open byte ranges. Numbers without a decimal point carry an implied one
//! (`F4.2` "2348" is 23.48), as Fortran reads them.
//!
//! Summary line: year 0..4, month 4..6, day 6..8, hour 8..10, minute 10..12, seconds 12..16
//! (F4.2), latitude degrees 16..18, `S` at 18, minutes 19..23 (F4.2), longitude degrees
//! 23..26, `E` at 26 (blank is west), minutes 27..31 (F4.2), depth 31..36 (F5.2 km), number of
//! weighted P and S 39..42, gap 42..45 (degrees), nearest station 45..48 (km), RMS 48..52
//! (F4.2 s), horizontal error 85..89 (F4.2 km), vertical error 89..93 (F4.2 km), event id
//! 136..146.
//!
//! Phase line: station 0..5, network 5..7, component 9..12, P remark 13..15 (onset and
//! phase, e.g. `IP`), first motion 15, P weight code 16, year..minute 17..29, P seconds 29..34
//! (F5.2), P residual 34..38 (F4.2), S seconds 41..46 (F5.2), S remark 46..48 (e.g. `ES`), S
//! weight code 49, S residual 50..54 (F4.2), epicentral distance 74..78 (F4.1 km), azimuth
//! 91..94, location code 111..113. An S read in the P columns (remark `ES` at 13..15) is an S.
//!
//! Weight codes map to one-sigma uncertainties (the project convention used for the data sets
//! of `../shared/data`): 0 -> 0.05 s, 1 -> 0.10 s, 2 -> 0.20 s, 3 -> 0.40 s; codes 4..9 are
//! picks Hypoinverse does not use, and are skipped with a [`RecordProblem`]. Lines starting
//! with `$` (shadow lines) are ignored; a line whose first six columns are blank ends an event.

use chrono::{NaiveDate, TimeDelta};

use crate::catalog::{CatalogError, ReadReport, RecordProblem};
use crate::domain::time::check_plausible;
use crate::domain::{Phase, Pick, StationCode, UtcTime};

/// One-sigma pick uncertainty, s, for Hypoinverse weight codes 0..3 (4..9: not used).
pub const WEIGHT_CODE_UNCERTAINTY_S: [f64; 4] = [0.05, 0.10, 0.20, 0.40];

/// The uncertainty of a weight code, s; `None` for codes Hypoinverse does not use (4..9).
pub fn uncertainty_for_weight_code(code: u8) -> Option<f64> {
    WEIGHT_CODE_UNCERTAINTY_S.get(usize::from(code)).copied()
}

/// The hypocentre of a Hypoinverse summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveHypocentre {
    /// Origin time, UTC.
    pub origin_time: UtcTime,
    /// Latitude, degrees north.
    pub lat_deg: f64,
    /// Longitude, degrees east.
    pub lon_deg: f64,
    /// Depth, km (Hypoinverse: below its model datum).
    pub depth_km: f64,
    /// Number of P and S times with weight above 0.1.
    pub n_weighted_phases: Option<u32>,
    /// Largest azimuthal gap, degrees.
    pub gap_deg: Option<f64>,
    /// Distance to the nearest station, km.
    pub dmin_km: Option<f64>,
    /// RMS travel-time residual, s.
    pub rms_s: Option<f64>,
    /// Horizontal error, km.
    pub erh_km: Option<f64>,
    /// Vertical error, km.
    pub erz_km: Option<f64>,
}

/// A pick as the archive gives it, with Hypoinverse's own solution values.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivePick {
    /// The pick (uncertainty from the weight code).
    pub pick: Pick,
    /// Hypoinverse weight code, 0..3.
    pub weight_code: u8,
    /// Onset remark (`I`, `E` or blank).
    pub onset: char,
    /// First motion (`U`, `D`, `+`, `-` or blank).
    pub first_motion: char,
    /// SEED channel (3-letter component), may be empty.
    pub channel: String,
    /// Hypoinverse residual, s.
    pub residual_s: Option<f64>,
    /// Epicentral distance, km.
    pub distance_km: Option<f64>,
    /// Azimuth from the epicentre, degrees.
    pub azimuth_deg: Option<f64>,
}

/// One archive event: id, summary hypocentre (when its line was readable) and picks.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveEvent {
    /// Event id from the summary line, or the 1-based event number when it has none.
    pub event_id: String,
    /// 1-based line of the summary line.
    pub line: u64,
    /// The summary hypocentre; `None` when the summary line was bad (its problem is reported).
    pub hypocentre: Option<ArchiveHypocentre>,
    /// Usable picks (weight codes 0..3), in file order.
    pub picks: Vec<ArchivePick>,
}

/// Bytes `a..b` of a line, as text (short lines read as blank).
fn col(line: &str, a: usize, b: usize) -> &str {
    let bytes = line.as_bytes();
    if a >= bytes.len() {
        return "";
    }
    std::str::from_utf8(&bytes[a..b.min(bytes.len())]).unwrap_or("")
}

/// A Fortran `F` field with `decimals` implied decimals; `Ok(None)` when blank.
fn implied(line: &str, a: usize, b: usize, decimals: i32) -> Result<Option<f64>, String> {
    let s = col(line, a, b).trim();
    if s.is_empty() {
        return Ok(None);
    }
    let v = if s.contains('.') {
        s.parse::<f64>()
    } else {
        s.parse::<i64>()
            .map(|i| i as f64 / 10f64.powi(decimals))
            .or_else(|_| s.parse::<f64>())
    };
    v.map(Some).map_err(|_| format!("{s:?} is not a number"))
}

fn int(line: &str, a: usize, b: usize) -> Result<Option<u32>, String> {
    let s = col(line, a, b).trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<u32>()
        .map(Some)
        .map_err(|_| format!("{s:?} is not an integer"))
}

/// The minute at which a line's seconds are counted, from `yyyymmddhhmm` at `a`.
fn minute_start(line: &str, a: usize) -> Result<UtcTime, String> {
    let text = col(line, a, a + 12);
    let field = |i: usize, n: usize| -> Result<u32, String> {
        let s = text.get(i..i + n).unwrap_or("").trim();
        s.parse::<u32>()
            .map_err(|_| format!("{text:?} is not yyyymmddhhmm"))
    };
    let year = i32::try_from(field(0, 4)?).map_err(|_| format!("bad year in {text:?}"))?;
    let date = NaiveDate::from_ymd_opt(year, field(4, 2)?, field(6, 2)?)
        .ok_or_else(|| format!("{text:?} is not a calendar date"))?;
    let t = date
        .and_hms_opt(field(8, 2)?, field(10, 2)?, 0)
        .ok_or_else(|| format!("{text:?} has no valid hour and minute"))?
        .and_utc();
    check_plausible(t).map_err(|e| e.to_string())
}

fn plus_seconds(t: UtcTime, s: f64) -> UtcTime {
    t + TimeDelta::nanoseconds((s * 1e9).round() as i64)
}

fn parse_summary(line: &str, n: u64) -> Result<(ArchiveHypocentre, Option<String>), RecordProblem> {
    let bad = |field: &str, m: String| RecordProblem::new(n, field, m);
    let start = minute_start(line, 0).map_err(|m| bad("origin_time", m))?;
    let sec = implied(line, 12, 16, 2)
        .map_err(|m| bad("origin_seconds", m))?
        .unwrap_or(0.0);
    let lat_d = implied(line, 16, 18, 0)
        .map_err(|m| bad("latitude", m))?
        .ok_or_else(|| bad("latitude", "blank".into()))?;
    let lat_m = implied(line, 19, 23, 2)
        .map_err(|m| bad("latitude", m))?
        .unwrap_or(0.0);
    let lon_d = implied(line, 23, 26, 0)
        .map_err(|m| bad("longitude", m))?
        .ok_or_else(|| bad("longitude", "blank".into()))?;
    let lon_m = implied(line, 27, 31, 2)
        .map_err(|m| bad("longitude", m))?
        .unwrap_or(0.0);
    let mut lat = lat_d + lat_m / 60.0;
    if col(line, 18, 19) == "S" {
        lat = -lat;
    }
    let mut lon = lon_d + lon_m / 60.0;
    if col(line, 26, 27) != "E" {
        lon = -lon;
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(bad("latitude", format!("{lat} is outside -90..90")));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(bad("longitude", format!("{lon} is outside -180..180")));
    }
    let depth_km = implied(line, 31, 36, 2)
        .map_err(|m| bad("depth", m))?
        .ok_or_else(|| bad("depth", "blank".into()))?;
    let id = col(line, 136, 146).trim();
    Ok((
        ArchiveHypocentre {
            origin_time: plus_seconds(start, sec),
            lat_deg: lat,
            lon_deg: lon,
            depth_km,
            n_weighted_phases: int(line, 39, 42).map_err(|m| bad("n_phases", m))?,
            gap_deg: implied(line, 42, 45, 0).map_err(|m| bad("gap", m))?,
            dmin_km: implied(line, 45, 48, 0).map_err(|m| bad("dmin", m))?,
            rms_s: implied(line, 48, 52, 2).map_err(|m| bad("rms", m))?,
            erh_km: implied(line, 85, 89, 2).map_err(|m| bad("erh", m))?,
            erz_km: implied(line, 89, 93, 2).map_err(|m| bad("erz", m))?,
        },
        (!id.is_empty()).then(|| id.to_string()),
    ))
}

/// The picks of one phase line (P, S, or both), or the problems that rejected them.
fn parse_phase_line(line: &str, n: u64) -> (Vec<ArchivePick>, Vec<RecordProblem>) {
    let mut picks = Vec::new();
    let mut problems = Vec::new();
    let sta = col(line, 0, 5).trim();
    let net = col(line, 5, 7).trim();
    let channel = col(line, 9, 12).trim().to_string();
    let mut code = StationCode::new(net, sta);
    code.location = col(line, 111, 113).trim().trim_matches('-').to_string();
    let start = match minute_start(line, 17) {
        Ok(t) => t,
        Err(m) => {
            problems.push(RecordProblem::new(n, "date", m));
            return (picks, problems);
        }
    };
    let azimuth_deg = implied(line, 91, 94, 0).ok().flatten();
    let distance_km = implied(line, 74, 78, 1).ok().flatten();
    // (remark range, seconds range, weight column, residual range, field prefix)
    let slots = [
        ((13, 15), (29, 34), 16, (34, 38), "p"),
        ((46, 48), (41, 46), 49, (50, 54), "s"),
    ];
    for ((ra, rb), (sa, sb), w, (qa, qb), prefix) in slots {
        let remark = col(line, ra, rb);
        let phase_char = remark.chars().nth(1).unwrap_or(' ');
        let secs = match implied(line, sa, sb, 2) {
            Ok(s) => s,
            Err(m) => {
                problems.push(RecordProblem::new(n, format!("{prefix}_seconds"), m));
                continue;
            }
        };
        let phase = match (phase_char, secs) {
            ('P' | 'p', Some(_)) => Phase::P,
            ('S' | 's', Some(_)) => Phase::S,
            // Hypoinverse leaves zero seconds and a weight in an empty slot: no pick there.
            (' ', s) if s.is_none_or(|v| v == 0.0) => continue,
            (' ', Some(_)) => {
                if prefix == "p" {
                    Phase::P
                } else {
                    Phase::S
                }
            }
            (c, Some(_)) => {
                problems.push(RecordProblem::new(
                    n,
                    format!("{prefix}_remark"),
                    format!("unknown phase {c:?} in remark {remark:?}"),
                ));
                continue;
            }
            (_, None) => {
                problems.push(RecordProblem::new(
                    n,
                    format!("{prefix}_seconds"),
                    format!("remark {remark:?} but no time"),
                ));
                continue;
            }
        };
        let secs = secs.unwrap_or(0.0);
        let wc = col(line, w, w + 1);
        let weight_code = match wc.trim() {
            "" => 0,
            s => match s.parse::<u8>() {
                Ok(c) => c,
                Err(_) => {
                    problems.push(RecordProblem::new(
                        n,
                        format!("{prefix}_weight"),
                        format!("{s:?} is not a weight code"),
                    ));
                    continue;
                }
            },
        };
        let Some(uncertainty_s) = uncertainty_for_weight_code(weight_code) else {
            problems.push(RecordProblem::new(
                n,
                format!("{prefix}_weight"),
                format!("weight code {weight_code}: not used by Hypoinverse, skipped"),
            ));
            continue;
        };
        let time = plus_seconds(start, secs);
        picks.push(ArchivePick {
            pick: Pick::new(code.clone(), phase, time, uncertainty_s),
            weight_code,
            onset: remark.chars().next().unwrap_or(' '),
            first_motion: if prefix == "p" {
                col(line, 15, 16).chars().next().unwrap_or(' ')
            } else {
                ' '
            },
            channel: channel.clone(),
            residual_s: implied(line, qa, qb, 2).ok().flatten(),
            distance_km,
            azimuth_deg,
        });
    }
    (picks, problems)
}

/// Reads a Hypoinverse Y2000 archive. Every event starts with a summary line (first column a
/// digit); phase lines before any summary line are a structural error. Bad summary or phase
/// lines are reported per line and field; the event keeps its good picks.
pub fn read_hypoinverse_archive(text: &str) -> Result<ReadReport<ArchiveEvent>, CatalogError> {
    let mut report = ReadReport::default();
    let mut current: Option<ArchiveEvent> = None;
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.trim_end_matches('\r');
        if line.starts_with('$') {
            continue;
        }
        if line.trim().is_empty() || col(line, 0, 6).trim().is_empty() {
            report.records.extend(current.take());
            seen.clear();
            continue;
        }
        if line.as_bytes()[0].is_ascii_digit() {
            report.records.extend(current.take());
            seen.clear();
            let number = report.records.len() + 1;
            let (hypocentre, id) = match parse_summary(line, n) {
                Ok((h, id)) => (Some(h), id),
                Err(p) => {
                    report.problems.push(p);
                    (None, None)
                }
            };
            current = Some(ArchiveEvent {
                event_id: id.unwrap_or_else(|| number.to_string()),
                line: n,
                hypocentre,
                picks: Vec::new(),
            });
            continue;
        }
        let Some(ev) = current.as_mut() else {
            return Err(CatalogError::Malformed {
                line: n,
                message: "phase line before any summary line: not a Hypoinverse archive".into(),
            });
        };
        let (picks, problems) = parse_phase_line(line, n);
        report.problems.extend(problems);
        for p in picks {
            let key = (
                p.pick.station.network.clone(),
                p.pick.station.station.clone(),
                p.pick.phase,
            );
            if seen.insert(key) {
                ev.picks.push(p);
            } else {
                report.problems.push(RecordProblem::new(
                    n,
                    "station",
                    format!(
                        "duplicate {} pick at {} in event {}",
                        p.pick.phase, p.pick.station, ev.event_id
                    ),
                ));
            }
        }
    }
    report.records.extend(current.take());
    Ok(report)
}
