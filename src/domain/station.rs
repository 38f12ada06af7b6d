//! Stations and the station inventory.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

use super::geo::GeoPoint;

/// FDSN network and station codes, optionally a location code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StationCode {
    /// FDSN network code, e.g. `CI`.
    pub network: String,
    /// Station code, e.g. `PASC`.
    pub station: String,
    /// Location code; empty when not given (`--` in some files).
    #[serde(default)]
    pub location: String,
}

impl StationCode {
    /// A code without location.
    pub fn new(network: &str, station: &str) -> Self {
        Self {
            network: network.trim().to_string(),
            station: station.trim().to_string(),
            location: String::new(),
        }
    }
}

impl fmt::Display for StationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.network, self.station)
    }
}

/// A seismic station: position and elevation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    /// Network, station (and location) code.
    pub code: StationCode,
    /// Latitude, degrees north (WGS84).
    pub lat_deg: f64,
    /// Longitude, degrees east (WGS84).
    pub lon_deg: f64,
    /// Elevation above sea level, m (positive up).
    pub elevation_m: f64,
}

impl Station {
    /// Geographic position.
    pub fn geo(&self) -> GeoPoint {
        GeoPoint {
            lat_deg: self.lat_deg,
            lon_deg: self.lon_deg,
        }
    }
    /// Depth of the station below sea level, km (negative above sea level).
    pub fn depth_km(&self) -> f64 {
        -self.elevation_m / 1000.0
    }
}

/// The stations a configuration knows, indexed by (network, station).
#[derive(Debug, Clone, Default)]
pub struct StationInventory {
    stations: Vec<Station>,
    index: HashMap<(String, String), usize>,
}

impl StationInventory {
    /// Builds the index; a later duplicate of (network, station) is returned as `Err(code)`.
    pub fn new(stations: Vec<Station>) -> Result<Self, StationCode> {
        let mut index = HashMap::with_capacity(stations.len());
        for (i, s) in stations.iter().enumerate() {
            let key = (s.code.network.clone(), s.code.station.clone());
            if index.insert(key, i).is_some() {
                return Err(s.code.clone());
            }
        }
        Ok(Self { stations, index })
    }
    /// All stations in file order.
    pub fn stations(&self) -> &[Station] {
        &self.stations
    }
    /// Number of stations.
    pub fn len(&self) -> usize {
        self.stations.len()
    }
    /// True when there are no stations.
    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
    }
    /// Index of a station by network and station code (location ignored).
    pub fn position(&self, network: &str, station: &str) -> Option<usize> {
        self.index
            .get(&(network.to_string(), station.to_string()))
            .copied()
    }
    /// Station by network and station code (location ignored).
    pub fn get(&self, network: &str, station: &str) -> Option<&Station> {
        self.position(network, station).map(|i| &self.stations[i])
    }
    /// Highest station elevation, m (0 when empty).
    pub fn max_elevation_m(&self) -> f64 {
        self.stations
            .iter()
            .map(|s| s.elevation_m)
            .fold(0.0, f64::max)
    }
}
