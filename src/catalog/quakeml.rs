//! QuakeML 1.2 BED: events with their picks and origins (arrivals, quality, uncertainty).
//!
//! Units follow the QuakeML 1.2 BED specification, not the domain types: depth and every
//! `OriginUncertainty` length in metres, latitude/longitude and their uncertainties in degrees,
//! arrival `distance` and quality `minimumDistance` in great-circle degrees (sphere of radius
//! [`EARTH_RADIUS_KM`], as obspy's `kilometers2degrees`), `confidenceLevel` in percent.
//!
//! What QuakeML cannot hold (the full covariance, the 68 % ellipse, the depth intervals, the
//! outlier flag of an arrival) is written in elements of our own namespace [`EIKOLOC_NS`], which
//! QuakeML allows in every type and other readers ignore. The origin's version goes to
//! `creationInfo/version`, `is_final` to `evaluationStatus` (`final` / `preliminary`), the
//! method to `methodID` (`smi:eikoloc/method/svgd` or `.../linearized`, the latter with a
//! comment saying it is a preliminary linearized origin).
//!
//! Resource identifiers are `smi:eikoloc/<kind>/<id>`, derived from the domain ids; characters
//! the QuakeML ResourceIdentifier pattern does not allow are written as `~XX` (hex), so the
//! mapping is reversible. Writes are deterministic: no creation time, fixed element order and
//! fixed number formats.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use quick_xml::escape::escape;
use quick_xml::events::Event as XmlEvent;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::catalog::{
    format_time_exact, read_text, CatalogError, PickOptions, ReadReport, RecordProblem,
};
use crate::domain::{
    parse_utc, Arrival, ConfidenceEllipsoid, Event, HorizontalEllipse, Origin, OriginMethod,
    OriginUncertainty, Phase, Pick, StationCode,
};

/// QuakeML 1.2 root namespace.
pub const QUAKEML_NS: &str = "http://quakeml.org/xmlns/quakeml/1.2";
/// QuakeML 1.2 BED namespace.
pub const BED_NS: &str = "http://quakeml.org/xmlns/bed/1.2";
/// Namespace of our extension elements (full covariance, 68 % regions, outlier flags).
pub const EIKOLOC_NS: &str = "urn:eikoloc:quakeml:1";
/// Radius of the sphere on which great-circle degrees are converted to km, km.
pub const EARTH_RADIUS_KM: f64 = 6371.0;
/// Prefix of every resource identifier we write.
pub const ID_PREFIX: &str = "smi:eikoloc/";

/// Kilometres per great-circle degree on the sphere of radius [`EARTH_RADIUS_KM`].
pub fn km_per_degree() -> f64 {
    EARTH_RADIUS_KM * std::f64::consts::PI / 180.0
}

/// WGS84 (km per degree of latitude, km per degree of longitude) at latitude `lat_deg`, from
/// the meridional and prime-vertical radii of curvature.
pub fn wgs84_km_per_degree(lat_deg: f64) -> (f64, f64) {
    const A_KM: f64 = 6378.137;
    const F: f64 = 1.0 / 298.257_223_563;
    let e2 = F * (2.0 - F);
    let (s, c) = lat_deg.to_radians().sin_cos();
    let w = (1.0 - e2 * s * s).sqrt();
    let meridional = A_KM * (1.0 - e2) / (w * w * w);
    let prime_vertical = A_KM / w;
    let rad = std::f64::consts::PI / 180.0;
    (meridional * rad, prime_vertical * c.abs() * rad)
}

/// The resource identifier `smi:eikoloc/<kind>/<escaped id>`.
pub fn resource_id(kind: &str, id: &str) -> String {
    let mut s = format!("{ID_PREFIX}{kind}/");
    for (i, ch) in id.chars().enumerate() {
        // ResourceIdentifier path: [\w\d\-\.\*\(\)_~'][\w\d\-\.\*\(\)\+\?_~'=,;#/&]*; we keep
        // the common subset and escape the rest (and '~' itself, our escape character).
        let plain = ch.is_ascii_alphanumeric()
            || matches!(ch, '-' | '.' | '*' | '(' | ')' | '_' | '\'')
            || (i > 0 && matches!(ch, '+' | '=' | ',' | ';' | '/'));
        if plain {
            s.push(ch);
        } else {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                let _ = write!(s, "~{b:02X}");
            }
        }
    }
    s
}

/// The domain id inside a resource identifier of `kind` we wrote; a foreign identifier is
/// returned whole.
pub fn id_from_resource(kind: &str, rid: &str) -> String {
    let prefix = format!("{ID_PREFIX}{kind}/");
    let Some(rest) = rid.strip_prefix(&prefix) else {
        return rid.to_string();
    };
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| rest.to_string())
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Rounds to `decimals` places and drops trailing zeros: deterministic and without the
/// `1500.0000000000002` noise of unit conversions.
fn num(x: f64, decimals: usize) -> String {
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
}

/// Shortest representation that reads back to the same f64 (for values stored as given).
fn exact(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x}")
    }
}

struct XmlOut {
    s: String,
    depth: usize,
}

impl XmlOut {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.s.push_str("  ");
        }
    }
    fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.s.push('<');
        self.s.push_str(tag);
        for (k, v) in attrs {
            let _ = write!(self.s, " {k}=\"{}\"", escape(*v));
        }
        self.s.push_str(">\n");
        self.depth += 1;
    }
    fn close(&mut self, tag: &str) {
        self.depth -= 1;
        self.indent();
        let _ = writeln!(self.s, "</{tag}>");
    }
    fn leaf(&mut self, tag: &str, text: &str) {
        self.indent();
        let _ = writeln!(self.s, "<{tag}>{}</{tag}>", escape(text));
    }
    fn empty(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.s.push('<');
        self.s.push_str(tag);
        for (k, v) in attrs {
            let _ = write!(self.s, " {k}=\"{}\"", escape(*v));
        }
        self.s.push_str("/>\n");
    }
    /// A number leaf, omitted when unknown (NaN).
    fn num_leaf(&mut self, tag: &str, x: f64, decimals: usize) {
        if x.is_finite() {
            self.leaf(tag, &num(x, decimals));
        }
    }
    /// A RealQuantity/TimeQuantity: value plus uncertainty when known.
    fn quantity(&mut self, tag: &str, value: &str, uncertainty: Option<String>) {
        self.open(tag, &[]);
        self.leaf("value", value);
        if let Some(u) = uncertainty {
            self.leaf("uncertainty", &u);
        }
        self.close(tag);
    }
}

fn finite_pos(x: f64) -> Option<f64> {
    (x.is_finite() && x >= 0.0).then_some(x)
}

/// QuakeML 1.2 text for `events` (each with its picks, origins and preferred origin).
pub fn to_quakeml(events: &[Event]) -> String {
    let mut x = XmlOut {
        s: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        depth: 0,
    };
    x.open(
        "q:quakeml",
        &[
            ("xmlns:q", QUAKEML_NS),
            ("xmlns", BED_NS),
            ("xmlns:eikoloc", EIKOLOC_NS),
        ],
    );
    x.open(
        "eventParameters",
        &[("publicID", &format!("{ID_PREFIX}eventParameters"))],
    );
    for ev in events {
        x.open("event", &[("publicID", &resource_id("event", &ev.id))]);
        if let Some(o) = ev.preferred() {
            x.leaf("preferredOriginID", &resource_id("origin", &o.id));
        }
        x.leaf("type", "earthquake");
        for p in &ev.picks {
            write_pick(&mut x, p);
        }
        for o in &ev.origins {
            write_origin(&mut x, o);
        }
        x.close("event");
    }
    x.close("eventParameters");
    x.close("q:quakeml");
    x.s
}

/// Writes [`to_quakeml`] of `events` to `out`.
pub fn write_quakeml<W: Write>(mut out: W, events: &[Event]) -> Result<(), CatalogError> {
    out.write_all(to_quakeml(events).as_bytes())?;
    out.flush()?;
    Ok(())
}

fn write_pick(x: &mut XmlOut, p: &Pick) {
    x.open("pick", &[("publicID", &resource_id("pick", &p.id))]);
    x.quantity(
        "time",
        &format_time_exact(&p.time),
        finite_pos(p.uncertainty_s).map(exact),
    );
    let mut attrs = vec![
        ("networkCode", p.station.network.as_str()),
        ("stationCode", p.station.station.as_str()),
    ];
    if !p.station.location.is_empty() {
        attrs.push(("locationCode", p.station.location.as_str()));
    }
    x.empty("waveformID", &attrs);
    x.leaf("phaseHint", p.phase.as_str());
    x.close("pick");
}

fn write_origin(x: &mut XmlOut, o: &Origin) {
    let u = &o.uncertainty;
    let c = &u.covariance_km2;
    let sd = |v: f64| (v.is_finite() && v > 0.0).then(|| v.sqrt());
    let (km_lat, km_lon) = wgs84_km_per_degree(o.lat_deg);
    x.open("origin", &[("publicID", &resource_id("origin", &o.id))]);
    x.quantity(
        "time",
        &format_time_exact(&o.time),
        finite_pos(o.time_sigma_s).map(|s| num(s, 6)),
    );
    x.quantity(
        "latitude",
        &exact(o.lat_deg),
        sd(c[1][1]).map(|s| num(s / km_lat, 8)),
    );
    let lon_unc = sd(c[0][0])
        .filter(|_| km_lon > 1e-9)
        .map(|s| num(s / km_lon, 8));
    x.quantity("longitude", &exact(o.lon_deg), lon_unc);
    x.quantity(
        "depth",
        &num(o.depth_km * 1000.0, 1),
        sd(c[2][2]).map(|s| num(s * 1000.0, 1)),
    );
    x.leaf("depthType", "from location");
    x.leaf("timeFixed", "false");
    x.leaf("epicenterFixed", "false");
    x.leaf(
        "methodID",
        &format!("{ID_PREFIX}method/{}", o.method.as_str()),
    );

    x.open("quality", &[]);
    let used = o
        .arrivals
        .iter()
        .filter(|a| !a.outlier && a.weight > 0.0)
        .count();
    x.leaf("associatedPhaseCount", &o.arrivals.len().to_string());
    x.leaf("usedPhaseCount", &used.to_string());
    let mut stations: Vec<&StationCode> = o
        .arrivals
        .iter()
        .filter(|a| !a.outlier && a.weight > 0.0)
        .map(|a| &a.station)
        .collect();
    stations.sort();
    stations.dedup();
    x.leaf("usedStationCount", &stations.len().to_string());
    x.num_leaf("standardError", o.rms_s, 4);
    x.num_leaf("azimuthalGap", o.gap_deg, 2);
    x.num_leaf("minimumDistance", o.min_distance_km / km_per_degree(), 6);
    x.close("quality");

    let h = &u.horizontal_95;
    let e = &u.ellipsoid_95;
    let known = |v: &[f64]| v[0] > 0.0 && v.iter().all(|x| x.is_finite());
    let has_ellipse = known(&[h.major_km, h.minor_km, h.azimuth_deg]);
    let ell = [
        e.semi_major_km,
        e.semi_minor_km,
        e.semi_intermediate_km,
        e.major_azimuth_deg,
        e.major_plunge_deg,
        e.major_rotation_deg,
    ];
    // QuakeML requires all six ellipsoid fields; an unknown (zero) ellipsoid is not written.
    let has_ellipsoid = known(&ell);
    if has_ellipse || has_ellipsoid {
        x.open("originUncertainty", &[]);
        if has_ellipse {
            // A circle that contains the 95 % ellipse: its semi-major axis.
            x.num_leaf("horizontalUncertainty", h.major_km * 1000.0, 1);
            x.num_leaf("minHorizontalUncertainty", h.minor_km * 1000.0, 1);
            x.num_leaf("maxHorizontalUncertainty", h.major_km * 1000.0, 1);
            x.num_leaf("azimuthMaxHorizontalUncertainty", h.azimuth_deg, 2);
        }
        if has_ellipsoid {
            x.open("confidenceEllipsoid", &[]);
            x.num_leaf("semiMajorAxisLength", e.semi_major_km * 1000.0, 1);
            x.num_leaf("semiMinorAxisLength", e.semi_minor_km * 1000.0, 1);
            x.num_leaf(
                "semiIntermediateAxisLength",
                e.semi_intermediate_km * 1000.0,
                1,
            );
            x.num_leaf("majorAxisPlunge", e.major_plunge_deg, 2);
            x.num_leaf("majorAxisAzimuth", e.major_azimuth_deg, 2);
            x.num_leaf("majorAxisRotation", e.major_rotation_deg, 2);
            x.close("confidenceEllipsoid");
        }
        let description = if has_ellipsoid {
            "confidence ellipsoid"
        } else {
            "uncertainty ellipse"
        };
        x.leaf("preferredDescription", description);
        x.leaf("confidenceLevel", "95");
        x.close("originUncertainty");
    }

    if o.method == OriginMethod::Linearized {
        // Said in words too, for readers that show comments but not method ids.
        x.open(
            "comment",
            &[(
                "id",
                &format!("{}/comment/method", resource_id("origin", &o.id)),
            )],
        );
        x.leaf(
            "text",
            "preliminary linearized origin (grid + Levenberg-Marquardt, linearized sandwich \
             covariance); the SVGD posterior follows as a later version",
        );
        x.close("comment");
    }
    x.leaf("evaluationMode", "automatic");
    x.leaf(
        "evaluationStatus",
        if o.is_final { "final" } else { "preliminary" },
    );
    x.open("creationInfo", &[]);
    x.leaf("agencyID", "eikoloc");
    x.leaf("version", &o.version.to_string());
    x.close("creationInfo");

    for a in &o.arrivals {
        x.open(
            "arrival",
            &[(
                "publicID",
                &resource_id("arrival", &format!("{}/{}", o.id, a.pick_id)),
            )],
        );
        x.leaf("pickID", &resource_id("pick", &a.pick_id));
        x.leaf("phase", a.phase.as_str());
        x.num_leaf("azimuth", a.azimuth_deg, 2);
        x.num_leaf("distance", a.distance_km / km_per_degree(), 6);
        x.num_leaf("timeResidual", a.residual_s, 4);
        x.num_leaf("timeWeight", a.weight, 4);
        if a.outlier {
            x.leaf("eikoloc:outlier", "true");
        }
        x.close("arrival");
    }

    // What QuakeML has no place for, exactly (shortest round-trip form, km).
    x.open("eikoloc:posterior", &[]);
    let cov = [c[0][0], c[0][1], c[0][2], c[1][1], c[1][2], c[2][2]]
        .map(exact)
        .join(" ");
    x.leaf("eikoloc:covarianceKm2", &cov);
    let h68 = &u.horizontal_68;
    x.leaf(
        "eikoloc:horizontal68",
        &[h68.major_km, h68.minor_km, h68.azimuth_deg]
            .map(exact)
            .join(" "),
    );
    x.leaf(
        "eikoloc:horizontal95",
        &[h.major_km, h.minor_km, h.azimuth_deg].map(exact).join(" "),
    );
    x.leaf("eikoloc:depth68Km", &exact(u.depth_68_km));
    x.leaf("eikoloc:depth95Km", &exact(u.depth_95_km));
    x.leaf("eikoloc:ellipsoid95", &ell.map(exact).join(" "));
    x.leaf("eikoloc:minDistanceKm", &exact(o.min_distance_km));
    x.close("eikoloc:posterior");
    x.close("origin");
}

// ---------------------------------------------------------------------------------------------
// Reader: a small element tree first (namespaces resolved, line numbers kept), then the domain.

#[derive(Debug, Default)]
struct Node {
    /// True when the element is in our extension namespace.
    ext: bool,
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
    line: u64,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| !c.ext && c.name == name)
    }
    fn ext_child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.ext && c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children
            .iter()
            .filter(move |c| !c.ext && c.name == name)
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text_of(&self, path: &[&str]) -> Option<&str> {
        let mut n = self;
        for p in path {
            n = n.child(p)?;
        }
        Some(n.text.trim())
    }
}

/// Byte offset -> 1-based line, by binary search over the newline offsets (counting newlines
/// from the start for every element made reading quadratic in the file size).
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        Self(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }
    fn line(&self, pos: u64) -> u64 {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        1 + self.0.partition_point(|&nl| nl < pos) as u64
    }
}

fn parse_tree(text: &str) -> Result<Node, CatalogError> {
    let lines = LineIndex::new(text);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = vec![Node::default()];
    let malformed = |pos: u64, message: String| CatalogError::Malformed {
        line: lines.line(pos),
        message,
    };
    loop {
        let before = reader.buffer_position();
        let (ns, ev) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => {
                let pos = reader.error_position();
                return Err(malformed(pos, format!("XML error: {e}")));
            }
        };
        let make = |ns: &ResolveResult,
                    e: &quick_xml::events::BytesStart<'_>|
         -> Result<Node, CatalogError> {
            let ext = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == EIKOLOC_NS.as_bytes());
            let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            let mut attrs = Vec::new();
            for a in e.attributes() {
                let a = a.map_err(|err| {
                    malformed(before, format!("bad attribute in <{name}>: {err}"))
                })?;
                let value = a.unescape_value().map_err(|err| {
                    malformed(before, format!("bad attribute in <{name}>: {err}"))
                })?;
                attrs.push((
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    value.into_owned(),
                ));
            }
            // The event starts after any whitespace skipped before the '<'.
            let skipped = text.as_bytes()[usize::try_from(before).unwrap_or(0).min(text.len())..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count() as u64;
            Ok(Node {
                ext,
                name,
                attrs,
                line: lines.line(before + skipped),
                ..Node::default()
            })
        };
        match ev {
            XmlEvent::Start(e) => {
                let node = make(&ns, &e)?;
                stack.push(node);
            }
            XmlEvent::Empty(e) => {
                let node = make(&ns, &e)?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(node);
                }
            }
            XmlEvent::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| malformed(before, "unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Err(malformed(before, "unbalanced end tag".into())),
                }
            }
            XmlEvent::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| malformed(before, format!("bad text: {e}")))?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&s);
                }
            }
            XmlEvent::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    if stack.len() > 1 {
        let open = &stack[stack.len() - 1];
        return Err(CatalogError::Malformed {
            line: lines.line(text.len() as u64),
            message: format!(
                "truncated XML: <{}> opened on line {} is never closed",
                open.name, open.line
            ),
        });
    }
    stack
        .pop()
        .ok_or_else(|| malformed(0, "empty document".into()))
}

/// Reads QuakeML 1.2 text into events with their picks and origins.
///
/// A pick, origin or arrival that cannot be used (unknown phase, bad time, missing
/// coordinate, a second pick of the same phase at the same station, arrival to an unknown
/// pick) is skipped with a [`RecordProblem`] naming its line
/// and element; malformed or truncated XML, or a document without `eventParameters`, is an
/// error. Picks without a time uncertainty take `options.default_uncertainty_s`.
pub fn read_quakeml(text: &str, options: &PickOptions) -> Result<ReadReport<Event>, CatalogError> {
    options.validate()?;
    let root = parse_tree(text)?;
    let top = root
        .children
        .iter()
        .find(|n| !n.ext)
        .ok_or_else(|| CatalogError::MissingHeader("no XML root element".into()))?;
    let params = if top.name == "eventParameters" {
        Some(top)
    } else {
        top.child("eventParameters")
    };
    let params = params.ok_or_else(|| {
        CatalogError::MissingHeader(format!(
            "<{}> (line {}) has no <eventParameters>",
            top.name, top.line
        ))
    })?;
    let mut report = ReadReport::default();
    for ev in params.all("event") {
        let id = ev.attr("publicID").map_or_else(
            || format!("line{}", ev.line),
            |r| id_from_resource("event", r),
        );
        let mut picks = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in ev.all("pick") {
            match read_pick(p, options) {
                // One P and one S per station and event, as every reader here keeps them.
                Ok(pick)
                    if !seen.insert((
                        pick.station.network.clone(),
                        pick.station.station.clone(),
                        pick.phase,
                    )) =>
                {
                    report.problems.push(problem(
                        p,
                        "pick/waveformID",
                        format!(
                            "duplicate {} pick at {} in event {id} (kept the first)",
                            pick.phase, pick.station
                        ),
                    ));
                }
                Ok(pick) => picks.push(pick),
                Err(e) => report.problems.push(e),
            }
        }
        let pick_station: HashMap<&str, &StationCode> =
            picks.iter().map(|p| (p.id.as_str(), &p.station)).collect();
        let mut origins = Vec::new();
        let mut origin_rids = Vec::new();
        for o in ev.all("origin") {
            match read_origin(o, origins.len(), &pick_station, &mut report.problems) {
                Ok(origin) => {
                    origin_rids.push(o.attr("publicID").unwrap_or_default().to_string());
                    origins.push(origin);
                }
                Err(e) => report.problems.push(e),
            }
        }
        let preferred_origin = ev
            .text_of(&["preferredOriginID"])
            .and_then(|rid| origin_rids.iter().position(|r| r == rid));
        report.records.push(Event {
            id,
            picks,
            origins,
            preferred_origin,
        });
    }
    Ok(report)
}

/// [`read_quakeml`] on a file; structural errors name the file.
pub fn read_quakeml_file(
    path: &Path,
    options: &PickOptions,
) -> Result<ReadReport<Event>, CatalogError> {
    read_quakeml(&read_text(path)?, options).map_err(|e| e.in_file(path))
}

fn problem(n: &Node, field: &str, message: impl Into<String>) -> RecordProblem {
    RecordProblem::new(n.line, field, message)
}

/// A required finite number at `path` below `n`.
fn number_at(n: &Node, path: &[&str]) -> Result<f64, RecordProblem> {
    let field = format!("{}/{}", n.name, path.join("/"));
    let s = n
        .text_of(path)
        .ok_or_else(|| problem(n, &field, "missing"))?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(problem(n, &field, format!("{s:?} is not a finite number"))),
    }
}

/// An optional number: NaN when absent; a present but unparseable value is a problem.
fn opt_number_at(n: &Node, path: &[&str]) -> Result<f64, RecordProblem> {
    match n.text_of(path) {
        None | Some("") => Ok(f64::NAN),
        Some(_) => number_at(n, path),
    }
}

fn numbers(n: &Node, name: &str, count: usize) -> Result<Option<Vec<f64>>, RecordProblem> {
    let Some(c) = n.ext_child(name) else {
        return Ok(None);
    };
    let v: Result<Vec<f64>, _> = c.text.split_whitespace().map(str::parse::<f64>).collect();
    match v {
        Ok(v) if v.len() == count => Ok(Some(v)),
        _ => Err(problem(
            c,
            &format!("eikoloc:{name}"),
            format!("expected {count} numbers, got {:?}", c.text.trim()),
        )),
    }
}

fn read_pick(p: &Node, options: &PickOptions) -> Result<Pick, RecordProblem> {
    let time_text = p
        .text_of(&["time", "value"])
        .ok_or_else(|| problem(p, "pick/time/value", "missing"))?;
    let time = parse_utc(time_text).map_err(|e| problem(p, "pick/time/value", e.to_string()))?;
    let w = p
        .child("waveformID")
        .ok_or_else(|| problem(p, "pick/waveformID", "missing"))?;
    let net = w.attr("networkCode").unwrap_or("").trim();
    let sta = w.attr("stationCode").unwrap_or("").trim();
    if net.is_empty() || sta.is_empty() {
        return Err(problem(
            w,
            "pick/waveformID",
            "networkCode and stationCode are required",
        ));
    }
    let mut station = StationCode::new(net, sta);
    station.location = w
        .attr("locationCode")
        .unwrap_or("")
        .trim()
        .trim_matches('-')
        .to_string();
    let hint = p
        .text_of(&["phaseHint"])
        .ok_or_else(|| problem(p, "pick/phaseHint", "missing"))?;
    let phase: Phase = hint
        .parse()
        .map_err(|e: crate::domain::PhaseError| problem(p, "pick/phaseHint", e.to_string()))?;
    let mut unc = opt_number_at(p, &["time", "uncertainty"])?;
    if unc.is_nan() {
        let lo = opt_number_at(p, &["time", "lowerUncertainty"])?;
        let hi = opt_number_at(p, &["time", "upperUncertainty"])?;
        unc = 0.5 * (lo + hi);
    }
    let uncertainty_s = if unc.is_nan() {
        options.default_uncertainty_s
    } else if unc > 0.0 {
        unc
    } else {
        return Err(problem(
            p,
            "pick/time/uncertainty",
            format!("{unc} s is not positive"),
        ));
    };
    let id = match p.attr("publicID") {
        Some(rid) => id_from_resource("pick", rid),
        None => Pick::new(station.clone(), phase, time, uncertainty_s).id,
    };
    Ok(Pick {
        id,
        station,
        phase,
        time,
        uncertainty_s,
    })
}

fn read_origin(
    o: &Node,
    index: usize,
    pick_station: &HashMap<&str, &StationCode>,
    problems: &mut Vec<RecordProblem>,
) -> Result<Origin, RecordProblem> {
    let id = o.attr("publicID").map_or_else(
        || format!("origin{}", index + 1),
        |r| id_from_resource("origin", r),
    );
    let time_text = o
        .text_of(&["time", "value"])
        .ok_or_else(|| problem(o, "origin/time/value", "missing"))?;
    let time = parse_utc(time_text).map_err(|e| problem(o, "origin/time/value", e.to_string()))?;
    let lat_deg = number_at(o, &["latitude", "value"])?;
    let lon_deg = number_at(o, &["longitude", "value"])?;
    if !(-90.0..=90.0).contains(&lat_deg) {
        return Err(problem(
            o,
            "origin/latitude/value",
            format!("{lat_deg} is outside -90..90"),
        ));
    }
    if !(-180.0..=360.0).contains(&lon_deg) {
        return Err(problem(
            o,
            "origin/longitude/value",
            format!("{lon_deg} is outside -180..360"),
        ));
    }
    let depth_km = number_at(o, &["depth", "value"])? / 1000.0;
    let time_sigma_s = opt_number_at(o, &["time", "uncertainty"])?;

    let mut u = OriginUncertainty::default();
    let (km_lat, km_lon) = wgs84_km_per_degree(lat_deg);
    let sx = opt_number_at(o, &["longitude", "uncertainty"])? * km_lon;
    let sy = opt_number_at(o, &["latitude", "uncertainty"])? * km_lat;
    let sz = opt_number_at(o, &["depth", "uncertainty"])? / 1000.0;
    for (i, s) in [sx, sy, sz].into_iter().enumerate() {
        if s.is_finite() {
            u.covariance_km2[i][i] = s * s;
        }
    }
    let mut rms_s = f64::NAN;
    let mut gap_deg = f64::NAN;
    let mut min_distance_km = f64::NAN;
    if let Some(q) = o.child("quality") {
        rms_s = opt_number_at(q, &["standardError"])?;
        gap_deg = opt_number_at(q, &["azimuthalGap"])?;
        min_distance_km = opt_number_at(q, &["minimumDistance"])? * km_per_degree();
    }
    if let Some(ou) = o.child("originUncertainty") {
        let level = opt_number_at(ou, &["confidenceLevel"])?;
        let ellipse = HorizontalEllipse {
            major_km: opt_number_at(ou, &["maxHorizontalUncertainty"])? / 1000.0,
            minor_km: opt_number_at(ou, &["minHorizontalUncertainty"])? / 1000.0,
            azimuth_deg: opt_number_at(ou, &["azimuthMaxHorizontalUncertainty"])?,
        };
        // Our default confidence is 95 %; a foreign file may state 68 %.
        if (level - 68.0).abs() < 0.5 {
            u.horizontal_68 = ellipse;
        } else {
            u.horizontal_95 = ellipse;
        }
        if let Some(ce) = ou.child("confidenceEllipsoid") {
            u.ellipsoid_95 = ConfidenceEllipsoid {
                semi_major_km: opt_number_at(ce, &["semiMajorAxisLength"])? / 1000.0,
                semi_minor_km: opt_number_at(ce, &["semiMinorAxisLength"])? / 1000.0,
                semi_intermediate_km: opt_number_at(ce, &["semiIntermediateAxisLength"])? / 1000.0,
                major_azimuth_deg: opt_number_at(ce, &["majorAxisAzimuth"])?,
                major_plunge_deg: opt_number_at(ce, &["majorAxisPlunge"])?,
                major_rotation_deg: opt_number_at(ce, &["majorAxisRotation"])?,
            };
        }
    }
    if let Some(post) = o.ext_child("posterior") {
        if let Some(c) = numbers(post, "covarianceKm2", 6)? {
            u.covariance_km2 = [[c[0], c[1], c[2]], [c[1], c[3], c[4]], [c[2], c[4], c[5]]];
        }
        if let Some(h) = numbers(post, "horizontal68", 3)? {
            u.horizontal_68 = HorizontalEllipse {
                major_km: h[0],
                minor_km: h[1],
                azimuth_deg: h[2],
            };
        }
        if let Some(h) = numbers(post, "horizontal95", 3)? {
            u.horizontal_95 = HorizontalEllipse {
                major_km: h[0],
                minor_km: h[1],
                azimuth_deg: h[2],
            };
        }
        if let Some(d) = numbers(post, "depth68Km", 1)? {
            u.depth_68_km = d[0];
        }
        if let Some(d) = numbers(post, "depth95Km", 1)? {
            u.depth_95_km = d[0];
        }
        if let Some(e) = numbers(post, "ellipsoid95", 6)? {
            u.ellipsoid_95 = ConfidenceEllipsoid {
                semi_major_km: e[0],
                semi_minor_km: e[1],
                semi_intermediate_km: e[2],
                major_azimuth_deg: e[3],
                major_plunge_deg: e[4],
                major_rotation_deg: e[5],
            };
        }
        if let Some(d) = numbers(post, "minDistanceKm", 1)? {
            min_distance_km = d[0];
        }
    }
    let version = match o.text_of(&["creationInfo", "version"]) {
        Some(v) => v.parse::<u32>().map_err(|_| {
            problem(
                o,
                "origin/creationInfo/version",
                format!("{v:?} is not a version number"),
            )
        })?,
        None => u32::try_from(index + 1).unwrap_or(u32::MAX),
    };
    let is_final = o.text_of(&["evaluationStatus"]) == Some("final");
    // Other agencies' method ids (and ours before the field) read as the posterior.
    let method = match o.text_of(&["methodID"]) {
        Some(m) if m.ends_with("/linearized") => OriginMethod::Linearized,
        _ => OriginMethod::Svgd,
    };

    let mut arrivals = Vec::new();
    for a in o.all("arrival") {
        match read_arrival(a, pick_station) {
            Ok(arr) => arrivals.push(arr),
            Err(p) => problems.push(p),
        }
    }
    Ok(Origin {
        id,
        time,
        time_sigma_s,
        lat_deg,
        lon_deg,
        depth_km,
        uncertainty: u,
        rms_s,
        gap_deg,
        min_distance_km,
        arrivals,
        version,
        is_final,
        method,
    })
}

fn read_arrival(
    a: &Node,
    pick_station: &HashMap<&str, &StationCode>,
) -> Result<Arrival, RecordProblem> {
    let rid = a
        .text_of(&["pickID"])
        .ok_or_else(|| problem(a, "arrival/pickID", "missing"))?;
    let pick_id = id_from_resource("pick", rid);
    let station = (*pick_station.get(pick_id.as_str()).ok_or_else(|| {
        problem(
            a,
            "arrival/pickID",
            format!("{rid} is not a pick of this event"),
        )
    })?)
    .clone();
    let ph = a
        .text_of(&["phase"])
        .ok_or_else(|| problem(a, "arrival/phase", "missing"))?;
    let phase: Phase = ph
        .parse()
        .map_err(|e: crate::domain::PhaseError| problem(a, "arrival/phase", e.to_string()))?;
    let weight = opt_number_at(a, &["timeWeight"])?;
    Ok(Arrival {
        pick_id,
        station,
        phase,
        distance_km: opt_number_at(a, &["distance"])? * km_per_degree(),
        azimuth_deg: opt_number_at(a, &["azimuth"])?,
        residual_s: opt_number_at(a, &["timeResidual"])?,
        weight: if weight.is_nan() { 1.0 } else { weight },
        outlier: a
            .ext_child("outlier")
            .is_some_and(|n| n.text.trim() == "true"),
    })
}
