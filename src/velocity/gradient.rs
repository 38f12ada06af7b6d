//! Constant-gradient media: v(z) = v0 + k (z - z0), the analytic oracle's model.

use serde::{Deserialize, Serialize};

use super::{sha256_hex, VelocityError, VelocityModel};
use crate::domain::Phase;

/// Velocity increasing linearly with depth; `gradient_per_s` may be 0 (homogeneous).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradientModel {
    /// Reference depth, km.
    pub z0_km: f64,
    /// P velocity at `z0_km`, km/s.
    pub vp0_km_s: f64,
    /// S velocity at `z0_km`, km/s.
    pub vs0_km_s: f64,
    /// dv/dz for P, 1/s (km/s per km).
    pub gradient_p_per_s: f64,
    /// dv/dz for S, 1/s.
    pub gradient_s_per_s: f64,
}

impl GradientModel {
    /// Checked model.
    pub fn new(z0_km: f64, vp0: f64, vs0: f64, gp: f64, gs: f64) -> Result<Self, VelocityError> {
        if ![z0_km, vp0, vs0, gp, gs].iter().all(|v| v.is_finite())
            || vp0 <= 0.0
            || vs0 <= 0.0
            || vs0 >= vp0
        {
            return Err(VelocityError::Invalid(format!(
                "gradient model needs finite 0 < vs0 < vp0 (got vp0 {vp0}, vs0 {vs0})"
            )));
        }
        Ok(Self {
            z0_km,
            vp0_km_s: vp0,
            vs0_km_s: vs0,
            gradient_p_per_s: gp,
            gradient_s_per_s: gs,
        })
    }
    /// A homogeneous medium.
    pub fn homogeneous(vp: f64, vs: f64) -> Result<Self, VelocityError> {
        Self::new(0.0, vp, vs, 0.0, 0.0)
    }
    /// (v0, k) for a phase.
    pub fn params(&self, phase: Phase) -> (f64, f64) {
        match phase {
            Phase::P => (self.vp0_km_s, self.gradient_p_per_s),
            Phase::S => (self.vs0_km_s, self.gradient_s_per_s),
        }
    }
}

impl VelocityModel for GradientModel {
    fn velocity_km_s(&self, phase: Phase, _x: f64, _y: f64, z_km: f64) -> f64 {
        let (v0, k) = self.params(phase);
        v0 + k * (z_km - self.z0_km)
    }
    fn is_one_dimensional(&self) -> bool {
        true
    }
    fn content_hash(&self) -> String {
        sha256_hex(&format!("gradient\n{:?}", self))
    }
}
