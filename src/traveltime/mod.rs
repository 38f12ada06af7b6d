//! Traveltimes behind one trait: analytic oracles, the exact 1-D layered solver, the eikonal
//! grid solver, and (in `pinn`) the trained network.
//!
//! Frame: local km (x east, y north, z depth below sea level, positive down). Gradients are
//! with respect to the *source* position, s/km.

pub mod analytic;
pub mod eikonal;
pub mod grid;
pub mod layered_exact;
pub mod pinn;
pub mod pinn_check;

pub use analytic::AnalyticModel;
pub use grid::{GridTraveltime, GridTraveltimeConfig, RadialTime};
pub use layered_exact::{ArrivalPath, LayeredExact, RadialArrival};
pub use pinn::PinnModel;

use crate::domain::{LocalPoint, Phase};
use thiserror::Error;

/// Why a traveltime could not be given.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TraveltimeError {
    #[error("{what} at ({x_km:.3}, {y_km:.3}, {z_km:.3}) km is outside the model box")]
    OutsideModel {
        what: &'static str,
        x_km: f64,
        y_km: f64,
        z_km: f64,
    },
    #[error("non-finite coordinate")]
    NonFinite,
    #[error("phase {0} is not available in this model")]
    PhaseUnavailable(Phase),
    #[error("{0}")]
    Other(String),
}

/// A receiver in a batch query: the phase observed and where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Receiver {
    /// Phase observed.
    pub phase: Phase,
    /// Receiver position (z = minus elevation in km).
    pub position: LocalPoint,
}

/// Traveltime and its gradient with respect to the source position.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TimeAndGradient {
    /// Traveltime, s.
    pub t_s: f64,
    /// dT/d(source x, y, z), s/km.
    pub grad_s_per_km: [f64; 3],
}

/// Anything that gives first-arrival traveltimes between a source and a receiver.
pub trait TraveltimeModel: Send + Sync {
    /// Short name for reports (e.g. `exact-1d`, `grid`, `pinn:demo`).
    fn name(&self) -> String;

    /// First-arrival traveltime of `phase` from `source` to `receiver`, s.
    fn traveltime_s(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<f64, TraveltimeError>;

    /// Largest epicentral distance the model answers, km (None: no limit). A trained
    /// network ends at its box; a table over it must not reach past that.
    fn max_distance_km(&self) -> Option<f64> {
        None
    }

    /// Traveltime and dT/dsource. The default is a central difference with a 1 m step;
    /// implementations with an analytic gradient override it.
    fn traveltime_and_gradient(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        let t_s = self.traveltime_s(phase, source, receiver)?;
        let h = 1e-3;
        let mut grad = [0.0; 3];
        for (k, g) in grad.iter_mut().enumerate() {
            let mut a = source.to_array();
            let mut b = a;
            a[k] += h;
            b[k] -= h;
            let ta = self.traveltime_s(phase, LocalPoint::from_array(a), receiver)?;
            let tb = self.traveltime_s(phase, LocalPoint::from_array(b), receiver)?;
            *g = (ta - tb) / (2.0 * h);
        }
        Ok(TimeAndGradient {
            t_s,
            grad_s_per_km: grad,
        })
    }

    /// All (source, receiver) pairs, row-major: `out[i * receivers.len() + j]` is source i to
    /// receiver j. Fast models (the network evaluator) override this; it is the locator's
    /// hot path.
    fn batch_with_gradient(
        &self,
        sources: &[LocalPoint],
        receivers: &[Receiver],
        out: &mut [TimeAndGradient],
    ) -> Result<(), TraveltimeError> {
        assert_eq!(
            out.len(),
            sources.len() * receivers.len(),
            "output buffer size"
        );
        for (i, s) in sources.iter().enumerate() {
            for (j, r) in receivers.iter().enumerate() {
                out[i * receivers.len() + j] =
                    self.traveltime_and_gradient(r.phase, *s, r.position)?;
            }
        }
        Ok(())
    }

    /// Traveltimes only, s, for all (source, receiver) pairs in the layout of
    /// [`TraveltimeModel::batch_with_gradient`]. The locator's Metropolis steps and grid need no
    /// gradients; a model whose gradient costs extra overrides this. The default goes through
    /// `batch_with_gradient`, so batched models (the network evaluator) keep their speed.
    fn batch_times(
        &self,
        sources: &[LocalPoint],
        receivers: &[Receiver],
        out: &mut [f64],
    ) -> Result<(), TraveltimeError> {
        let mut full = vec![TimeAndGradient::default(); out.len()];
        self.batch_with_gradient(sources, receivers, &mut full)?;
        for (o, f) in out.iter_mut().zip(&full) {
            *o = f.t_s;
        }
        Ok(())
    }
}

/// Converts a cylindrically symmetric answer (T, dT/dr, dT/dz_source) into the Cartesian
/// gradient for a source and receiver; r is the horizontal source-receiver distance.
pub fn radial_to_cartesian(
    t_s: f64,
    dt_dr: f64,
    dt_dzs: f64,
    source: LocalPoint,
    receiver: LocalPoint,
) -> TimeAndGradient {
    let dx = source.x_km - receiver.x_km;
    let dy = source.y_km - receiver.y_km;
    let r = dx.hypot(dy);
    let (ux, uy) = if r > 1e-12 {
        (dx / r, dy / r)
    } else {
        (0.0, 0.0)
    };
    TimeAndGradient {
        t_s,
        grad_s_per_km: [dt_dr * ux, dt_dr * uy, dt_dzs],
    }
}

/// Rejects non-finite coordinates early, so no solver sees a NaN.
pub fn check_finite(p: &LocalPoint) -> Result<(), TraveltimeError> {
    if p.x_km.is_finite() && p.y_km.is_finite() && p.z_km.is_finite() {
        Ok(())
    } else {
        Err(TraveltimeError::NonFinite)
    }
}
