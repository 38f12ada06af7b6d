//! CSV forms: the neutral picks CSV of `../shared/data`, the locator's catalog CSV, and the
//! reference catalogs shipped with the data sets.
//!
//! Columns are found by header name, so their order does not matter and extra columns are
//! ignored. Readers return the good records and one [`RecordProblem`] per skipped record.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use crate::catalog::{fmt_opt, format_time_exact, CatalogError, ReadReport, RecordProblem};
use crate::domain::{
    parse_utc, Event, HorizontalEllipse, Origin, Phase, Pick, StationCode, UtcTime,
};

/// Picks of one event (defined in [`crate::catalog`], shared by every pick format).
pub use crate::catalog::EventPicks;

/// Options for [`read_picks`] (the same options every pick reader takes).
pub use crate::catalog::PickOptions as PicksCsvOptions;

/// Header columns of the picks CSV, in the order [`write_picks`] writes them.
pub const PICKS_HEADER: [&str; 7] = [
    "event_id",
    "network",
    "station",
    "location",
    "phase",
    "time_iso",
    "uncertainty_s",
];

/// Header columns of the locator's catalog CSV, in order.
pub const CATALOG_HEADER: [&str; 14] = [
    "event_id",
    "origin_time_iso",
    "lat",
    "lon",
    "depth_km",
    "h95_major_km",
    "h95_minor_km",
    "h95_azimuth_deg",
    "z95_km",
    "t0_sigma_s",
    "rms_s",
    "gap_deg",
    "n_picks",
    "n_outliers",
];

/// Column lookup by header name for one CSV input.
struct Columns {
    header: Vec<String>,
    index: HashMap<String, usize>,
}

impl Columns {
    fn new(header: &::csv::ByteRecord) -> Result<Self, CatalogError> {
        let header: Vec<String> = header
            .iter()
            .map(|f| {
                String::from_utf8_lossy(f)
                    .trim()
                    .trim_start_matches('\u{feff}')
                    .to_string()
            })
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(CatalogError::MissingHeader("input is empty".into()));
        }
        let index = header
            .iter()
            .enumerate()
            .rev()
            .map(|(i, h)| (h.clone(), i))
            .collect();
        Ok(Self { header, index })
    }

    fn require(&self, names: &[&str]) -> Result<(), CatalogError> {
        for name in names {
            if !self.index.contains_key(*name) {
                return Err(CatalogError::MissingColumn {
                    column: (*name).to_string(),
                    header: self.header.join(","),
                });
            }
        }
        Ok(())
    }
}

/// One data row with its line number, and typed access that reports the field on failure.
struct Row<'a> {
    cols: &'a Columns,
    fields: Vec<String>,
    line: u64,
}

impl Row<'_> {
    /// The cell of column `name`; `None` when the column does not exist or the row is short.
    fn cell(&self, name: &str) -> Option<&str> {
        self.cols
            .index
            .get(name)
            .and_then(|&i| self.fields.get(i))
            .map(String::as_str)
    }

    fn problem(&self, field: &str, message: impl Into<String>) -> RecordProblem {
        RecordProblem::new(self.line, field, message)
    }

    /// A required, non-empty cell.
    fn text(&self, name: &str) -> Result<&str, RecordProblem> {
        match self.cell(name) {
            None => Err(self.problem(
                name,
                format!(
                    "missing field (row has {} of {} columns)",
                    self.fields.len(),
                    self.cols.header.len()
                ),
            )),
            Some("") => Err(self.problem(name, "empty")),
            Some(s) => Ok(s),
        }
    }

    fn time(&self, name: &str) -> Result<UtcTime, RecordProblem> {
        let s = self.text(name)?;
        parse_utc(s).map_err(|e| self.problem(name, e.to_string()))
    }

    /// A required finite number.
    fn number(&self, name: &str) -> Result<f64, RecordProblem> {
        let s = self.text(name)?;
        parse_finite(s).map_err(|m| self.problem(name, m))
    }

    /// A number in an optional column: `None` when the column is absent or the cell empty.
    fn opt_number(&self, name: &str) -> Result<Option<f64>, RecordProblem> {
        match self.cell(name) {
            None | Some("") => Ok(None),
            Some(s) => parse_finite(s).map(Some).map_err(|m| self.problem(name, m)),
        }
    }

    fn range(&self, name: &str, lo: f64, hi: f64) -> Result<f64, RecordProblem> {
        let x = self.number(name)?;
        if !(lo..=hi).contains(&x) {
            return Err(self.problem(name, format!("{x} is outside {lo}..{hi}")));
        }
        Ok(x)
    }

    fn count(&self, name: &str) -> Result<u32, RecordProblem> {
        let s = self.text(name)?;
        s.parse::<u32>()
            .map_err(|_| self.problem(name, format!("{s:?} is not a non-negative integer")))
    }
}

fn parse_finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(x) => Err(format!("{x} is not a finite number")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Walks the data rows of a CSV input: UTF-8 and reader errors of one row become problems.
fn for_each_row<R: Read>(
    input: R,
    required: &[&str],
    mut f: impl FnMut(&Row<'_>) -> Result<(), RecordProblem>,
) -> Result<Vec<RecordProblem>, CatalogError> {
    let mut rdr = ::csv::ReaderBuilder::new()
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(input);
    let header = rdr.byte_headers().map_err(csv_structural)?.clone();
    let cols = Columns::new(&header)?;
    cols.require(required)?;
    let mut problems = Vec::new();
    let mut rec = ::csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_structural(e)),
        }
        let line = rec.position().map_or(0, ::csv::Position::line);
        if rec.iter().all(<[u8]>::is_empty) {
            continue;
        }
        let mut fields = Vec::with_capacity(rec.len());
        let mut bad = None;
        for (i, raw) in rec.iter().enumerate() {
            match std::str::from_utf8(raw) {
                Ok(s) => fields.push(s.to_string()),
                Err(_) => {
                    let name = cols
                        .header
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("column {}", i + 1));
                    bad = Some(RecordProblem::new(line, name, "not valid UTF-8"));
                    break;
                }
            }
        }
        if let Some(p) = bad {
            problems.push(p);
            continue;
        }
        let row = Row {
            cols: &cols,
            fields,
            line,
        };
        if let Err(p) = f(&row) {
            problems.push(p);
        }
    }
    Ok(problems)
}

fn csv_structural(e: ::csv::Error) -> CatalogError {
    let line = e.position().map_or(0, ::csv::Position::line);
    match e.into_kind() {
        ::csv::ErrorKind::Io(io) => CatalogError::Stream(io),
        other => CatalogError::Malformed {
            line,
            message: format!("{other:?}"),
        },
    }
}

/// Reads the picks CSV (`event_id,network,station,phase,time_iso[,uncertainty_s][,location]`,
/// extra columns ignored), grouped by event id in order of first appearance.
///
/// Rejected records: missing or empty fields, unknown phase, unparseable or implausible time
/// (outside 1900..2200), uncertainty that is not a positive finite number, and a second pick
/// of the same phase at the same network.station in the same event (the first one is kept;
/// the location code is ignored, as in [`crate::domain::StationInventory`]). Whether a station
/// exists is for the caller to check against its inventory.
pub fn read_picks<R: Read>(
    input: R,
    options: &PicksCsvOptions,
) -> Result<ReadReport<EventPicks>, CatalogError> {
    read_picks_with_lines(input, options).map(|(report, _)| report)
}

/// [`read_picks`], also giving the 1-based input line of every pick kept: `lines[i][j]` is
/// the line of `report.records[i].picks[j]` (so a later check, e.g. against an inventory,
/// can name the line too).
pub fn read_picks_with_lines<R: Read>(
    input: R,
    options: &PicksCsvOptions,
) -> Result<(ReadReport<EventPicks>, Vec<Vec<u64>>), CatalogError> {
    let d = options.default_uncertainty_s;
    if !(d.is_finite() && d > 0.0) {
        return Err(CatalogError::InvalidOption(format!(
            "default uncertainty {d} s must be positive and finite"
        )));
    }
    let mut events: Vec<EventPicks> = Vec::new();
    let mut lines: Vec<Vec<u64>> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut seen: HashMap<(String, String, String, Phase), u64> = HashMap::new();
    let problems = for_each_row(
        input,
        &["event_id", "network", "station", "phase", "time_iso"],
        |row| {
            let event_id = row.text("event_id")?;
            let network = row.text("network")?;
            let station = row.text("station")?;
            let location = match row.cell("location") {
                None | Some("--") => "",
                Some(s) => s,
            };
            let phase_text = row.text("phase")?;
            let phase: Phase = phase_text
                .parse()
                .map_err(|e: crate::domain::PhaseError| row.problem("phase", e.to_string()))?;
            let time = row.time("time_iso")?;
            let uncertainty_s = match row.opt_number("uncertainty_s")? {
                None => d,
                Some(u) if u > 0.0 => u,
                Some(u) => {
                    return Err(row.problem("uncertainty_s", format!("{u} s is not positive")))
                }
            };
            let key = (
                event_id.to_string(),
                network.to_string(),
                station.to_string(),
                phase,
            );
            if let Some(first) = seen.get(&key) {
                return Err(row.problem(
                "station",
                format!("duplicate {phase} pick at {network}.{station} in event {event_id} (first on line {first}; kept that one)"),
            ));
            }
            seen.insert(key, row.line);
            let mut code = StationCode::new(network, station);
            code.location = location.to_string();
            let pick = Pick::new(code, phase, time, uncertainty_s);
            let i = *by_id.entry(event_id.to_string()).or_insert_with(|| {
                events.push(EventPicks {
                    event_id: event_id.to_string(),
                    picks: Vec::new(),
                });
                lines.push(Vec::new());
                events.len() - 1
            });
            events[i].picks.push(pick);
            lines[i].push(row.line);
            Ok(())
        },
    )?;
    Ok((
        ReadReport {
            records: events,
            problems,
        },
        lines,
    ))
}

/// [`read_picks`] on a file; structural errors name the file.
pub fn read_picks_file(
    path: &Path,
    options: &PicksCsvOptions,
) -> Result<ReadReport<EventPicks>, CatalogError> {
    let f = std::fs::File::open(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_picks(std::io::BufReader::new(f), options).map_err(|e| e.in_file(path))
}

/// Writes picks in the form [`read_picks`] reads, header [`PICKS_HEADER`]; uncertainties in
/// shortest round-trip form.
pub fn write_picks<W: Write>(out: W, events: &[EventPicks]) -> Result<(), CatalogError> {
    let mut w = ::csv::Writer::from_writer(out);
    w.write_record(PICKS_HEADER).map_err(csv_structural)?;
    for ev in events {
        for p in &ev.picks {
            let unc = p.uncertainty_s.to_string();
            let time = format_time_exact(&p.time);
            w.write_record([
                ev.event_id.as_str(),
                &p.station.network,
                &p.station.station,
                &p.station.location,
                p.phase.as_str(),
                &time,
                &unc,
            ])
            .map_err(csv_structural)?;
        }
    }
    w.flush()?;
    Ok(())
}

/// One row of the locator's catalog CSV: an event's preferred origin, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRow {
    /// Event id.
    pub event_id: String,
    /// Origin time, UTC.
    pub origin_time: UtcTime,
    /// Latitude, degrees north (WGS84).
    pub lat_deg: f64,
    /// Longitude, degrees east (WGS84).
    pub lon_deg: f64,
    /// Depth below sea level, km.
    pub depth_km: f64,
    /// Semi-major axis of the 95 % horizontal ellipse, km (NaN when unknown).
    pub h95_major_km: f64,
    /// Semi-minor axis of the 95 % horizontal ellipse, km (NaN when unknown).
    pub h95_minor_km: f64,
    /// Azimuth of the major axis, degrees east of north (NaN when unknown).
    pub h95_azimuth_deg: f64,
    /// Half-width of the 95 % depth interval, km (NaN when unknown).
    pub z95_km: f64,
    /// One-sigma origin-time uncertainty, s (NaN when unknown).
    pub t0_sigma_s: f64,
    /// RMS of the arrival residuals, s (NaN when unknown).
    pub rms_s: f64,
    /// Largest azimuthal gap, degrees (NaN when unknown).
    pub gap_deg: f64,
    /// Number of arrivals (picks used or considered).
    pub n_picks: u32,
    /// Number of arrivals the robust likelihood treated as outliers.
    pub n_outliers: u32,
}

impl CatalogRow {
    /// The row for one origin of event `event_id`.
    pub fn from_origin(event_id: &str, o: &Origin) -> Self {
        let h = &o.uncertainty.horizontal_95;
        Self {
            event_id: event_id.to_string(),
            origin_time: o.time,
            lat_deg: o.lat_deg,
            lon_deg: o.lon_deg,
            depth_km: o.depth_km,
            h95_major_km: h.major_km,
            h95_minor_km: h.minor_km,
            h95_azimuth_deg: h.azimuth_deg,
            z95_km: o.uncertainty.depth_95_km,
            t0_sigma_s: o.time_sigma_s,
            rms_s: o.rms_s,
            gap_deg: o.gap_deg,
            n_picks: u32::try_from(o.arrivals.len()).unwrap_or(u32::MAX),
            n_outliers: u32::try_from(o.arrivals.iter().filter(|a| a.outlier).count())
                .unwrap_or(u32::MAX),
        }
    }

    /// The row for an event's preferred origin; `None` when it has none.
    pub fn from_event(e: &Event) -> Option<Self> {
        e.preferred().map(|o| Self::from_origin(&e.id, o))
    }

    /// The 95 % horizontal ellipse.
    pub fn h95(&self) -> HorizontalEllipse {
        HorizontalEllipse {
            major_km: self.h95_major_km,
            minor_km: self.h95_minor_km,
            azimuth_deg: self.h95_azimuth_deg,
        }
    }
}

/// Writes the catalog CSV (header [`CATALOG_HEADER`]) with fixed decimals: 6 for degrees of
/// lat/lon (0.1 m), 3 for km and s, 1 for azimuths and gaps; unknown (NaN) values as empty cells.
pub fn write_catalog<W: Write>(out: W, rows: &[CatalogRow]) -> Result<(), CatalogError> {
    let mut w = ::csv::Writer::from_writer(out);
    w.write_record(CATALOG_HEADER).map_err(csv_structural)?;
    for r in rows {
        w.write_record([
            r.event_id.clone(),
            format_time_exact(&r.origin_time),
            fmt_opt(r.lat_deg, 6),
            fmt_opt(r.lon_deg, 6),
            fmt_opt(r.depth_km, 3),
            fmt_opt(r.h95_major_km, 3),
            fmt_opt(r.h95_minor_km, 3),
            fmt_opt(r.h95_azimuth_deg, 1),
            fmt_opt(r.z95_km, 3),
            fmt_opt(r.t0_sigma_s, 3),
            fmt_opt(r.rms_s, 3),
            fmt_opt(r.gap_deg, 1),
            r.n_picks.to_string(),
            r.n_outliers.to_string(),
        ])
        .map_err(csv_structural)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads the catalog CSV written by [`write_catalog`]; every column of [`CATALOG_HEADER`] is
/// required, empty uncertainty cells read as NaN.
pub fn read_catalog<R: Read>(input: R) -> Result<ReadReport<CatalogRow>, CatalogError> {
    let mut records = Vec::new();
    let problems = for_each_row(input, &CATALOG_HEADER, |row| {
        let nan = |name: &str| row.opt_number(name).map(|x| x.unwrap_or(f64::NAN));
        records.push(CatalogRow {
            event_id: row.text("event_id")?.to_string(),
            origin_time: row.time("origin_time_iso")?,
            lat_deg: row.range("lat", -90.0, 90.0)?,
            lon_deg: row.range("lon", -180.0, 360.0)?,
            depth_km: row.number("depth_km")?,
            h95_major_km: nan("h95_major_km")?,
            h95_minor_km: nan("h95_minor_km")?,
            h95_azimuth_deg: nan("h95_azimuth_deg")?,
            z95_km: nan("z95_km")?,
            t0_sigma_s: nan("t0_sigma_s")?,
            rms_s: nan("rms_s")?,
            gap_deg: nan("gap_deg")?,
            n_picks: row.count("n_picks")?,
            n_outliers: row.count("n_outliers")?,
        });
        Ok(())
    })?;
    Ok(ReadReport { records, problems })
}

/// [`read_catalog`] on a file; structural errors name the file.
pub fn read_catalog_file(path: &Path) -> Result<ReadReport<CatalogRow>, CatalogError> {
    let f = std::fs::File::open(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_catalog(std::io::BufReader::new(f)).map_err(|e| e.in_file(path))
}

/// A hypocentre from a reference catalog (`catalog.csv`, `catalog_hypodd.csv`,
/// `catalog_velest_start.csv` of the data sets), with whatever uncertainties it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceHypocentre {
    /// Event id.
    pub event_id: String,
    /// Origin time, UTC.
    pub origin_time: UtcTime,
    /// Latitude, degrees north.
    pub lat_deg: f64,
    /// Longitude, degrees east.
    pub lon_deg: f64,
    /// Depth below sea level, km.
    pub depth_km: f64,
    /// RMS residual, s (`rms_s`).
    pub rms_s: Option<f64>,
    /// Azimuthal gap, degrees (`gap_deg`).
    pub gap_deg: Option<f64>,
    /// Hypoinverse-style horizontal error, km (`erh_km` or `eh_km`).
    pub horizontal_error_km: Option<f64>,
    /// Hypoinverse-style depth error, km (`erz_km` or `ez_km`).
    pub depth_error_km: Option<f64>,
    /// hypoDD standard errors east, north, down, km (from `ex_m`, `ey_m`, `ez_m`).
    pub sigma_xyz_km: Option<[f64; 3]>,
    /// Posterior covariance of (x east, y north, z down), km^2 (NLLoc `cov_xx_km2` ... `cov_zz_km2`).
    pub covariance_km2: Option<[[f64; 3]; 3]>,
    /// NLLoc horizontal uncertainty ellipse, km / degrees (`hor_unc_max_km`, `hor_unc_min_km`,
    /// `hor_unc_max_az_deg`).
    pub horizontal_ellipse: Option<HorizontalEllipse>,
    /// Every other column, by header name, as written (empty cells omitted).
    pub extra: BTreeMap<String, String>,
}

const REFERENCE_TYPED: [&str; 21] = [
    "event_id",
    "origin_time_iso",
    "lat",
    "lon",
    "depth_km",
    "rms_s",
    "gap_deg",
    "erh_km",
    "eh_km",
    "erz_km",
    "ez_km",
    "ex_m",
    "ey_m",
    "ez_m",
    "cov_xx_km2",
    "cov_xy_km2",
    "cov_xz_km2",
    "cov_yy_km2",
    "cov_yz_km2",
    "cov_zz_km2",
    "hor_unc_max_km",
];

/// Reads a reference catalog by header name: `event_id,origin_time_iso,lat,lon,depth_km` are
/// required; the uncertainty columns of [`ReferenceHypocentre`] are read where present (a
/// group such as `ex_m,ey_m,ez_m` only when all of its cells are filled); the rest go to `extra`.
pub fn read_reference_catalog<R: Read>(
    input: R,
) -> Result<ReadReport<ReferenceHypocentre>, CatalogError> {
    let mut records = Vec::new();
    let typed: Vec<&str> = REFERENCE_TYPED
        .iter()
        .copied()
        .chain(["hor_unc_min_km", "hor_unc_max_az_deg"])
        .collect();
    let problems = for_each_row(
        input,
        &["event_id", "origin_time_iso", "lat", "lon", "depth_km"],
        |row| {
            let first = |a: &str, b: &str| -> Result<Option<f64>, RecordProblem> {
                Ok(match row.opt_number(a)? {
                    Some(x) => Some(x),
                    None => row.opt_number(b)?,
                })
            };
            let group = |names: &[&str]| -> Result<Option<Vec<f64>>, RecordProblem> {
                let mut v = Vec::with_capacity(names.len());
                for n in names {
                    match row.opt_number(n)? {
                        Some(x) => v.push(x),
                        None => return Ok(None),
                    }
                }
                Ok(Some(v))
            };
            let sigma_xyz_km = group(&["ex_m", "ey_m", "ez_m"])?
                .map(|v| [v[0] / 1000.0, v[1] / 1000.0, v[2] / 1000.0]);
            let covariance_km2 = group(&[
                "cov_xx_km2",
                "cov_xy_km2",
                "cov_xz_km2",
                "cov_yy_km2",
                "cov_yz_km2",
                "cov_zz_km2",
            ])?
            .map(|c| [[c[0], c[1], c[2]], [c[1], c[3], c[4]], [c[2], c[4], c[5]]]);
            let horizontal_ellipse =
                group(&["hor_unc_max_km", "hor_unc_min_km", "hor_unc_max_az_deg"])?.map(|v| {
                    HorizontalEllipse {
                        major_km: v[0],
                        minor_km: v[1],
                        azimuth_deg: v[2],
                    }
                });
            let mut extra = BTreeMap::new();
            for (name, &i) in &row.cols.index {
                if typed.contains(&name.as_str()) {
                    continue;
                }
                if let Some(v) = row.fields.get(i).filter(|v| !v.is_empty()) {
                    extra.insert(name.clone(), v.clone());
                }
            }
            records.push(ReferenceHypocentre {
                event_id: row.text("event_id")?.to_string(),
                origin_time: row.time("origin_time_iso")?,
                lat_deg: row.range("lat", -90.0, 90.0)?,
                lon_deg: row.range("lon", -180.0, 360.0)?,
                depth_km: row.number("depth_km")?,
                rms_s: row.opt_number("rms_s")?,
                gap_deg: row.opt_number("gap_deg")?,
                horizontal_error_km: first("erh_km", "eh_km")?,
                depth_error_km: first("erz_km", "ez_km")?,
                sigma_xyz_km,
                covariance_km2,
                horizontal_ellipse,
                extra,
            });
            Ok(())
        },
    )?;
    Ok(ReadReport { records, problems })
}

/// [`read_reference_catalog`] on a file; structural errors name the file.
pub fn read_reference_catalog_file(
    path: &Path,
) -> Result<ReadReport<ReferenceHypocentre>, CatalogError> {
    let f = std::fs::File::open(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_reference_catalog(std::io::BufReader::new(f)).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PicksCsvOptions {
        PicksCsvOptions {
            default_uncertainty_s: 0.25,
        }
    }

    #[test]
    fn groups_by_event_in_first_appearance_order_and_applies_default_uncertainty() {
        let text = "station,event_id,network,phase,time_iso,extra\n\
                    A,e2,XX,P,2020-01-01T00:00:01Z,foo\n\
                    A,e1,XX,Pg,2020-01-01T00:00:02Z,\n\
                    B,e2,XX,Sn,2020-01-01T00:00:03.5Z,bar\n";
        let r = read_picks(text.as_bytes(), &opts()).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let ids: Vec<_> = r.records.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["e2", "e1"]);
        let e2 = &r.records[0].picks;
        assert_eq!(e2.len(), 2);
        assert_eq!(e2[1].station.station, "B");
        assert_eq!(e2[1].phase, Phase::S);
        assert_eq!(e2[1].uncertainty_s, 0.25);
        assert_eq!(r.records[1].picks[0].phase, Phase::P);
    }

    #[test]
    fn every_bad_record_is_reported_with_line_and_field_and_the_good_ones_kept() {
        let text = "event_id,network,station,location,phase,time_iso,uncertainty_s\n\
                    1,XX,A,--,P,2020-01-01T00:00:01Z,0.1\n\
                    1,XX,B,,Q,2020-01-01T00:00:01Z,0.1\n\
                    1,XX,C,,P,3000-01-01T00:00:01Z,0.1\n\
                    1,XX,D,,P,not a time,0.1\n\
                    1,XX,E,,P,2020-01-01T00:00:01Z,NaN\n\
                    1,XX,F,,P,2020-01-01T00:00:01Z,-0.1\n\
                    1,XX,G,,P\n\
                    1,XX,A,00,P,2020-01-01T00:00:01.5Z,0.1\n\
                    1,XX,A,,S,2020-01-01T00:00:02Z,\n\
                    ,XX,H,,P,2020-01-01T00:00:01Z,0.1\n";
        let r = read_picks(text.as_bytes(), &opts()).unwrap();
        let got: Vec<(u64, &str)> = r
            .problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "phase"),
                (4, "time_iso"),
                (5, "time_iso"),
                (6, "uncertainty_s"),
                (7, "uncertainty_s"),
                (8, "time_iso"),
                (9, "station"),
                (11, "event_id")
            ]
        );
        assert!(
            r.problems[1].message.contains("plausible"),
            "{}",
            r.problems[1].message
        );
        assert!(
            r.problems[5].message.contains("missing field"),
            "{}",
            r.problems[5].message
        );
        assert!(
            r.problems[6].message.contains("line 2"),
            "{}",
            r.problems[6].message
        );
        assert_eq!(r.records.len(), 1);
        let picks = &r.records[0].picks;
        assert_eq!(picks.len(), 2);
        assert_eq!(picks[0].station.location, "");
        assert_eq!((picks[1].phase, picks[1].uncertainty_s), (Phase::S, 0.25));
    }

    #[test]
    fn structural_failures_are_errors() {
        assert!(matches!(
            read_picks("".as_bytes(), &opts()),
            Err(CatalogError::MissingHeader(_))
        ));
        let e = read_picks(
            "event_id,network,station,time_iso\n1,X,A,2020-01-01T00:00:00Z\n".as_bytes(),
            &opts(),
        );
        assert!(
            matches!(e, Err(CatalogError::MissingColumn { ref column, .. }) if column == "phase")
        );
        let bad = PicksCsvOptions {
            default_uncertainty_s: f64::NAN,
        };
        assert!(read_picks("event_id\n".as_bytes(), &bad).is_err());
        let missing = read_picks_file(Path::new("/nonexistent/picks.csv"), &opts()).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/picks.csv"));
    }

    #[test]
    fn non_utf8_cell_is_a_record_problem() {
        let mut bytes =
            b"event_id,network,station,phase,time_iso\n1,X,A,P,2020-01-01T00:00:00Z\n1,X,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b",P,2020-01-01T00:00:00Z\n");
        let r = read_picks(bytes.as_slice(), &opts()).unwrap();
        assert_eq!(r.records[0].picks.len(), 1);
        assert_eq!(
            r.problems,
            [RecordProblem::new(3, "station", "not valid UTF-8")]
        );
    }

    #[test]
    fn picks_round_trip_to_the_nanosecond() {
        let text = "event_id,network,station,location,phase,time_iso,uncertainty_s\n\
                    ev 1,XX,A,00,P,2020-01-01T00:00:01.123456789Z,0.1\n\
                    \"a,b\",XX,B,,S,2020-01-01T00:00:02.5Z,0.30000000000000004\n";
        let r = read_picks(text.as_bytes(), &opts()).unwrap();
        let mut out = Vec::new();
        write_picks(&mut out, &r.records).unwrap();
        let back = read_picks(out.as_slice(), &opts()).unwrap();
        assert!(back.problems.is_empty());
        assert_eq!(back.records, r.records);
    }
}
