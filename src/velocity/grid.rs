//! 3-D regular grids of P and S velocity, trilinearly interpolated.
//!
//! # Frame
//!
//! The local frame of [`crate::domain::LocalPoint`]: x km east, y km north, z km depth below
//! sea level (positive down). Node `(ix, iy, iz)` sits at
//! `origin_km + (ix * spacing_km[0], iy * spacing_km[1], iz * spacing_km[2])`.
//! Points outside the grid take the value at the nearest edge (edge clamping), which is what
//! [`VelocityModel::velocity_km_s`] promises for points above the model top.
//!
//! # File form (`eikoloc-velocity-grid`, version 1)
//!
//! Two files side by side:
//!
//! * a JSON header, e.g. `model.json`:
//!   ```json
//!   {
//!     "format": "eikoloc-velocity-grid",
//!     "version": 1,
//!     "origin_km": [-50.0, -50.0, -3.0],
//!     "spacing_km": [1.0, 1.0, 0.5],
//!     "counts": [101, 101, 87],
//!     "data_file": "model.bin"
//!   }
//!   ```
//!   `data_file` is relative to the header's directory. Unknown keys are an error, so a
//!   mistyped key is not silently ignored.
//! * a binary data file of little-endian IEEE-754 `f32` velocities in km/s, with no header
//!   and no padding: first the whole P block, then the whole S block, each of
//!   `nx * ny * nz` values with z varying fastest, then y, then x
//!   (value index `((ix * ny) + iy) * nz + iz`, the order NonLinLoc uses). Its size must be
//!   exactly `2 * nx * ny * nz * 4` bytes.
//!
//! Every velocity must be finite and positive, and Vs < Vp at each node is *not* required (a
//! grid can hold fluids or odd tomography artefacts; the solvers need only positivity).
//! Grids above [`MAX_CELLS`] nodes are refused before anything is allocated.
//!
//! # NonLinLoc grids
//!
//! [`GridModel::from_nonlinloc`] reads NonLinLoc `.hdr`/`.buf` pairs of types `VELOCITY`
//! (km/s), `VELOCITY_METERS` (m/s), `SLOWNESS` (s/km) and `SLOW_LEN` (slowness times the
//! node spacing, s; NonLinLoc requires cubic cells for this type), stored `FLOAT` or
//! `DOUBLE` little-endian. The header's first line is
//! `nx ny nz x0 y0 z0 dx dy dz TYPE [FLOAT|DOUBLE]`; later lines (TRANSFORM, station) are
//! ignored. NonLinLoc's km frame is taken as the local frame as is: the caller must ensure the
//! grid's TRANSFORM matches the locator's frame.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{VelocityError, VelocityModel};
use crate::domain::Phase;

/// Largest grid accepted (nodes per phase): about 2^31, 8 GiB of `f32` per phase.
pub const MAX_CELLS: u64 = 1 << 31;

/// The JSON header of the eikoloc grid file form (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridHeader {
    /// Always `eikoloc-velocity-grid`.
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// Position of node (0, 0, 0): x east, y north, z depth, km.
    pub origin_km: [f64; 3],
    /// Node spacing along x, y, z, km.
    pub spacing_km: [f64; 3],
    /// Node counts along x, y, z.
    pub counts: [u64; 3],
    /// Binary data file, relative to the header's directory.
    pub data_file: String,
}

/// Name written in [`GridHeader::format`].
pub const GRID_FORMAT: &str = "eikoloc-velocity-grid";

/// A 3-D regular grid of Vp and Vs (km/s) in the local frame, trilinearly interpolated.
#[derive(Debug, Clone, PartialEq)]
pub struct GridModel {
    origin_km: [f64; 3],
    spacing_km: [f64; 3],
    counts: [usize; 3],
    /// P then S, each `nx * ny * nz`, z fastest.
    vp_km_s: Vec<f32>,
    vs_km_s: Vec<f32>,
}

fn invalid(m: String) -> VelocityError {
    VelocityError::Invalid(m)
}

/// Checks the geometry and returns the node count, before any allocation.
fn check_geometry(origin: [f64; 3], spacing: [f64; 3], counts: [u64; 3]) -> Result<usize, String> {
    if !origin.iter().all(|v| v.is_finite()) {
        return Err(format!("origin {origin:?} is not finite"));
    }
    if !spacing.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(format!(
            "spacing {spacing:?} km must be finite and positive"
        ));
    }
    if counts.contains(&0) {
        return Err(format!("node counts {counts:?} must all be at least 1"));
    }
    let total = counts.iter().try_fold(1u64, |acc, &n| acc.checked_mul(n));
    match total {
        Some(t) if t <= MAX_CELLS => {
            usize::try_from(t).map_err(|_| format!("{t} nodes do not fit in memory"))
        }
        _ => Err(format!(
            "node counts {counts:?} exceed the limit of {MAX_CELLS} nodes"
        )),
    }
}

fn check_values(values: &[f32], phase: Phase, counts: [usize; 3]) -> Result<(), String> {
    for (i, &v) in values.iter().enumerate() {
        if !v.is_finite() || v <= 0.0 {
            let iz = i % counts[2];
            let iy = (i / counts[2]) % counts[1];
            let ix = i / (counts[2] * counts[1]);
            return Err(format!("{phase} velocity {v} at node (ix {ix}, iy {iy}, iz {iz}) must be finite and positive"));
        }
    }
    Ok(())
}

impl GridModel {
    /// A checked grid from values in z-fastest order (see the module docs), km/s.
    pub fn new(
        origin_km: [f64; 3],
        spacing_km: [f64; 3],
        counts: [usize; 3],
        vp_km_s: Vec<f32>,
        vs_km_s: Vec<f32>,
    ) -> Result<Self, VelocityError> {
        let n = check_geometry(origin_km, spacing_km, counts.map(|c| c as u64)).map_err(invalid)?;
        if vp_km_s.len() != n || vs_km_s.len() != n {
            return Err(invalid(format!(
                "grid of {counts:?} needs {n} values per phase, got {} P and {} S",
                vp_km_s.len(),
                vs_km_s.len()
            )));
        }
        check_values(&vp_km_s, Phase::P, counts).map_err(invalid)?;
        check_values(&vs_km_s, Phase::S, counts).map_err(invalid)?;
        Ok(Self {
            origin_km,
            spacing_km,
            counts,
            vp_km_s,
            vs_km_s,
        })
    }

    /// Samples any velocity model at the nodes of a grid (e.g. to store a layered model as a
    /// grid, or to test the solver against a model it knows).
    pub fn sample(
        model: &dyn VelocityModel,
        origin_km: [f64; 3],
        spacing_km: [f64; 3],
        counts: [usize; 3],
    ) -> Result<Self, VelocityError> {
        let n = check_geometry(origin_km, spacing_km, counts.map(|c| c as u64)).map_err(invalid)?;
        let mut vp = Vec::with_capacity(n);
        let mut vs = Vec::with_capacity(n);
        for ix in 0..counts[0] {
            for iy in 0..counts[1] {
                for iz in 0..counts[2] {
                    let x = origin_km[0] + ix as f64 * spacing_km[0];
                    let y = origin_km[1] + iy as f64 * spacing_km[1];
                    let z = origin_km[2] + iz as f64 * spacing_km[2];
                    vp.push(model.velocity_km_s(Phase::P, x, y, z) as f32);
                    vs.push(model.velocity_km_s(Phase::S, x, y, z) as f32);
                }
            }
        }
        Self::new(origin_km, spacing_km, counts, vp, vs)
    }

    /// Position of node (0, 0, 0), km.
    pub fn origin_km(&self) -> [f64; 3] {
        self.origin_km
    }
    /// Node spacing (x, y, z), km.
    pub fn spacing_km(&self) -> [f64; 3] {
        self.spacing_km
    }
    /// Node counts (x, y, z).
    pub fn counts(&self) -> [usize; 3] {
        self.counts
    }
    /// Velocity at node (ix, iy, iz), km/s; `None` outside the grid.
    pub fn node_km_s(&self, phase: Phase, ix: usize, iy: usize, iz: usize) -> Option<f32> {
        let [nx, ny, nz] = self.counts;
        if ix >= nx || iy >= ny || iz >= nz {
            return None;
        }
        Some(self.values(phase)[(ix * ny + iy) * nz + iz])
    }

    fn values(&self, phase: Phase) -> &[f32] {
        match phase {
            Phase::P => &self.vp_km_s,
            Phase::S => &self.vs_km_s,
        }
    }

    /// Reads the eikoloc form from its JSON header path.
    pub fn read(header_path: &Path) -> Result<Self, VelocityError> {
        let file = header_path.to_path_buf();
        let text = std::fs::read_to_string(header_path).map_err(|source| VelocityError::Io {
            file: file.clone(),
            source,
        })?;
        let h: GridHeader = serde_json::from_str(&text).map_err(|e| VelocityError::Field {
            file: file.clone(),
            line: e.line(),
            field: String::new(),
            message: e.to_string(),
        })?;
        let ferr = |field: &str, message: String| VelocityError::Field {
            file: file.clone(),
            line: 0,
            field: field.into(),
            message,
        };
        if h.format != GRID_FORMAT {
            return Err(ferr(
                "format",
                format!("{:?} is not {GRID_FORMAT:?}", h.format),
            ));
        }
        if h.version != 1 {
            return Err(ferr(
                "version",
                format!("version {} is not supported (only 1)", h.version),
            ));
        }
        let n = check_geometry(h.origin_km, h.spacing_km, h.counts).map_err(|m| {
            VelocityError::File {
                file: file.clone(),
                message: m,
            }
        })?;
        let counts = h.counts.map(|c| c as usize);
        let data_path = header_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&h.data_file);
        let expected = 2 * n as u64 * 4;
        let bytes = read_exact_size(&data_path, expected)?;
        let (p, s) = bytes.split_at(n * 4);
        let vp = le_f32(p);
        let vs = le_f32(s);
        let ferr_data = |m: String| VelocityError::File {
            file: data_path.clone(),
            message: m,
        };
        check_values(&vp, Phase::P, counts).map_err(ferr_data)?;
        check_values(&vs, Phase::S, counts).map_err(ferr_data)?;
        Ok(Self {
            origin_km: h.origin_km,
            spacing_km: h.spacing_km,
            counts,
            vp_km_s: vp,
            vs_km_s: vs,
        })
    }

    /// Writes the eikoloc form: the header at `header_path`, the data beside it with the same
    /// stem and extension `.bin`.
    pub fn write(&self, header_path: &Path) -> Result<(), VelocityError> {
        let stem = header_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("grid");
        let data_name = format!("{stem}.bin");
        let data_path = header_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&data_name);
        let h = GridHeader {
            format: GRID_FORMAT.into(),
            version: 1,
            origin_km: self.origin_km,
            spacing_km: self.spacing_km,
            counts: self.counts.map(|c| c as u64),
            data_file: data_name,
        };
        let mut bytes = Vec::with_capacity((self.vp_km_s.len() + self.vs_km_s.len()) * 4);
        for v in self.vp_km_s.iter().chain(&self.vs_km_s) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(&data_path, bytes).map_err(|source| VelocityError::Io {
            file: data_path.clone(),
            source,
        })?;
        let text = serde_json::to_string_pretty(&h).map_err(|e| invalid(e.to_string()))?;
        std::fs::write(header_path, text + "\n").map_err(|source| VelocityError::Io {
            file: header_path.to_path_buf(),
            source,
        })
    }

    /// Reads NonLinLoc velocity/slowness grids: `p_path` for P (`.hdr`, `.buf` or the bare
    /// stem) and `s_path` for S, or, without an S grid, Vs = Vp / `vp_vs_ratio`.
    pub fn from_nonlinloc(
        p_path: &Path,
        s_path: Option<&Path>,
        vp_vs_ratio: f64,
    ) -> Result<Self, VelocityError> {
        let (geo, vp) = read_nonlinloc(p_path)?;
        let vs = match s_path {
            Some(sp) => {
                let (geo_s, vs) = read_nonlinloc(sp)?;
                if geo_s != geo {
                    return Err(VelocityError::File {
                        file: sp.to_path_buf(),
                        message: format!(
                            "S grid geometry {geo_s:?} differs from the P grid's {geo:?}"
                        ),
                    });
                }
                vs
            }
            None => {
                if !(vp_vs_ratio.is_finite() && vp_vs_ratio > 1.0) {
                    return Err(invalid(format!(
                        "Vp/Vs ratio {vp_vs_ratio} must be finite and above 1"
                    )));
                }
                vp.iter()
                    .map(|v| (*v as f64 / vp_vs_ratio) as f32)
                    .collect()
            }
        };
        let (origin, spacing, counts) = geo;
        Self::new(origin, spacing, counts, vp, vs).map_err(|e| VelocityError::File {
            file: p_path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

type Geometry = ([f64; 3], [f64; 3], [usize; 3]);

fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let s = path.to_string_lossy();
    let stem = s
        .strip_suffix(".hdr")
        .or_else(|| s.strip_suffix(".buf"))
        .unwrap_or(&s);
    PathBuf::from(format!("{stem}.{ext}"))
}

/// One NonLinLoc grid converted to velocity (km/s), with its geometry.
fn read_nonlinloc(path: &Path) -> Result<(Geometry, Vec<f32>), VelocityError> {
    let hdr = with_ext(path, "hdr");
    let buf = with_ext(path, "buf");
    let text = std::fs::read_to_string(&hdr).map_err(|source| VelocityError::Io {
        file: hdr.clone(),
        source,
    })?;
    let first = text.lines().next().unwrap_or("");
    let tok: Vec<&str> = first.split_whitespace().collect();
    let names = [
        "xNum", "yNum", "zNum", "xOrig", "yOrig", "zOrig", "dx", "dy", "dz", "gridType",
    ];
    if tok.len() < 10 {
        return Err(VelocityError::Field {
            file: hdr,
            line: 1,
            field: names.get(tok.len()).unwrap_or(&"").to_string(),
            message: format!(
                "expected `{} [FLOAT|DOUBLE]`, got {} fields",
                names.join(" "),
                tok.len()
            ),
        });
    }
    let ferr = |k: usize, m: String| VelocityError::Field {
        file: hdr.clone(),
        line: 1,
        field: names[k].into(),
        message: m,
    };
    let mut counts = [0u64; 3];
    for k in 0..3 {
        counts[k] = tok[k]
            .parse()
            .map_err(|_| ferr(k, format!("{:?} is not a whole number", tok[k])))?;
    }
    let mut nums = [0.0f64; 6];
    for k in 0..6 {
        nums[k] = tok[3 + k]
            .parse()
            .map_err(|_| ferr(3 + k, format!("{:?} is not a number", tok[3 + k])))?;
    }
    let origin = [nums[0], nums[1], nums[2]];
    let spacing = [nums[3], nums[4], nums[5]];
    let n = check_geometry(origin, spacing, counts).map_err(|m| VelocityError::File {
        file: hdr.clone(),
        message: m,
    })?;
    let grid_type = tok[9].to_ascii_uppercase();
    let width = match tok.get(10).map(|s| s.to_ascii_uppercase()) {
        None => 4,
        Some(t) if t == "FLOAT" => 4,
        Some(t) if t == "DOUBLE" => 8,
        Some(t) => {
            return Err(VelocityError::Field {
                file: hdr,
                line: 1,
                field: "floatType".into(),
                message: format!("{t:?} is neither FLOAT nor DOUBLE"),
            })
        }
    };
    let to_velocity: Box<dyn Fn(f64) -> f64> = match grid_type.as_str() {
        "VELOCITY" => Box::new(|v| v),
        "VELOCITY_METERS" => Box::new(|v| v / 1000.0),
        "SLOWNESS" => Box::new(|s| 1.0 / s),
        "SLOW_LEN" => {
            if (spacing[0] - spacing[1]).abs() > 1e-9 * spacing[0] || (spacing[0] - spacing[2]).abs() > 1e-9 * spacing[0] {
                return Err(ferr(9, format!("SLOW_LEN grids need cubic cells, got spacing {spacing:?}")));
            }
            let h = spacing[0];
            Box::new(move |sl| h / sl)
        }
        other => return Err(ferr(9, format!("grid type {other:?} is not supported (VELOCITY, VELOCITY_METERS, SLOWNESS, SLOW_LEN)"))),
    };
    let bytes = read_exact_size(&buf, n as u64 * width as u64)?;
    let counts_us = counts.map(|c| c as usize);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in bytes.chunks_exact(width).enumerate() {
        let raw = if width == 4 {
            f32::from_le_bytes(chunk.try_into().expect("4-byte chunk")) as f64
        } else {
            f64::from_le_bytes(chunk.try_into().expect("8-byte chunk"))
        };
        let v = to_velocity(raw);
        if !v.is_finite() || v <= 0.0 || !raw.is_finite() {
            let iz = i % counts_us[2];
            let iy = (i / counts_us[2]) % counts_us[1];
            let ix = i / (counts_us[2] * counts_us[1]);
            return Err(VelocityError::File {
                file: buf,
                message: format!("{grid_type} value {raw} at node (ix {ix}, iy {iy}, iz {iz}) does not give a finite positive velocity"),
            });
        }
        out.push(v as f32);
    }
    Ok(((origin, spacing, counts_us), out))
}

/// The whole file, refusing it unless it is exactly `expected` bytes (checked before reading).
fn read_exact_size(path: &Path, expected: u64) -> Result<Vec<u8>, VelocityError> {
    let meta = std::fs::metadata(path).map_err(|source| VelocityError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    if meta.len() != expected {
        let what = if meta.len() < expected {
            "truncated"
        } else {
            "too long"
        };
        return Err(VelocityError::File {
            file: path.to_path_buf(),
            message: format!(
                "{what}: {} bytes, the header's grid needs exactly {expected}",
                meta.len()
            ),
        });
    }
    std::fs::read(path).map_err(|source| VelocityError::Io {
        file: path.to_path_buf(),
        source,
    })
}

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4-byte chunk")))
        .collect()
}

/// Cell index and fraction along one axis, clamped to the grid.
#[inline]
fn locate(x: f64, x0: f64, h: f64, n: usize) -> (usize, f64) {
    if n == 1 {
        return (0, 0.0);
    }
    let u = ((x - x0) / h).clamp(0.0, (n - 1) as f64);
    let i = (u.floor() as usize).min(n - 2);
    (i, u - i as f64)
}

impl VelocityModel for GridModel {
    fn velocity_km_s(&self, phase: Phase, x_km: f64, y_km: f64, z_km: f64) -> f64 {
        let v = self.values(phase);
        let [nx, ny, nz] = self.counts;
        let (ix, fx) = locate(x_km, self.origin_km[0], self.spacing_km[0], nx);
        let (iy, fy) = locate(y_km, self.origin_km[1], self.spacing_km[1], ny);
        let (iz, fz) = locate(z_km, self.origin_km[2], self.spacing_km[2], nz);
        let sx = usize::from(nx > 1);
        let sy = usize::from(ny > 1);
        let sz = usize::from(nz > 1);
        let at = |a: usize, b: usize, c: usize| v[((ix + a) * ny + iy + b) * nz + iz + c] as f64;
        let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
        let c00 = lerp(at(0, 0, 0), at(0, 0, sz), fz);
        let c01 = lerp(at(0, sy, 0), at(0, sy, sz), fz);
        let c10 = lerp(at(sx, 0, 0), at(sx, 0, sz), fz);
        let c11 = lerp(at(sx, sy, 0), at(sx, sy, sz), fz);
        lerp(lerp(c00, c01, fy), lerp(c10, c11, fy), fx)
    }

    fn is_one_dimensional(&self) -> bool {
        false
    }

    fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(
            format!(
                "grid\n{:?}\n{:?}\n{:?}\n",
                self.origin_km, self.spacing_km, self.counts
            )
            .as_bytes(),
        );
        for v in self.vp_km_s.iter().chain(&self.vs_km_s) {
            h.update(v.to_le_bytes());
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::velocity::GradientModel;

    #[test]
    fn trilinear_reproduces_linear_fields_and_clamps() {
        // a linear velocity field is reproduced exactly by trilinear interpolation
        let f = |x: f64, y: f64, z: f64| 5.0 + 0.01 * x - 0.02 * y + 0.05 * z;
        let counts = [4, 3, 5];
        let (o, h) = ([-2.0, 1.0, -1.0], [1.5, 2.0, 0.5]);
        let mut vp = Vec::new();
        for ix in 0..4 {
            for iy in 0..3 {
                for iz in 0..5 {
                    vp.push(f(
                        o[0] + ix as f64 * h[0],
                        o[1] + iy as f64 * h[1],
                        o[2] + iz as f64 * h[2],
                    ) as f32);
                }
            }
        }
        let vs: Vec<f32> = vp.iter().map(|v| v / 1.8).collect();
        let g = GridModel::new(o, h, counts, vp, vs).unwrap();
        for &(x, y, z) in &[(-1.3, 2.2, 0.1), (2.4, 4.9, 0.99), (-2.0, 1.0, -1.0)] {
            assert!((g.velocity_km_s(Phase::P, x, y, z) - f(x, y, z)).abs() < 1e-5);
        }
        // outside: the nearest edge value
        assert!((g.velocity_km_s(Phase::P, -100.0, 2.0, 0.0) - f(-2.0, 2.0, 0.0)).abs() < 1e-5);
        assert!((g.velocity_km_s(Phase::S, 0.0, 2.0, 99.0) - f(0.0, 2.0, 1.0) / 1.8).abs() < 1e-5);
    }

    #[test]
    fn degenerate_axes_are_allowed() {
        let m = GradientModel::new(0.0, 5.0, 3.0, 0.1, 0.05).unwrap();
        let g = GridModel::sample(&m, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1, 1, 11]).unwrap();
        assert!((g.velocity_km_s(Phase::P, 7.0, -3.0, 4.5) - 5.45).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_values_and_sizes() {
        let e = GridModel::new(
            [0.0; 3],
            [1.0; 3],
            [2, 1, 1],
            vec![5.0, f32::NAN],
            vec![3.0, 3.0],
        )
        .unwrap_err();
        assert!(e.to_string().contains("ix 1"), "{e}");
        assert!(GridModel::new(
            [0.0; 3],
            [1.0; 3],
            [2, 1, 1],
            vec![5.0, 0.0],
            vec![3.0, 3.0]
        )
        .is_err());
        assert!(GridModel::new([0.0; 3], [1.0; 3], [2, 1, 1], vec![5.0], vec![3.0, 3.0]).is_err());
        assert!(
            GridModel::new([0.0; 3], [0.0, 1.0, 1.0], [1, 1, 1], vec![5.0], vec![3.0]).is_err()
        );
        let e = check_geometry([0.0; 3], [1.0; 3], [1 << 20, 1 << 20, 4]).unwrap_err();
        assert!(e.contains("exceed"), "{e}");
        assert!(check_geometry([0.0; 3], [1.0; 3], [u64::MAX, 2, 2]).is_err());
    }
}
