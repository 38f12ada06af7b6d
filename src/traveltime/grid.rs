//! Traveltime tables from the factored eikonal solver, NonLinLoc Grid2Time style: by
//! reciprocity the table's source sits at the station, and a table is read at the event.
//!
//! * 1-D models (velocity depends on depth only): one 2-D axisymmetric (r, z) table per
//!   distinct station depth and phase. r is the horizontal event-station distance, z the event
//!   depth. Tables cover `0 <= r <= r_max_km`, `z_min_km <= z <= z_max_km` (extended upward to
//!   the station when it sits higher), with nodes on multiples of `spacing_km` so that layer
//!   interfaces at round depths fall on nodes.
//! * 3-D models: one 3-D table per station position and phase, over a box (given, or the
//!   stations' bounding box widened by `margin_km`).
//!
//! Interpolation: Catmull-Rom (cubic, C1) of the factored field tau, multiplied by the analytic
//! T0 = |x - x_station| / v(x_station). Interpolating tau rather than T keeps the source
//! singularity out of the interpolant, so times and gradients stay accurate next to the
//! station; the gradient is the exact derivative of that interpolant
//! (grad T = tau grad T0 + T0 grad tau).
//!
//! Tables are built in parallel (rayon). [`GridTraveltime::radial_lazy`] builds tables on
//! demand, keyed by receiver depth (to 1 micrometre), for arbitrary
//! [`GridTraveltime::radial_traveltime`] queries.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::eikonal::{cell_averaged_slowness, solve, EikonalError, EikonalGrid, EikonalSolution};
use super::{check_finite, radial_to_cartesian, TimeAndGradient, TraveltimeError, TraveltimeModel};
use crate::domain::{LocalPoint, Phase};
use crate::velocity::VelocityModel;

/// Table geometry for [`GridTraveltime`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridTraveltimeConfig {
    /// Node spacing of the 2-D (r, z) tables of 1-D models, km.
    pub spacing_km: f64,
    /// Largest horizontal distance of the 2-D tables, km.
    pub r_max_km: f64,
    /// Shallowest table depth, km (tables extend up to the station when it is higher).
    pub z_min_km: f64,
    /// Deepest table depth, km.
    pub z_max_km: f64,
    /// Node spacing of the 3-D tables, km (same along x, y, z).
    pub spacing_3d_km: f64,
    /// 3-D tables: margin added around the stations' bounding box in x and y, km.
    pub margin_km: f64,
    /// 3-D tables: explicit box `[x_min, y_min, x_max, y_max]`, km (overrides `margin_km`).
    pub box_xy_km: Option<[f64; 4]>,
}

impl Default for GridTraveltimeConfig {
    /// 0.2 km (r, z) tables to 200 km and 40 km depth; 1 km 3-D tables.
    ///
    /// 0.2 km is the measured trade-off (`cargo bench --bench grid`, Ridgecrest model and
    /// network, against `LayeredExact`): median |dT| <= 10 ms and max 33 ms over 0-200 km
    /// (first order, from head waves; 0.1 km halves it at 4x the cost), 42 tables in about
    /// 8 CPU-seconds and 36 MB.
    fn default() -> Self {
        Self {
            spacing_km: 0.2,
            r_max_km: 200.0,
            z_min_km: -3.0,
            z_max_km: 40.0,
            spacing_3d_km: 1.0,
            margin_km: 50.0,
            box_xy_km: None,
        }
    }
}

/// A radial answer: traveltime and its derivatives with respect to distance and source depth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadialTime {
    /// Traveltime, s.
    pub t_s: f64,
    /// dT/dr (horizontal source-receiver distance), s/km.
    pub dt_dr_s_per_km: f64,
    /// dT/d(source depth), s/km.
    pub dt_dzs_s_per_km: f64,
}

/// Depth or position key: micrometre-rounded km.
fn key(v: f64) -> i64 {
    (v * 1e6).round() as i64
}

enum Tables {
    Radial {
        tables: RwLock<HashMap<(Phase, i64), Arc<EikonalSolution>>>,
        lazy: bool,
    },
    Cartesian {
        tables: HashMap<(Phase, [i64; 3]), Arc<EikonalSolution>>,
    },
}

/// Traveltimes interpolated from eikonal tables computed with the source at each station.
pub struct GridTraveltime {
    model: Arc<dyn VelocityModel>,
    config: GridTraveltimeConfig,
    tables: Tables,
}

impl std::fmt::Debug for GridTraveltime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridTraveltime")
            .field("config", &self.config)
            .field("tables", &self.table_count())
            .finish()
    }
}

fn check_config(c: &GridTraveltimeConfig) -> Result<(), EikonalError> {
    let ok = c.spacing_km.is_finite()
        && c.spacing_km > 0.0
        && c.spacing_3d_km.is_finite()
        && c.spacing_3d_km > 0.0
        && c.r_max_km.is_finite()
        && c.r_max_km > 0.0
        && c.z_min_km.is_finite()
        && c.z_max_km.is_finite()
        && c.z_max_km > c.z_min_km
        && c.margin_km.is_finite()
        && c.margin_km >= 0.0;
    if !ok {
        return Err(EikonalError::Grid(format!("table configuration {c:?}")));
    }
    Ok(())
}

/// The (r, z) grid for a station at depth `zr_km`: r along x from 0, one y node, z aligned to
/// multiples of the spacing.
fn radial_grid(c: &GridTraveltimeConfig, zr_km: f64) -> EikonalGrid {
    let h = c.spacing_km;
    let z_lo = (c.z_min_km.min(zr_km) / h + 1e-9).floor() * h;
    let z_hi = (c.z_max_km.max(zr_km) / h - 1e-9).ceil() * h;
    let nz = ((z_hi - z_lo) / h).round() as usize + 1;
    let nr = (c.r_max_km / h - 1e-9).ceil() as usize + 1;
    EikonalGrid {
        origin_km: [0.0, 0.0, z_lo],
        spacing_km: [h; 3],
        counts: [nr, 1, nz],
    }
}

fn build_radial(
    model: &dyn VelocityModel,
    c: &GridTraveltimeConfig,
    phase: Phase,
    zr_km: f64,
) -> Result<EikonalSolution, EikonalError> {
    let g = radial_grid(c, zr_km);
    let slow = cell_averaged_slowness(model, phase, &g, &|p| [p[0], 0.0, p[2]])?;
    solve(
        &g,
        &slow,
        [0.0, 0.0, zr_km],
        model.velocity_km_s(phase, 0.0, 0.0, zr_km),
    )
}

fn outside(what: &'static str, p: [f64; 3]) -> TraveltimeError {
    TraveltimeError::OutsideModel {
        what,
        x_km: p[0],
        y_km: p[1],
        z_km: p[2],
    }
}

impl GridTraveltime {
    /// Tables for a station list (receiver positions in the local frame, z = -elevation):
    /// 2-D (r, z) tables per distinct depth for 1-D models, 3-D tables per station otherwise.
    /// Built in parallel; queries for other receivers are refused.
    pub fn for_stations(
        model: Arc<dyn VelocityModel>,
        receivers: &[LocalPoint],
        config: GridTraveltimeConfig,
    ) -> Result<Self, EikonalError> {
        check_config(&config)?;
        if let Some(r) = receivers.iter().find(|r| check_finite(r).is_err()) {
            return Err(EikonalError::SourceOutside(r.x_km, r.y_km, r.z_km));
        }
        if model.is_one_dimensional() {
            let mut depths: Vec<f64> = receivers.iter().map(|r| r.z_km).collect();
            depths.sort_by(f64::total_cmp);
            depths.dedup_by(|a, b| key(*a) == key(*b));
            let jobs: Vec<(Phase, f64)> = Phase::ALL
                .iter()
                .flat_map(|&p| depths.iter().map(move |&z| (p, z)))
                .collect();
            let built: Result<Vec<_>, _> = jobs
                .par_iter()
                .map(|&(p, z)| {
                    build_radial(model.as_ref(), &config, p, z).map(|s| ((p, key(z)), Arc::new(s)))
                })
                .collect();
            let tables = built?.into_iter().collect();
            Ok(Self {
                model,
                config,
                tables: Tables::Radial {
                    tables: RwLock::new(tables),
                    lazy: false,
                },
            })
        } else {
            let g = Self::box_3d(&config, receivers)?;
            let slow: Vec<Vec<f64>> = Phase::ALL
                .iter()
                .map(|&p| cell_averaged_slowness(model.as_ref(), p, &g, &|q| q))
                .collect::<Result<_, _>>()?;
            let mut positions: Vec<[i64; 3]> =
                receivers.iter().map(|r| r.to_array().map(key)).collect();
            positions.sort();
            positions.dedup();
            let jobs: Vec<(Phase, [i64; 3])> = Phase::ALL
                .iter()
                .flat_map(|&p| positions.iter().map(move |&k| (p, k)))
                .collect();
            let built: Result<Vec<_>, _> = jobs
                .par_iter()
                .map(|&(p, k)| {
                    let src = k.map(|v| v as f64 * 1e-6);
                    let v = model.velocity_km_s(p, src[0], src[1], src[2]);
                    solve(&g, &slow[p.index()], src, v).map(|s| ((p, k), Arc::new(s)))
                })
                .collect();
            Ok(Self {
                model,
                config,
                tables: Tables::Cartesian {
                    tables: built?.into_iter().collect(),
                },
            })
        }
    }

    /// An empty table set for a 1-D model that builds each (phase, receiver depth) table on
    /// first use; for [`GridTraveltime::radial_traveltime`] and any receiver.
    pub fn radial_lazy(
        model: Arc<dyn VelocityModel>,
        config: GridTraveltimeConfig,
    ) -> Result<Self, EikonalError> {
        check_config(&config)?;
        if !model.is_one_dimensional() {
            return Err(EikonalError::Grid(
                "radial tables need a 1-D (depth-only) velocity model".into(),
            ));
        }
        Ok(Self {
            model,
            config,
            tables: Tables::Radial {
                tables: RwLock::new(HashMap::new()),
                lazy: true,
            },
        })
    }

    fn box_3d(
        c: &GridTraveltimeConfig,
        receivers: &[LocalPoint],
    ) -> Result<EikonalGrid, EikonalError> {
        let [x0, y0, x1, y1] = match c.box_xy_km {
            Some(b) => b,
            None => {
                if receivers.is_empty() {
                    return Err(EikonalError::Grid("no stations and no box".into()));
                }
                let f = |sel: fn(&LocalPoint) -> f64, init: f64, op: fn(f64, f64) -> f64| {
                    receivers.iter().map(sel).fold(init, op)
                };
                [
                    f(|r| r.x_km, f64::INFINITY, f64::min) - c.margin_km,
                    f(|r| r.y_km, f64::INFINITY, f64::min) - c.margin_km,
                    f(|r| r.x_km, f64::NEG_INFINITY, f64::max) + c.margin_km,
                    f(|r| r.y_km, f64::NEG_INFINITY, f64::max) + c.margin_km,
                ]
            }
        };
        let h = c.spacing_3d_km;
        let zr_min = receivers.iter().map(|r| r.z_km).fold(c.z_min_km, f64::min);
        let lo = [
            (x0 / h + 1e-9).floor() * h,
            (y0 / h + 1e-9).floor() * h,
            (zr_min / h + 1e-9).floor() * h,
        ];
        let hi = [
            (x1 / h - 1e-9).ceil() * h,
            (y1 / h - 1e-9).ceil() * h,
            (c.z_max_km / h - 1e-9).ceil() * h,
        ];
        let counts = [0, 1, 2].map(|a| ((hi[a] - lo[a]) / h).round().max(0.0) as usize + 1);
        let g = EikonalGrid {
            origin_km: lo,
            spacing_km: [h; 3],
            counts,
        };
        g.validate()?;
        if let Some(r) = receivers.iter().find(|r| !g.contains(r.to_array())) {
            return Err(EikonalError::SourceOutside(r.x_km, r.y_km, r.z_km));
        }
        Ok(g)
    }

    /// The table configuration.
    pub fn config(&self) -> &GridTraveltimeConfig {
        &self.config
    }

    /// Number of tables held.
    pub fn table_count(&self) -> usize {
        match &self.tables {
            Tables::Radial { tables, .. } => tables.read().map(|t| t.len()).unwrap_or(0),
            Tables::Cartesian { tables } => tables.len(),
        }
    }

    /// Memory held by the tables' values, bytes.
    pub fn table_bytes(&self) -> usize {
        let sum = |it: &mut dyn Iterator<Item = &Arc<EikonalSolution>>| {
            it.map(|s| s.tau.len() * std::mem::size_of::<f32>()).sum()
        };
        match &self.tables {
            Tables::Radial { tables, .. } => {
                tables.read().map(|t| sum(&mut t.values())).unwrap_or(0)
            }
            Tables::Cartesian { tables } => sum(&mut tables.values()),
        }
    }

    fn radial_table(
        &self,
        phase: Phase,
        zr_km: f64,
    ) -> Result<Arc<EikonalSolution>, TraveltimeError> {
        let Tables::Radial { tables, lazy } = &self.tables else {
            return Err(TraveltimeError::Other("radial query on 3-D tables".into()));
        };
        let k = (phase, key(zr_km));
        if let Some(t) = tables
            .read()
            .map_err(|_| TraveltimeError::Other("table lock poisoned".into()))?
            .get(&k)
        {
            return Ok(t.clone());
        }
        if !lazy {
            return Err(TraveltimeError::Other(format!(
                "no {phase} table for a receiver at depth {zr_km} km (not one of the stations)"
            )));
        }
        // built outside the lock: a concurrent builder of the same table only wastes work
        let sol = Arc::new(
            build_radial(self.model.as_ref(), &self.config, phase, zr_km)
                .map_err(|e| TraveltimeError::Other(e.to_string()))?,
        );
        let mut w = tables
            .write()
            .map_err(|_| TraveltimeError::Other("table lock poisoned".into()))?;
        Ok(w.entry(k).or_insert(sol).clone())
    }

    /// Traveltime for a 1-D model from a source at depth `zs_km` to a receiver at depth
    /// `zr_km`, `r_km` apart horizontally, with dT/dr and dT/dzs (s/km). Lazy tables are built
    /// on first use of a receiver depth.
    pub fn radial_traveltime(
        &self,
        phase: Phase,
        r_km: f64,
        zs_km: f64,
        zr_km: f64,
    ) -> Result<RadialTime, TraveltimeError> {
        if !(r_km.is_finite() && zs_km.is_finite() && zr_km.is_finite()) {
            return Err(TraveltimeError::NonFinite);
        }
        let table = self.radial_table(phase, zr_km)?;
        let p = [r_km.abs(), 0.0, zs_km];
        let (t_s, g) = table
            .interpolate(p, [true, false, false])
            .ok_or_else(|| outside("source", [r_km, 0.0, zs_km]))?;
        Ok(RadialTime {
            t_s,
            dt_dr_s_per_km: g[0],
            dt_dzs_s_per_km: g[2],
        })
    }

    fn eval(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        check_finite(&source)?;
        check_finite(&receiver)?;
        match &self.tables {
            Tables::Radial { .. } => {
                let r = source.horizontal_distance_km(&receiver);
                let a = self.radial_traveltime(phase, r, source.z_km, receiver.z_km)?;
                Ok(radial_to_cartesian(
                    a.t_s,
                    a.dt_dr_s_per_km,
                    a.dt_dzs_s_per_km,
                    source,
                    receiver,
                ))
            }
            Tables::Cartesian { tables } => {
                let k = (phase, receiver.to_array().map(key));
                let table = tables.get(&k).ok_or_else(|| {
                    TraveltimeError::Other(format!(
                        "no {phase} table for receiver {receiver:?} (not one of the stations)"
                    ))
                })?;
                let (t_s, g) = table
                    .interpolate(source.to_array(), [false; 3])
                    .ok_or_else(|| outside("source", source.to_array()))?;
                Ok(TimeAndGradient {
                    t_s,
                    grad_s_per_km: g,
                })
            }
        }
    }
}

impl TraveltimeModel for GridTraveltime {
    fn name(&self) -> String {
        "grid".into()
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
    use crate::traveltime::AnalyticModel;
    use crate::velocity::GradientModel;

    #[test]
    fn radial_grid_aligns_nodes_and_covers_the_station() {
        let c = GridTraveltimeConfig {
            spacing_km: 0.25,
            r_max_km: 10.0,
            z_min_km: 0.0,
            z_max_km: 5.0,
            ..Default::default()
        };
        let g = radial_grid(&c, -1.1);
        assert_eq!(g.origin_km[2], -1.25);
        assert!(
            (g.max_km()[2] - 5.0).abs() < 1e-12 && (g.max_km()[0] - 10.0).abs() < 1e-12,
            "{g:?}"
        );
    }

    #[test]
    fn lazy_radial_matches_analytic_and_refuses_outside() {
        let m = GradientModel::new(0.0, 4.5, 2.6, 0.08, 0.045).unwrap();
        let cfg = GridTraveltimeConfig {
            spacing_km: 0.2,
            r_max_km: 30.0,
            z_min_km: -1.0,
            z_max_km: 15.0,
            ..Default::default()
        };
        let g = GridTraveltime::radial_lazy(Arc::new(m), cfg).unwrap();
        let exact = AnalyticModel::new(m);
        let rec = LocalPoint::new(1.0, 2.0, -0.43);
        for src in [
            LocalPoint::new(1.05, 2.02, 0.1),
            LocalPoint::new(8.0, -3.0, 7.3),
            LocalPoint::new(-17.0, 14.0, 12.1),
        ] {
            for p in Phase::ALL {
                let a = g.traveltime_and_gradient(p, src, rec).unwrap();
                let b = exact.traveltime_and_gradient(p, src, rec).unwrap();
                assert!(
                    (a.t_s - b.t_s).abs() < 2e-4 * b.t_s.max(1.0),
                    "{p} {src:?}: {} vs {}",
                    a.t_s,
                    b.t_s
                );
                for i in 0..3 {
                    assert!(
                        (a.grad_s_per_km[i] - b.grad_s_per_km[i]).abs() < 2e-3,
                        "{p} {src:?} grad {i}: {:?} vs {:?}",
                        a.grad_s_per_km,
                        b.grad_s_per_km
                    );
                }
            }
        }
        assert_eq!(g.table_count(), 2);
        assert!(matches!(
            g.traveltime_s(Phase::P, LocalPoint::new(40.0, 2.0, 3.0), rec),
            Err(TraveltimeError::OutsideModel { .. })
        ));
        assert!(matches!(
            g.traveltime_s(Phase::P, LocalPoint::new(f64::NAN, 2.0, 3.0), rec),
            Err(TraveltimeError::NonFinite)
        ));
    }
}
