//! Pick and catalog formats, one module each: sniff, read, write.
//!
//! - [`csv`]: the neutral picks CSV of `../shared/data`, the locator's catalog CSV and the
//!   reference catalogs shipped with the data sets.
//! - [`quakeml`]: QuakeML 1.2 BED events, picks, origins and arrivals.
//! - [`nlloc`]: NonLinLoc NLLOC_OBS phase files and the `.hyp` summary of one origin.
//! - [`hypoinverse`]: Hypoinverse Y2000 archives (summary hypocentre and weighted picks).
//!
//! Readers never stop at one bad record: they return the good records plus one
//! [`RecordProblem`] per rejected record (line, field, reason) in a [`ReadReport`], and fail
//! with a [`CatalogError`] only when the input as a whole cannot be read (unreadable file,
//! missing header or required column, truncated XML).

pub mod csv;
pub mod hypoinverse;
pub mod nlloc;
pub mod quakeml;

use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

use crate::domain::{format_utc, Pick, UtcTime};

/// A structural failure: the input as a whole cannot be read.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Reading or writing a stream failed (no file name known at this layer).
    #[error("I/O error: {0}")]
    Stream(#[from] std::io::Error),
    /// The input is empty or its first line is not the expected header.
    #[error("line 1: missing header ({0})")]
    MissingHeader(String),
    /// The header lacks a column the format requires.
    #[error("line 1: header has no column {column:?} (has: {header})")]
    MissingColumn {
        /// Required column name.
        column: String,
        /// The header as found.
        header: String,
    },
    /// Input that breaks the format as a whole (e.g. truncated XML), with the line.
    #[error("line {line}: {message}")]
    Malformed {
        /// 1-based line number where the structure broke.
        line: u64,
        /// What was wrong.
        message: String,
    },
    /// A reader option that makes no sense (e.g. a negative default uncertainty).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The content matches none of the known formats.
    #[error("unrecognised format: {0}")]
    UnknownFormat(String),
    /// A structural error in a named file.
    #[error("{path}: {source}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What went wrong in it.
        source: Box<CatalogError>,
    },
}

impl CatalogError {
    /// Attaches a file name (no-op for errors that already carry one).
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            e @ (CatalogError::Io { .. } | CatalogError::InFile { .. }) => e,
            e => CatalogError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

/// One rejected record: where it is, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProblem {
    /// 1-based line number in the input (of the record's first line).
    pub line: u64,
    /// Field (column or XML element) at fault.
    pub field: String,
    /// What is wrong with it, for a person.
    pub message: String,
}

impl RecordProblem {
    /// A problem at `line` with `field`.
    pub fn new(line: u64, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            line,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: field {}: {}",
            self.line, self.field, self.message
        )
    }
}

/// What a reader returns: the good records, in input order, and one problem per skipped record.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadReport<T> {
    /// Records that passed every check.
    pub records: Vec<T>,
    /// Records (or parts of them) that were skipped, with their reason.
    pub problems: Vec<RecordProblem>,
}

impl<T> Default for ReadReport<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// The formats this module knows, as recognised by [`sniff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Neutral picks CSV (`event_id,network,station,phase,time_iso[,uncertainty_s]`).
    PicksCsv,
    /// The locator's catalog CSV (`event_id,origin_time_iso,lat,lon,depth_km,h95_major_km,...`).
    CatalogCsv,
    /// A reference catalog CSV of the data sets (`event_id,origin_time_iso,lat,lon,depth_km,...`).
    ReferenceCatalogCsv,
    /// QuakeML 1.2 (BED).
    QuakeMl,
    /// NonLinLoc phase file (NLLOC_OBS).
    NllocObs,
    /// NonLinLoc hypocentre-phase file (`.hyp`).
    NllocHyp,
    /// Hypoinverse Y2000 archive (summary + phase lines).
    HypoinverseArchive,
}

/// Recognises a format from the first few kilobytes of content (not from the file name).
pub fn sniff(content: &str) -> Option<Format> {
    let head: String = content.chars().take(4096).collect();
    let trimmed = head.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('<') {
        return (head.contains("quakeml") || head.contains("eventParameters"))
            .then_some(Format::QuakeMl);
    }
    let first = trimmed.lines().next().unwrap_or("");
    if first.starts_with("NLLOC ") {
        return Some(Format::NllocHyp);
    }
    if first.contains(',') {
        let cols: Vec<&str> = first.split(',').map(str::trim).collect();
        let has = |c: &str| cols.contains(&c);
        if has("event_id") && has("phase") && has("time_iso") && has("station") {
            return Some(Format::PicksCsv);
        }
        if has("event_id") && has("origin_time_iso") && has("h95_major_km") && has("n_outliers") {
            return Some(Format::CatalogCsv);
        }
        if has("event_id") && has("origin_time_iso") && has("lat") && has("lon") {
            return Some(Format::ReferenceCatalogCsv);
        }
        return None;
    }
    sniff_fixed_column(trimmed)
}

/// NonLinLoc obs and Hypoinverse archives are column formats without a header; tell them apart
/// by their first data line.
fn sniff_fixed_column(text: &str) -> Option<Format> {
    let line = text
        .lines()
        .map(str::trim_end)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("PUBLIC_ID"))?;
    // Hypoinverse Y2000 summary: yyyymmddhhmm in the first 12 columns, through depth. Checked
    // first: a station label never starts with 12 digits.
    let b = line.as_bytes();
    if b.len() >= 36 && b[..12].iter().all(u8::is_ascii_digit) {
        return Some(Format::HypoinverseArchive);
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    // NLLOC_OBS: station inst comp onset phase fm YYYYMMDD HHMM ss.ssss GAU err ...
    if fields.len() >= 9
        && fields[6].len() == 8
        && fields[6].bytes().all(|b| b.is_ascii_digit())
        && fields[8].parse::<f64>().is_ok()
    {
        return Some(Format::NllocObs);
    }
    None
}

/// Picks of one event, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPicks {
    /// Event id as written in the input (or numbered where the format has none).
    pub event_id: String,
    /// Its picks, in input order.
    pub picks: Vec<Pick>,
}

/// Reads picks grouped by event from any pick format, recognised by [`sniff`]: picks CSV,
/// QuakeML, NLLOC_OBS (bare station labels get `default_network`) or Hypoinverse archive.
/// Returns the format found with the report.
pub fn read_event_picks(
    text: &str,
    options: &PickOptions,
    default_network: &str,
) -> Result<(Format, ReadReport<EventPicks>), CatalogError> {
    let format = sniff(text).ok_or_else(|| {
        CatalogError::UnknownFormat(
            "not a picks CSV, QuakeML, NLLOC_OBS or Hypoinverse archive".into(),
        )
    })?;
    let report = match format {
        Format::PicksCsv => csv::read_picks(text.as_bytes(), options)?,
        Format::QuakeMl => {
            let r = quakeml::read_quakeml(text, options)?;
            let records = r
                .records
                .into_iter()
                .map(|e| EventPicks {
                    event_id: e.id,
                    picks: e.picks,
                })
                .collect();
            ReadReport {
                records,
                problems: r.problems,
            }
        }
        Format::NllocObs => nlloc::read_nlloc_obs(text, options, default_network)?,
        Format::HypoinverseArchive => {
            options.validate()?;
            let r = hypoinverse::read_hypoinverse_archive(text)?;
            let records = r
                .records
                .into_iter()
                .map(|e| EventPicks {
                    event_id: e.event_id,
                    picks: e.picks.into_iter().map(|p| p.pick).collect(),
                })
                .collect();
            ReadReport {
                records,
                problems: r.problems,
            }
        }
        other => {
            return Err(CatalogError::UnknownFormat(format!(
                "{other:?} holds no picks"
            )))
        }
    };
    Ok((format, report))
}

/// [`read_event_picks`] on a file; errors name the file.
pub fn read_event_picks_file(
    path: &Path,
    options: &PickOptions,
    default_network: &str,
) -> Result<(Format, ReadReport<EventPicks>), CatalogError> {
    read_event_picks(&read_text(path)?, options, default_network).map_err(|e| e.in_file(path))
}

/// Reader options for formats that carry picks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PickOptions {
    /// One-sigma pick uncertainty, s, used where the input gives none.
    pub default_uncertainty_s: f64,
}

impl Default for PickOptions {
    /// 0.1 s: the nominal uncertainty of a weight-1 analyst pick (project convention).
    fn default() -> Self {
        Self {
            default_uncertainty_s: 0.1,
        }
    }
}

impl PickOptions {
    /// Rejects a default uncertainty that is not a positive finite number.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let d = self.default_uncertainty_s;
        if d.is_finite() && d > 0.0 {
            Ok(())
        } else {
            Err(CatalogError::InvalidOption(format!(
                "default uncertainty {d} s must be positive and finite"
            )))
        }
    }
}

/// ISO-8601 UTC with microseconds, or nanoseconds when the time has sub-microsecond digits
/// (so that writing then reading gives back the same instant).
pub fn format_time_exact(t: &UtcTime) -> String {
    if chrono::Timelike::nanosecond(t) % 1000 == 0 {
        format_utc(t)
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    }
}

/// Reads a whole file as UTF-8 text, naming the file on failure.
pub fn read_text(path: &Path) -> Result<String, CatalogError> {
    std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Deterministic, locale-free formatting of a float with `decimals` places; empty for NaN/inf
/// (unknown values are written as empty cells, never as `NaN`).
pub(crate) fn fmt_opt(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        let s = format!("{x:.decimals$}");
        // "-0.000" would differ from "0.000" for the same value; write one form.
        if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
            s[1..].to_string()
        } else {
            s
        }
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(
            sniff("event_id,network,station,phase,time_iso\n"),
            Some(Format::PicksCsv)
        );
        assert_eq!(
            sniff("event_id,origin_time_iso,lat,lon,depth_km,h95_major_km,n_picks,n_outliers\n"),
            Some(Format::CatalogCsv)
        );
        assert_eq!(
            sniff("event_id,origin_time_iso,lat,lon,depth_km,mag\n"),
            Some(Format::ReferenceCatalogCsv)
        );
        assert_eq!(
            sniff("<?xml version=\"1.0\"?>\n<q:quakeml xmlns:q=\"http://quakeml.org/xmlns/quakeml/1.2\">"),
            Some(Format::QuakeMl)
        );
        assert_eq!(
            sniff("# comment\nRC01   ?    BHZ  ? P      ? 20181130 1729   37.0400 GAU  2.00e-02 -1.00e+00 -1.00e+00 -1.00e+00\n"),
            Some(Format::NllocObs)
        );
        assert_eq!(
            sniff("NLLOC \"loc/x\" \"LOCATED\" \"Location completed.\"\n"),
            Some(Format::NllocHyp)
        );
        assert_eq!(
            sniff("PUBLIC_ID 7\nRC01 ? BHZ ? P ? 20181130 1729 37.0400\n"),
            Some(Format::NllocObs)
        );
        let summary = format!("{:<146}", "202103040506 72537 1712121 3976  630");
        assert_eq!(sniff(&summary), Some(Format::HypoinverseArchive));
        assert_eq!(sniff("hello world\n"), None);
        assert_eq!(sniff("a,b,c\n1,2,3\n"), None);
    }

    #[test]
    fn every_pick_format_reads_through_one_entry_point() {
        let csv = "event_id,network,station,phase,time_iso\n7,XX,A,P,2020-01-01T00:00:01Z\n";
        let obs = "PUBLIC_ID 7\nXX_A ? ? ? P ? 20200101 0000 1.0000 GAU 1.00e-01 -1 -1 -1\n";
        let pick = crate::domain::Pick::new(
            crate::domain::StationCode::new("XX", "A"),
            crate::domain::Phase::P,
            crate::domain::parse_utc("2020-01-01T00:00:01Z").unwrap(),
            0.1,
        );
        let ev = crate::domain::Event {
            id: "7".into(),
            picks: vec![pick.clone()],
            origins: vec![],
            preferred_origin: None,
        };
        let qml = quakeml::to_quakeml(&[ev]);
        let mut arc = String::from("202001010000 10037 1712121 3976  630\n");
        arc.push_str("A    XX      IP 0202001010000  100\n");
        for (text, format) in [
            (csv, Format::PicksCsv),
            (obs, Format::NllocObs),
            (qml.as_str(), Format::QuakeMl),
            (arc.as_str(), Format::HypoinverseArchive),
        ] {
            let (f, r) = read_event_picks(text, &PickOptions::default(), "XX").unwrap();
            assert_eq!(f, format);
            assert!(r.problems.is_empty(), "{format:?}: {:?}", r.problems);
            assert_eq!(r.records.len(), 1, "{format:?}");
            let got = &r.records[0].picks[0];
            assert_eq!(
                (&got.station, got.phase, got.time),
                (&pick.station, pick.phase, pick.time),
                "{format:?}"
            );
        }
        assert!(matches!(
            read_event_picks("hello\n", &PickOptions::default(), ""),
            Err(CatalogError::UnknownFormat(_))
        ));
    }

    #[test]
    fn formats_floats_deterministically() {
        assert_eq!(fmt_opt(-0.0001, 3), "0.000");
        assert_eq!(fmt_opt(1.23456, 2), "1.23");
        assert_eq!(fmt_opt(f64::NAN, 2), "");
    }
}
