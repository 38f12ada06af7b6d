//! Catalog comparison: match the events of a catalog to a reference catalog, measure the
//! differences (geodesic horizontal distance, depth, origin time), and the coverage of the
//! catalog's confidence regions when the reference is truth. [`svg`] draws the figures.
//!
//! Conventions: differences are catalog minus reference (positive depth difference: the
//! catalog is deeper; positive time difference: the catalog is later). Horizontal distances
//! are WGS84 geodesics (GeographicLib) in km.

pub mod svg;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::catalog::csv::{read_catalog, read_reference_catalog, ReferenceHypocentre};
use crate::catalog::{quakeml, read_text, sniff, CatalogError, Format, PickOptions, RecordProblem};
use crate::domain::time::seconds_between;
use crate::domain::{GeoPoint, HorizontalEllipse, LocalFrame, UtcTime};

/// Chi-square quantile, 2 degrees of freedom, 95 %: scales a 1-sigma ellipse to the 95 % one.
const CHI2_2D_95: f64 = 5.991_464_547_107_979;
/// Chi-square quantile, 2 degrees of freedom, 68.27 %.
const CHI2_2D_68: f64 = 2.295_748_928_898_636;
/// Two-sided normal quantile at 95 %.
const Z_95: f64 = 1.959_963_984_540_054;

/// Errors of catalog comparison.
#[derive(Debug, Error)]
pub enum CompareError {
    /// A catalog could not be read as a whole (missing file, column, header).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A record of a catalog was rejected by its reader.
    #[error("{path}: {problem}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Line, field and reason.
        problem: RecordProblem,
    },
    /// The file is not a catalog this module reads.
    #[error("{path}: not a catalog CSV, reference catalog CSV or QuakeML file")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// An option makes no sense (e.g. a negative tolerance).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Writing a figure failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// One hypocentre with the confidence regions the input reports (`None` when it reports none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hypocentre {
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
    /// 95 % horizontal ellipse, km / degrees east of north.
    pub h95: Option<HorizontalEllipse>,
    /// Half-width of the 95 % depth interval, km.
    pub z95_km: Option<f64>,
    /// 68 % horizontal ellipse, km / degrees east of north.
    pub h68: Option<HorizontalEllipse>,
    /// Half-width of the 68 % depth interval, km.
    pub z68_km: Option<f64>,
}

impl Hypocentre {
    /// A hypocentre without confidence regions.
    pub fn new(
        event_id: &str,
        origin_time: UtcTime,
        lat_deg: f64,
        lon_deg: f64,
        depth_km: f64,
    ) -> Self {
        Self {
            event_id: event_id.to_string(),
            origin_time,
            lat_deg,
            lon_deg,
            depth_km,
            h95: None,
            z95_km: None,
            h68: None,
            z68_km: None,
        }
    }

    /// The epicentre.
    pub fn epicentre(&self) -> GeoPoint {
        GeoPoint {
            lat_deg: self.lat_deg,
            lon_deg: self.lon_deg,
        }
    }
}

fn valid_ellipse(e: HorizontalEllipse) -> Option<HorizontalEllipse> {
    (e.major_km.is_finite()
        && e.minor_km.is_finite()
        && e.azimuth_deg.is_finite()
        && e.major_km >= 0.0
        && e.minor_km >= 0.0)
        .then_some(e)
}

fn valid_len(x: f64) -> Option<f64> {
    (x.is_finite() && x >= 0.0).then_some(x)
}

/// The ellipse of a 2x2 covariance (east, north; km^2) scaled by the chi-square quantile `chi2`.
fn ellipse_from_covariance(cxx: f64, cxy: f64, cyy: f64, chi2: f64) -> Option<HorizontalEllipse> {
    let mean = 0.5 * (cxx + cyy);
    let half_diff = 0.5 * (cxx - cyy);
    let r = half_diff.hypot(cxy);
    let (l1, l2) = (mean + r, (mean - r).max(0.0));
    if !(l1.is_finite() && l1 >= 0.0) {
        return None;
    }
    // Major-axis direction (east, north) = eigenvector of l1; azimuth from north, folded to 0..180.
    let theta_from_east = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
    let azimuth_deg = (90.0 - theta_from_east.to_degrees()).rem_euclid(180.0);
    valid_ellipse(HorizontalEllipse {
        major_km: (chi2 * l1).sqrt(),
        minor_km: (chi2 * l2).sqrt(),
        azimuth_deg,
    })
}

impl From<&ReferenceHypocentre> for Hypocentre {
    /// Confidence regions from the reference columns: a full covariance (NonLinLoc) gives
    /// the 68 % and 95 % ellipses and depth intervals. hypoDD's `ex_m,ey_m,ez_m` are not
    /// converted: they are relative (cluster-internal) errors, so regions built from them
    /// would say nothing about absolute coverage; nor are Hypoinverse `erh`/`erz`, whose
    /// confidence level the format does not define.
    fn from(r: &ReferenceHypocentre) -> Self {
        let mut h = Hypocentre::new(&r.event_id, r.origin_time, r.lat_deg, r.lon_deg, r.depth_km);
        if let Some(c) = r.covariance_km2 {
            h.h95 = ellipse_from_covariance(c[0][0], c[0][1], c[1][1], CHI2_2D_95);
            h.h68 = ellipse_from_covariance(c[0][0], c[0][1], c[1][1], CHI2_2D_68);
            let sz = c[2][2].sqrt();
            h.z95_km = valid_len(Z_95 * sz);
            h.z68_km = valid_len(sz);
        }
        h
    }
}

/// Reads the hypocentres of a catalog in any form this module knows, recognised by content:
/// the locator's catalog CSV, a reference catalog CSV of the data sets, or QuakeML (preferred
/// origin of each event; events without one are skipped). Rejected records are errors naming
/// file, line and field.
pub fn read_hypocentres_file(path: &Path) -> Result<Vec<Hypocentre>, CompareError> {
    let text = read_text(path)?;
    let bad = |problems: Vec<RecordProblem>| -> Result<(), CompareError> {
        match problems.into_iter().next() {
            Some(problem) => Err(CompareError::BadRecord {
                path: path.to_path_buf(),
                problem,
            }),
            None => Ok(()),
        }
    };
    let in_file = |e: CatalogError| CompareError::Catalog(e.in_file(path));
    match sniff(&text) {
        Some(Format::CatalogCsv) => {
            let r = read_catalog(text.as_bytes()).map_err(in_file)?;
            bad(r.problems)?;
            // The 68 % columns are optional extensions of the catalog CSV; the reference
            // reader keeps unknown columns by name.
            let extra = read_reference_catalog(text.as_bytes()).map_err(in_file)?;
            let by_id: HashMap<&str, &ReferenceHypocentre> = extra
                .records
                .iter()
                .map(|e| (e.event_id.as_str(), e))
                .collect();
            let mut out = Vec::with_capacity(r.records.len());
            for row in &r.records {
                let mut h = Hypocentre::new(
                    &row.event_id,
                    row.origin_time,
                    row.lat_deg,
                    row.lon_deg,
                    row.depth_km,
                );
                h.h95 = valid_ellipse(row.h95());
                h.z95_km = valid_len(row.z95_km);
                if let Some(e) = by_id.get(row.event_id.as_str()) {
                    let num = |k: &str| -> Option<f64> {
                        e.extra.get(k).and_then(|s| s.parse::<f64>().ok())
                    };
                    if let (Some(a), Some(b), Some(az)) = (
                        num("h68_major_km"),
                        num("h68_minor_km"),
                        num("h68_azimuth_deg"),
                    ) {
                        h.h68 = valid_ellipse(HorizontalEllipse {
                            major_km: a,
                            minor_km: b,
                            azimuth_deg: az,
                        });
                    }
                    h.z68_km = num("z68_km").and_then(valid_len);
                }
                out.push(h);
            }
            Ok(out)
        }
        Some(Format::ReferenceCatalogCsv) => {
            let r = read_reference_catalog(text.as_bytes()).map_err(in_file)?;
            bad(r.problems)?;
            Ok(r.records.iter().map(Hypocentre::from).collect())
        }
        Some(Format::QuakeMl) => {
            let r = quakeml::read_quakeml(&text, &PickOptions::default()).map_err(in_file)?;
            bad(r.problems)?;
            Ok(r.records
                .iter()
                .filter_map(|e| {
                    let o = e.preferred()?;
                    let u = &o.uncertainty;
                    let mut h = Hypocentre::new(&e.id, o.time, o.lat_deg, o.lon_deg, o.depth_km);
                    h.h95 = valid_ellipse(u.horizontal_95).filter(|e| e.major_km > 0.0);
                    h.z95_km = valid_len(u.depth_95_km).filter(|&z| z > 0.0);
                    h.h68 = valid_ellipse(u.horizontal_68).filter(|e| e.major_km > 0.0);
                    h.z68_km = valid_len(u.depth_68_km).filter(|&z| z > 0.0);
                    Some(h)
                })
                .collect())
        }
        _ => Err(CompareError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// How events are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// By id when any id is common to both catalogs, else by time and place.
    Auto,
    /// Same event id.
    Id,
    /// Origin time and epicentre within the tolerances, one-to-one.
    TimePlace,
}

/// Matching options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MatchOptions {
    /// How to pair events.
    pub mode: MatchMode,
    /// Largest origin-time difference for a time/place match, s.
    pub max_dt_s: f64,
    /// Largest epicentral distance for a time/place match, km.
    pub max_distance_km: f64,
}

impl Default for MatchOptions {
    /// Auto, 2 s, 20 km: generous for local networks, yet far below typical inter-event times.
    fn default() -> Self {
        Self {
            mode: MatchMode::Auto,
            max_dt_s: 2.0,
            max_distance_km: 20.0,
        }
    }
}

/// One matched pair and its differences (catalog minus reference).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedPair {
    /// Index into the reference list.
    pub reference_index: usize,
    /// Index into the catalog list.
    pub catalog_index: usize,
    /// Reference event id.
    pub reference_id: String,
    /// Catalog event id.
    pub catalog_id: String,
    /// Geodesic epicentral distance, km.
    pub horizontal_km: f64,
    /// Azimuth from the reference to the catalog epicentre, degrees east of north.
    pub azimuth_deg: f64,
    /// Depth difference, km (positive: catalog deeper).
    pub depth_diff_km: f64,
    /// Origin-time difference, s (positive: catalog later).
    pub time_diff_s: f64,
    /// Reference epicentre inside the catalog's 95 % ellipse (`None`: no ellipse).
    pub inside_h95: Option<bool>,
    /// Reference depth within the catalog's 95 % depth interval.
    pub inside_z95: Option<bool>,
    /// Reference epicentre inside the catalog's 68 % ellipse.
    pub inside_h68: Option<bool>,
    /// Reference depth within the catalog's 68 % depth interval.
    pub inside_z68: Option<bool>,
}

/// Order statistics of one difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Median (NaN when empty).
    pub median: f64,
    /// 90th percentile, linear interpolation between order statistics.
    pub p90: f64,
    /// Mean.
    pub mean: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// The summary of `values` (NaN fields when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                n,
                median: f64::NAN,
                p90: f64::NAN,
                mean: f64::NAN,
                max: f64::NAN,
            };
        }
        Self {
            n,
            median: percentile_sorted(&v, 0.5),
            p90: percentile_sorted(&v, 0.9),
            mean: v.iter().sum::<f64>() / n as f64,
            max: v[n - 1],
        }
    }
}

/// The `q` quantile (0..1) of sorted, non-empty `v`, linear between order statistics.
pub fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Fraction of matched events inside one kind of confidence region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Coverage {
    /// Matched events whose catalog entry has this region.
    pub n: usize,
    /// Of those, how many contain the reference.
    pub inside: usize,
    /// inside / n (NaN when n = 0).
    pub fraction: f64,
}

impl Coverage {
    fn of(flags: impl Iterator<Item = Option<bool>>) -> Option<Self> {
        let (mut n, mut inside) = (0, 0);
        for f in flags.flatten() {
            n += 1;
            inside += usize::from(f);
        }
        (n > 0).then(|| Self {
            n,
            inside,
            fraction: inside as f64 / n as f64,
        })
    }
}

/// Everything a comparison measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The options used.
    pub options: MatchOptions,
    /// The mode actually used (`Auto` resolved).
    pub mode_used: MatchMode,
    /// Events in the reference.
    pub n_reference: usize,
    /// Events in the catalog.
    pub n_catalog: usize,
    /// Matched pairs, in reference order.
    pub pairs: Vec<MatchedPair>,
    /// Reference ids with no match.
    pub missed: Vec<String>,
    /// Catalog ids with no match.
    pub extra: Vec<String>,
    /// Horizontal distance, km.
    pub horizontal_km: Summary,
    /// |depth difference|, km.
    pub abs_depth_km: Summary,
    /// |origin-time difference|, s.
    pub abs_time_s: Summary,
    /// Median signed depth difference, km (positive: catalog deeper).
    pub median_depth_bias_km: f64,
    /// Median signed origin-time difference, s (positive: catalog later).
    pub median_time_bias_s: f64,
    /// Coverage of the catalog's 95 % ellipses (absent when it has none).
    pub coverage_h95: Option<Coverage>,
    /// Coverage of the catalog's 95 % depth intervals.
    pub coverage_z95: Option<Coverage>,
    /// Coverage of the catalog's 68 % ellipses.
    pub coverage_h68: Option<Coverage>,
    /// Coverage of the catalog's 68 % depth intervals.
    pub coverage_z68: Option<Coverage>,
}

/// Whether point `p` lies inside (or on) the ellipse `e` centred on `centre`.
///
/// The offset uses the geodesic distance and azimuth from the centre, which is exact for the
/// few-km ellipses of local catalogs.
pub fn inside_ellipse(
    centre: GeoPoint,
    e: &HorizontalEllipse,
    p: GeoPoint,
    frame: &LocalFrame,
) -> bool {
    let (d_km, az_deg) = frame.distance_azimuth(centre, p);
    ellipse_radius_ratio(e, d_km, az_deg) <= 1.0
}

/// Normalised radius of an offset (`d_km` along azimuth `az_deg`) in ellipse `e`: 1 on its edge.
pub fn ellipse_radius_ratio(e: &HorizontalEllipse, d_km: f64, az_deg: f64) -> f64 {
    let rel = (az_deg - e.azimuth_deg).to_radians();
    let along = d_km * rel.cos();
    let across = d_km * rel.sin();
    if d_km == 0.0 {
        return 0.0;
    }
    let a = e.major_km;
    let b = e.minor_km;
    if a <= 0.0 || b <= 0.0 {
        return f64::INFINITY;
    }
    ((along / a).powi(2) + (across / b).powi(2)).sqrt()
}

/// Pairs events, measures differences and coverage.
pub fn compare(
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    options: &MatchOptions,
) -> Result<Comparison, CompareError> {
    if !(options.max_dt_s.is_finite() && options.max_dt_s >= 0.0) {
        return Err(CompareError::InvalidOption(format!(
            "time tolerance {} s must be a non-negative number",
            options.max_dt_s
        )));
    }
    if !(options.max_distance_km.is_finite() && options.max_distance_km >= 0.0) {
        return Err(CompareError::InvalidOption(format!(
            "distance tolerance {} km must be a non-negative number",
            options.max_distance_km
        )));
    }
    let frame = LocalFrame::new(GeoPoint {
        lat_deg: 0.0,
        lon_deg: 0.0,
    });
    let mode_used = match options.mode {
        MatchMode::Auto => {
            let ids: std::collections::HashSet<&str> =
                reference.iter().map(|h| h.event_id.as_str()).collect();
            if catalog.iter().any(|h| ids.contains(h.event_id.as_str())) {
                MatchMode::Id
            } else {
                MatchMode::TimePlace
            }
        }
        m => m,
    };
    let index_pairs = match mode_used {
        MatchMode::Id => match_by_id(reference, catalog),
        _ => match_by_time_place(reference, catalog, options, &frame),
    };
    let mut pairs: Vec<MatchedPair> = index_pairs
        .into_iter()
        .map(|(i, j)| measure(i, &reference[i], j, &catalog[j], &frame))
        .collect();
    pairs.sort_by_key(|p| p.reference_index);
    let mut ref_used = vec![false; reference.len()];
    let mut cat_used = vec![false; catalog.len()];
    for p in &pairs {
        ref_used[p.reference_index] = true;
        cat_used[p.catalog_index] = true;
    }
    let missed = reference
        .iter()
        .zip(&ref_used)
        .filter(|(_, &u)| !u)
        .map(|(h, _)| h.event_id.clone())
        .collect();
    let extra = catalog
        .iter()
        .zip(&cat_used)
        .filter(|(_, &u)| !u)
        .map(|(h, _)| h.event_id.clone())
        .collect();
    let col = |f: fn(&MatchedPair) -> f64| pairs.iter().map(f).collect::<Vec<f64>>();
    Ok(Comparison {
        options: *options,
        mode_used,
        n_reference: reference.len(),
        n_catalog: catalog.len(),
        horizontal_km: Summary::of(&col(|p| p.horizontal_km)),
        abs_depth_km: Summary::of(&col(|p| p.depth_diff_km.abs())),
        abs_time_s: Summary::of(&col(|p| p.time_diff_s.abs())),
        median_depth_bias_km: Summary::of(&col(|p| p.depth_diff_km)).median,
        median_time_bias_s: Summary::of(&col(|p| p.time_diff_s)).median,
        coverage_h95: Coverage::of(pairs.iter().map(|p| p.inside_h95)),
        coverage_z95: Coverage::of(pairs.iter().map(|p| p.inside_z95)),
        coverage_h68: Coverage::of(pairs.iter().map(|p| p.inside_h68)),
        coverage_z68: Coverage::of(pairs.iter().map(|p| p.inside_z68)),
        pairs,
        missed,
        extra,
    })
}

/// Pairs with equal ids; a repeated id pairs its first occurrences only.
fn match_by_id(reference: &[Hypocentre], catalog: &[Hypocentre]) -> Vec<(usize, usize)> {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (j, h) in catalog.iter().enumerate() {
        by_id.entry(h.event_id.as_str()).or_insert(j);
    }
    let mut out = Vec::new();
    for (i, h) in reference.iter().enumerate() {
        if let Some(j) = by_id.remove(h.event_id.as_str()) {
            out.push((i, j));
        }
    }
    out
}

/// One-to-one pairs within the tolerances, greedy by |time difference| then distance: the
/// closest-in-time candidates claim each other first, which is what an analyst would pair by
/// hand for a local catalog (events rarely overlap within seconds and tens of km).
fn match_by_time_place(
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    options: &MatchOptions,
    frame: &LocalFrame,
) -> Vec<(usize, usize)> {
    let mut by_time: Vec<(UtcTime, usize)> = catalog
        .iter()
        .enumerate()
        .map(|(j, h)| (h.origin_time, j))
        .collect();
    by_time.sort();
    let tol = chrono::Duration::nanoseconds((options.max_dt_s * 1e9).round() as i64);
    let mut candidates: Vec<(f64, f64, usize, usize)> = Vec::new();
    for (i, r) in reference.iter().enumerate() {
        let lo = r.origin_time - tol;
        let hi = r.origin_time + tol;
        let start = by_time.partition_point(|(t, _)| *t < lo);
        for &(t, j) in by_time[start..].iter().take_while(|(t, _)| *t <= hi) {
            let dt = seconds_between(&r.origin_time, &t).abs();
            let (d, _) = frame.distance_azimuth(r.epicentre(), catalog[j].epicentre());
            if dt <= options.max_dt_s && d <= options.max_distance_km {
                candidates.push((dt, d, i, j));
            }
        }
    }
    candidates.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    let mut ref_used = vec![false; reference.len()];
    let mut cat_used = vec![false; catalog.len()];
    let mut out = Vec::new();
    for (_, _, i, j) in candidates {
        if !ref_used[i] && !cat_used[j] {
            ref_used[i] = true;
            cat_used[j] = true;
            out.push((i, j));
        }
    }
    out
}

fn measure(i: usize, r: &Hypocentre, j: usize, c: &Hypocentre, frame: &LocalFrame) -> MatchedPair {
    let (horizontal_km, azimuth_deg) = frame.distance_azimuth(r.epicentre(), c.epicentre());
    let depth_diff_km = c.depth_km - r.depth_km;
    let time_diff_s = seconds_between(&r.origin_time, &c.origin_time);
    let in_h = |e: &Option<HorizontalEllipse>| {
        e.as_ref()
            .map(|e| inside_ellipse(c.epicentre(), e, r.epicentre(), frame))
    };
    MatchedPair {
        reference_index: i,
        catalog_index: j,
        reference_id: r.event_id.clone(),
        catalog_id: c.event_id.clone(),
        horizontal_km,
        azimuth_deg,
        depth_diff_km,
        time_diff_s,
        inside_h95: in_h(&c.h95),
        inside_z95: c.z95_km.map(|z| depth_diff_km.abs() <= z),
        inside_h68: in_h(&c.h68),
        inside_z68: c.z68_km.map(|z| depth_diff_km.abs() <= z),
    }
}

/// A plain-text report of a comparison, for people.
pub fn format_report(c: &Comparison) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mode = match c.mode_used {
        MatchMode::Id => "event id".to_string(),
        _ => format!(
            "origin time (<= {} s) and epicentre (<= {} km)",
            c.options.max_dt_s, c.options.max_distance_km
        ),
    };
    let _ = writeln!(s, "matched by {mode}");
    let _ = writeln!(
        s,
        "reference {}  catalog {}  matched {}  missed {}  extra {}",
        c.n_reference,
        c.n_catalog,
        c.pairs.len(),
        c.missed.len(),
        c.extra.len()
    );
    let _ = writeln!(
        s,
        "{:<18} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "difference", "n", "median", "p90", "mean", "max"
    );
    for (name, m) in [
        ("horizontal km", &c.horizontal_km),
        ("|depth| km", &c.abs_depth_km),
        ("|origin time| s", &c.abs_time_s),
    ] {
        let _ = writeln!(
            s,
            "{:<18} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name, m.n, m.median, m.p90, m.mean, m.max
        );
    }
    let _ = writeln!(
        s,
        "median depth bias {:.3} km (catalog minus reference; positive = deeper)",
        c.median_depth_bias_km
    );
    let _ = writeln!(
        s,
        "median origin-time bias {:.3} s (catalog minus reference)",
        c.median_time_bias_s
    );
    let cov = [
        ("95 % horizontal ellipse", c.coverage_h95),
        ("95 % depth interval", c.coverage_z95),
        ("68 % horizontal ellipse", c.coverage_h68),
        ("68 % depth interval", c.coverage_z68),
    ];
    if cov.iter().all(|(_, v)| v.is_none()) {
        let _ = writeln!(s, "coverage: the catalog reports no confidence regions");
    } else {
        let _ = writeln!(
            s,
            "coverage of the catalog's regions (meaningful when the reference is truth):"
        );
        for (name, v) in cov {
            if let Some(v) = v {
                let _ = writeln!(
                    s,
                    "  {name:<24} {:>5.1} %  ({} of {})",
                    100.0 * v.fraction,
                    v.inside,
                    v.n
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_order_statistics() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, f64::NAN]);
        assert_eq!(s.n, 4);
        assert!((s.median - 2.5).abs() < 1e-12);
        // position 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3)
        assert!((s.p90 - 3.7).abs() < 1e-12);
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert_eq!(s.max, 4.0);
        assert!(Summary::of(&[]).median.is_nan());
    }

    #[test]
    fn covariance_ellipse_has_the_eigen_axes() {
        // sigma 2 km along N30E, 1 km across: C = 4 u u^T + v v^T in (east, north).
        let th = 30f64.to_radians();
        let u = (th.sin(), th.cos());
        let v = (th.cos(), -th.sin());
        let cxx = 4.0 * u.0 * u.0 + v.0 * v.0;
        let cxy = 4.0 * u.0 * u.1 + v.0 * v.1;
        let cyy = 4.0 * u.1 * u.1 + v.1 * v.1;
        let e = ellipse_from_covariance(cxx, cxy, cyy, CHI2_2D_95).unwrap();
        assert!((e.major_km - 2.0 * CHI2_2D_95.sqrt()).abs() < 1e-9, "{e:?}");
        assert!((e.minor_km - CHI2_2D_95.sqrt()).abs() < 1e-9, "{e:?}");
        assert!((e.azimuth_deg - 30.0).abs() < 1e-9, "{e:?}");
        // chi-square quantiles: P(chi2_2 <= q) = 1 - exp(-q/2)
        assert!((1.0 - (-CHI2_2D_95 / 2.0).exp() - 0.95).abs() < 1e-12);
        assert!((1.0 - (-CHI2_2D_68 / 2.0).exp() - 0.682_689_492).abs() < 1e-8);
    }

    #[test]
    fn radius_ratio_follows_the_axes() {
        let e = HorizontalEllipse {
            major_km: 2.0,
            minor_km: 1.0,
            azimuth_deg: 120.0,
        };
        assert!((ellipse_radius_ratio(&e, 2.0, 120.0) - 1.0).abs() < 1e-12);
        assert!((ellipse_radius_ratio(&e, 2.0, 300.0) - 1.0).abs() < 1e-12);
        assert!((ellipse_radius_ratio(&e, 1.0, 30.0) - 1.0).abs() < 1e-12);
        assert!(ellipse_radius_ratio(&e, 1.5, 30.0) > 1.0);
        assert_eq!(ellipse_radius_ratio(&e, 0.0, 0.0), 0.0);
    }
}
