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

    /// Reads the CSV form `depth_top_km,vp_km_s,vs_km_s` (header required; extra columns are
    /// an error so a mislabelled file is not silently misread).
    pub fn from_csv_path(path: &Path) -> Result<Self, VelocityError> {
        let file = path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| VelocityError::Io {
            file: file.clone(),
            source,
        })?;
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| VelocityError::File {
                file: file.clone(),
                message: format!("bad header: {e}"),
            })?
            .clone();
        let expected = ["depth_top_km", "vp_km_s", "vs_km_s"];
        for (i, h) in headers.iter().enumerate() {
            if expected.get(i) != Some(&h) {
                return Err(VelocityError::Field {
                    file,
                    line: 1,
                    field: h.to_string(),
                    message: format!(
                        "unknown or misplaced column; expected header {}",
                        expected.join(",")
                    ),
                });
            }
        }
        if headers.len() != 3 {
            return Err(VelocityError::File {
                file,
                message: format!("expected header {}", expected.join(",")),
            });
        }
        let mut layers = Vec::new();
        for (row, rec) in rdr.records().enumerate() {
            let line = row + 2;
            let rec = rec.map_err(|e| VelocityError::Field {
                file: file.clone(),
                line,
                field: String::new(),
                message: e.to_string(),
            })?;
            let mut vals = [0.0f64; 3];
            for (k, name) in expected.iter().enumerate() {
                let s = rec.get(k).unwrap_or("");
                let v: f64 = s.parse().map_err(|_| VelocityError::Field {
                    file: file.clone(),
                    line,
                    field: name.to_string(),
                    message: format!("{s:?} is not a number"),
                })?;
                if !v.is_finite() {
                    return Err(VelocityError::Field {
                        file: file.clone(),
                        line,
                        field: name.to_string(),
                        message: format!("{s:?} is not finite"),
                    });
                }
                vals[k] = v;
            }
            let field_err = |field: &str, message: String| VelocityError::Field {
                file: file.clone(),
                line,
                field: field.into(),
                message,
            };
            if vals[1] <= 0.0 {
                return Err(field_err(
                    "vp_km_s",
                    format!("{} must be positive", vals[1]),
                ));
            }
            if vals[2] <= 0.0 {
                return Err(field_err(
                    "vs_km_s",
                    format!("{} must be positive", vals[2]),
                ));
            }
            if vals[2] >= vals[1] {
                return Err(field_err(
                    "vs_km_s",
                    format!("vs {} must be below vp {}", vals[2], vals[1]),
                ));
            }
            if let Some(prev) = layers.last().map(|l: &Layer| l.depth_top_km) {
                if vals[0] <= prev {
                    return Err(field_err(
                        "depth_top_km",
                        format!(
                            "{} is not greater than the previous layer top {prev}",
                            vals[0]
                        ),
                    ));
                }
            }
            layers.push(Layer {
                depth_top_km: vals[0],
                vp_km_s: vals[1],
                vs_km_s: vals[2],
            });
        }
        if layers.is_empty() {
            return Err(VelocityError::File {
                file,
                message: "no layers".into(),
            });
        }
        Self::new(layers)
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
