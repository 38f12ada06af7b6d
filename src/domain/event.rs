//! Events, origins and arrivals, named as in QuakeML 1.2.

use serde::{Deserialize, Serialize};

use super::pick::{Phase, Pick};
use super::station::StationCode;
use super::time::UtcTime;

/// A pick as used by one origin: its residual and weight in that solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// Id of the pick this arrival uses.
    pub pick_id: String,
    /// Station of the pick.
    pub station: StationCode,
    /// Phase as located.
    pub phase: Phase,
    /// Epicentral distance, km.
    pub distance_km: f64,
    /// Azimuth from the epicentre to the station, degrees east of north.
    pub azimuth_deg: f64,
    /// Observed minus predicted arrival time, s.
    pub residual_s: f64,
    /// Relative weight in the solution, 0..1.
    pub weight: f64,
    /// True when the robust likelihood treated the pick as an outlier.
    pub outlier: bool,
}

/// Horizontal confidence ellipse (QuakeML OriginUncertainty).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct HorizontalEllipse {
    /// Semi-major axis, km.
    pub major_km: f64,
    /// Semi-minor axis, km.
    pub minor_km: f64,
    /// Azimuth of the major axis, degrees east of north, 0..180.
    pub azimuth_deg: f64,
}

/// 3-D confidence ellipsoid (QuakeML ConfidenceEllipsoid).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfidenceEllipsoid {
    /// Largest semi-axis, km.
    pub semi_major_km: f64,
    /// Smallest semi-axis, km.
    pub semi_minor_km: f64,
    /// Intermediate semi-axis, km.
    pub semi_intermediate_km: f64,
    /// Azimuth of the major axis, degrees east of north.
    pub major_azimuth_deg: f64,
    /// Plunge of the major axis below horizontal, degrees.
    pub major_plunge_deg: f64,
    /// Rotation about the major axis, degrees.
    pub major_rotation_deg: f64,
}

/// Location uncertainty of an origin.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OriginUncertainty {
    /// 68 % horizontal ellipse.
    pub horizontal_68: HorizontalEllipse,
    /// 95 % horizontal ellipse.
    pub horizontal_95: HorizontalEllipse,
    /// Half-width of the 68 % depth interval, km.
    pub depth_68_km: f64,
    /// Half-width of the 95 % depth interval, km.
    pub depth_95_km: f64,
    /// 95 % confidence ellipsoid.
    pub ellipsoid_95: ConfidenceEllipsoid,
    /// Covariance of (x east, y north, z down), km^2, row-major 3x3.
    pub covariance_km2: [[f64; 3]; 3],
}

/// How an origin's hypocentre and uncertainty were computed (QuakeML `methodID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginMethod {
    /// The full Bayesian posterior: SVGD particles (their covariance and quantiles).
    #[default]
    Svgd,
    /// A quick preliminary solution: grid + Levenberg-Marquardt with its linearized (sandwich)
    /// covariance, published before the posterior is ready.
    Linearized,
}

impl OriginMethod {
    /// Lowercase name (`svgd`, `linearized`), as in the stream, QuakeML `methodID` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginMethod::Svgd => "svgd",
            OriginMethod::Linearized => "linearized",
        }
    }
}

/// One solution for an event's hypocentre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// Deterministic id (event id plus version).
    pub id: String,
    /// Origin time, UTC.
    pub time: UtcTime,
    /// One-sigma origin-time uncertainty, s.
    pub time_sigma_s: f64,
    /// Latitude, degrees north.
    pub lat_deg: f64,
    /// Longitude, degrees east.
    pub lon_deg: f64,
    /// Depth below sea level, km.
    pub depth_km: f64,
    /// Uncertainty summary.
    pub uncertainty: OriginUncertainty,
    /// RMS of the arrival residuals, s (weighted).
    pub rms_s: f64,
    /// Largest azimuthal gap between stations, degrees.
    pub gap_deg: f64,
    /// Distance to the nearest station, km.
    pub min_distance_km: f64,
    /// Arrivals used or considered.
    pub arrivals: Vec<Arrival>,
    /// Version number within its event, 1-based.
    pub version: u32,
    /// True when the event's association window has closed.
    pub is_final: bool,
    /// How it was computed (absent in records written before the field existed: SVGD).
    #[serde(default)]
    pub method: OriginMethod,
}

/// An earthquake: its picks and its successive origins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Deterministic id.
    pub id: String,
    /// Picks associated with the event.
    pub picks: Vec<Pick>,
    /// All origin versions, oldest first.
    pub origins: Vec<Origin>,
    /// Index into `origins` of the preferred one.
    pub preferred_origin: Option<usize>,
}

impl Event {
    /// The preferred origin, if any.
    pub fn preferred(&self) -> Option<&Origin> {
        self.preferred_origin.and_then(|i| self.origins.get(i))
    }
}
