//! A traveltime accelerator for 1-D (cylindrically symmetric) models: per (phase, receiver
//! depth) a table over (epicentral distance r, source depth z) built once from ANY
//! [`TraveltimeModel`], interpolated bicubically (Catmull-Rom) with analytic derivatives.
//!
//! The table holds the apparent slowness tau = T / D (D the source-receiver distance), which
//! stays bounded and smooth at the receiver where T itself has a cone; T = D tau.
//! Queries outside the table, or for receiver depths it was not built for, go to the inner
//! model, so answers are always available.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::domain::{LocalPoint, Phase};
use crate::traveltime::{Receiver, TimeAndGradient, TraveltimeError, TraveltimeModel};

/// Grid of one (phase, receiver depth) table.
///
/// Stored with a one-node border on every side (row -1 and row nz repeat the edge rows,
/// column -1 mirrors column 1 since tau is even in r, column nr repeats column nr-1): the
/// bicubic stencil is then four contiguous runs of four values, with no per-tap index
/// clamping, which was most of the lookup's cost.
#[derive(Debug, Clone)]
struct Table {
    zr_km: f64,
    tau: Vec<f64>, // [(iz + 1) * (nr + 2) + ir + 1]
}

/// Grid sizes and reciprocal spacings, computed once rather than per lookup.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    nr: usize,
    nz: usize,
    stride: usize,
    inv_dr: f64,
    inv_dz: f64,
    z_min_km: f64,
    fr_max: f64,
    fz_max: f64,
}

impl Geometry {
    fn of(g: &TableGrid) -> Self {
        let (nr, nz) = (g.nr(), g.nz());
        Self {
            nr,
            nz,
            stride: nr + 2,
            inv_dr: 1.0 / g.dr_km,
            inv_dz: 1.0 / g.dz_km,
            z_min_km: g.z_min_km,
            fr_max: (nr - 1) as f64,
            fz_max: (nz - 1) as f64,
        }
    }

    /// Index of the stencil's first (top-left) value in the padded table and the fractional
    /// positions in the cell, or None outside the table.
    #[inline(always)]
    fn cell(&self, r: f64, zs: f64) -> Option<(usize, f64, f64)> {
        let fr = r * self.inv_dr;
        let fz = (zs - self.z_min_km) * self.inv_dz;
        if !(fr >= 0.0 && fz >= 0.0) || fr > self.fr_max || fz > self.fz_max {
            return None;
        }
        // non-negative here, so truncation is floor (and no libm call)
        let ir = (fr as usize).min(self.nr - 2);
        let iz = (fz as usize).min(self.nz - 2);
        // stencil rows iz-1..=iz+2 and columns ir-1..=ir+2 start at padded (iz, ir)
        Some((iz * self.stride + ir, fr - ir as f64, fz - iz as f64))
    }
}

/// Pads a table stored as [iz * nr + ir] with the border described at [`Table`].
fn pad(raw: &[f64], nr: usize, nz: usize) -> Vec<f64> {
    let stride = nr + 2;
    let mut out = vec![0.0; stride * (nz + 2)];
    for pz in 0..nz + 2 {
        let iz = pz.saturating_sub(1).min(nz - 1);
        let row = &raw[iz * nr..(iz + 1) * nr];
        let dst = &mut out[pz * stride..(pz + 1) * stride];
        dst[0] = row[1];
        dst[1..=nr].copy_from_slice(row);
        dst[nr + 1] = row[nr - 1];
    }
    out
}

/// Grid geometry shared by all tables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableGrid {
    /// Largest epicentral distance tabulated, km.
    pub r_max_km: f64,
    /// Distance spacing, km.
    pub dr_km: f64,
    /// Shallowest source depth, km.
    pub z_min_km: f64,
    /// Deepest source depth, km.
    pub z_max_km: f64,
    /// Depth spacing, km.
    pub dz_km: f64,
}

impl TableGrid {
    fn nr(&self) -> usize {
        (self.r_max_km / self.dr_km).ceil() as usize + 1
    }
    fn nz(&self) -> usize {
        ((self.z_max_km - self.z_min_km) / self.dz_km).ceil() as usize + 1
    }
}

/// Tabulated 1-D traveltimes in front of an inner model.
pub struct RadialTableModel {
    inner: Arc<dyn TraveltimeModel>,
    grid: TableGrid,
    geo: Geometry,
    tables: HashMap<(Phase, i64), Table>,
}

fn depth_key(z_km: f64) -> i64 {
    (z_km * 1e6).round() as i64 // 1 mm
}

/// Catmull-Rom weights and their derivatives for fractional position t in [0, 1).
#[inline]
fn cr(t: f64) -> ([f64; 4], [f64; 4]) {
    let t2 = t * t;
    let t3 = t2 * t;
    (
        [
            0.5 * (-t3 + 2.0 * t2 - t),
            0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
            0.5 * (-3.0 * t3 + 4.0 * t2 + t),
            0.5 * (t3 - t2),
        ],
        [
            0.5 * (-3.0 * t2 + 4.0 * t - 1.0),
            0.5 * (9.0 * t2 - 10.0 * t),
            0.5 * (-9.0 * t2 + 8.0 * t + 1.0),
            0.5 * (3.0 * t2 - 2.0 * t),
        ],
    )
}

/// Catmull-Rom weights only.
#[inline(always)]
fn cr_value(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ]
}

impl RadialTableModel {
    /// Builds tables for every (phase, receiver depth) among `receivers` (rayon over tables).
    /// The inner model must be one-dimensional; the caller vouches for that.
    pub fn build(
        inner: Arc<dyn TraveltimeModel>,
        grid: TableGrid,
        receivers: &[Receiver],
    ) -> Result<Self, TraveltimeError> {
        if !(grid.dr_km > 0.0
            && grid.dz_km > 0.0
            && grid.r_max_km > grid.dr_km
            && grid.z_max_km > grid.z_min_km)
        {
            return Err(TraveltimeError::Other(format!("bad table grid {grid:?}")));
        }
        let mut keys: Vec<(Phase, i64, f64)> = receivers
            .iter()
            .map(|r| (r.phase, depth_key(r.position.z_km), r.position.z_km))
            .collect();
        keys.sort_by_key(|k| (k.0, k.1));
        keys.dedup_by_key(|k| (k.0, k.1));
        let (nr, nz) = (grid.nr(), grid.nz());
        let built: Result<Vec<((Phase, i64), Table)>, TraveltimeError> = keys
            .par_iter()
            .map(|&(phase, key, zr)| {
                let rec = [Receiver {
                    phase,
                    position: LocalPoint::new(0.0, 0.0, zr),
                }];
                let mut sources = Vec::with_capacity(nr * nz);
                for iz in 0..nz {
                    for ir in 0..nr {
                        sources.push(LocalPoint::new(
                            ir as f64 * grid.dr_km,
                            0.0,
                            grid.z_min_km + iz as f64 * grid.dz_km,
                        ));
                    }
                }
                let mut out = vec![TimeAndGradient::default(); sources.len()];
                inner.batch_with_gradient(&sources, &rec, &mut out)?;
                let mut tau = Vec::with_capacity(out.len());
                for (s, o) in sources.iter().zip(&out) {
                    let d = s.x_km.hypot(s.z_km - zr);
                    tau.push(if d > 1e-9 { o.t_s / d } else { f64::NAN });
                }
                // the receiver node itself: T/D has a limit; take the neighbour's value
                for iz in 0..nz {
                    if tau[iz * nr].is_nan() {
                        tau[iz * nr] = if iz + 1 < nz {
                            tau[(iz + 1) * nr]
                        } else {
                            tau[iz * nr + 1]
                        };
                    }
                }
                Ok((
                    (phase, key),
                    Table {
                        zr_km: zr,
                        tau: pad(&tau, nr, nz),
                    },
                ))
            })
            .collect();
        Ok(Self {
            inner,
            grid,
            geo: Geometry::of(&grid),
            tables: built?.into_iter().collect(),
        })
    }

    /// The grid.
    pub fn grid(&self) -> TableGrid {
        self.grid
    }

    #[inline(always)]
    fn lookup(&self, t: &Table, r: f64, zs: f64) -> Option<(f64, f64, f64)> {
        let geo = &self.geo;
        let (base, tr, tz) = geo.cell(r, zs)?;
        let (wr, dwr) = cr(tr);
        let (wz, dwz) = cr(tz);
        let (mut v, mut vr, mut vz) = (0.0, 0.0, 0.0);
        for a in 0..4 {
            let o = base + a * geo.stride;
            let row: &[f64; 4] = t.tau[o..o + 4].try_into().expect("4 values");
            let (mut s, mut sr) = (0.0, 0.0);
            for b in 0..4 {
                s += wr[b] * row[b];
                sr += dwr[b] * row[b];
            }
            v += wz[a] * s;
            vr += wz[a] * sr;
            vz += dwz[a] * s;
        }
        Some((v, vr * geo.inv_dr, vz * geo.inv_dz))
    }

    /// Interpolated tau only (no derivatives), for values-only queries.
    #[inline(always)]
    fn lookup_value(&self, t: &Table, r: f64, zs: f64) -> Option<f64> {
        let geo = &self.geo;
        let (base, tr, tz) = geo.cell(r, zs)?;
        let wr = cr_value(tr);
        let wz = cr_value(tz);
        let mut v = 0.0;
        for a in 0..4 {
            let o = base + a * geo.stride;
            let row: &[f64; 4] = t.tau[o..o + 4].try_into().expect("4 values");
            let mut s = 0.0;
            for b in 0..4 {
                s += wr[b] * row[b];
            }
            v += wz[a] * s;
        }
        Some(v)
    }

    #[inline(always)]
    fn eval_table(&self, t: &Table, s: LocalPoint, r: LocalPoint) -> Option<TimeAndGradient> {
        // sqrt, not hypot: hypot's overflow care costs more than the whole interpolation
        let (dx, dy) = (s.x_km - r.x_km, s.y_km - r.y_km);
        let rh = (dx * dx + dy * dy).sqrt();
        let (tau, dtr, dtz) = self.lookup(t, rh, s.z_km)?;
        let dzz = s.z_km - t.zr_km;
        let d = (rh * rh + dzz * dzz).sqrt();
        let time = d * tau;
        // one division per distance, not one per component
        let (dr, dz) = if d > 1e-12 {
            let inv_d = 1.0 / d;
            (rh * inv_d * tau + d * dtr, dzz * inv_d * tau + d * dtz)
        } else {
            (0.0, 0.0)
        };
        let (ux, uy) = if rh > 1e-12 {
            let inv_rh = 1.0 / rh;
            (dx * inv_rh, dy * inv_rh)
        } else {
            (0.0, 0.0)
        };
        Some(TimeAndGradient {
            t_s: time,
            grad_s_per_km: [dr * ux, dr * uy, dz],
        })
    }

    /// Traveltime only from the table, s.
    #[inline(always)]
    fn time_table(&self, t: &Table, s: LocalPoint, r: LocalPoint) -> Option<f64> {
        let (dx, dy) = (s.x_km - r.x_km, s.y_km - r.y_km);
        let rh = (dx * dx + dy * dy).sqrt();
        let tau = self.lookup_value(t, rh, s.z_km)?;
        let dzz = s.z_km - t.zr_km;
        Some((rh * rh + dzz * dzz).sqrt() * tau)
    }

    fn eval(
        &self,
        phase: Phase,
        s: LocalPoint,
        r: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        if let Some(v) = self
            .tables
            .get(&(phase, depth_key(r.z_km)))
            .and_then(|t| self.eval_table(t, s, r))
        {
            return Ok(v);
        }
        self.inner.traveltime_and_gradient(phase, s, r)
    }
}

impl TraveltimeModel for RadialTableModel {
    fn name(&self) -> String {
        format!("table({})", self.inner.name())
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
    fn batch_with_gradient(
        &self,
        sources: &[LocalPoint],
        receivers: &[Receiver],
        out: &mut [TimeAndGradient],
    ) -> Result<(), TraveltimeError> {
        if out.len() != sources.len() * receivers.len() {
            return Err(TraveltimeError::Other("output buffer size".into()));
        }
        let nrec = receivers.len();
        // receiver-major: one table, all sources (particles cluster, so the table's few
        // touched rows stay in cache), and the table resolved once per receiver
        for (j, r) in receivers.iter().enumerate() {
            let tab = self.tables.get(&(r.phase, depth_key(r.position.z_km)));
            for (i, s) in sources.iter().enumerate() {
                out[i * nrec + j] = match tab.and_then(|t| self.eval_table(t, *s, r.position)) {
                    Some(v) => v,
                    None => self
                        .inner
                        .traveltime_and_gradient(r.phase, *s, r.position)?,
                };
            }
        }
        Ok(())
    }
    fn batch_times(
        &self,
        sources: &[LocalPoint],
        receivers: &[Receiver],
        out: &mut [f64],
    ) -> Result<(), TraveltimeError> {
        if out.len() != sources.len() * receivers.len() {
            return Err(TraveltimeError::Other("output buffer size".into()));
        }
        let nrec = receivers.len();
        for (j, r) in receivers.iter().enumerate() {
            let tab = self.tables.get(&(r.phase, depth_key(r.position.z_km)));
            for (i, s) in sources.iter().enumerate() {
                out[i * nrec + j] = match tab.and_then(|t| self.time_table(t, *s, r.position)) {
                    Some(v) => v,
                    None => self.inner.traveltime_s(r.phase, *s, r.position)?,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traveltime::AnalyticModel;
    use crate::velocity::GradientModel;

    #[test]
    fn table_matches_the_analytic_gradient_medium() {
        let inner: Arc<dyn TraveltimeModel> = Arc::new(AnalyticModel::new(
            GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap(),
        ));
        let recs = [
            Receiver {
                phase: Phase::P,
                position: LocalPoint::new(3.0, -2.0, -0.8),
            },
            Receiver {
                phase: Phase::S,
                position: LocalPoint::new(-7.0, 1.0, -0.2),
            },
        ];
        let grid = TableGrid {
            r_max_km: 120.0,
            dr_km: 1.0,
            z_min_km: -1.0,
            z_max_km: 40.0,
            dz_km: 0.5,
        };
        let tab = RadialTableModel::build(inner.clone(), grid, &recs).unwrap();
        let mut worst = (0.0f64, 0.0f64);
        for k in 0..500 {
            let s = LocalPoint::new(
                -60.0 + 0.23 * k as f64,
                40.0 - 0.17 * k as f64,
                (k as f64 * 0.077) % 39.0,
            );
            for r in &recs {
                let a = inner
                    .traveltime_and_gradient(r.phase, s, r.position)
                    .unwrap();
                let b = tab.traveltime_and_gradient(r.phase, s, r.position).unwrap();
                worst.0 = worst.0.max((a.t_s - b.t_s).abs());
                for c in 0..3 {
                    worst.1 = worst.1.max((a.grad_s_per_km[c] - b.grad_s_per_km[c]).abs());
                }
            }
        }
        assert!(
            worst.0 < 1e-3 && worst.1 < 5e-3,
            "max |dT| {} s, max |dgrad| {} s/km",
            worst.0,
            worst.1
        );
        // the values-only batch gives the batch's times, inside and outside the table
        let srcs: Vec<LocalPoint> = (0..40)
            .map(|k| {
                LocalPoint::new(
                    -70.0 + 4.7 * k as f64,
                    13.0 - 0.9 * k as f64,
                    0.97 * k as f64,
                )
            })
            .collect();
        let mut full = vec![TimeAndGradient::default(); srcs.len() * recs.len()];
        let mut times = vec![0.0; srcs.len() * recs.len()];
        tab.batch_with_gradient(&srcs, &recs, &mut full).unwrap();
        tab.batch_times(&srcs, &recs, &mut times).unwrap();
        for (f, t) in full.iter().zip(&times) {
            assert!((f.t_s - t).abs() < 1e-12, "{} vs {t}", f.t_s);
        }
        // outside the table the inner model answers exactly
        let far = LocalPoint::new(500.0, 0.0, 10.0);
        let a = inner.traveltime_s(Phase::P, far, recs[0].position).unwrap();
        assert_eq!(
            tab.traveltime_s(Phase::P, far, recs[0].position).unwrap(),
            a
        );
    }

    /// Against the exact layered solver (head waves, layer kinks in T): the interpolation error
    /// stays below pick uncertainties on the default grid (0.5 km x 0.25 km): measured median
    /// 9e-9 s, p99 2.0 ms, max 10 ms (at layer interfaces, where dT/dz jumps).
    #[test]
    fn table_matches_the_exact_layered_solver() {
        use crate::traveltime::LayeredExact;
        use crate::velocity::LayeredModel;
        let inner: Arc<dyn TraveltimeModel> =
            Arc::new(LayeredExact::new(LayeredModel::hadley_kanamori()));
        let recs = [
            Receiver {
                phase: Phase::P,
                position: LocalPoint::new(0.0, 0.0, -1.1),
            },
            Receiver {
                phase: Phase::S,
                position: LocalPoint::new(0.0, 0.0, 0.0),
            },
        ];
        let grid = TableGrid {
            r_max_km: 150.0,
            dr_km: 0.5,
            z_min_km: -1.5,
            z_max_km: 30.0,
            dz_km: 0.25,
        };
        let tab = RadialTableModel::build(inner.clone(), grid, &recs).unwrap();
        let mut errs = Vec::new();
        for k in 0..3000 {
            let r = 0.5 + (k as f64 * 0.0487) % 149.0;
            let z = (k as f64 * 0.0113) % 29.5;
            let s = LocalPoint::new(r * 0.6, r * 0.8, z);
            for rc in &recs {
                let a = inner.traveltime_s(rc.phase, s, rc.position).unwrap();
                let b = tab.traveltime_s(rc.phase, s, rc.position).unwrap();
                errs.push((a - b).abs());
            }
        }
        errs.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99, max) = (
            errs[errs.len() / 2],
            errs[errs.len() * 99 / 100],
            errs[errs.len() - 1],
        );
        eprintln!("table vs exact: median {p50:.2e} s, p99 {p99:.2e} s, max {max:.2e} s");
        assert!(
            p99 < 3e-3 && max < 2e-2,
            "median {p50}, p99 {p99}, max {max}"
        );
    }
}
