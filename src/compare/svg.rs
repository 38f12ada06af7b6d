//! SVG figures of a comparison: map view, depth section and histograms of the differences.
//!
//! Hand-written SVG rather than a plotting crate: the figures need only lines, circles,
//! polygons and text, which is some 300 lines here, while `plotters` would add a dependency
//! tree and still need our own geodesic ellipses and projection.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{CompareError, Comparison, Hypocentre};
use crate::domain::{GeoPoint, HorizontalEllipse, LocalFrame};

const REF_COLOUR: &str = "#1f4e9c";
const CAT_COLOUR: &str = "#c0392b";
const PAIR_COLOUR: &str = "#7f7f7f";

/// Labels of the two catalogs in the figures.
#[derive(Debug, Clone)]
pub struct FigureLabels {
    /// Name of the reference catalog (e.g. its file name).
    pub reference: String,
    /// Name of the compared catalog.
    pub catalog: String,
}

/// Writes `map.svg`, `depth_section.svg` and `histograms.svg` into `dir` (created if needed);
/// returns their paths.
pub fn write_figures(
    dir: &Path,
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    comparison: &Comparison,
    labels: &FigureLabels,
) -> Result<Vec<PathBuf>, CompareError> {
    std::fs::create_dir_all(dir).map_err(|source| CompareError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let figures = [
        ("map.svg", map_view(reference, catalog, comparison, labels)),
        (
            "depth_section.svg",
            depth_section(reference, catalog, comparison, labels),
        ),
        ("histograms.svg", histograms(comparison, labels)),
    ];
    let mut out = Vec::new();
    for (name, text) in figures {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| CompareError::Io {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// Escapes text for XML content and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A rectangle of the page mapped linearly to data bounds.
struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    /// True when y grows downwards on the page (depth axes).
    y_down: bool,
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x0) / (self.x1 - self.x0) * self.width
    }
    fn py(&self, y: f64) -> f64 {
        let f = (y - self.y0) / (self.y1 - self.y0);
        if self.y_down {
            self.top + f * self.height
        } else {
            self.top + (1.0 - f) * self.height
        }
    }

    /// Frame, ticks, tick labels and axis titles.
    fn axes(&self, s: &mut String, x_title: &str, y_title: &str) {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="black"/>"##,
            self.left, self.top, self.width, self.height
        );
        let bottom = self.top + self.height;
        for t in nice_ticks(self.x0, self.x1) {
            let x = self.px(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                bottom + 5.0,
                bottom + 18.0,
                fmt_tick(t)
            );
        }
        for t in nice_ticks(self.y0, self.y1) {
            let y = self.py(t);
            let _ = writeln!(
                s,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                self.left - 5.0,
                self.left,
                self.left - 8.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text>"##,
            self.left + self.width / 2.0,
            bottom + 38.0,
            esc(x_title)
        );
        let (cx, cy) = (self.left - 55.0, self.top + self.height / 2.0);
        let _ = writeln!(
            s,
            r##"<text x="{cx:.1}" y="{cy:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 {cx:.1} {cy:.1})">{}</text>"##,
            esc(y_title)
        );
    }
}

/// Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about 6 ticks.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return Vec::new();
    }
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * span && out.len() < 50 {
        out.push(if t.abs() < 1e-12 * step.max(1.0) {
            0.0
        } else {
            t
        });
        t += step;
    }
    out
}

fn fmt_tick(t: f64) -> String {
    let s = format!("{t:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// (min, max) of finite values, padded by `pad` of the span (and at least `min_pad`).
fn padded_range(values: impl Iterator<Item = f64>, pad: f64, min_pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let p = ((hi - lo) * pad).max(min_pad);
    (lo - p, hi + p)
}

fn header(s: &mut String, width: f64, height: f64, title: &str) {
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="24" font-size="15" text-anchor="middle">{}</text>"##,
        width / 2.0,
        esc(title)
    );
}

fn legend(s: &mut String, x: f64, y: f64, labels: &FigureLabels, ellipse: bool) {
    let _ = writeln!(
        s,
        r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="none" stroke="{REF_COLOUR}" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="12">reference: {}</text>"##,
        x + 10.0,
        y + 4.0,
        esc(&labels.reference)
    );
    let _ = writeln!(
        s,
        r##"<circle cx="{x:.1}" cy="{:.1}" r="3" fill="{CAT_COLOUR}"/><text x="{:.1}" y="{:.1}" font-size="12">catalog: {}{}</text>"##,
        y + 18.0,
        x + 10.0,
        y + 22.0,
        esc(&labels.catalog),
        if ellipse { " (95 % regions)" } else { "" }
    );
}

/// Points (east km, north km) of ellipse `e` about its centre.
fn ellipse_offsets(e: &HorizontalEllipse, n: usize) -> Vec<(f64, f64)> {
    let th = e.azimuth_deg.to_radians();
    (0..n)
        .map(|k| {
            let phi = std::f64::consts::TAU * k as f64 / n as f64;
            let along = e.major_km * phi.cos();
            let across = e.minor_km * phi.sin();
            (
                along * th.sin() + across * th.cos(),
                along * th.cos() - across * th.sin(),
            )
        })
        .collect()
}

/// Map view: lon/lat, equirectangular about the mean latitude (so that a km is a km in both
/// directions near the centre), both catalogs, the catalog's 95 % ellipses, lines joining pairs.
fn map_view(
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    c: &Comparison,
    labels: &FigureLabels,
) -> String {
    let all = || reference.iter().chain(catalog.iter());
    let n_all = all().count().max(1) as f64;
    let lat_mean = all().map(|h| h.lat_deg).sum::<f64>() / n_all;
    let coslat = lat_mean.to_radians().cos().max(0.05);
    let ellipses: Vec<Vec<(f64, f64)>> = catalog
        .iter()
        .filter_map(|h| {
            let e = h.h95?;
            let frame = LocalFrame::new(h.epicentre());
            Some(
                ellipse_offsets(&e, 48)
                    .into_iter()
                    .map(|(x, y)| {
                        let g = frame.to_geo(x, y);
                        (g.lon_deg, g.lat_deg)
                    })
                    .collect(),
            )
        })
        .collect();
    let lons = all()
        .map(|h| h.lon_deg)
        .chain(ellipses.iter().flatten().map(|p| p.0));
    let lats = all()
        .map(|h| h.lat_deg)
        .chain(ellipses.iter().flatten().map(|p| p.1));
    let (mut lon0, mut lon1) = padded_range(lons, 0.05, 0.005);
    let (mut lat0, mut lat1) = padded_range(lats, 0.05, 0.005);
    // Equal km scales: widen the narrower extent.
    let (max_w, max_h) = (760.0, 640.0);
    let wx = (lon1 - lon0) * coslat;
    let wy = lat1 - lat0;
    if wx / wy > max_w / max_h {
        let need = wx * max_h / max_w;
        let mid = 0.5 * (lat0 + lat1);
        lat0 = mid - need / 2.0;
        lat1 = mid + need / 2.0;
    } else {
        let need = wy * max_w / max_h / coslat;
        let mid = 0.5 * (lon0 + lon1);
        lon0 = mid - need / 2.0;
        lon1 = mid + need / 2.0;
    }
    let p = Panel {
        left: 90.0,
        top: 70.0,
        width: max_w,
        height: max_h,
        x0: lon0,
        x1: lon1,
        y0: lat0,
        y1: lat1,
        y_down: false,
    };
    let mut s = String::new();
    let (w, h) = (p.left + p.width + 30.0, p.top + p.height + 60.0);
    header(
        &mut s,
        w,
        h,
        &format!(
            "Map view: {} matched, {} missed, {} extra",
            c.pairs.len(),
            c.missed.len(),
            c.extra.len()
        ),
    );
    p.axes(&mut s, "longitude (deg E)", "latitude (deg N)");
    legend(&mut s, p.left + 10.0, 45.0, labels, !ellipses.is_empty());
    let _ = writeln!(
        s,
        r##"<g fill="none" stroke="{CAT_COLOUR}" stroke-width="0.7" opacity="0.6">"##
    );
    for e in &ellipses {
        let pts: Vec<String> = e
            .iter()
            .map(|&(lon, lat)| format!("{:.1},{:.1}", p.px(lon), p.py(lat)))
            .collect();
        let _ = writeln!(s, r##"<polygon points="{}"/>"##, pts.join(" "));
    }
    let _ = writeln!(s, "</g>");
    pair_lines(&mut s, c, reference, catalog, |h| {
        (p.px(h.lon_deg), p.py(h.lat_deg))
    });
    points(&mut s, reference, catalog, |h| {
        (p.px(h.lon_deg), p.py(h.lat_deg))
    });
    let _ = writeln!(s, "</svg>");
    s
}

fn pair_lines(
    s: &mut String,
    c: &Comparison,
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    at: impl Fn(&Hypocentre) -> (f64, f64),
) {
    let _ = writeln!(s, r##"<g stroke="{PAIR_COLOUR}" stroke-width="0.8">"##);
    for pr in &c.pairs {
        let (Some(r), Some(k)) = (
            reference.get(pr.reference_index),
            catalog.get(pr.catalog_index),
        ) else {
            continue;
        };
        let (x1, y1) = at(r);
        let (x2, y2) = at(k);
        let _ = writeln!(
            s,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"##
        );
    }
    let _ = writeln!(s, "</g>");
}

fn points(
    s: &mut String,
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    at: impl Fn(&Hypocentre) -> (f64, f64),
) {
    let _ = writeln!(
        s,
        r##"<g fill="none" stroke="{REF_COLOUR}" stroke-width="1.2">"##
    );
    for h in reference {
        let (x, y) = at(h);
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5"><title>{}</title></circle>"##,
            esc(&h.event_id)
        );
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, r##"<g fill="{CAT_COLOUR}">"##);
    for h in catalog {
        let (x, y) = at(h);
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.2"><title>{}</title></circle>"##,
            esc(&h.event_id)
        );
    }
    let _ = writeln!(s, "</g>");
}

/// Depth section along the best-fit line of all epicentres (principal axis of their local
/// coordinates), depth down; catalog 95 % depth intervals as bars.
fn depth_section(
    reference: &[Hypocentre],
    catalog: &[Hypocentre],
    c: &Comparison,
    labels: &FigureLabels,
) -> String {
    let all: Vec<&Hypocentre> = reference.iter().chain(catalog.iter()).collect();
    let n = all.len().max(1) as f64;
    let centre = GeoPoint {
        lat_deg: all.iter().map(|h| h.lat_deg).sum::<f64>() / n,
        lon_deg: all.iter().map(|h| h.lon_deg).sum::<f64>() / n,
    };
    let frame = LocalFrame::new(centre);
    let xy: Vec<(f64, f64)> = all.iter().map(|h| frame.to_local(h.epicentre())).collect();
    let (mx, my) = (
        xy.iter().map(|p| p.0).sum::<f64>() / n,
        xy.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &xy {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let (ux, uy) = (theta.cos(), theta.sin());
    let azimuth = (90.0 - theta.to_degrees()).rem_euclid(360.0);
    let along = |h: &Hypocentre| {
        let (x, y) = frame.to_local(h.epicentre());
        (x - mx) * ux + (y - my) * uy
    };
    let (s0, s1) = padded_range(all.iter().map(|h| along(h)), 0.05, 0.5);
    let depths = all.iter().map(|h| h.depth_km).chain(
        catalog
            .iter()
            .filter_map(|h| h.z95_km.map(|z| [h.depth_km - z, h.depth_km + z]))
            .flatten(),
    );
    let (z0, z1) = padded_range(depths, 0.05, 0.5);
    let p = Panel {
        left: 90.0,
        top: 70.0,
        width: 760.0,
        height: 420.0,
        x0: s0,
        x1: s1,
        y0: z0,
        y1: z1,
        y_down: true,
    };
    let mut s = String::new();
    header(
        &mut s,
        p.left + p.width + 30.0,
        p.top + p.height + 60.0,
        &format!("Depth section along azimuth {azimuth:.0} deg (best-fit line of the epicentres)"),
    );
    p.axes(&mut s, "distance along section (km)", "depth (km)");
    legend(
        &mut s,
        p.left + 10.0,
        45.0,
        labels,
        catalog.iter().any(|h| h.z95_km.is_some()),
    );
    let _ = writeln!(
        s,
        r##"<g stroke="{CAT_COLOUR}" stroke-width="0.7" opacity="0.6">"##
    );
    for h in catalog {
        if let Some(z) = h.z95_km {
            let x = p.px(along(h));
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/>"##,
                p.py(h.depth_km - z),
                p.py(h.depth_km + z)
            );
        }
    }
    let _ = writeln!(s, "</g>");
    pair_lines(&mut s, c, reference, catalog, |h| {
        (p.px(along(h)), p.py(h.depth_km))
    });
    points(&mut s, reference, catalog, |h| {
        (p.px(along(h)), p.py(h.depth_km))
    });
    let _ = writeln!(s, "</svg>");
    s
}

/// Three histograms: horizontal distance, signed depth and signed origin-time differences.
/// The range spans the 1st..99th percentiles; values beyond fall into the end bins.
fn histograms(c: &Comparison, labels: &FigureLabels) -> String {
    let series: [(&str, Vec<f64>, bool); 3] = [
        (
            "horizontal distance (km)",
            c.pairs.iter().map(|p| p.horizontal_km).collect(),
            true,
        ),
        (
            "depth difference (km, + deeper)",
            c.pairs.iter().map(|p| p.depth_diff_km).collect(),
            false,
        ),
        (
            "origin-time difference (s, + later)",
            c.pairs.iter().map(|p| p.time_diff_s).collect(),
            false,
        ),
    ];
    let (pw, ph, gap) = (300.0, 260.0, 90.0);
    let mut s = String::new();
    let width = 3.0 * pw + 3.0 * gap + 20.0;
    header(
        &mut s,
        width,
        ph + 150.0,
        &format!(
            "{} minus {}: {} matched events",
            labels.catalog,
            labels.reference,
            c.pairs.len()
        ),
    );
    for (k, (title, values, from_zero)) in series.iter().enumerate() {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let (mut lo, mut hi) = if v.is_empty() {
            (0.0, 1.0)
        } else {
            (
                super::percentile_sorted(&v, 0.01),
                super::percentile_sorted(&v, 0.99),
            )
        };
        if *from_zero {
            lo = 0.0;
        } else {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
        }
        if hi - lo <= 0.0 {
            hi = lo + 1.0;
        }
        let nbins = ((v.len() as f64).sqrt().round() as usize).clamp(8, 40);
        let bw = (hi - lo) / nbins as f64;
        let mut counts = vec![0usize; nbins];
        for x in &v {
            let b = ((x - lo) / bw).floor();
            let b = if b < 0.0 {
                0
            } else {
                (b as usize).min(nbins - 1)
            };
            counts[b] += 1;
        }
        let cmax = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
        let p = Panel {
            left: gap + k as f64 * (pw + gap),
            top: 60.0,
            width: pw,
            height: ph,
            x0: lo,
            x1: hi,
            y0: 0.0,
            y1: cmax * 1.08,
            y_down: false,
        };
        p.axes(&mut s, title, "events");
        let _ = writeln!(
            s,
            r##"<g fill="#5b8fd1" stroke="white" stroke-width="0.5">"##
        );
        for (b, &n) in counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let x0 = p.px(lo + b as f64 * bw);
            let x1 = p.px(lo + (b + 1) as f64 * bw);
            let y = p.py(n as f64);
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"/>"##,
                x1 - x0,
                p.py(0.0) - y
            );
        }
        let _ = writeln!(s, "</g>");
        if !v.is_empty() {
            let med = super::percentile_sorted(&v, 0.5);
            if med >= lo && med <= hi {
                let x = p.px(med);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="11">median {}</text>"##,
                    p.top,
                    p.top + p.height,
                    x + 3.0,
                    p.top + 14.0,
                    fmt_tick(med)
                );
            }
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}
