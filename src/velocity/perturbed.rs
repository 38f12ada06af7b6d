//! A 3-D model made from a 1-D layered one: interfaces that dip and step across a fault, and
//! smooth lateral velocity perturbations of a few percent. The "truth" of the model-error
//! benchmark (events made in it, located with the 1-D model), so the locator meets traveltime
//! errors it cannot fit, as on real data.
//!
//! Frame: the local frame (x km east, y km north, z km depth below sea level).
//!
//! At (x, y, z) the velocity is `v1d(z - w(x, y)) * (1 + a(x, y, z))` where
//! * `w(x, y) = tan(dip) * s + offset/2 * tanh(s_f / width)` shifts every interface down by
//!   `w` (s: distance along the dip azimuth; s_f: signed distance from a fault through the
//!   origin striking along `fault_strike_deg`);
//! * `a(x, y, z)` is a sum of three plane-wave modes with wavelength `wavelength_km`, random
//!   directions and phases (seeded), normalised so its largest possible value is
//!   `lateral_fraction`; S takes the same pattern scaled by `s_factor`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{sha256_hex, LayeredModel, VelocityError, VelocityModel};
use crate::domain::Phase;

/// How a layered model is perturbed into the 3-D benchmark truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Perturbation {
    /// Largest relative lateral velocity change (0.04 = 4 %).
    pub lateral_fraction: f64,
    /// Wavelength of the lateral pattern, km.
    pub wavelength_km: f64,
    /// S perturbation relative to P (1 = same relative change).
    pub s_factor: f64,
    /// Dip of every interface, degrees.
    pub dip_deg: f64,
    /// Azimuth of the dip direction (down-dip), degrees east of north.
    pub dip_azimuth_deg: f64,
    /// Vertical offset of the interfaces across the fault, km (down on the fault's east side).
    pub fault_offset_km: f64,
    /// Strike of the vertical fault through the origin, degrees east of north.
    pub fault_strike_deg: f64,
    /// Half-width over which the offset is smoothed, km.
    pub fault_width_km: f64,
    /// Seed of the lateral pattern's directions and phases.
    pub seed: u64,
}

impl Default for Perturbation {
    /// The benchmark's truth: 3 % lateral changes at 30 km wavelength (S 3.6 %), interfaces
    /// dipping 1.5 degrees to the north-east and offset 0.5 km across a NW-striking fault.
    fn default() -> Self {
        Self {
            lateral_fraction: 0.03,
            wavelength_km: 30.0,
            s_factor: 1.2,
            dip_deg: 1.5,
            dip_azimuth_deg: 45.0,
            fault_offset_km: 0.5,
            fault_strike_deg: 320.0,
            fault_width_km: 2.0,
            seed: 1,
        }
    }
}

/// A layered model made three-dimensional by a [`Perturbation`].
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbedModel {
    base: LayeredModel,
    p: Perturbation,
    /// (kx, ky, kz, phase) of each mode, rad/km and rad.
    modes: [[f64; 4]; 3],
}

impl PerturbedModel {
    /// Checks the perturbation: finite, lateral fraction in [0, 0.5), positive wavelength and
    /// fault width, |dip| < 45 degrees.
    pub fn new(base: LayeredModel, p: Perturbation) -> Result<Self, VelocityError> {
        let finite = [
            p.lateral_fraction,
            p.wavelength_km,
            p.s_factor,
            p.dip_deg,
            p.dip_azimuth_deg,
            p.fault_offset_km,
            p.fault_strike_deg,
            p.fault_width_km,
        ]
        .iter()
        .all(|v| v.is_finite());
        if !finite
            || !(0.0..0.5).contains(&p.lateral_fraction)
            || !(0.0..0.5).contains(&(p.lateral_fraction * p.s_factor.abs()))
            || p.wavelength_km <= 0.0
            || p.fault_width_km <= 0.0
            || p.dip_deg.abs() >= 45.0
        {
            return Err(VelocityError::Invalid(format!(
                "perturbation needs finite values, 0 <= lateral fraction (also times s_factor) < 0.5, \
                 positive wavelength and fault width, |dip| < 45 degrees: {p:?}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let k = std::f64::consts::TAU / p.wavelength_km;
        let mut modes = [[0.0; 4]; 3];
        for m in modes.iter_mut() {
            let az: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
            // mostly lateral: a gentle vertical component keeps the pattern 3-D
            let tilt: f64 = rng.gen_range(-0.3..0.3);
            *m = [
                k * az.sin() * tilt.cos(),
                k * az.cos() * tilt.cos(),
                k * tilt.sin(),
                rng.gen_range(0.0..std::f64::consts::TAU),
            ];
        }
        Ok(Self { base, p, modes })
    }

    /// The perturbation.
    pub fn perturbation(&self) -> &Perturbation {
        &self.p
    }

    /// The unperturbed layered model.
    pub fn base(&self) -> &LayeredModel {
        &self.base
    }

    /// Downward shift of every interface at (x, y), km.
    pub fn interface_shift_km(&self, x_km: f64, y_km: f64) -> f64 {
        let (sa, ca) = self.p.dip_azimuth_deg.to_radians().sin_cos();
        let (ss, cs) = self.p.fault_strike_deg.to_radians().sin_cos();
        let along_dip = x_km * sa + y_km * ca;
        // signed distance to the fault, positive to the right of the strike (east for north)
        let across = x_km * cs - y_km * ss;
        self.p.dip_deg.to_radians().tan() * along_dip
            + 0.5 * self.p.fault_offset_km * (across / self.p.fault_width_km).tanh()
    }

    /// Relative lateral velocity change of P at a point (S: times `s_factor`).
    pub fn lateral_change(&self, x_km: f64, y_km: f64, z_km: f64) -> f64 {
        let s: f64 = self
            .modes
            .iter()
            .map(|m| (m[0] * x_km + m[1] * y_km + m[2] * z_km + m[3]).sin())
            .sum();
        self.p.lateral_fraction * s / self.modes.len() as f64
    }
}

impl VelocityModel for PerturbedModel {
    fn velocity_km_s(&self, phase: Phase, x_km: f64, y_km: f64, z_km: f64) -> f64 {
        let v = self.base.velocity_km_s(
            phase,
            x_km,
            y_km,
            z_km - self.interface_shift_km(x_km, y_km),
        );
        let f = match phase {
            Phase::P => 1.0,
            Phase::S => self.p.s_factor,
        };
        v * (1.0 + f * self.lateral_change(x_km, y_km, z_km))
    }
    fn is_one_dimensional(&self) -> bool {
        false
    }
    fn content_hash(&self) -> String {
        sha256_hex(&format!(
            "perturbed\n{}\n{:?}",
            self.base.to_csv_string(),
            self.p
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::velocity::Layer;

    fn base() -> LayeredModel {
        LayeredModel::new(vec![
            Layer {
                depth_top_km: 0.0,
                vp_km_s: 5.0,
                vs_km_s: 2.9,
            },
            Layer {
                depth_top_km: 10.0,
                vp_km_s: 6.5,
                vs_km_s: 3.75,
            },
        ])
        .unwrap()
    }

    /// No perturbation gives back the layered model everywhere.
    #[test]
    fn zero_perturbation_is_the_base_model() {
        let p = Perturbation {
            lateral_fraction: 0.0,
            dip_deg: 0.0,
            fault_offset_km: 0.0,
            ..Default::default()
        };
        let m = PerturbedModel::new(base(), p).unwrap();
        for (x, y, z) in [(0.0, 0.0, 1.0), (30.0, -12.0, 9.99), (-40.0, 7.0, 10.01)] {
            for ph in Phase::ALL {
                assert_eq!(
                    m.velocity_km_s(ph, x, y, z),
                    base().velocity_km_s(ph, x, y, z)
                );
            }
        }
    }

    /// The lateral change stays within its stated bound and reaches a good part of it; the
    /// interface moves by the dip and the fault offset.
    #[test]
    fn lateral_change_is_bounded_and_interfaces_move() {
        let p = Perturbation::default();
        let m = PerturbedModel::new(base(), p).unwrap();
        let mut largest: f64 = 0.0;
        for i in 0..60 {
            for j in 0..60 {
                let (x, y) = (i as f64 * 2.0 - 60.0, j as f64 * 2.0 - 60.0);
                let a = m.lateral_change(x, y, 5.0);
                assert!(a.abs() <= p.lateral_fraction + 1e-12);
                largest = largest.max(a.abs());
            }
        }
        assert!(largest > 0.5 * p.lateral_fraction, "{largest}");
        // far from the fault along its normal the offset is complete
        let (ss, cs) = p.fault_strike_deg.to_radians().sin_cos();
        let far = 30.0;
        let east = m.interface_shift_km(far * cs, -far * ss);
        let west = m.interface_shift_km(-far * cs, far * ss);
        let (sa, ca) = p.dip_azimuth_deg.to_radians().sin_cos();
        let dip_part = |x: f64, y: f64| p.dip_deg.to_radians().tan() * (x * sa + y * ca);
        let jump = (east - dip_part(far * cs, -far * ss)) - (west - dip_part(-far * cs, far * ss));
        assert!((jump - p.fault_offset_km).abs() < 1e-6, "{jump}");
        // the 10 km interface sits at 10 + shift: just above it the upper velocity (perturbed)
        let (x, y) = (12.0, 5.0);
        let zi = 10.0 + m.interface_shift_km(x, y);
        let v_above = m.velocity_km_s(Phase::P, x, y, zi - 1e-6);
        let v_below = m.velocity_km_s(Phase::P, x, y, zi + 1e-6);
        let a = m.lateral_change(x, y, zi);
        assert!((v_above - 5.0 * (1.0 + a)).abs() < 1e-6, "{v_above}");
        assert!((v_below - 6.5 * (1.0 + a)).abs() < 1e-6, "{v_below}");
        let s = m.velocity_km_s(Phase::S, x, y, zi - 1e-6);
        assert!((s - 2.9 * (1.0 + p.s_factor * a)).abs() < 1e-6, "{s}");
    }

    #[test]
    fn bad_perturbations_are_refused() {
        for p in [
            Perturbation {
                lateral_fraction: 0.6,
                ..Default::default()
            },
            Perturbation {
                wavelength_km: 0.0,
                ..Default::default()
            },
            Perturbation {
                dip_deg: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(PerturbedModel::new(base(), p).is_err(), "{p:?}");
        }
    }
}
