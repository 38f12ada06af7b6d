//! Exact first arrivals in flat 1-D media of constant-velocity layers: direct rays and head
//! waves, with analytic gradients.
//!
//! Frame: flat Earth, depth z positive down below sea level (km); r is the horizontal
//! (epicentral) distance, km. The top layer extends upward without limit (stations above the
//! model top), the last layer is a half-space.
//!
//! Why these paths are all: a minimum-time path in piecewise-constant layers is straight in each
//! layer, obeys Snell's law (one ray parameter p), and can turn only by sliding along an
//! interface in the faster medium (a head wave, p = 1 / v_slide); a kink (reflection) is never a
//! minimum because lifting it shortens both legs. So the first arrival is the minimum of:
//!
//! - the direct ray, monotonic in depth between the two end points;
//! - head waves along every interface at or below the deeper end point, sliding in the layer
//!   below the interface, when that layer is faster than every layer the legs cross;
//! - head waves along every interface at or above the shallower end point, sliding in the
//!   layer above it (a fast lid over a low-velocity zone), under the same condition.
//!
//! The direct ray is solved in t = tan(angle from vertical) in the fastest crossed layer:
//! X(t) is then increasing and concave, so Newton from t = 0 converges monotonically from below
//! (no overshoot, no bracketing needed) and stays well conditioned for nearly horizontal rays.
//! T = p r + tau(p) is used because its error is second order in the error of p.

use super::{check_finite, radial_to_cartesian, TimeAndGradient, TraveltimeError, TraveltimeModel};
use crate::domain::{LocalPoint, Phase};
use crate::velocity::LayeredModel;

/// Which path gave the first arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalPath {
    /// Direct ray between the end points (also the horizontal ray when both are at one depth).
    Direct,
    /// Head wave sliding just below interface `interface` (index of the layer whose top it is).
    HeadBelow {
        /// Index of the layer below the interface (the sliding layer).
        interface: usize,
    },
    /// Head wave sliding just above interface `interface`, in layer `interface - 1` (fast lid).
    HeadAbove {
        /// Index of the layer below the interface; the sliding layer is the one above.
        interface: usize,
    },
}

/// A first arrival in cylindrical coordinates with its derivatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadialArrival {
    /// Traveltime, s.
    pub t_s: f64,
    /// dT / d(epicentral distance) = ray parameter, s/km.
    pub dt_dr_s_per_km: f64,
    /// dT / d(source depth), s/km (positive when the ray leaves the source upward).
    pub dt_dzs_s_per_km: f64,
    /// dT / d(receiver depth), s/km (positive when the ray arrives from below).
    pub dt_dzr_s_per_km: f64,
    /// The winning path.
    pub path: ArrivalPath,
}

/// Per-phase tables, precomputed once so that a query allocates nothing.
#[derive(Debug, Clone)]
struct PhaseTables {
    /// Layer velocities, km/s.
    v: Vec<f64>,
    /// Slownesses 1/v, s/km.
    u: Vec<f64>,
    /// Head wave below interface j (slide in layer j, p = u[j]): for the layer k above j,
    /// `eta[j*n+k]` is the vertical slowness sqrt(u_k^2 - u_j^2) (s/km), `tau[j*n+k]` the summed
    /// eta*thickness of the full layers strictly between k and j (s), `x[j*n+k]` their summed
    /// horizontal offsets (km).
    below_eta: Vec<f64>,
    /// p / eta: horizontal offset per km of depth in layer k, km/km.
    below_tan: Vec<f64>,
    below_tau: Vec<f64>,
    below_x: Vec<f64>,
    /// Shallowest layer m such that all layers m..j are slower than layer j.
    below_top_ok: Vec<usize>,
    /// Head wave above interface j (slide in layer j-1, p = u[j-1]): for a layer k >= j, as
    /// above but over the full layers j..k-1.
    above_eta: Vec<f64>,
    above_tan: Vec<f64>,
    above_tau: Vec<f64>,
    above_x: Vec<f64>,
    /// Deepest layer m such that all layers j..=m are slower than layer j-1 (j-1 when none).
    above_bot_ok: Vec<usize>,
}

/// Exact first-arrival traveltimes for a [`LayeredModel`] (flat Earth), with analytic gradients.
///
/// Construction precomputes 6 n^2 numbers per phase for n layers (head-wave legs for every
/// interface and layer), so a query is O(n) with no allocation; that suits crustal models of up
/// to a few hundred layers (800 layers: ~60 MB). Queries are `Sync`: call from many threads.
#[derive(Debug, Clone)]
pub struct LayeredExact {
    model: LayeredModel,
    /// Layer tops, km depth.
    tops_km: Vec<f64>,
    phases: [PhaseTables; 2],
}

/// Vertical slowness sqrt(u_k^2 - p^2) in a form that keeps precision when u_k is close to p.
fn vertical_slowness(u_k: f64, p: f64) -> f64 {
    ((u_k - p) * (u_k + p)).max(0.0).sqrt()
}

impl PhaseTables {
    fn new(tops: &[f64], v: Vec<f64>) -> Self {
        let n = v.len();
        let u: Vec<f64> = v.iter().map(|x| 1.0 / x).collect();
        let thick = |m: usize| tops[m + 1] - tops[m];
        let mut below_eta = vec![0.0; n * n];
        let mut below_tan = vec![0.0; n * n];
        let mut below_tau = vec![0.0; n * n];
        let mut below_x = vec![0.0; n * n];
        let mut below_top_ok = vec![0; n];
        let mut above_eta = vec![0.0; n * n];
        let mut above_tan = vec![0.0; n * n];
        let mut above_tau = vec![0.0; n * n];
        let mut above_x = vec![0.0; n * n];
        let mut above_bot_ok = vec![0; n];
        for j in 1..n {
            // below interface j: layers k < j, walking upward while they stay slower than v_j
            let p = u[j];
            let mut top_ok = j;
            while top_ok > 0 && v[top_ok - 1] < v[j] {
                top_ok -= 1;
            }
            below_top_ok[j] = top_ok;
            let (mut tau, mut x) = (0.0, 0.0);
            for k in (top_ok..j).rev() {
                let eta = vertical_slowness(u[k], p);
                below_eta[j * n + k] = eta;
                below_tan[j * n + k] = p / eta;
                below_tau[j * n + k] = tau;
                below_x[j * n + k] = x;
                // a full layer k only counts for legs that start above it (k >= 1: layer 0 is
                // never crossed in full because it extends upward without limit)
                if k >= 1 {
                    tau += thick(k) * eta;
                    x += thick(k) * p / eta;
                }
            }
            // above interface j: layers k >= j, walking downward while slower than v_{j-1}
            let p = u[j - 1];
            let mut bot_ok = j - 1;
            while bot_ok + 1 < n && v[bot_ok + 1] < v[j - 1] {
                bot_ok += 1;
            }
            above_bot_ok[j] = bot_ok;
            let (mut tau, mut x) = (0.0, 0.0);
            for k in j..=bot_ok {
                let eta = vertical_slowness(u[k], p);
                above_eta[j * n + k] = eta;
                above_tan[j * n + k] = p / eta;
                above_tau[j * n + k] = tau;
                above_x[j * n + k] = x;
                if k + 1 < n {
                    tau += thick(k) * eta;
                    x += thick(k) * p / eta;
                }
            }
        }
        Self {
            v,
            u,
            below_eta,
            below_tan,
            below_tau,
            below_x,
            below_top_ok,
            above_eta,
            above_tan,
            above_tau,
            above_x,
            above_bot_ok,
        }
    }
}

impl LayeredExact {
    /// Precomputes the per-phase tables of `model`.
    pub fn new(model: LayeredModel) -> Self {
        let tops_km: Vec<f64> = model.layers().iter().map(|l| l.depth_top_km).collect();
        let vp = model.layers().iter().map(|l| l.vp_km_s).collect();
        let vs = model.layers().iter().map(|l| l.vs_km_s).collect();
        let phases = [
            PhaseTables::new(&tops_km, vp),
            PhaseTables::new(&tops_km, vs),
        ];
        Self {
            model,
            tops_km,
            phases,
        }
    }

    /// The velocity model.
    pub fn model(&self) -> &LayeredModel {
        &self.model
    }

    /// Layer containing depth z (z on an interface belongs to the layer below it).
    #[inline]
    fn index_below(&self, z: f64) -> usize {
        let t = &self.tops_km;
        let mut i = 0;
        while i + 1 < t.len() && z >= t[i + 1] {
            i += 1;
        }
        i
    }

    /// Layer containing depth z, z on an interface belonging to the layer above it.
    #[inline]
    fn index_above(&self, z: f64) -> usize {
        let t = &self.tops_km;
        let mut i = 0;
        while i + 1 < t.len() && z > t[i + 1] {
            i += 1;
        }
        i
    }

    /// Top of layer i, km; the top layer extends upward without limit.
    #[inline]
    fn top(&self, i: usize) -> f64 {
        if i == 0 {
            f64::NEG_INFINITY
        } else {
            self.tops_km[i]
        }
    }

    /// Bottom of layer i, km; the last layer is a half-space.
    #[inline]
    fn bottom(&self, i: usize) -> f64 {
        if i + 1 < self.tops_km.len() {
            self.tops_km[i + 1]
        } else {
            f64::INFINITY
        }
    }

    /// First-arrival time and derivatives as (T s, dT/dr s/km, dT/dz_source s/km) for epicentral
    /// distance `r_km`, source depth `zs_km` and receiver depth `zr_km` (= -elevation_m / 1000),
    /// all km, depth positive down below sea level.
    pub fn radial(
        &self,
        phase: Phase,
        r_km: f64,
        zs_km: f64,
        zr_km: f64,
    ) -> Result<(f64, f64, f64), TraveltimeError> {
        let a = self.radial_arrival(phase, r_km, zs_km, zr_km)?;
        Ok((a.t_s, a.dt_dr_s_per_km, a.dt_dzs_s_per_km))
    }

    /// First-arrival time only, s (same arguments as [`LayeredExact::radial`]).
    pub fn radial_time_s(
        &self,
        phase: Phase,
        r_km: f64,
        zs_km: f64,
        zr_km: f64,
    ) -> Result<f64, TraveltimeError> {
        Ok(self.radial_arrival(phase, r_km, zs_km, zr_km)?.t_s)
    }

    /// First arrival with both depth derivatives and the winning path (same arguments as
    /// [`LayeredExact::radial`]).
    pub fn radial_arrival(
        &self,
        phase: Phase,
        r_km: f64,
        zs_km: f64,
        zr_km: f64,
    ) -> Result<RadialArrival, TraveltimeError> {
        let mut best: Option<RadialArrival> = None;
        self.visit_paths(phase, r_km, zs_km, zr_km, |a| {
            if best.is_none_or(|b| a.t_s < b.t_s) {
                best = Some(a);
            }
            best.map_or(f64::INFINITY, |b| b.t_s)
        })?;
        // the direct ray always exists, so there is always a candidate
        best.ok_or_else(|| TraveltimeError::Other("no path found".into()))
    }

    /// Every path that exists between the end points (direct ray first, then head waves), not
    /// only the first arrival; allocates, so meant for diagnostics and tests, not hot loops.
    pub fn arrivals(
        &self,
        phase: Phase,
        r_km: f64,
        zs_km: f64,
        zr_km: f64,
    ) -> Result<Vec<RadialArrival>, TraveltimeError> {
        let mut all = Vec::new();
        self.visit_paths(phase, r_km, zs_km, zr_km, |a| {
            all.push(a);
            f64::INFINITY
        })?;
        Ok(all)
    }

    /// Calls `f` with the direct ray and every existing head wave; `f` returns a time bound,
    /// and head waves that cannot beat it (p r alone exceeds it) are skipped.
    #[inline]
    fn visit_paths(
        &self,
        phase: Phase,
        r_km: f64,
        zs_km: f64,
        zr_km: f64,
        mut f: impl FnMut(RadialArrival) -> f64,
    ) -> Result<(), TraveltimeError> {
        if !(r_km.is_finite() && zs_km.is_finite() && zr_km.is_finite()) {
            return Err(TraveltimeError::NonFinite);
        }
        if r_km < 0.0 {
            return Err(TraveltimeError::Other(format!(
                "negative epicentral distance {r_km} km"
            )));
        }
        let tab = &self.phases[phase.index()];
        let source_shallower = zs_km <= zr_km;
        let (zt, zb) = if source_shallower {
            (zs_km, zr_km)
        } else {
            (zr_km, zs_km)
        };
        // derivatives are computed with respect to the shallower / deeper end point
        let mut emit = |t_s: f64, p: f64, dzt: f64, dzb: f64, path: ArrivalPath| {
            let (dzs, dzr) = if source_shallower {
                (dzt, dzb)
            } else {
                (dzb, dzt)
            };
            f(RadialArrival {
                t_s,
                dt_dr_s_per_km: p,
                dt_dzs_s_per_km: dzs,
                dt_dzr_s_per_km: dzr,
                path,
            })
        };
        let (t, p, dzt, dzb) = self.direct(tab, r_km, zt, zb);
        let mut bound = emit(t, p, dzt, dzb, ArrivalPath::Direct);
        let n = self.tops_km.len();
        let it = self.index_below(zt);
        let ib_above = self.index_above(zb);
        // head waves below: interfaces j with tops[j] >= zb
        for j in (ib_above + 1)..n {
            if it < tab.below_top_ok[j] {
                // a layer on the path above j is at least as fast as layer j
                continue;
            }
            let p = tab.u[j];
            if p * r_km > bound {
                continue; // the legs only add time
            }
            let dj = self.tops_km[j];
            // leg from z (in layer k = index_below(z)) down to interface j
            let leg = |z: f64, k: usize| -> (f64, f64, f64) {
                if k >= j {
                    return (0.0, 0.0, 0.0);
                }
                let eta = tab.below_eta[j * n + k];
                let h = self.bottom(k).min(dj) - z;
                (
                    h * eta + tab.below_tau[j * n + k],
                    h * tab.below_tan[j * n + k] + tab.below_x[j * n + k],
                    eta,
                )
            };
            let (tau_t, x_t, eta_t) = leg(zt, it);
            let (tau_b, x_b, eta_b) = leg(zb, self.index_below(zb));
            if x_t + x_b > r_km {
                continue; // before the critical distance the head wave does not exist
            }
            bound = emit(
                p * r_km + tau_t + tau_b,
                p,
                -eta_t,
                -eta_b,
                ArrivalPath::HeadBelow { interface: j },
            );
        }
        // head waves above: interfaces j with tops[j] <= zt, sliding in layer j-1
        for j in 1..=it.min(n - 1) {
            if ib_above > tab.above_bot_ok[j] {
                continue;
            }
            let p = tab.u[j - 1];
            if p * r_km > bound {
                continue;
            }
            let dj = self.tops_km[j];
            // leg from interface j down to z (in layer k = index_above(z))
            let leg = |z: f64, k: usize| -> (f64, f64, f64) {
                if k < j {
                    return (0.0, 0.0, 0.0);
                }
                let eta = tab.above_eta[j * n + k];
                let h = z - self.top(k).max(dj);
                (
                    h * eta + tab.above_tau[j * n + k],
                    h * tab.above_tan[j * n + k] + tab.above_x[j * n + k],
                    eta,
                )
            };
            let (tau_t, x_t, eta_t) = leg(zt, self.index_above(zt));
            let (tau_b, x_b, eta_b) = leg(zb, ib_above);
            if x_t + x_b > r_km {
                continue;
            }
            bound = emit(
                p * r_km + tau_t + tau_b,
                p,
                eta_t,
                eta_b,
                ArrivalPath::HeadAbove { interface: j },
            );
        }
        Ok(())
    }

    /// Direct ray from depth zt up/down to zb >= zt: (T, p, dT/dzt, dT/dzb).
    fn direct(&self, tab: &PhaseTables, r: f64, zt: f64, zb: f64) -> (f64, f64, f64, f64) {
        let i0 = self.index_below(zt);
        if zb == zt {
            // horizontal ray inside a layer (on an interface the head-wave loops add the
            // faster side, with zero-length legs)
            let v = tab.v[i0];
            return (r / v, 1.0 / v, 0.0, 0.0);
        }
        let i1 = self.index_above(zb);
        if i0 == i1 {
            // one layer: a straight ray in closed form. Newton in tan(angle) would be ill
            // posed here when zb - zt is tiny against r (a source level with the station:
            // t ~ r / dz ~ 1e15), and rounding in v / vmax made X(t) saturate below r.
            let (dz, u) = (zb - zt, tab.u[i0]);
            let d = r.hypot(dz);
            return (d * u, u * r / d, -u * dz / d, u * dz / d);
        }
        let thick = |i: usize| zb.min(self.bottom(i)) - zt.max(self.top(i));
        let mut vmax = 0.0f64;
        for i in i0..=i1 {
            vmax = vmax.max(tab.v[i]);
        }
        if r == 0.0 {
            let mut t = 0.0;
            for i in i0..=i1 {
                t += thick(i) * tab.u[i];
            }
            return (t, 0.0, -tab.u[i0], tab.u[i1]);
        }
        let inv_vmax = 1.0 / vmax;
        // X(t) = H_f t + sum_i h_i a_i t / sqrt(1 + b_i t^2), a_i = v_i / vmax, b_i = 1 - a_i^2
        let eval = |t: f64| -> (f64, f64) {
            let mut x = 0.0;
            let mut dx = 0.0;
            for i in i0..=i1 {
                let h = thick(i);
                // a division, so the fastest layer gets a = 1 and b = 0 exactly: with
                // b ~ 1e-16 X(t) saturates for tiny h and Newton runs t to infinity (NaN)
                let a = tab.v[i] / vmax;
                let b = (1.0 - a) * (1.0 + a);
                let q = 1.0 / (1.0 + b * t * t).sqrt();
                x += h * a * t * q;
                dx += h * a * q * q * q;
            }
            (x, dx)
        };
        // the fastest layer has the largest angle, so tan(angle) there is at least that of the
        // straight line: a start left of the root, where Newton on a concave X stays monotone
        let mut t = r / (zb - zt);
        if !t.is_finite() {
            t = 0.0;
        }
        let tol = 1e-12 * r.max(1.0);
        for _iter in 0..200 {
            #[cfg(test)]
            NEWTON_ITERS.with(|c| c.set(c.get() + 1));
            let (x, dx) = eval(t);
            let res = r - x;
            if res.abs() <= tol {
                break;
            }
            let step = res / dx;
            // Capped: with the fastest layer of zero (or a hair's) thickness, an end on its
            // interface, X(t) stays below r for every finite t and Newton runs to infinity;
            // t * t then overflows and p, eta turn NaN. At the cap the ray grazes the
            // interface (p = 1 / vmax): the head wave along it, which is that path's time.
            let t_new = (t + step).max(0.5 * t).min(MAX_TAN);
            if (t_new - t).abs() <= 1e-15 * t || !t_new.is_finite() {
                break;
            }
            t = t_new;
        }
        let c = 1.0 / (1.0 + t * t).sqrt(); // cos of the angle in the fastest layer
        let p = t * c * inv_vmax;
        let eta_of = |i: usize| {
            let a = tab.v[i] / vmax;
            let b = (1.0 - a) * (1.0 + a);
            (1.0 + b * t * t).sqrt() * c * tab.u[i]
        };
        let mut tau = 0.0;
        for i in i0..=i1 {
            tau += thick(i) * eta_of(i);
        }
        // the shallow end leaves downward (deeper shallow end: shorter path), the deep end upward
        (p * r + tau, p, -eta_of(i0), eta_of(i1))
    }
}

/// Largest tangent of the ray angle in the fastest layer the direct-ray Newton search takes
/// (t * t stays finite).
const MAX_TAN: f64 = 1e100;

#[cfg(test)]
thread_local! {
    /// Newton evaluations, counted in tests to keep the solver's cost in check.
    static NEWTON_ITERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl TraveltimeModel for LayeredExact {
    fn name(&self) -> String {
        "exact-1d".into()
    }

    fn traveltime_s(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<f64, TraveltimeError> {
        check_finite(&source)?;
        check_finite(&receiver)?;
        self.radial_time_s(
            phase,
            source.horizontal_distance_km(&receiver),
            source.z_km,
            receiver.z_km,
        )
    }

    fn traveltime_and_gradient(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        check_finite(&source)?;
        check_finite(&receiver)?;
        let (t, dr, dz) = self.radial(
            phase,
            source.horizontal_distance_km(&receiver),
            source.z_km,
            receiver.z_km,
        )?;
        Ok(radial_to_cartesian(t, dr, dz, source, receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traveltime::AnalyticModel;
    use crate::velocity::{GradientModel, Layer};
    use rand::{Rng, SeedableRng};

    fn model(rows: &[(f64, f64, f64)]) -> LayeredModel {
        LayeredModel::new(
            rows.iter()
                .map(|&(z, vp, vs)| Layer {
                    depth_top_km: z,
                    vp_km_s: vp,
                    vs_km_s: vs,
                })
                .collect(),
        )
        .unwrap()
    }

    /// A model with a fast lid over a low-velocity zone, a thin layer and a half-space.
    fn lvz_model() -> LayeredModel {
        model(&[
            (-1.0, 4.0, 2.3),
            (2.0, 7.0, 4.1),
            (6.0, 5.0, 2.9),
            (9.0, 5.5, 3.2),
            (9.5, 6.6, 3.8),
            (25.0, 8.0, 4.6),
        ])
    }

    /// Independent first arrival by the tau-p (Legendre) form: every path that reaches interface
    /// j (reflection, or head wave when p reaches 1/v_j) has time max_p [p r + tau_j(p)], concave
    /// in p, found here by golden-section search; the direct ray likewise. No root finding, no
    /// precomputed tables.
    fn brute(m: &LayeredModel, phase: Phase, r: f64, zs: f64, zr: f64) -> f64 {
        let ls = m.layers();
        let n = ls.len();
        let top = |i: usize| {
            if i == 0 {
                f64::NEG_INFINITY
            } else {
                ls[i].depth_top_km
            }
        };
        let bot = |i: usize| {
            if i + 1 < n {
                ls[i + 1].depth_top_km
            } else {
                f64::INFINITY
            }
        };
        let overlap = |i: usize, a: f64, b: f64| (b.min(bot(i)) - a.max(top(i))).max(0.0);
        // thickness crossed in each layer by a path visiting depth interval [a, b] (twice for
        // two legs): returned as (layer, thickness)
        let (zt, zb) = (zs.min(zr), zs.max(zr));
        let legendre = |h: &[f64], pmax: f64| -> f64 {
            let f = |p: f64| {
                let mut t = p * r;
                for (i, &hi) in h.iter().enumerate() {
                    if hi > 0.0 {
                        let u = 1.0 / ls[i].velocity(phase);
                        t += hi * (u * u - p * p).max(0.0).sqrt();
                    }
                }
                t
            };
            let (mut a, mut b) = (0.0, pmax);
            let g = 0.5 * (5f64.sqrt() - 1.0);
            for _ in 0..200 {
                let c = b - g * (b - a);
                let d = a + g * (b - a);
                if f(c) < f(d) {
                    a = c;
                } else {
                    b = d;
                }
            }
            f(0.5 * (a + b))
        };
        let pcap = |h: &[f64]| {
            h.iter()
                .enumerate()
                .filter(|(_, &x)| x > 0.0)
                .map(|(i, _)| 1.0 / ls[i].velocity(phase))
                .fold(f64::INFINITY, f64::min)
        };
        let mut best = f64::INFINITY;
        let h: Vec<f64> = (0..n).map(|i| overlap(i, zt, zb)).collect();
        if zb > zt {
            best = best.min(legendre(&h, pcap(&h)));
        } else {
            best = best.min(r / ls[m.layer_index(zt)].velocity(phase));
        }
        for j in 1..n {
            let d = ls[j].depth_top_km;
            if d >= zb {
                let h: Vec<f64> = (0..n)
                    .map(|i| overlap(i, zt, d) + overlap(i, zb, d))
                    .collect();
                let cap = pcap(&h).min(1.0 / ls[j].velocity(phase));
                best = best.min(legendre(&h, cap));
            }
            if d <= zt {
                let h: Vec<f64> = (0..n)
                    .map(|i| overlap(i, d, zt) + overlap(i, d, zb))
                    .collect();
                let cap = pcap(&h).min(1.0 / ls[j - 1].velocity(phase));
                best = best.min(legendre(&h, cap));
            }
        }
        best
    }

    #[test]
    fn one_layer_equals_homogeneous_analytic() {
        let m = LayeredExact::new(model(&[(0.0, 6.0, 3.5)]));
        let a = AnalyticModel::new(GradientModel::homogeneous(6.0, 3.5).unwrap());
        for (s, r) in [
            (
                LocalPoint::new(3.0, 4.0, 12.0),
                LocalPoint::new(0.0, 0.0, 0.0),
            ),
            (
                LocalPoint::new(0.0, 0.0, 12.0),
                LocalPoint::new(0.0, 0.0, -2.5),
            ),
            (
                LocalPoint::new(-140.0, 20.0, 0.3),
                LocalPoint::new(1.0, 0.0, -3.0),
            ),
            (
                LocalPoint::new(50.0, 0.0, 5.0),
                LocalPoint::new(0.0, 0.0, 5.0),
            ),
            (
                LocalPoint::new(0.0, 0.0, 5.0),
                LocalPoint::new(0.0, 0.0, 5.0),
            ),
        ] {
            for p in Phase::ALL {
                let e = m.traveltime_and_gradient(p, s, r).unwrap();
                let o = a.traveltime_and_gradient(p, s, r).unwrap();
                assert!(
                    (e.t_s - o.t_s).abs() < 1e-12,
                    "{p} {s:?}: {} vs {}",
                    e.t_s,
                    o.t_s
                );
                for k in 0..3 {
                    assert!(
                        (e.grad_s_per_km[k] - o.grad_s_per_km[k]).abs() < 1e-9,
                        "{p} {s:?} comp {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_layer_crossover_matches_closed_form() {
        // surface source and receiver over one interface: x_c = 2 H sqrt((v2 + v1) / (v2 - v1))
        let (h, v1, v2) = (8.0, 5.0, 7.0);
        let m = LayeredExact::new(model(&[(0.0, v1, v1 / 1.75), (h, v2, v2 / 1.75)]));
        let xc = 2.0 * h * ((v2 + v1) / (v2 - v1)).sqrt();
        let t = m.radial_arrival(Phase::P, xc, 0.0, 0.0).unwrap();
        assert!((t.t_s - xc / v1).abs() < 1e-12);
        let before = m.radial_arrival(Phase::P, xc - 1e-6, 0.0, 0.0).unwrap();
        let after = m.radial_arrival(Phase::P, xc + 1e-6, 0.0, 0.0).unwrap();
        assert_eq!(before.path, ArrivalPath::Direct);
        assert_eq!(after.path, ArrivalPath::HeadBelow { interface: 1 });
        // head wave intercept time 2 H sqrt(1/v1^2 - 1/v2^2)
        let far = m.radial_arrival(Phase::P, 100.0, 0.0, 0.0).unwrap();
        let ti = 2.0 * h * (1.0 / (v1 * v1) - 1.0 / (v2 * v2)).sqrt();
        assert!((far.t_s - (100.0 / v2 + ti)).abs() < 1e-12);
        assert!((far.dt_dr_s_per_km - 1.0 / v2).abs() < 1e-15);
    }

    #[test]
    fn matches_independent_legendre_search() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut kinds = [0usize; 3];
        for lm in [LayeredModel::hadley_kanamori(), lvz_model()] {
            let m = LayeredExact::new(lm.clone());
            for _ in 0..400 {
                let r = if rng.gen_bool(0.1) {
                    0.0
                } else {
                    rng.gen_range(0.0..200.0)
                };
                // a third of the pairs inside the low-velocity zone (6-9 km) where lid head waves win
                let in_lvz = rng.gen_bool(0.3);
                let zs = if in_lvz {
                    rng.gen_range(5.5..9.5)
                } else {
                    rng.gen_range(-1.0..40.0)
                };
                let zr = if in_lvz {
                    rng.gen_range(5.5..9.5)
                } else if rng.gen_bool(0.6) {
                    rng.gen_range(-3.0..0.5)
                } else {
                    rng.gen_range(-1.0..40.0)
                };
                for p in Phase::ALL {
                    let a = m.radial_arrival(p, r, zs, zr).unwrap();
                    let b = brute(&lm, p, r, zs, zr);
                    assert!(
                        (a.t_s - b).abs() < 1e-7,
                        "{p} r {r} zs {zs} zr {zr}: exact {} brute {b}",
                        a.t_s
                    );
                    kinds[match a.path {
                        ArrivalPath::Direct => 0,
                        ArrivalPath::HeadBelow { .. } => 1,
                        ArrivalPath::HeadAbove { .. } => 2,
                    }] += 1;
                }
            }
        }
        // every kind of path must have been exercised, or the comparison proves little
        assert!(kinds.iter().all(|&k| k >= 20), "path kinds {kinds:?}");
    }

    /// Issue 4 regression: a source a few ulp below a receiver above the model top (the
    /// locator's box top is the highest station) gave NaN for velocities whose reciprocal
    /// rounds (the demo region's vs = 3.1791907...), and the NaN misfit won the locator's grid.
    #[test]
    fn issue4_source_level_with_receiver_gives_straight_ray() {
        let vs = 3.179190751445087;
        let m = LayeredExact::new(model(&[
            (0.0, 5.5, vs),
            (5.5, 6.3, 3.64),
            (16.0, 6.7, 3.87),
        ]));
        for &(r, dz) in &[(4.15, 3e-15), (4.15, -3e-15), (0.3, 1e-13), (60.0, 1e-9)] {
            let zr = -2.48;
            let a = m.radial_arrival(Phase::S, r, zr + dz, zr).unwrap();
            let d = r.hypot(dz);
            assert!((a.t_s - d / vs).abs() < 1e-12, "r {r} dz {dz}: {a:?}");
            assert!((a.dt_dr_s_per_km - r / (d * vs)).abs() < 1e-12, "{a:?}");
            assert!(
                a.dt_dzs_s_per_km.is_finite() && a.dt_dzs_s_per_km.abs() < 1e-6,
                "{a:?}"
            );
        }
    }

    #[test]
    fn degenerate_geometries() {
        let lm = lvz_model();
        let m = LayeredExact::new(lm.clone());
        for p in Phase::ALL {
            // on interfaces, horizontal, vertical, coincident
            for &(r, zs, zr) in &[
                (0.0, 5.0, 5.0),
                (30.0, 2.0, 2.0),
                (30.0, 6.0, 6.0),
                (30.0, 9.5, 0.0),
                (0.0, 9.5, -2.0),
                (0.0, 25.0, 2.0),
                (120.0, 25.0, 25.0),
                (1e-9, 3.0, 3.0 + 1e-12),
                (150.0, 4.0, 4.0 + 1e-13),
                (1e-12, 30.0, -1.0),
            ] {
                let e = m.radial_time_s(p, r, zs, zr).unwrap();
                let b = brute(&lm, p, r, zs, zr);
                assert!(
                    e.is_finite() && (e - b).abs() < 1e-7,
                    "{p} r {r} zs {zs} zr {zr}: exact {e} brute {b}"
                );
                let rev = m.radial_time_s(p, r, zr, zs).unwrap();
                assert!((e - rev).abs() < 1e-12, "reciprocity {p} {r} {zs} {zr}");
            }
            // both ends inside the low-velocity zone: the lid above carries the first arrival
            let a = m.radial_arrival(p, 60.0, 7.0, 8.5).unwrap();
            assert_eq!(a.path, ArrivalPath::HeadAbove { interface: 2 }, "{p}");
            // horizontal ray along the fast lid's base slides in the lid
            let t = m.radial_time_s(p, 30.0, 6.0, 6.0).unwrap();
            assert!((t - 30.0 / lm.layers()[1].velocity(p)).abs() < 1e-12);
        }
        assert!(m.radial(Phase::P, -1.0, 1.0, 0.0).is_err());
        assert!(m.radial(Phase::P, f64::NAN, 1.0, 0.0).is_err());
        assert!(m.radial(Phase::S, 1.0, f64::INFINITY, 0.0).is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let h = 1e-5;
        let mut checked = 0;
        for lm in [LayeredModel::hadley_kanamori(), lvz_model()] {
            let m = LayeredExact::new(lm);
            for _ in 0..500 {
                let r = rng.gen_range(0.5..180.0);
                let zs = rng.gen_range(-0.5..35.0);
                let zr = if rng.gen_bool(0.5) {
                    rng.gen_range(-3.0..0.0)
                } else {
                    rng.gen_range(-0.5..35.0)
                };
                for p in Phase::ALL {
                    let a = m.radial_arrival(p, r, zs, zr).unwrap();
                    // skip points where a different path wins within the FD stencil (kinks)
                    let same = |r2: f64, zs2: f64, zr2: f64| {
                        m.radial_arrival(p, r2, zs2, zr2).unwrap().path == a.path
                    };
                    let ok = same(r + h, zs, zr)
                        && same(r - h, zs, zr)
                        && same(r, zs + h, zr)
                        && same(r, zs - h, zr)
                        && same(r, zs, zr + h)
                        && same(r, zs, zr - h);
                    let t = |r2: f64, zs2: f64, zr2: f64| m.radial_time_s(p, r2, zs2, zr2).unwrap();
                    if !ok || lm_near_interface(&m, zs, h) || lm_near_interface(&m, zr, h) {
                        continue;
                    }
                    let fr = (t(r + h, zs, zr) - t(r - h, zs, zr)) / (2.0 * h);
                    let fzs = (t(r, zs + h, zr) - t(r, zs - h, zr)) / (2.0 * h);
                    let fzr = (t(r, zs, zr + h) - t(r, zs, zr - h)) / (2.0 * h);
                    let msg = format!("{p} r {r} zs {zs} zr {zr} path {:?}", a.path);
                    assert!(
                        (a.dt_dr_s_per_km - fr).abs() < 1e-6,
                        "dr {msg}: {} vs {fr}",
                        a.dt_dr_s_per_km
                    );
                    assert!(
                        (a.dt_dzs_s_per_km - fzs).abs() < 1e-6,
                        "dzs {msg}: {} vs {fzs}",
                        a.dt_dzs_s_per_km
                    );
                    assert!(
                        (a.dt_dzr_s_per_km - fzr).abs() < 1e-6,
                        "dzr {msg}: {} vs {fzr}",
                        a.dt_dzr_s_per_km
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1500, "only {checked} points checked");
    }

    #[test]
    fn newton_converges_in_few_iterations() {
        // Ridgecrest-like model: nearly equal velocities in adjacent layers make X(t) saturate,
        // the hard case for the direct-ray iteration
        let lm = model(&[
            (0.0, 4.746, 2.469),
            (1.0, 4.793, 2.470),
            (2.0, 4.799, 2.929),
            (3.0, 5.045, 2.930),
            (6.0, 6.708, 3.907),
            (8.0, 6.725, 3.963),
            (30.0, 7.8, 4.5),
        ]);
        let m = LayeredExact::new(lm);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let calls = 2000;
        NEWTON_ITERS.with(|c| c.set(0));
        let mut worst = 0;
        for _ in 0..calls {
            let before = NEWTON_ITERS.with(|c| c.get());
            m.radial_time_s(
                Phase::P,
                rng.gen_range(0.0..150.0),
                rng.gen_range(0.0..30.0),
                -rng.gen_range(-0.2..3.0),
            )
            .unwrap();
            worst = worst.max(NEWTON_ITERS.with(|c| c.get()) - before);
        }
        let mean = NEWTON_ITERS.with(|c| c.get()) as f64 / calls as f64;
        println!("Newton evaluations per call: mean {mean:.2}, worst {worst}");
        assert!(mean < 8.0 && worst < 40, "mean {mean}, worst {worst}");
    }

    fn lm_near_interface(m: &LayeredExact, z: f64, h: f64) -> bool {
        m.tops_km.iter().skip(1).any(|&d| (z - d).abs() <= 2.0 * h)
    }

    #[test]
    fn cartesian_gradient_matches_finite_differences() {
        let m = LayeredExact::new(LayeredModel::hadley_kanamori());
        let s = LocalPoint::new(37.0, -21.0, 11.3);
        let r = LocalPoint::new(1.0, 2.0, -1.2);
        for p in Phase::ALL {
            let g = m.traveltime_and_gradient(p, s, r).unwrap();
            let h = 1e-5;
            for k in 0..3 {
                let mut a = s.to_array();
                let mut b = a;
                a[k] += h;
                b[k] -= h;
                let fd = (m.traveltime_s(p, LocalPoint::from_array(a), r).unwrap()
                    - m.traveltime_s(p, LocalPoint::from_array(b), r).unwrap())
                    / (2.0 * h);
                assert!((g.grad_s_per_km[k] - fd).abs() < 1e-6, "{p} comp {k}");
            }
        }
    }
}
