//! The neutral station CSV form of `../shared/data`: a header naming at least
//! `network,station,lat,lon,elev_m` (any order), optionally `location` (`--` means empty);
//! other columns are ignored. Latitude and longitude in WGS84 degrees, elevation in m above
//! sea level.

use std::path::Path;

use super::{check_value, finish, read_text, InventoryError, RawStation};
use crate::domain::{Station, StationCode, StationInventory};

/// Columns every station CSV must have.
pub const REQUIRED_COLUMNS: [&str; 5] = ["network", "station", "lat", "lon", "elev_m"];

/// Reads a station CSV file.
pub fn read_csv_path(path: &Path) -> Result<StationInventory, InventoryError> {
    let text = read_text(path)?;
    read_csv_str(&text, path)
}

/// Reads station CSV text; `file` is only used to name the source in errors.
pub fn read_csv_str(text: &str, file: &Path) -> Result<StationInventory, InventoryError> {
    let syntax = |line: usize, message: String| InventoryError::Syntax {
        file: file.to_path_buf(),
        location: line.to_string(),
        message,
    };
    let mut rdr = ::csv::ReaderBuilder::new()
        .trim(::csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| syntax(1, format!("bad header: {e}")))?
        .clone();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(InventoryError::Empty {
            file: file.to_path_buf(),
        });
    }
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut idx = [0usize; 5];
    for (k, name) in REQUIRED_COLUMNS.iter().enumerate() {
        idx[k] = col(name).ok_or_else(|| InventoryError::MissingColumn {
            file: file.to_path_buf(),
            column: name.to_string(),
        })?;
    }
    let loc_idx = col("location");

    let mut raw = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            syntax(line, e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let field_err = |field: &str, message: String| InventoryError::Field {
            file: file.to_path_buf(),
            location: line.to_string(),
            field: field.to_string(),
            message,
        };
        let text_field = |k: usize| -> Result<&str, InventoryError> {
            let s = rec.get(idx[k]).unwrap_or("");
            if s.is_empty() {
                return Err(field_err(REQUIRED_COLUMNS[k], "missing value".into()));
            }
            Ok(s)
        };
        let network = text_field(0)?;
        let station = text_field(1)?;
        let mut num = [0.0f64; 3];
        for (j, k) in (2..5).enumerate() {
            let s = text_field(k)?;
            let v: f64 = s
                .parse()
                .map_err(|_| field_err(REQUIRED_COLUMNS[k], format!("{s:?} is not a number")))?;
            check_value(REQUIRED_COLUMNS[k], v).map_err(|m| field_err(REQUIRED_COLUMNS[k], m))?;
            num[j] = v;
        }
        let mut code = StationCode::new(network, station);
        if let Some(l) = loc_idx.and_then(|i| rec.get(i)) {
            if l != "--" {
                code.location = l.to_string();
            }
        }
        raw.push(RawStation {
            station: Station {
                code,
                lat_deg: num[0],
                lon_deg: num[1],
                elevation_m: num[2],
            },
            location: line.to_string(),
        });
    }
    finish(file, raw)
}
