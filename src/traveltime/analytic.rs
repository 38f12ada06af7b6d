//! Closed-form traveltimes in homogeneous and constant-gradient media: the oracles every
//! other implementation is tested against.
//!
//! For v(z) = v0 + k (z - z0) rays are circular arcs and
//! T = acosh(1 + k^2 D^2 / (2 v_s v_r)) / |k|, with D the straight-line distance and v_s, v_r
//! the velocities at source and receiver (e.g. Fomel et al. 2009); k = 0 gives D / v.

use super::{check_finite, TimeAndGradient, TraveltimeError, TraveltimeModel};
use crate::domain::{LocalPoint, Phase};
use crate::velocity::GradientModel;

/// Exact traveltimes for a [`GradientModel`] (homogeneous when the gradient is 0).
#[derive(Debug, Clone)]
pub struct AnalyticModel {
    model: GradientModel,
}

impl AnalyticModel {
    /// An oracle for `model`; velocities must stay positive where it is queried.
    pub fn new(model: GradientModel) -> Self {
        Self { model }
    }

    fn eval(
        &self,
        phase: Phase,
        s: LocalPoint,
        r: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        check_finite(&s)?;
        check_finite(&r)?;
        let (v0, k) = self.model.params(phase);
        let vs = v0 + k * (s.z_km - self.model.z0_km);
        let vr = v0 + k * (r.z_km - self.model.z0_km);
        if vs <= 0.0 || vr <= 0.0 {
            return Err(TraveltimeError::Other(format!(
                "velocity not positive at source ({vs}) or receiver ({vr})"
            )));
        }
        let d = [s.x_km - r.x_km, s.y_km - r.y_km, s.z_km - r.z_km];
        Ok(Self::eval_core(d, vs, vr, k))
    }

    /// (v0, k, z0) of `phase`: v(z) = v0 + k (z - z0), km/s, 1/s, km.
    pub(crate) fn params(&self, phase: Phase) -> (f64, f64, f64) {
        let (v0, k) = self.model.params(phase);
        (v0, k, self.model.z0_km)
    }

    /// T and dT/d(source) for source-minus-receiver offset `d` (km), velocities `vs`, `vr`
    /// (km/s, positive: the caller checked) at source and receiver and gradient `k` (1/s);
    /// no checks, for hot loops that validated their inputs once.
    #[inline]
    pub(crate) fn eval_core(d: [f64; 3], vs: f64, vr: f64, k: f64) -> TimeAndGradient {
        let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
        let eps = k * k * d2 / (2.0 * vs * vr);
        if eps < 1e-12 {
            // series limit: T = D / sqrt(vs vr) (1 - eps/12 + ...), relative error < 1e-13
            let dist = d2.sqrt();
            let t = dist / (vs * vr).sqrt();
            let mut g = [0.0; 3];
            if dist > 0.0 {
                for i in 0..3 {
                    g[i] = d[i] / (dist * (vs * vr).sqrt());
                }
            }
            g[2] -= 0.5 * t * k / vs;
            return TimeAndGradient {
                t_s: t,
                grad_s_per_km: g,
            };
        }
        let a = 1.0 + eps;
        let ak = k.abs();
        let t = a.acosh() / ak;
        let dt_da = 1.0 / (ak * (a * a - 1.0).sqrt());
        let c = k * k / (vs * vr);
        let mut g = [c * d[0] * dt_da, c * d[1] * dt_da, c * d[2] * dt_da];
        // a also depends on the source depth through vs
        g[2] += dt_da * (-eps * k / vs);
        TimeAndGradient {
            t_s: t,
            grad_s_per_km: g,
        }
    }
}

impl TraveltimeModel for AnalyticModel {
    fn name(&self) -> String {
        if self.model.gradient_p_per_s == 0.0 && self.model.gradient_s_per_s == 0.0 {
            "analytic-homogeneous".into()
        } else {
            "analytic-gradient".into()
        }
    }
    fn traveltime_s(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<f64, TraveltimeError> {
        Ok(self.eval(phase, source, receiver)?.t_s)
    }
    fn traveltime_and_gradient(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        self.eval(phase, source, receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(m: &AnalyticModel, p: Phase, s: LocalPoint, r: LocalPoint) -> [f64; 3] {
        let h = 1e-4;
        let mut g = [0.0; 3];
        for k in 0..3 {
            let mut a = s.to_array();
            let mut b = a;
            a[k] += h;
            b[k] -= h;
            g[k] = (m.traveltime_s(p, LocalPoint::from_array(a), r).unwrap()
                - m.traveltime_s(p, LocalPoint::from_array(b), r).unwrap())
                / (2.0 * h);
        }
        g
    }

    #[test]
    fn homogeneous_is_distance_over_velocity() {
        let m = AnalyticModel::new(GradientModel::homogeneous(6.0, 3.5).unwrap());
        let t = m
            .traveltime_s(
                Phase::S,
                LocalPoint::new(3.0, 4.0, 12.0),
                LocalPoint::new(0.0, 0.0, 0.0),
            )
            .unwrap();
        assert!((t - 13.0 / 3.5).abs() < 1e-12);
    }

    #[test]
    fn vertical_ray_in_gradient_is_log_ratio() {
        // vertical path: T = ln(v_s / v_r) / k, an independent closed form
        let m = AnalyticModel::new(GradientModel::new(0.0, 4.0, 2.3, 0.1, 0.06).unwrap());
        let t = m
            .traveltime_s(
                Phase::P,
                LocalPoint::new(0.0, 0.0, 20.0),
                LocalPoint::new(0.0, 0.0, 0.0),
            )
            .unwrap();
        assert!((t - (6.0f64 / 4.0).ln() / 0.1).abs() < 1e-10, "{t}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        for k in [0.0, 1e-9, 0.05, 0.3] {
            let m = AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, k, k * 0.6).unwrap());
            for (s, r) in [
                (
                    LocalPoint::new(10.0, -3.0, 8.0),
                    LocalPoint::new(0.0, 0.0, -1.0),
                ),
                (
                    LocalPoint::new(-80.0, 20.0, 25.0),
                    LocalPoint::new(1.0, 2.0, 0.3),
                ),
            ] {
                for p in Phase::ALL {
                    let g = m.traveltime_and_gradient(p, s, r).unwrap().grad_s_per_km;
                    let f = fd(&m, p, s, r);
                    for i in 0..3 {
                        assert!(
                            (g[i] - f[i]).abs() < 1e-6,
                            "k {k} {p} comp {i}: {} vs {}",
                            g[i],
                            f[i]
                        );
                    }
                }
            }
        }
    }
}
