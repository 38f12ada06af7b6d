//! Geographic <-> local Cartesian coordinates.
//!
//! The local frame is the azimuthal equidistant projection about an origin, computed with
//! GeographicLib geodesics on WGS84 (the projection NonLinLoc calls AZIMUTHAL_EQUIDIST):
//! distance and azimuth from the origin are exact, and distances between other points within
//! 300 km of it are distorted by less than 0.2 %. x is east, y is north, z is depth below sea
//! level, all in km.

use geographiclib_rs::{DirectGeodesic, Geodesic, InverseGeodesic};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A coordinate that is not on Earth.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GeoError {
    #[error("latitude {0} deg is outside -90..90")]
    Latitude(f64),
    #[error("longitude {0} deg is outside -180..360")]
    Longitude(f64),
}

/// A point on the ellipsoid, degrees (WGS84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, degrees north.
    pub lat_deg: f64,
    /// Longitude, degrees east.
    pub lon_deg: f64,
}

impl GeoPoint {
    /// A checked point: finite latitude in -90..90 and longitude in -180..360.
    pub fn new(lat_deg: f64, lon_deg: f64) -> Result<Self, GeoError> {
        if !lat_deg.is_finite() || !(-90.0..=90.0).contains(&lat_deg) {
            return Err(GeoError::Latitude(lat_deg));
        }
        if !lon_deg.is_finite() || !(-180.0..=360.0).contains(&lon_deg) {
            return Err(GeoError::Longitude(lon_deg));
        }
        Ok(Self { lat_deg, lon_deg })
    }
}

/// A point in a local frame: km east, km north, km depth below sea level (positive down).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LocalPoint {
    /// km east of the frame origin.
    pub x_km: f64,
    /// km north of the frame origin.
    pub y_km: f64,
    /// km below sea level (negative above it: a station at 1500 m elevation has z -1.5).
    pub z_km: f64,
}

impl LocalPoint {
    /// A point from (east km, north km, depth km).
    pub const fn new(x_km: f64, y_km: f64, z_km: f64) -> Self {
        Self { x_km, y_km, z_km }
    }
    /// `[x_km, y_km, z_km]`.
    pub const fn to_array(self) -> [f64; 3] {
        [self.x_km, self.y_km, self.z_km]
    }
    /// From `[x_km, y_km, z_km]`.
    pub const fn from_array(a: [f64; 3]) -> Self {
        Self::new(a[0], a[1], a[2])
    }
    /// Horizontal distance to `other`, km.
    pub fn horizontal_distance_km(&self, other: &LocalPoint) -> f64 {
        (self.x_km - other.x_km).hypot(self.y_km - other.y_km)
    }
}

/// The azimuthal equidistant frame about `origin`.
#[derive(Debug, Clone)]
pub struct LocalFrame {
    origin: GeoPoint,
    geod: Geodesic,
}

impl LocalFrame {
    /// A frame centred on `origin`.
    pub fn new(origin: GeoPoint) -> Self {
        Self {
            origin,
            geod: Geodesic::wgs84(),
        }
    }

    /// The frame origin.
    pub fn origin(&self) -> GeoPoint {
        self.origin
    }

    /// (x east km, y north km) of a geographic point.
    pub fn to_local(&self, p: GeoPoint) -> (f64, f64) {
        let (s12_m, azi1_deg, _azi2, _a12): (f64, f64, f64, f64) = self.geod.inverse(
            self.origin.lat_deg,
            self.origin.lon_deg,
            p.lat_deg,
            p.lon_deg,
        );
        let az = azi1_deg.to_radians();
        let d_km = s12_m / 1000.0;
        (d_km * az.sin(), d_km * az.cos())
    }

    /// The geographic point at (x east km, y north km); longitude in -180..180.
    pub fn to_geo(&self, x_km: f64, y_km: f64) -> GeoPoint {
        let d_m = x_km.hypot(y_km) * 1000.0;
        if d_m == 0.0 {
            return self.origin;
        }
        let azi_deg = x_km.atan2(y_km).to_degrees();
        let (lat, lon): (f64, f64) =
            self.geod
                .direct(self.origin.lat_deg, self.origin.lon_deg, azi_deg, d_m);
        GeoPoint {
            lat_deg: lat,
            lon_deg: lon,
        }
    }

    /// Geodesic distance (km) and azimuth from `a` to `b` (degrees east of north).
    pub fn distance_azimuth(&self, a: GeoPoint, b: GeoPoint) -> (f64, f64) {
        let (s12_m, azi1, _azi2, _a12): (f64, f64, f64, f64) = self
            .geod
            .inverse(a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg);
        (s12_m / 1000.0, azi1.rem_euclid(360.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_to_300_km() {
        let f = LocalFrame::new(GeoPoint::new(35.7, -117.5).unwrap());
        for &(x, y) in &[
            (0.0, 0.0),
            (300.0, 0.0),
            (-212.0, 212.0),
            (10.0, -299.0),
            (0.001, 0.0),
        ] {
            let g = f.to_geo(x, y);
            let (x2, y2) = f.to_local(g);
            assert!(
                (x - x2).abs() < 1e-6 && (y - y2).abs() < 1e-6,
                "{x},{y} -> {x2},{y2}"
            );
        }
    }

    #[test]
    fn distances_are_geodesic_to_the_metre() {
        // One degree of latitude at 35.7 N is 110.95 km on WGS84 (independent: Vincenty tables).
        let f = LocalFrame::new(GeoPoint::new(35.2, -117.5).unwrap());
        let (x, y) = f.to_local(GeoPoint::new(36.2, -117.5).unwrap());
        assert!(x.abs() < 1e-9);
        assert!((y - 110.95).abs() < 0.01, "{y}");
        // distortion between two non-origin points 300 km out stays below 0.2 %
        let a = f.to_geo(250.0, 150.0);
        let b = f.to_geo(260.0, 140.0);
        let (d, _) = f.distance_azimuth(a, b);
        let flat = (10.0f64).hypot(10.0);
        assert!(((d - flat) / flat).abs() < 2e-3, "{d} vs {flat}");
    }

    #[test]
    fn rejects_impossible_coordinates() {
        assert!(GeoPoint::new(91.0, 0.0).is_err());
        assert!(GeoPoint::new(0.0, f64::NAN).is_err());
        assert!(GeoPoint::new(0.0, 400.0).is_err());
    }
}
