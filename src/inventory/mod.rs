//! Station inventory readers: the neutral CSV form and FDSN StationXML 1.x.
//!
//! Both produce a [`StationInventory`] (geographic WGS84 degrees, elevation in m above sea
//! level, positive up) after the same validation: every station has a network and station
//! code, a finite latitude in -90..90, longitude in -180..360, elevation in
//! [`MIN_ELEVATION_M`]..[`MAX_ELEVATION_M`], no (network, station) pair twice, and at least one
//! station. Errors name the file, the line (CSV) or element path (XML), and the field.
//!
//! [`read_path`] picks the reader by extension: `.xml` is StationXML, anything else CSV.

pub mod csv;
pub mod stationxml;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::domain::{Station, StationInventory};

pub use self::csv::{read_csv_path, read_csv_str};
pub use self::stationxml::{read_stationxml_path, read_stationxml_str};

/// Lowest plausible station elevation, m: below the deepest ocean floor (~ -11 000 m) is a typo.
pub const MIN_ELEVATION_M: f64 = -12_000.0;
/// Highest plausible station elevation, m: above Everest (~ 8 850 m) is a typo (often km vs m).
pub const MAX_ELEVATION_M: f64 = 9_000.0;

/// What a station file got wrong, naming the file and where in it.
#[derive(Debug, Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A required column is missing from the CSV header.
    #[error("{file}:1: missing required column {column:?} (header must contain network,station,lat,lon,elev_m)")]
    MissingColumn { file: PathBuf, column: String },
    /// A malformed record (CSV) or document (XML).
    #[error("{file}:{location}: {message}")]
    Syntax {
        file: PathBuf,
        location: String,
        message: String,
    },
    /// One field of one record is missing or impossible.
    #[error("{file}:{location}: field {field:?}: {message}")]
    Field {
        file: PathBuf,
        location: String,
        field: String,
        message: String,
    },
    /// The same (network, station) appears twice.
    #[error("{file}:{location}: duplicate station {code} (first at {file}:{first})")]
    Duplicate {
        file: PathBuf,
        location: String,
        /// `NET.STA` of the duplicate.
        code: String,
        first: String,
    },
    /// The file holds no station.
    #[error("{file}: no stations")]
    Empty { file: PathBuf },
}

/// Reads a station file, choosing the reader by extension (`.xml`: StationXML; else CSV).
pub fn read_path(path: &Path) -> Result<StationInventory, InventoryError> {
    let is_xml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
    if is_xml {
        read_stationxml_path(path)
    } else {
        read_csv_path(path)
    }
}

/// Reads a whole file to text with an error naming it.
pub(crate) fn read_text(path: &Path) -> Result<String, InventoryError> {
    std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        file: path.to_path_buf(),
        source,
    })
}

/// One station as read, before the inventory-wide checks; `location` says where it came from.
pub(crate) struct RawStation {
    pub station: Station,
    pub location: String,
}

/// Checks one field value against the shared physical limits; `Err(message)` when impossible.
pub(crate) fn check_value(field: &str, v: f64) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!("{v} is not a finite number"));
    }
    let (lo, hi, what) = match field {
        "lat" => (-90.0, 90.0, "degrees"),
        "lon" => (-180.0, 360.0, "degrees"),
        _ => (MIN_ELEVATION_M, MAX_ELEVATION_M, "m"),
    };
    if !(lo..=hi).contains(&v) {
        return Err(format!("{v} is outside {lo}..{hi} {what}"));
    }
    Ok(())
}

/// Checks codes are present, rejects duplicates and empty input, builds the inventory.
pub(crate) fn finish(
    file: &Path,
    raw: Vec<RawStation>,
) -> Result<StationInventory, InventoryError> {
    if raw.is_empty() {
        return Err(InventoryError::Empty {
            file: file.to_path_buf(),
        });
    }
    let mut first_seen: std::collections::HashMap<(String, String), String> = Default::default();
    for r in &raw {
        let key = (
            r.station.code.network.clone(),
            r.station.code.station.clone(),
        );
        if let Some(first) = first_seen.get(&key) {
            return Err(InventoryError::Duplicate {
                file: file.to_path_buf(),
                location: r.location.clone(),
                code: r.station.code.to_string(),
                first: first.clone(),
            });
        }
        first_seen.insert(key, r.location.clone());
    }
    let stations: Vec<Station> = raw.into_iter().map(|r| r.station).collect();
    // duplicates were rejected above with a better message, so this cannot fail
    StationInventory::new(stations).map_err(|code| InventoryError::Duplicate {
        file: file.to_path_buf(),
        location: String::new(),
        code: code.to_string(),
        first: String::new(),
    })
}
