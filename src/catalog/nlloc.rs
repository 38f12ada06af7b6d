//! NonLinLoc formats: the NLLOC_OBS phase file (read and write) and the hypocentre-phase
//! `.hyp` summary of one origin (write).
//!
//! NLLOC_OBS lines are whitespace-separated: station label, instrument, component, onset,
//! phase, first motion, date `YYYYMMDD`, `hhmm`, seconds, error type (`GAU`), error (s),
//! coda duration, amplitude, period and an optional prior weight; events are separated by
//! blank lines, `#` starts a comment. Station labels are read as `NET_STA[_LOC]`, or `STA` (then
//! the caller's default network applies); we write `NET_STA[_LOC]`.
//!
//! The `.hyp` writer follows NonLinLoc 7's `WriteLocation` (GridLib.c) line by line, so
//! NonLinLoc tools and obspy's NLLOC_HYP reader understand it. Its confidence ellipsoid and
//! horizontal ellipse are computed from the origin's covariance at NonLinLoc's 68 % scale
//! (delta chi-square 3.53 in 3-D, 2.30 in 2-D), as NonLinLoc does.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, TimeDelta, Timelike};
use nalgebra::{Matrix2, Matrix3, SymmetricEigen};

use crate::catalog::csv::EventPicks;
use crate::catalog::{CatalogError, PickOptions, ReadReport, RecordProblem};
use crate::domain::time::{check_plausible, seconds_between};
use crate::domain::{
    GeoPoint, LocalFrame, Origin, Phase, Pick, StationCode, StationInventory, UtcTime,
};

/// NonLinLoc's delta chi-square for its 68 % 3-D confidence ellipsoid.
pub const DELTA_CHI_SQR_68_3: f64 = 3.53;
/// NonLinLoc's delta chi-square for its 68 % 2-D horizontal ellipse.
pub const DELTA_CHI_SQR_68_2: f64 = 2.30;

/// Reads an NLLOC_OBS phase file into events (numbered `1`, `2`, ... in file order, or named by
/// a preceding `PUBLIC_ID <id>` line) with their picks.
///
/// Rejected lines (each a [`RecordProblem`] with line and field): too few fields, phases other
/// than first P or S, bad date or time, an error type other than `GAU`, a non-positive error,
/// a prior weight of 0 (NonLinLoc: "do not use reading"), and a second pick of the same phase
/// at the same station within an event. `default_network` is given to bare station labels.
pub fn read_nlloc_obs(
    text: &str,
    options: &PickOptions,
    default_network: &str,
) -> Result<ReadReport<EventPicks>, CatalogError> {
    options.validate()?;
    let mut report = ReadReport::default();
    let mut current: Option<EventPicks> = None;
    let mut seen: HashSet<(String, String, Phase)> = HashSet::new();
    let mut next_id = 1usize;
    let mut pending_id: Option<String> = None;
    let finish =
        |cur: &mut Option<EventPicks>, out: &mut Vec<EventPicks>, seen: &mut HashSet<_>| {
            if let Some(ev) = cur.take() {
                if !ev.picks.is_empty() {
                    out.push(ev);
                }
            }
            seen.clear();
        };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = raw.trim();
        if line.is_empty() {
            finish(&mut current, &mut report.records, &mut seen);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some(id) = line.strip_prefix("PUBLIC_ID") {
            finish(&mut current, &mut report.records, &mut seen);
            pending_id = Some(id.trim().to_string());
            continue;
        }
        let ev = current.get_or_insert_with(|| {
            let id = pending_id.take().unwrap_or_else(|| {
                let id = next_id.to_string();
                next_id += 1;
                id
            });
            EventPicks {
                event_id: id,
                picks: Vec::new(),
            }
        });
        match parse_obs_line(line, line_no, options, default_network) {
            Ok(pick) => {
                let key = (
                    pick.station.network.clone(),
                    pick.station.station.clone(),
                    pick.phase,
                );
                if seen.contains(&key) {
                    report.problems.push(RecordProblem::new(
                        line_no,
                        "station",
                        format!(
                            "duplicate {} pick at {} in event {}",
                            pick.phase, pick.station, ev.event_id
                        ),
                    ));
                } else {
                    seen.insert(key);
                    ev.picks.push(pick);
                }
            }
            Err(p) => report.problems.push(p),
        }
    }
    finish(&mut current, &mut report.records, &mut seen);
    Ok(report)
}

/// Station code from an NLLoc label `NET_STA[_LOC]` or `STA`.
fn station_from_label(label: &str, default_network: &str) -> StationCode {
    let parts: Vec<&str> = label.split('_').collect();
    let (net, sta, loc) = match parts.as_slice() {
        [sta] => (default_network, *sta, ""),
        [net, sta] => (*net, *sta, ""),
        [net, sta, loc, ..] => (*net, *sta, *loc),
        [] => (default_network, label, ""),
    };
    let mut code = StationCode::new(net, sta);
    code.location = if loc == "--" {
        String::new()
    } else {
        loc.to_string()
    };
    code
}

fn parse_obs_line(
    line: &str,
    n: u64,
    options: &PickOptions,
    default_network: &str,
) -> Result<Pick, RecordProblem> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let bad = |field: &str, msg: String| RecordProblem::new(n, field, msg);
    if f.len() < 9 {
        return Err(bad(
            "line",
            format!(
                "{} fields, NLLOC_OBS needs at least 9 (station .. seconds)",
                f.len()
            ),
        ));
    }
    let station = station_from_label(f[0], default_network);
    let phase: Phase = f[4]
        .parse()
        .map_err(|e: crate::domain::PhaseError| bad("phase", e.to_string()))?;
    let date = NaiveDate::parse_from_str(f[6], "%Y%m%d")
        .map_err(|_| bad("date", format!("{:?} is not YYYYMMDD", f[6])))?;
    let hm: u32 = f[7]
        .parse()
        .map_err(|_| bad("hour_min", format!("{:?} is not hhmm", f[7])))?;
    let (hour, minute) = (hm / 100, hm % 100);
    let start = date
        .and_hms_opt(hour, minute, 0)
        .ok_or_else(|| bad("hour_min", format!("{:?} is not a valid hhmm", f[7])))?
        .and_utc();
    let sec: f64 = f[8]
        .parse()
        .map_err(|_| bad("seconds", format!("{:?} is not a number", f[8])))?;
    // NonLinLoc allows seconds >= 60 (a pick after the line's minute) but not negative ones.
    if !(sec.is_finite() && (0.0..3600.0).contains(&sec)) {
        return Err(bad("seconds", format!("{sec} is outside 0..3600")));
    }
    let nanos = (sec * 1e9).round() as i64;
    let time = check_plausible(start + TimeDelta::nanoseconds(nanos))
        .map_err(|e| bad("date", e.to_string()))?;
    let mut uncertainty_s = options.default_uncertainty_s;
    if f.len() >= 11 {
        if f[9] != "GAU" {
            return Err(bad(
                "error_type",
                format!(
                    "{:?} is not GAU, the only error type NonLinLoc defines",
                    f[9]
                ),
            ));
        }
        let err: f64 = f[10]
            .parse()
            .map_err(|_| bad("error", format!("{:?} is not a number", f[10])))?;
        if !(err.is_finite() && err > 0.0) {
            return Err(bad("error", format!("{err} s is not positive")));
        }
        uncertainty_s = err;
    }
    if let Some(w) = f.get(14).filter(|w| **w != ">") {
        let w: f64 = w
            .parse()
            .map_err(|_| bad("prior_weight", format!("{w:?} is not a number")))?;
        if w == 0.0 {
            return Err(bad(
                "prior_weight",
                "prior weight 0: NonLinLoc does not use this reading".to_string(),
            ));
        }
    }
    Ok(Pick::new(station, phase, time, uncertainty_s))
}

/// The NLLoc station label of a code: `NET_STA`, plus `_LOC` when there is a location code.
pub fn nlloc_label(code: &StationCode) -> String {
    let mut s = format!("{}_{}", code.network, code.station);
    if !code.location.is_empty() {
        s.push('_');
        s.push_str(&code.location);
    }
    s
}

/// Date, hhmm and seconds fields of a time, as NonLinLoc writes them.
fn obs_time(t: &UtcTime) -> (String, String, f64) {
    let date = format!("{:04}{:02}{:02}", t.year(), t.month(), t.day());
    let hm = format!("{:02}{:02}", t.hour(), t.minute());
    let sec = f64::from(t.second()) + f64::from(t.nanosecond()) * 1e-9;
    (date, hm, sec)
}

/// C's `%.<prec>e`: mantissa, `e`, sign and at least two exponent digits (`5.00e-02`).
fn c_exp(x: f64, prec: usize) -> String {
    let s = format!("{x:.prec$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s,
    }
}

/// The observation part of a phase line (NonLinLoc FORMAT_PHASE_2, prior weight 1).
fn obs_fields(p: &Pick) -> String {
    let (date, hm, sec) = obs_time(&p.time);
    format!(
        "{:<12} {:<4} {:<4} {:<1} {:<6} {:<1} {} {} {:9.4} {:<3} {:>9} {:>9} {:>9} {:>9} {:9.4}",
        nlloc_label(&p.station),
        "?",
        "?",
        "?",
        p.phase.as_str(),
        "?",
        date,
        hm,
        sec,
        "GAU",
        c_exp(p.uncertainty_s, 2),
        c_exp(-1.0, 2),
        c_exp(-1.0, 2),
        c_exp(-1.0, 2),
        1.0
    )
}

/// NLLOC_OBS text for `events`: one block per event, separated by blank lines, each preceded
/// by `PUBLIC_ID <event id>` so reading it back keeps the ids. Seconds are written to 0.1 ms,
/// as NonLinLoc does.
pub fn to_nlloc_obs(events: &[EventPicks]) -> String {
    let mut s = String::new();
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = writeln!(s, "PUBLIC_ID {}", ev.event_id);
        for p in &ev.picks {
            s.push_str(&obs_fields(p));
            s.push('\n');
        }
    }
    s
}

/// A 3-D confidence ellipsoid in NonLinLoc's form: axes 1 (shortest) and 2 by azimuth (degrees
/// east of north) and dip (degrees below horizontal), lengths in km; axis 3 is the longest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NllocEllipsoid {
    /// Azimuth of the shortest axis, degrees.
    pub az1_deg: f64,
    /// Dip of the shortest axis, degrees (positive down).
    pub dip1_deg: f64,
    /// Shortest semi-axis, km.
    pub len1_km: f64,
    /// Azimuth of the intermediate axis, degrees.
    pub az2_deg: f64,
    /// Dip of the intermediate axis, degrees (positive down).
    pub dip2_deg: f64,
    /// Intermediate semi-axis, km.
    pub len2_km: f64,
    /// Longest semi-axis, km.
    pub len3_km: f64,
    /// Azimuth of the longest axis, degrees (not written by NonLinLoc; implied by 1 and 2).
    pub az3_deg: f64,
    /// Dip of the longest axis, degrees (positive down).
    pub dip3_deg: f64,
}

/// (azimuth deg 0..360, dip deg 0..90) of an axis in (x east, y north, z down), sign chosen
/// to point downwards.
fn axis_direction(v: [f64; 3]) -> (f64, f64) {
    let s = if v[2] < 0.0 { -1.0 } else { 1.0 };
    let (x, y, z) = (v[0] * s, v[1] * s, v[2] * s);
    let az = x.atan2(y).to_degrees().rem_euclid(360.0);
    let dip = z.atan2(x.hypot(y)).to_degrees();
    (az, dip)
}

/// The confidence ellipsoid of a covariance (x east, y north, z down; km^2) scaled by
/// `delta_chi2` (3.53 for NonLinLoc's 68 %).
pub fn ellipsoid_from_covariance(cov_km2: &[[f64; 3]; 3], delta_chi2: f64) -> NllocEllipsoid {
    let m = Matrix3::from_fn(|i, j| cov_km2[i][j]);
    let eig = SymmetricEigen::new(m);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| eig.eigenvalues[a].total_cmp(&eig.eigenvalues[b]));
    let axis = |k: usize| {
        let c = eig.eigenvectors.column(order[k]);
        let len = (delta_chi2 * eig.eigenvalues[order[k]].max(0.0)).sqrt();
        let (az, dip) = axis_direction([c[0], c[1], c[2]]);
        (az, dip, len)
    };
    let (az1, dip1, len1) = axis(0);
    let (az2, dip2, len2) = axis(1);
    let (az3, dip3, len3) = axis(2);
    NllocEllipsoid {
        az1_deg: az1,
        dip1_deg: dip1,
        len1_km: len1,
        az2_deg: az2,
        dip2_deg: dip2,
        len2_km: len2,
        len3_km: len3,
        az3_deg: az3,
        dip3_deg: dip3,
    }
}

/// The horizontal confidence ellipse of the (x, y) block of a covariance, scaled by
/// `delta_chi2` (2.30 for NonLinLoc's 68 %): (min semi-axis km, max semi-axis km, azimuth of
/// the max axis in degrees east of north, 0..180).
pub fn horizontal_ellipse_from_covariance(
    cov_km2: &[[f64; 3]; 3],
    delta_chi2: f64,
) -> (f64, f64, f64) {
    let m = Matrix2::new(cov_km2[0][0], cov_km2[0][1], cov_km2[1][0], cov_km2[1][1]);
    let eig = SymmetricEigen::new(m);
    let (imin, imax) = if eig.eigenvalues[0] <= eig.eigenvalues[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let v = eig.eigenvectors.column(imax);
    let az = v[0].atan2(v[1]).to_degrees().rem_euclid(180.0);
    let len = |i: usize| (delta_chi2 * eig.eigenvalues[i].max(0.0)).sqrt();
    (len(imin), len(imax), az)
}

/// What a `.hyp` file needs beyond the origin: the local frame of its x/y/z, station
/// positions for the phase lines, and the file root NonLinLoc prints on its first line.
#[derive(Debug, Clone, Copy)]
pub struct HypContext<'a> {
    /// Frame of the HYPOCENTER and station x, y (km east, north of its origin).
    pub frame: &'a LocalFrame,
    /// Station positions for the phase lines (x, y, z written as 0 when a station is unknown).
    pub stations: Option<&'a StationInventory>,
    /// Text of the first line's file root (e.g. `loc/eikoloc.20190706.031953`).
    pub fileroot: &'a str,
    /// When the origin was computed, UTC (the SIGNATURE line's run time); the caller supplies
    /// it so that the same inputs give the same bytes.
    pub created: UtcTime,
}

/// `%lg`-like formatting: shortest representation, at most 6 significant digits.
fn lg(x: f64) -> String {
    if !x.is_finite() {
        return "-1".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if (-5..6).contains(&mag) {
        let decimals = usize::try_from((5 - mag).max(0)).unwrap_or(0);
        let s = format!("{x:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s == "-0" {
            "0".into()
        } else {
            s
        }
    } else {
        format!("{x:.5e}")
    }
}

/// NonLinLoc `.hyp` text for one origin of event `event_id`: NLLOC, SIGNATURE, COMMENT, GRID
/// (NULLGRID), SEARCH, HYPOCENTER, GEOGRAPHIC, QUALITY, VPVSRATIO, STATISTICS, STAT_GEOG,
/// TRANSFORM, QML_OriginQuality, QML_OriginUncertainty, the PHASE block (one line per arrival
/// whose pick is in `picks`) and END_NLLOC.
///
/// The expectation is the origin itself (the locator reports the posterior mean as the
/// origin); covariance and ellipsoids come from `origin.uncertainty.covariance_km2`.
pub fn to_nlloc_hyp(
    event_id: &str,
    origin: &Origin,
    picks: &[Pick],
    ctx: &HypContext<'_>,
) -> String {
    let o = origin;
    let mut s = String::new();
    let (x, y) = ctx.frame.to_local(GeoPoint {
        lat_deg: o.lat_deg,
        lon_deg: o.lon_deg,
    });
    let z = o.depth_km;
    let t = &o.time;
    let sec = f64::from(t.second()) + f64::from(t.nanosecond()) * 1e-9;
    let _ = writeln!(
        s,
        "NLLOC \"{}\" \"LOCATED\" \"Location completed.\"",
        ctx.fileroot
    );
    // NonLinLoc's form "<signature> <version> run:<ddMonYYYY> <HHhMMmSS>", which obspy parses.
    let _ = writeln!(
        s,
        "SIGNATURE \"eikoloc v{} run:{}\"",
        env!("CARGO_PKG_VERSION"),
        ctx.created.format("%d%b%Y %Hh%Mm%S")
    );
    let _ = writeln!(
        s,
        "COMMENT \"event {event_id} origin {} version {}\"",
        o.id, o.version
    );
    let _ = writeln!(s, "GRID  -1 -1 -1  0 0 0  0 0 0 NULLGRID");
    let _ = writeln!(s, "SEARCH SVGD");
    let _ = writeln!(
        s,
        "HYPOCENTER  x {} y {} z {}  OT {}  ix -1 iy -1 iz -1",
        lg(x),
        lg(y),
        lg(z),
        lg(sec)
    );
    let _ = writeln!(
        s,
        "GEOGRAPHIC  OT {:04} {:02} {:02}  {:02} {:02} {:.6}  Lat {:.6} Long {:.6} Depth {}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        sec,
        o.lat_deg,
        o.lon_deg,
        lg(z)
    );
    let used: Vec<_> = o
        .arrivals
        .iter()
        .filter(|a| !a.outlier && a.weight > 0.0)
        .collect();
    let _ = writeln!(
        s,
        "QUALITY  Pmax -1 MFmin -1 MFmax -1 RMS {} Nphs {} Gap {} Dist {} Mamp -9.9 0 Mdur -9.9 0",
        lg(o.rms_s),
        used.len(),
        lg(o.gap_deg),
        lg(o.min_distance_km)
    );
    let _ = writeln!(s, "VPVSRATIO  VpVsRatio -1  Npair 0  Diff -1");
    let c = &o.uncertainty.covariance_km2;
    let e = ellipsoid_from_covariance(c, DELTA_CHI_SQR_68_3);
    let _ = writeln!(
        s,
        "STATISTICS  ExpectX {} Y {} Z {}  CovXX {} XY {} XZ {} YY {} YZ {} ZZ {} EllAz1  {} Dip1  {} Len1  {} Az2  {} Dip2  {} Len2  {} Len3  {}",
        lg(x),
        lg(y),
        lg(z),
        lg(c[0][0]),
        lg(c[0][1]),
        lg(c[0][2]),
        lg(c[1][1]),
        lg(c[1][2]),
        lg(c[2][2]),
        lg(e.az1_deg),
        lg(e.dip1_deg),
        lg(e.len1_km),
        lg(e.az2_deg),
        lg(e.dip2_deg),
        lg(e.len2_km),
        c_exp(e.len3_km, 6)
    );
    let _ = writeln!(
        s,
        "STAT_GEOG  ExpectLat {:.6} Long {:.6} Depth {:.6}",
        o.lat_deg, o.lon_deg, z
    );
    let fo = ctx.frame.origin();
    let _ = writeln!(
        s,
        "TRANSFORM  AZIMUTHAL_EQUIDIST RefEllipsoid WGS-84  LatOrig {:.6}  LongOrig {:.6}  RotCW 0.000000",
        fo.lat_deg, fo.lon_deg
    );
    let mut assoc_sta: Vec<&StationCode> = o.arrivals.iter().map(|a| &a.station).collect();
    assoc_sta.sort();
    assoc_sta.dedup();
    let mut used_sta: Vec<&StationCode> = used.iter().map(|a| &a.station).collect();
    used_sta.sort();
    used_sta.dedup();
    let mut dists: Vec<f64> = used
        .iter()
        .map(|a| a.distance_km)
        .filter(|d| d.is_finite())
        .collect();
    dists.sort_by(f64::total_cmp);
    let (dmin, dmax, dmed) = if dists.is_empty() {
        (-1.0, -1.0, -1.0)
    } else {
        let n = dists.len();
        let med = if n % 2 == 1 {
            dists[n / 2]
        } else {
            0.5 * (dists[n / 2 - 1] + dists[n / 2])
        };
        (dists[0], dists[n - 1], med)
    };
    let _ = writeln!(
        s,
        "QML_OriginQuality  assocPhCt {}  usedPhCt {}  assocStaCt {}  usedStaCt {}  depthPhCt 0  stdErr {}  azGap {}  secAzGap -1  gtLevel -  minDist {} maxDist {} medDist {}",
        o.arrivals.len(),
        used.len(),
        assoc_sta.len(),
        used_sta.len(),
        lg(o.rms_s),
        lg(o.gap_deg),
        lg(dmin),
        lg(dmax),
        lg(dmed)
    );
    let (hmin, hmax, haz) = horizontal_ellipse_from_covariance(c, DELTA_CHI_SQR_68_2);
    let _ = writeln!(
        s,
        "QML_OriginUncertainty  horUnc -1  minHorUnc {}  maxHorUnc {}  azMaxHorUnc {}",
        lg(hmin),
        lg(hmax),
        lg(haz)
    );
    let _ = writeln!(
        s,
        "PHASE ID Ins Cmp On Pha  FM Date     HrMn   Sec     Err  ErrMag    Coda      Amp       Per       PriorWt  >   TTpred    Res       Weight    StaLoc(X  Y         Z)        SDist    SAzim  RAz  RDip RQual    Tcorr       TTerr"
    );
    let by_id: HashMap<&str, &Pick> = picks.iter().map(|p| (p.id.as_str(), p)).collect();
    for a in &o.arrivals {
        let Some(p) = by_id.get(a.pick_id.as_str()) else {
            continue;
        };
        let tt = seconds_between(&o.time, &p.time) - a.residual_s;
        let (sx, sy, sz) = ctx
            .stations
            .and_then(|inv| inv.get(&p.station.network, &p.station.station))
            .map_or((0.0, 0.0, 0.0), |st| {
                let (sx, sy) = ctx.frame.to_local(st.geo());
                // + 0.0 turns -0.0 (a station at sea level) into 0.0
                (sx + 0.0, sy + 0.0, st.depth_km() + 0.0)
            });
        let weight = if a.outlier { 0.0 } else { a.weight };
        let _ = writeln!(
            s,
            "{} > {:9.4} {:9.4} {:9.4} {:9.4} {:9.4} {:9.4} {:9.4} {:6.2} {:5.1} {:5.1} {:2}  {:9.4} {:9.4}",
            obs_fields(p),
            tt,
            a.residual_s,
            weight,
            sx,
            sy,
            sz,
            a.distance_km,
            a.azimuth_deg,
            -1.0,
            -1.0,
            0,
            0.0,
            -1.0
        );
    }
    s.push_str("END_PHASE\nEND_NLLOC\n\n");
    s
}
