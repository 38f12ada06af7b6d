//! Posterior summary: the particle covariance itself (not a shrunk kernel-density estimate),
//! 68 % / 95 % horizontal ellipses and depth intervals, the 95 % ellipsoid, origin time and
//! its sigma, RMS, azimuthal gap, nearest station, and per-arrival residual, weight and
//! outlier flag, filled into the QuakeML-shaped domain types.

use nalgebra::{Matrix2, Matrix3, SymmetricEigen};

use super::likelihood::{HUBER_K, OUTLIER_SIGMA};
use super::Posterior;
use crate::domain::time::add_seconds;
use crate::domain::{
    Arrival, ConfidenceEllipsoid, HorizontalEllipse, LocalFrame, Origin, OriginUncertainty, Phase,
    StationCode, UtcTime,
};

/// chi-square quantiles: 2 degrees of freedom at 68.27 % and 95 %, 3 at 95 %; and the normal
/// quantiles for depth.
pub const CHI2_2_68: f64 = 2.2957;
/// chi-square, 2 dof, 95 %.
pub const CHI2_2_95: f64 = 5.9915;
/// chi-square, 3 dof, 95 %.
pub const CHI2_3_95: f64 = 7.8147;
/// Standard normal 97.5 % quantile (two-sided 95 %).
pub const Z_95: f64 = 1.959964;

/// What the summary needs to know about each observation besides the posterior.
#[derive(Debug, Clone)]
pub struct ArrivalInput {
    /// Pick id.
    pub pick_id: String,
    /// Station code.
    pub station: StationCode,
    /// Phase.
    pub phase: Phase,
    /// Station position, local km.
    pub x_km: f64,
    /// Station position, local km.
    pub y_km: f64,
}

/// Everything reported for one located event.
#[derive(Debug, Clone)]
pub struct EventSummary {
    /// The origin, with arrivals and uncertainty.
    pub origin: Origin,
    /// Number of arrivals flagged as outliers.
    pub n_outliers: usize,
}

/// A horizontal ellipse at chi-square scale `q` from a 2x2 covariance (km^2).
pub fn horizontal_ellipse(cov: &[[f64; 3]; 3], q: f64) -> HorizontalEllipse {
    let m = Matrix2::new(cov[0][0], cov[0][1], cov[1][0], cov[1][1]);
    let e = SymmetricEigen::new(m);
    let (imax, imin) = if e.eigenvalues[0] >= e.eigenvalues[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let v = e.eigenvectors.column(imax);
    // azimuth east of north of the major axis: atan2(east, north), folded into 0..180
    let az = v[0].atan2(v[1]).to_degrees().rem_euclid(180.0);
    HorizontalEllipse {
        major_km: (e.eigenvalues[imax].max(0.0) * q).sqrt(),
        minor_km: (e.eigenvalues[imin].max(0.0) * q).sqrt(),
        azimuth_deg: az,
    }
}

/// The 95 % confidence ellipsoid from a 3x3 covariance (km^2, x east, y north, z down).
pub fn ellipsoid(cov: &[[f64; 3]; 3]) -> ConfidenceEllipsoid {
    let m = Matrix3::from_fn(|i, j| cov[i][j]);
    let e = SymmetricEigen::new(m);
    let mut idx = [0usize, 1, 2];
    idx.sort_by(|&a, &b| e.eigenvalues[b].total_cmp(&e.eigenvalues[a]));
    let axis = |i: usize| (e.eigenvalues[i].max(0.0) * CHI2_3_95).sqrt();
    let mut v = e.eigenvectors.column(idx[0]).into_owned();
    if v[2] < 0.0 {
        v = -v; // point the major axis down so the plunge is 0..90
    }
    let plunge = v[2].clamp(-1.0, 1.0).asin().to_degrees();
    let az = v[0].atan2(v[1]).to_degrees().rem_euclid(360.0);
    // rotation of the intermediate axis about the major axis, from the horizontal plane
    let w = e.eigenvectors.column(idx[1]);
    let horiz = nalgebra::Vector3::new(v[1], -v[0], 0.0);
    let rot = if horiz.norm() > 1e-12 {
        let h = horiz.normalize();
        let c = h.dot(&w).clamp(-1.0, 1.0);
        c.acos().to_degrees()
    } else {
        0.0
    };
    ConfidenceEllipsoid {
        semi_major_km: axis(idx[0]),
        semi_intermediate_km: axis(idx[1]),
        semi_minor_km: axis(idx[2]),
        major_azimuth_deg: az,
        major_plunge_deg: plunge,
        major_rotation_deg: rot,
    }
}

/// Largest gap between consecutive station azimuths, degrees (360 for fewer than 2).
pub fn azimuthal_gap_deg(azimuths_deg: &[f64]) -> f64 {
    let mut a: Vec<f64> = azimuths_deg.iter().map(|x| x.rem_euclid(360.0)).collect();
    if a.len() < 2 {
        return 360.0;
    }
    a.sort_by(|x, y| x.total_cmp(y));
    let mut gap = 360.0 - a[a.len() - 1] + a[0];
    for w in a.windows(2) {
        gap = f64::max(gap, w[1] - w[0]);
    }
    gap
}

/// Builds the origin from the posterior (reported hypocentre: the particle mean).
pub fn summarize(
    post: &Posterior,
    inputs: &[ArrivalInput],
    frame: &LocalFrame,
    reference_time: &UtcTime,
    origin_id: String,
) -> EventSummary {
    let m = post.mean_km;
    let geo = frame.to_geo(m[0], m[1]);
    let mut arrivals = Vec::with_capacity(inputs.len());
    let mut n_out = 0;
    let mut azs = Vec::new();
    let mut min_d = f64::INFINITY;
    let (mut sw, mut swr2) = (0.0, 0.0);
    for (i, a) in inputs.iter().enumerate() {
        let dx = a.x_km - m[0];
        let dy = a.y_km - m[1];
        let dist = dx.hypot(dy);
        let az = dx.atan2(dy).to_degrees().rem_euclid(360.0);
        azs.push(az);
        min_d = min_d.min(dist);
        let r = post.residual_s[i];
        // the distance weight scales the pick's say, not what counts as an outlier: judged
        // against its own sigma
        let prior_w = post.weights.get(i).copied().unwrap_or(1.0);
        let u = r / (post.sigma_s[i] * prior_w.max(super::MIN_PICK_WEIGHT));
        let weight = prior_w
            * if u.abs() <= HUBER_K {
                1.0
            } else {
                HUBER_K / u.abs()
            };
        let outlier = u.abs() > OUTLIER_SIGMA;
        n_out += usize::from(outlier);
        // RMS over the picks the solution trusts, weighted like the locator weighted them
        if !outlier {
            sw += weight;
            swr2 += weight * r * r;
        }
        arrivals.push(Arrival {
            pick_id: a.pick_id.clone(),
            station: a.station.clone(),
            phase: a.phase,
            distance_km: dist,
            azimuth_deg: az,
            residual_s: r,
            weight,
            outlier,
        });
    }
    let c = post.cov_km2;
    let unc = OriginUncertainty {
        horizontal_68: horizontal_ellipse(&c, post.h2_quantiles[0]),
        horizontal_95: horizontal_ellipse(&c, post.h2_quantiles[1]),
        depth_68_km: post.z_quantiles[0] * c[2][2].max(0.0).sqrt(),
        depth_95_km: post.z_quantiles[1] * c[2][2].max(0.0).sqrt(),
        ellipsoid_95: ellipsoid(&c),
        covariance_km2: c,
    };
    let origin = Origin {
        id: origin_id,
        time: add_seconds(reference_time, post.t0_s),
        time_sigma_s: post.t0_sigma_s,
        lat_deg: geo.lat_deg,
        lon_deg: geo.lon_deg,
        depth_km: m[2],
        uncertainty: unc,
        rms_s: if sw > 0.0 {
            (swr2 / sw).sqrt()
        } else {
            f64::NAN
        },
        gap_deg: azimuthal_gap_deg(&azs),
        min_distance_km: min_d,
        arrivals,
        version: 1,
        is_final: true,
        method: crate::domain::OriginMethod::Svgd,
    };
    EventSummary {
        origin,
        n_outliers: n_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipse_of_a_north_south_elongated_covariance() {
        // sigma_north 2 km, sigma_east 1 km: major axis north (azimuth 0), semi-axes sqrt(q) * sigma
        let c = [[1.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 9.0]];
        let e = horizontal_ellipse(&c, CHI2_2_95);
        assert!((e.major_km - 2.0 * CHI2_2_95.sqrt()).abs() < 1e-9);
        assert!((e.minor_km - CHI2_2_95.sqrt()).abs() < 1e-9);
        assert!(
            e.azimuth_deg.min(180.0 - e.azimuth_deg) < 1e-6,
            "{}",
            e.azimuth_deg
        );
        // rotated 45 degrees: major axis toward north-east
        let c2 = [[2.5, 1.5, 0.0], [1.5, 2.5, 0.0], [0.0, 0.0, 1.0]];
        let e2 = horizontal_ellipse(&c2, 1.0);
        assert!((e2.azimuth_deg - 45.0).abs() < 1e-6, "{}", e2.azimuth_deg);
        assert!((e2.major_km - 2.0).abs() < 1e-9 && (e2.minor_km - 1.0).abs() < 1e-9);
        let el = ellipsoid(&c);
        assert!((el.semi_major_km - 3.0 * CHI2_3_95.sqrt()).abs() < 1e-9);
        assert!((el.major_plunge_deg - 90.0).abs() < 1e-6);
    }

    #[test]
    fn gap_of_four_quadrant_stations_is_90() {
        assert!((azimuthal_gap_deg(&[10.0, 100.0, 190.0, 280.0]) - 90.0).abs() < 1e-12);
        assert!((azimuthal_gap_deg(&[350.0, 10.0]) - 340.0).abs() < 1e-12);
        assert_eq!(azimuthal_gap_deg(&[5.0]), 360.0);
    }
}
