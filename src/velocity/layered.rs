//! 1-D layered models: constant-velocity layers, the last a half-space.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{sha256_hex, VelocityError, VelocityModel};
use crate::domain::Phase;

/// One constant-velocity layer, from `depth_top_km` down to the next layer's top.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Depth of the layer top below sea level, km.
    pub depth_top_km: f64,
    /// P velocity, km/s.
    pub vp_km_s: f64,
    /// S velocity, km/s.
    pub vs_km_s: f64,
}

impl Layer {
    /// Velocity of `phase` in this layer, km/s.
    pub fn velocity(&self, phase: Phase) -> f64 {
        match phase {
            Phase::P => self.vp_km_s,
            Phase::S => self.vs_km_s,
        }
    }
}

/// A stack of constant-velocity layers; the top layer extends upward to any station
/// elevation, the last layer is a half-space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayeredModel {
    layers: Vec<Layer>,
}

impl LayeredModel {
    /// Checks depths strictly increasing and 0 < Vs < Vp, all finite.
    pub fn new(layers: Vec<Layer>) -> Result<Self, VelocityError> {
        if layers.is_empty() {
            return Err(VelocityError::Invalid("no layers".into()));
        }
        for (i, l) in layers.iter().enumerate() {
            let bad = |m: String| Err(VelocityError::Invalid(format!("layer {}: {m}", i + 1)));
            if !(l.depth_top_km.is_finite() && l.vp_km_s.is_finite() && l.vs_km_s.is_finite()) {
                return bad("non-finite value".into());
            }
            if l.vp_km_s <= 0.0 || l.vs_km_s <= 0.0 {
                return bad(format!(
                    "velocities must be positive (vp {}, vs {})",
                    l.vp_km_s, l.vs_km_s
                ));
            }
            if l.vs_km_s >= l.vp_km_s {
                return bad(format!("vs {} >= vp {}", l.vs_km_s, l.vp_km_s));
            }
            if i > 0 && l.depth_top_km <= layers[i - 1].depth_top_km {
                return bad(format!(
                    "depth_top_km {} not greater than the layer above ({})",
                    l.depth_top_km,
                    layers[i - 1].depth_top_km
                ));
            }
        }
        Ok(Self { layers })
    }

    /// Hadley & Kanamori (1977) southern California model, Vp/Vs 1.73: the bundled default.
    pub fn hadley_kanamori() -> Self {
        let l = |z: f64, vp: f64| Layer {
            depth_top_km: z,
            vp_km_s: vp,
            vs_km_s: vp / 1.73,
        };
        Self::new(vec![l(0.0, 5.5), l(5.5, 6.3), l(16.0, 6.7), l(32.0, 7.8)])
            .expect("valid constant model")
    }

    /// The layers, top first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Index of the layer containing depth `z_km` (the top layer for points above it).
    pub fn layer_index(&self, z_km: f64) -> usize {
        // layers are few (< 50): a linear scan beats a binary search here
        let mut i = 0;
        while i + 1 < self.layers.len() && z_km >= self.layers[i + 1].depth_top_km {
            i += 1;
        }
        i
    }

    /// Reads the CSV form `depth_top_km,vp_km_s,vs_km_s` (header required; extra or unknown
    /// columns are an error so a mislabelled file is not silently misread; `#` starts a comment
    /// line).
    pub fn from_csv_path(path: &Path) -> Result<Self, VelocityError> {
        let file = path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| VelocityError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_csv_text(&text, path)
    }

    /// Parses the CSV form from `text`; `path` only names the source in errors.
    pub fn from_csv_text(text: &str, path: &Path) -> Result<Self, VelocityError> {
        let file = path.to_path_buf();
        let expected = ["depth_top_km", "vp_km_s", "vs_km_s"];
        let field_err = |line: usize, field: &str, message: String| VelocityError::Field {
            file: file.clone(),
            line,
            field: field.into(),
            message,
        };
        // a plain line reader (numbers only, no quoting needed) so that error line numbers
        // count blank and comment lines, which the csv crate's positions skip
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let Some((header_line, header)) = lines.next() else {
            return Err(field_err(
                1,
                "header",
                format!("empty file: expected header {}", expected.join(",")),
            ));
        };
        let headers: Vec<&str> = header
            .split(',')
            .map(|h| h.trim().trim_matches('"'))
            .collect();
        for (i, h) in headers.iter().enumerate() {
            if expected.get(i) != Some(h) {
                return Err(field_err(
                    header_line,
                    h,
                    format!(
                        "unknown or misplaced column; expected header {}",
                        expected.join(",")
                    ),
                ));
            }
        }
        if headers.len() != expected.len() {
            return Err(field_err(
                header_line,
                expected[headers.len()],
                format!("missing column; expected header {}", expected.join(",")),
            ));
        }
        let mut rows = Vec::new();
        for (line, content) in lines {
            let rec: Vec<&str> = content
                .split(',')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            if rec.len() > expected.len() {
                return Err(field_err(
                    line,
                    "",
                    format!("{} fields, expected {}", rec.len(), expected.len()),
                ));
            }
            let mut vals = [0.0f64; 3];
            for (k, name) in expected.iter().enumerate() {
                vals[k] = parse_number(rec.get(k).copied(), line, name, &file)?;
            }
            rows.push((
                line,
                Layer {
                    depth_top_km: vals[0],
                    vp_km_s: vals[1],
                    vs_km_s: vals[2],
                },
            ));
        }
        Self::from_checked_rows(rows, ["depth_top_km", "vp_km_s", "vs_km_s"], path)
    }

    /// Reads NonLinLoc `LAYER` lines: `LAYER depth VpTop VpGrad VsTop VsGrad rhoTop rhoGrad`
    /// (km, km/s, km/s per km, g/cm^3). A whole NLLoc control file may be given: `#` comments,
    /// blank lines and other NLLoc statements are skipped, but a line starting with an unknown
    /// word is an error (a misspelt `LAYER` must not silently drop a layer).
    ///
    /// Non-zero velocity gradients are an error: this is a constant-velocity layer model and
    /// approximating a gradient by sub-layers is a modelling choice the user should make
    /// explicitly (split the layer in the file). Density is ignored. Vs is taken from `VsTop`;
    /// NLLoc runs that derive S from a Vp/Vs ratio (`LOCMETH ... VpVs`) need
    /// [`LayeredModel::with_vp_vs_ratio`] afterwards.
    pub fn from_nlloc_layers_path(path: &Path) -> Result<Self, VelocityError> {
        let file = path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| VelocityError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_nlloc_layers_text(&text, path)
    }

    /// Parses NonLinLoc `LAYER` lines from `text`; `path` only names the source in errors.
    pub fn from_nlloc_layers_text(text: &str, path: &Path) -> Result<Self, VelocityError> {
        let file = path.to_path_buf();
        const FIELDS: [&str; 7] = [
            "depth", "VpTop", "VpGrad", "VsTop", "VsGrad", "rhoTop", "rhoGrad",
        ];
        let mut rows = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let mut tokens = content.split_whitespace();
            let keyword = tokens.next().unwrap_or("");
            if keyword != "LAYER" {
                if NLLOC_KEYWORDS.contains(&keyword) {
                    continue;
                }
                return Err(VelocityError::Field {
                    file,
                    line,
                    field: "keyword".into(),
                    message: format!(
                        "{keyword:?} is neither LAYER nor a known NonLinLoc statement"
                    ),
                });
            }
            let tokens: Vec<&str> = tokens.collect();
            if tokens.len() > FIELDS.len() {
                return Err(VelocityError::Field {
                    file,
                    line,
                    field: "LAYER".into(),
                    message: format!(
                        "{} values, expected {} ({})",
                        tokens.len(),
                        FIELDS.len(),
                        FIELDS.join(" ")
                    ),
                });
            }
            let mut vals = [0.0f64; 7];
            for (k, name) in FIELDS.iter().enumerate() {
                vals[k] = parse_number(tokens.get(k).copied(), line, name, &file)?;
            }
            for k in [2, 4] {
                if vals[k] != 0.0 {
                    return Err(VelocityError::Field {
                        file,
                        line,
                        field: FIELDS[k].into(),
                        message: format!(
                            "velocity gradient {} is not supported: layers have constant velocity (split the layer into thinner constant layers)",
                            vals[k]
                        ),
                    });
                }
            }
            rows.push((
                line,
                Layer {
                    depth_top_km: vals[0],
                    vp_km_s: vals[1],
                    vs_km_s: vals[3],
                },
            ));
        }
        if rows.is_empty() {
            return Err(VelocityError::Field {
                file,
                line: 1,
                field: "LAYER".into(),
                message: "no LAYER lines".into(),
            });
        }
        Self::from_checked_rows(rows, ["depth", "VpTop", "VsTop"], path)
    }

    /// The same layers with vs = vp / `ratio` (NonLinLoc runs that set S from a Vp/Vs ratio).
    pub fn with_vp_vs_ratio(&self, ratio: f64) -> Result<Self, VelocityError> {
        if !(ratio.is_finite() && ratio > 1.0) {
            return Err(VelocityError::Invalid(format!(
                "Vp/Vs ratio {ratio} must be finite and above 1"
            )));
        }
        Self::new(
            self.layers
                .iter()
                .map(|l| Layer {
                    vs_km_s: l.vp_km_s / ratio,
                    ..*l
                })
                .collect(),
        )
    }

    /// Checks rows read from a file (line, layer), naming the line and the field (`names`: the
    /// file's names for depth, vp, vs) of the first problem.
    fn from_checked_rows(
        rows: Vec<(usize, Layer)>,
        names: [&str; 3],
        path: &Path,
    ) -> Result<Self, VelocityError> {
        let file = path.to_path_buf();
        let err = |line: usize, field: &str, message: String| VelocityError::Field {
            file: file.clone(),
            line,
            field: field.into(),
            message,
        };
        if rows.is_empty() {
            return Err(err(1, names[0], "no layers".into()));
        }
        let mut prev: Option<f64> = None;
        for &(line, l) in &rows {
            if l.vp_km_s <= 0.0 {
                return Err(err(
                    line,
                    names[1],
                    format!("{} must be positive", l.vp_km_s),
                ));
            }
            if l.vs_km_s <= 0.0 {
                return Err(err(
                    line,
                    names[2],
                    format!("{} must be positive", l.vs_km_s),
                ));
            }
            if l.vs_km_s >= l.vp_km_s {
                return Err(err(
                    line,
                    names[2],
                    format!("vs {} must be below vp {}", l.vs_km_s, l.vp_km_s),
                ));
            }
            if let Some(p) = prev {
                if l.depth_top_km <= p {
                    return Err(err(
                        line,
                        names[0],
                        format!(
                            "{} is not greater than the previous layer top {p}",
                            l.depth_top_km
                        ),
                    ));
                }
            }
            prev = Some(l.depth_top_km);
        }
        Self::new(rows.into_iter().map(|(_, l)| l).collect())
    }

    /// Writes the CSV form read by [`LayeredModel::from_csv_path`].
    pub fn to_csv_string(&self) -> String {
        let mut s = String::from("depth_top_km,vp_km_s,vs_km_s\n");
        for l in &self.layers {
            s.push_str(&format!("{},{},{}\n", l.depth_top_km, l.vp_km_s, l.vs_km_s));
        }
        s
    }
}

/// NonLinLoc control-file statements other than LAYER, skipped when a whole control file is
/// read for its LAYER lines.
const NLLOC_KEYWORDS: &[&str] = &[
    "CONTROL",
    "TRANS",
    "MAPLINE",
    "MAPGRID",
    "INCLUDE",
    "VGOUT",
    "VGTYPE",
    "VGGRID",
    "VGINP",
    "VGCLIP",
    "2DTO3DTRANS",
    "GTFILES",
    "GTMODE",
    "GTSRCE",
    "GT_PLFD",
    "GTSIMPLE",
    "LOCSIG",
    "LOCCOM",
    "LOCFILES",
    "LOCHYPOUT",
    "LOCSEARCH",
    "LOCGRID",
    "LOCMETH",
    "LOCGAU",
    "LOCGAU2",
    "LOCPHASEID",
    "LOCQUAL2ERR",
    "LOCPHSTAT",
    "LOCANGLES",
    "LOCMAG",
    "LOCCMP",
    "LOCALIAS",
    "LOCEXCLUDE",
    "LOCDELAY",
    "LOCELEVCORR",
    "LOCSTAWT",
    "LOCTOPO_SURFACE",
    "LOCTIME",
    "LOCPHASEWT",
    "LOCFLAGS",
    "LOCMODE",
];

/// Parses one numeric field, naming line and field when it is missing, not a number or not
/// finite.
fn parse_number(
    text: Option<&str>,
    line: usize,
    field: &str,
    file: &Path,
) -> Result<f64, VelocityError> {
    let err = |message: String| VelocityError::Field {
        file: file.to_path_buf(),
        line,
        field: field.into(),
        message,
    };
    let s = match text.map(str::trim) {
        Some(s) if !s.is_empty() => s,
        _ => return Err(err("missing (truncated line?)".into())),
    };
    let v: f64 = s
        .parse()
        .map_err(|_| err(format!("{s:?} is not a number")))?;
    if !v.is_finite() {
        return Err(err(format!("{s:?} is not finite")));
    }
    Ok(v)
}

/// Reads a 1-D layered model from either the CSV form (`depth_top_km,vp_km_s,vs_km_s`) or
/// NonLinLoc `LAYER` lines, chosen by the first statement of the file.
pub fn load_layered(path: &Path) -> Result<LayeredModel, VelocityError> {
    let text = std::fs::read_to_string(path).map_err(|source| VelocityError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let first_word = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("");
    if first_word == "LAYER" || NLLOC_KEYWORDS.contains(&first_word) {
        LayeredModel::from_nlloc_layers_text(&text, path)
    } else {
        LayeredModel::from_csv_text(&text, path)
    }
}

impl VelocityModel for LayeredModel {
    fn velocity_km_s(&self, phase: Phase, _x: f64, _y: f64, z_km: f64) -> f64 {
        self.layers[self.layer_index(z_km)].velocity(phase)
    }
    fn is_one_dimensional(&self) -> bool {
        true
    }
    fn content_hash(&self) -> String {
        sha256_hex(&format!("layered\n{}", self.to_csv_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Asserts `r` is a field error at `line` naming `field` and the file.
    fn assert_field_err(r: Result<LayeredModel, VelocityError>, line: usize, field: &str) {
        match r {
            Err(e @ VelocityError::Field { .. }) => {
                let VelocityError::Field {
                    file,
                    line: l,
                    field: f,
                    ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((*l, f.as_str()), (line, field), "{e}");
                assert!(file.ends_with("model.txt"), "{e}");
                assert!(e.to_string().contains("model.txt"), "{e}");
            }
            other => panic!("expected a field error at line {line} field {field}, got {other:?}"),
        }
    }

    fn csv(text: &str) -> Result<LayeredModel, VelocityError> {
        LayeredModel::from_csv_text(text, Path::new("/x/model.txt"))
    }

    fn nll(text: &str) -> Result<LayeredModel, VelocityError> {
        LayeredModel::from_nlloc_layers_text(text, Path::new("/x/model.txt"))
    }

    const H: &str = "depth_top_km,vp_km_s,vs_km_s\n";

    #[test]
    fn csv_reads_and_round_trips() {
        let m = csv(&format!("{H}# comment\n0,5.5,3.2\n\n5.5, 6.3 ,3.6\n")).unwrap();
        assert_eq!(m.layers().len(), 2);
        assert_eq!(
            m.layers()[1],
            Layer {
                depth_top_km: 5.5,
                vp_km_s: 6.3,
                vs_km_s: 3.6
            }
        );
        assert_eq!(csv(&m.to_csv_string()).unwrap(), m);
    }

    #[test]
    fn csv_bad_input_names_line_and_field() {
        assert_field_err(csv(""), 1, "header");
        assert_field_err(csv("depth_top_km,vp_km_s,vs_km_s,rho\n0,5,3,2\n"), 1, "rho");
        assert_field_err(csv("depth_km,vp_km_s,vs_km_s\n0,5,3\n"), 1, "depth_km");
        assert_field_err(csv("depth_top_km,vp_km_s\n0,5\n"), 1, "vs_km_s");
        assert_field_err(csv(H), 1, "depth_top_km");
        assert_field_err(
            csv(&format!("{H}0,5,3\n5,6,3.5\n5,7,4\n")),
            4,
            "depth_top_km",
        );
        assert_field_err(
            csv(&format!("{H}0,5,3\n4,6,3.5\n2,7,4\n")),
            4,
            "depth_top_km",
        );
        assert_field_err(csv(&format!("{H}0,0,3\n")), 2, "vp_km_s");
        assert_field_err(csv(&format!("{H}0,5,-3\n")), 2, "vs_km_s");
        assert_field_err(csv(&format!("{H}0,5,5\n")), 2, "vs_km_s");
        assert_field_err(csv(&format!("{H}0,5,3\n# note\n4,NaN,3\n")), 4, "vp_km_s");
        assert_field_err(csv(&format!("{H}0,5,3\n4,inf,3\n")), 3, "vp_km_s");
        assert_field_err(
            csv(&format!("# header next\n{H}\n0,5,3\n\n\n4,abc,3\n")),
            7,
            "vp_km_s",
        );
        assert_field_err(csv("\n# c\ndepth_top_km,vp,vs_km_s\n"), 3, "vp");
        assert_field_err(csv(&format!("{H}0,5,3\n4,abc,3\n")), 3, "vp_km_s");
        assert_field_err(csv(&format!("{H}0,5,3\n4,6\n")), 3, "vs_km_s");
        assert_field_err(csv(&format!("{H}0,5,3\n4,6,3.5,1\n")), 3, "");
    }

    #[test]
    fn nlloc_layers_read_with_comments_and_control_statements() {
        let text =
            "# model\nCONTROL 1 54321\nTRANS LAMBERT Clarke-1880 61.0 -150.0 60.0 62.0 0.0\n\
                    LAYER 0.0 5.30 0 3.01 0 2.52 0\nLAYER   4.0 5.60 0.00 3.18 0 2.61 0.1\n";
        let m = nll(text).unwrap();
        assert_eq!(
            m.layers(),
            &[
                Layer {
                    depth_top_km: 0.0,
                    vp_km_s: 5.3,
                    vs_km_s: 3.01
                },
                Layer {
                    depth_top_km: 4.0,
                    vp_km_s: 5.6,
                    vs_km_s: 3.18
                }
            ]
        );
        let r = m.with_vp_vs_ratio(1.68).unwrap();
        assert!((r.layers()[1].vs_km_s - 5.6 / 1.68).abs() < 1e-15);
        assert!(m.with_vp_vs_ratio(0.9).is_err());
    }

    #[test]
    fn nlloc_bad_input_names_line_and_field() {
        assert_field_err(nll(""), 1, "LAYER");
        assert_field_err(nll("# only a comment\n"), 1, "LAYER");
        assert_field_err(nll("LAYER 0 5 0.1 3 0 2.5 0\n"), 1, "VpGrad");
        assert_field_err(nll("LAYER 0 5 0 3 0.05 2.5 0\n"), 1, "VsGrad");
        assert_field_err(
            nll("LAYER 0 5 0 3 0 2.5 0\nLAYR 4 6 0 3.5 0 2.6 0\n"),
            2,
            "keyword",
        );
        assert_field_err(nll("LAYER 0 5 0 3 0 2.5 0\nLAYER 4 6 0 3.5\n"), 2, "VsGrad");
        assert_field_err(nll("LAYER 0 5 0 3 0 2.5 0 9\n"), 1, "LAYER");
        assert_field_err(
            nll("LAYER 0 5 0 3 0 2.5 0\nLAYER 0 6 0 3.5 0 2.6 0\n"),
            2,
            "depth",
        );
        assert_field_err(
            nll("LAYER 0 5 0 3 0 2.5 0\nLAYER 4 nan 0 3.5 0 2.6 0\n"),
            2,
            "VpTop",
        );
        assert_field_err(nll("LAYER 0 5 0 0 0 2.5 0\n"), 1, "VsTop");
        assert_field_err(nll("LAYER 0 5 0 6 0 2.5 0\n"), 1, "VsTop");
        assert_field_err(nll("LAYER 0 -5 0 3 0 2.5 0\n"), 1, "VpTop");
    }

    #[test]
    fn load_layered_sniffs_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, format!("{H}0,5.5,3.2\n5.5,6.3,3.6\n")).unwrap();
        let b = dir.path().join("b.in");
        let mut f = std::fs::File::create(&b).unwrap();
        writeln!(
            f,
            "# NLLoc\n\nLAYER 0.0 5.5 0 3.2 0 2.5 0\nLAYER 5.5 6.3 0 3.6 0 2.6 0"
        )
        .unwrap();
        drop(f);
        assert_eq!(load_layered(&a).unwrap(), load_layered(&b).unwrap());
        let missing = dir.path().join("missing.csv");
        assert!(matches!(
            load_layered(&missing),
            Err(VelocityError::Io { .. })
        ));
    }

    #[test]
    fn nlloc_alaska_layers_match_the_effective_model() {
        // rebuild the sample's LAYER lines from the shared CSV of them (temp file, not copied
        // into the repository) and check they give the effective model with Vp/Vs 1.68
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nlloc_alaska_2018");
        let raw = std::fs::read_to_string(root.join("velocity_model_nlloc_layers.csv")).unwrap();
        let mut text = String::from("LOCMETH EDT_OT_WT 9999.0 4 -1 -1 1.68 6 -1.0 1\n");
        for l in raw.lines().skip(1) {
            text.push_str(&format!("LAYER {}\n", l.replace(',', " ")));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("alaska.in");
        std::fs::write(&p, text).unwrap();
        let m = load_layered(&p).unwrap().with_vp_vs_ratio(1.68).unwrap();
        let eff = LayeredModel::from_csv_path(&root.join("velocity_model.csv")).unwrap();
        assert_eq!(m.layers().len(), eff.layers().len());
        for (a, b) in m.layers().iter().zip(eff.layers()) {
            assert_eq!((a.depth_top_km, a.vp_km_s), (b.depth_top_km, b.vp_km_s));
            assert!((a.vs_km_s - b.vs_km_s).abs() < 1e-4, "{a:?} {b:?}");
        }
    }
}
