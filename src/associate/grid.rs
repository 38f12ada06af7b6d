//! The associator's traveltime tables: P and S times from a regular grid of candidate sources
//! to every station, tabulated once from a [`TraveltimeModel`], then read by index (voting)
//! or by trilinear interpolation (refinement, late-pick absorption).

use super::AssociateError;
use crate::domain::{LocalPoint, Phase};
use crate::traveltime::TraveltimeModel;

/// A regular grid of candidate sources in the local frame (km) with per-station tables.
#[derive(Debug, Clone)]
pub struct TraveltimeGrid {
    /// West edge (x of node ix = 0), km.
    pub x0_km: f64,
    /// South edge (y of node iy = 0), km.
    pub y0_km: f64,
    /// Shallowest depth (z of node iz = 0), km.
    pub z0_km: f64,
    /// Horizontal node spacing, km.
    pub dh_km: f64,
    /// Vertical node spacing, km.
    pub dz_km: f64,
    /// Nodes along x, y, z.
    pub n: [usize; 3],
    n_stations: usize,
    /// `tt[phase][station * n_nodes + node]`, s (f32: table and interpolation errors are
    /// far above f32 rounding).
    tt: [Vec<f32>; 2],
    /// `tau[phase][station * n_nodes + node] = T * v_ref / distance`: the traveltime factored
    /// by a straight-ray time (as in factored eikonal solvers). tau is smooth where T has its
    /// cone-shaped kink at the station, so interpolating tau and multiplying by the exact
    /// straight-ray time stays accurate near stations, where interpolating T does not.
    tau: [Vec<f32>; 2],
    /// Reference velocity of the factorisation per phase, km/s.
    v_ref_km_s: [f64; 2],
    stations: Vec<LocalPoint>,
    /// Largest |dT/dx| seen between adjacent nodes, per phase, s/km.
    max_slowness: [f64; 2],
}

impl TraveltimeGrid {
    /// Tabulates `model` for every node and station. `x_range`, `y_range`, `z_range` are the
    /// box (km); nodes are spaced `dh_km` horizontally and `dz_km` in depth and cover the box.
    pub fn build(
        model: &dyn TraveltimeModel,
        stations: &[LocalPoint],
        x_range: (f64, f64),
        y_range: (f64, f64),
        z_range: (f64, f64),
        dh_km: f64,
        dz_km: f64,
    ) -> Result<Self, AssociateError> {
        let count = |lo: f64, hi: f64, d: f64| ((hi - lo) / d - 1e-9).ceil().max(0.0) as usize + 1;
        let n = [
            count(x_range.0, x_range.1, dh_km),
            count(y_range.0, y_range.1, dh_km),
            count(z_range.0, z_range.1, dz_km),
        ];
        let n_nodes = n[0] * n[1] * n[2];
        if n_nodes > 2_000_000 || n_nodes * stations.len() > 200_000_000 {
            return Err(AssociateError::InvalidConfig(format!(
                "grid of {n_nodes} nodes x {} stations is too large; use a coarser spacing",
                stations.len()
            )));
        }
        let mut g = Self {
            x0_km: x_range.0,
            y0_km: y_range.0,
            z0_km: z_range.0,
            dh_km,
            dz_km,
            n,
            n_stations: stations.len(),
            tt: [
                vec![0.0; n_nodes * stations.len()],
                vec![0.0; n_nodes * stations.len()],
            ],
            tau: [
                vec![0.0; n_nodes * stations.len()],
                vec![0.0; n_nodes * stations.len()],
            ],
            v_ref_km_s: [1.0; 2],
            stations: stations.to_vec(),
            max_slowness: [0.0; 2],
        };
        for ph in Phase::ALL {
            for (s, st) in stations.iter().enumerate() {
                for node in 0..n_nodes {
                    let src = g.node_position(node);
                    let t = model.traveltime_s(ph, src, *st).map_err(|e| {
                        AssociateError::Traveltime {
                            phase: ph,
                            station: s,
                            x_km: src.x_km,
                            y_km: src.y_km,
                            z_km: src.z_km,
                            message: e.to_string(),
                        }
                    })?;
                    if !t.is_finite() || t < 0.0 {
                        return Err(AssociateError::Traveltime {
                            phase: ph,
                            station: s,
                            x_km: src.x_km,
                            y_km: src.y_km,
                            z_km: src.z_km,
                            message: format!("traveltime {t} is not a finite non-negative number"),
                        });
                    }
                    g.tt[ph.index()][s * n_nodes + node] = t as f32;
                }
            }
            g.max_slowness[ph.index()] = g.estimate_max_slowness(ph);
            // any constant works as v_ref; the median apparent velocity keeps tau near 1
            let mut v: Vec<f64> = Vec::with_capacity(n_nodes * stations.len());
            for (s, st) in stations.iter().enumerate() {
                for node in 0..n_nodes {
                    let t = g.at_node(ph, s, node);
                    let d = Self::straight_km(g.node_position(node), *st);
                    if t > 0.0 {
                        v.push(d / t);
                    }
                }
            }
            let v_ref = if v.is_empty() {
                1.0
            } else {
                let mid = v.len() / 2;
                *v.select_nth_unstable_by(mid, f64::total_cmp).1
            };
            g.v_ref_km_s[ph.index()] = v_ref;
            for (s, st) in stations.iter().enumerate() {
                for node in 0..n_nodes {
                    let t = g.at_node(ph, s, node);
                    let d = Self::straight_km(g.node_position(node), *st);
                    g.tau[ph.index()][s * n_nodes + node] = (t * v_ref / d) as f32;
                }
            }
        }
        Ok(g)
    }

    fn estimate_max_slowness(&self, ph: Phase) -> f64 {
        let [nx, ny, nz] = self.n;
        let mut m: f64 = 0.0;
        for s in 0..self.n_stations {
            let tab = self.station_table(ph, s);
            for iz in 0..nz {
                for iy in 0..ny {
                    for ix in 0..nx {
                        let i = self.node_index(ix, iy, iz);
                        let t = f64::from(tab[i]);
                        if ix + 1 < nx {
                            m = m.max((f64::from(tab[i + 1]) - t).abs() / self.dh_km);
                        }
                        if iy + 1 < ny {
                            m = m.max((f64::from(tab[i + nx]) - t).abs() / self.dh_km);
                        }
                        if iz + 1 < nz {
                            m = m.max((f64::from(tab[i + nx * ny]) - t).abs() / self.dz_km);
                        }
                    }
                }
            }
        }
        m
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.n[0] * self.n[1] * self.n[2]
    }

    /// Number of stations.
    pub fn n_stations(&self) -> usize {
        self.n_stations
    }

    /// Largest traveltime change per km between adjacent nodes (an estimate of the largest
    /// slowness in the box), s/km.
    pub fn max_slowness_s_per_km(&self, ph: Phase) -> f64 {
        self.max_slowness[ph.index()]
    }

    /// Half the diagonal of one grid cell, km: the farthest any source is from its nearest node.
    pub fn half_diagonal_km(&self) -> f64 {
        0.5 * (2.0 * self.dh_km * self.dh_km + self.dz_km * self.dz_km).sqrt()
    }

    /// Flat index of node (ix, iy, iz).
    pub fn node_index(&self, ix: usize, iy: usize, iz: usize) -> usize {
        (iz * self.n[1] + iy) * self.n[0] + ix
    }

    /// (ix, iy, iz) of a flat node index.
    pub fn node_coords(&self, node: usize) -> [usize; 3] {
        let ix = node % self.n[0];
        let iy = (node / self.n[0]) % self.n[1];
        let iz = node / (self.n[0] * self.n[1]);
        [ix, iy, iz]
    }

    /// Position of a node, local km.
    pub fn node_position(&self, node: usize) -> LocalPoint {
        let [ix, iy, iz] = self.node_coords(node);
        LocalPoint::new(
            self.x0_km + ix as f64 * self.dh_km,
            self.y0_km + iy as f64 * self.dh_km,
            self.z0_km + iz as f64 * self.dz_km,
        )
    }

    /// Traveltimes of `ph` from every node to station `s`, s (indexed by node).
    pub fn station_table(&self, ph: Phase, s: usize) -> &[f32] {
        let n = self.n_nodes();
        &self.tt[ph.index()][s * n..(s + 1) * n]
    }

    /// Tabulated traveltime from a node, s.
    pub fn at_node(&self, ph: Phase, s: usize, node: usize) -> f64 {
        f64::from(self.tt[ph.index()][s * self.n_nodes() + node])
    }

    /// Clamps a point into the grid box.
    pub fn clamp(&self, p: LocalPoint) -> LocalPoint {
        let hi = |o: f64, d: f64, n: usize| o + d * (n.saturating_sub(1)) as f64;
        LocalPoint::new(
            p.x_km
                .clamp(self.x0_km, hi(self.x0_km, self.dh_km, self.n[0])),
            p.y_km
                .clamp(self.y0_km, hi(self.y0_km, self.dh_km, self.n[1])),
            p.z_km
                .clamp(self.z0_km, hi(self.z0_km, self.dz_km, self.n[2])),
        )
    }

    /// Cell corner index and fractional position along one axis.
    fn axis(o: f64, d: f64, n: usize, v: f64) -> (usize, f64) {
        if n < 2 {
            return (0, 0.0);
        }
        let u = ((v - o) / d).clamp(0.0, (n - 1) as f64);
        let i = (u.floor() as usize).min(n - 2);
        (i, u - i as f64)
    }

    /// Interpolation weights for a point: 8 (node, weight) pairs; the point is clamped into the box.
    pub fn weights(&self, p: LocalPoint) -> [(usize, f64); 8] {
        let (ix, fx) = Self::axis(self.x0_km, self.dh_km, self.n[0], p.x_km);
        let (iy, fy) = Self::axis(self.y0_km, self.dh_km, self.n[1], p.y_km);
        let (iz, fz) = Self::axis(self.z0_km, self.dz_km, self.n[2], p.z_km);
        let step = |i: usize, n: usize| usize::from(i + 1 < n);
        let (sx, sy, sz) = (
            step(ix, self.n[0]),
            step(iy, self.n[1]),
            step(iz, self.n[2]),
        );
        let mut out = [(0usize, 0.0f64); 8];
        let mut k = 0;
        for (dz, wz) in [(0, 1.0 - fz), (sz, fz)] {
            for (dy, wy) in [(0, 1.0 - fy), (sy, fy)] {
                for (dx, wx) in [(0, 1.0 - fx), (sx, fx)] {
                    out[k] = (self.node_index(ix + dx, iy + dy, iz + dz), wx * wy * wz);
                    k += 1;
                }
            }
        }
        out
    }

    /// Straight-line distance with a floor (100 m) so the factorisation never divides by 0, km.
    fn straight_km(a: LocalPoint, b: LocalPoint) -> f64 {
        let d = [a.x_km - b.x_km, a.y_km - b.y_km, a.z_km - b.z_km];
        (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(0.1)
    }

    /// Traveltime at `p` (the point the weights were made for): trilinear interpolation of the
    /// factored table times the straight-ray time, s.
    pub fn interpolate_at(&self, ph: Phase, s: usize, p: LocalPoint, w: &[(usize, f64); 8]) -> f64 {
        self.interpolate_inside(ph, s, self.clamp(p), w)
    }

    /// [`Self::interpolate_at`] for a point already inside the box (as [`Self::clamp`] returns
    /// it), which the searches evaluate many times per point, s.
    pub fn interpolate_inside(
        &self,
        ph: Phase,
        s: usize,
        p: LocalPoint,
        w: &[(usize, f64); 8],
    ) -> f64 {
        let n = self.n_nodes();
        let tab = &self.tau[ph.index()][s * n..(s + 1) * n];
        let tau: f64 = w.iter().map(|&(i, wi)| wi * f64::from(tab[i])).sum();
        tau * Self::straight_km(p, self.stations[s]) / self.v_ref_km_s[ph.index()]
    }

    /// Node nearest to a point.
    pub fn nearest_node(&self, p: LocalPoint) -> usize {
        let idx =
            |o: f64, d: f64, n: usize, v: f64| (((v - o) / d).round().max(0.0) as usize).min(n - 1);
        self.node_index(
            idx(self.x0_km, self.dh_km, self.n[0], p.x_km),
            idx(self.y0_km, self.dh_km, self.n[1], p.y_km),
            idx(self.z0_km, self.dz_km, self.n[2], p.z_km),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traveltime::AnalyticModel;
    use crate::velocity::GradientModel;

    #[test]
    fn interpolation_reproduces_nodes_and_is_close_between() {
        let m = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.03, 0.02).unwrap());
        let st = [
            LocalPoint::new(3.0, 4.0, -0.5),
            LocalPoint::new(40.0, -10.0, 0.0),
        ];
        let g = TraveltimeGrid::build(&m, &st, (-20.0, 60.0), (-30.0, 30.0), (0.0, 20.0), 4.0, 5.0)
            .unwrap();
        let node = g.node_index(3, 2, 1);
        let p = g.node_position(node);
        let w = g.weights(p);
        let exact = m.traveltime_s(Phase::S, p, st[1]).unwrap();
        assert!((g.interpolate_at(Phase::S, 1, p, &w) - exact).abs() < 1e-5);
        // between nodes, far from the station
        let q = LocalPoint::new(-5.3, 17.1, 12.2);
        let exact = m.traveltime_s(Phase::P, q, st[1]).unwrap();
        let got = g.interpolate_at(Phase::P, 1, q, &g.weights(q));
        assert!((got - exact).abs() < 0.01, "{got} vs {exact}");
        // right under a station, where T has its kink, the factored form stays accurate
        for q in [
            LocalPoint::new(3.4, 3.3, 1.0),
            LocalPoint::new(2.0, 5.5, 4.0),
        ] {
            let exact = m.traveltime_s(Phase::S, q, st[0]).unwrap();
            let got = g.interpolate_at(Phase::S, 0, q, &g.weights(q));
            assert!((got - exact).abs() < 0.02, "{got} vs {exact}");
        }
        // the slowness estimate is bounded by the slowest velocity in the box
        assert!(g.max_slowness_s_per_km(Phase::S) <= 1.0 / 3.2 + 1e-6);
        assert!(g.max_slowness_s_per_km(Phase::S) > 0.8 / 3.2);
        assert_eq!(
            g.nearest_node(LocalPoint::new(-8.1, -21.9, 4.0)),
            g.node_index(3, 2, 1)
        );
    }
}
