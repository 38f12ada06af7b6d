//! Station configurations: one folder per region under `station-configs/<name>/`, holding a
//! `config.toml` that names the station file, the velocity model, the local-frame origin, the
//! model box and (optionally) a trained network.
//!
//! Two types, as ripgrep does it: [`StationConfig`] is the file as written (serde TOML, unknown
//! keys rejected so a typo is an error, paths as written); [`ResolvedStationConfig`] is what the
//! rest of the program uses (paths resolved against the config folder, stations and velocity
//! model loaded and checked, every station placed in the local frame).
//!
//! ```toml
//! name = "demo"                          # optional; default: the folder name
//! stations = "stations.csv"              # CSV network,station,lat,lon,elev_m or StationXML (*.xml)
//! velocity = "velocity.csv"              # 1-D layered CSV depth_top_km,vp_km_s,vs_km_s
//! model = "../../trained-models/demo"    # optional trained network folder (need not exist yet)
//! [origin]                               # local frame origin, WGS84 degrees
//! lat_deg = 34.0
//! lon_deg = -117.3
//! [box]                                  # source region / model extent, local frame km
//! x_min_km = -70.0
//! x_max_km = 70.0
//! y_min_km = -70.0
//! y_max_km = 70.0
//! z_min_km = -3.0                        # depth, positive down; must lie above every station
//! z_max_km = 40.0
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{GeoPoint, LocalFrame, LocalPoint, Station, StationInventory};
use crate::inventory::{self, InventoryError};
use crate::velocity::{LayeredModel, VelocityError};

/// File name looked for when a configuration is given as a folder.
pub const CONFIG_FILE_NAME: &str = "config.toml";

/// What a station configuration got wrong, naming the config file and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or lacks a required one (the message names it).
    #[error("{file}: {message}")]
    Toml { file: PathBuf, message: String },
    /// The station file named by key `stations` is unreadable or invalid.
    #[error("{file}: key \"stations\": {source}")]
    Stations {
        file: PathBuf,
        source: Box<InventoryError>,
    },
    /// The velocity file named by key `velocity` is unreadable or invalid.
    #[error("{file}: key \"velocity\": {source}")]
    Velocity {
        file: PathBuf,
        source: VelocityError,
    },
    /// A value is impossible (e.g. an empty box or an origin off the Earth).
    #[error("{file}: key {key:?}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// The `[origin]` table: origin of the local frame, WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Latitude, degrees north.
    pub lat_deg: f64,
    /// Longitude, degrees east.
    pub lon_deg: f64,
}

/// The region sources are searched in and a network is trained on: local-frame km
/// (x east, y north, z depth below sea level, positive down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBox {
    /// West edge, km east of the origin.
    pub x_min_km: f64,
    /// East edge, km east of the origin.
    pub x_max_km: f64,
    /// South edge, km north of the origin.
    pub y_min_km: f64,
    /// North edge, km north of the origin.
    pub y_max_km: f64,
    /// Top, km depth (negative: above sea level).
    pub z_min_km: f64,
    /// Bottom, km depth.
    pub z_max_km: f64,
}

impl ModelBox {
    /// True when `p` lies inside the box (edges included).
    pub fn contains(&self, p: &LocalPoint) -> bool {
        self.contains_horizontal(p) && (self.z_min_km..=self.z_max_km).contains(&p.z_km)
    }
    /// True when (x, y) of `p` lies inside the box's horizontal extent (edges included).
    pub fn contains_horizontal(&self, p: &LocalPoint) -> bool {
        (self.x_min_km..=self.x_max_km).contains(&p.x_km)
            && (self.y_min_km..=self.y_max_km).contains(&p.y_km)
    }
    /// Centre of the box, local km.
    pub fn center(&self) -> LocalPoint {
        LocalPoint::new(
            0.5 * (self.x_min_km + self.x_max_km),
            0.5 * (self.y_min_km + self.y_max_km),
            0.5 * (self.z_min_km + self.z_max_km),
        )
    }
    /// Length of the horizontal diagonal, km: the largest epicentral distance between two
    /// points of the box.
    pub fn horizontal_diagonal_km(&self) -> f64 {
        (self.x_max_km - self.x_min_km).hypot(self.y_max_km - self.y_min_km)
    }

    /// Checks every bound is finite and each min below its max; `Err((key, message))`.
    fn validate(&self) -> Result<(), (String, String)> {
        let pairs = [
            ("x", self.x_min_km, self.x_max_km),
            ("y", self.y_min_km, self.y_max_km),
            ("z", self.z_min_km, self.z_max_km),
        ];
        for (axis, lo, hi) in pairs {
            for (which, v) in [("min", lo), ("max", hi)] {
                if !v.is_finite() {
                    return Err((
                        format!("box.{axis}_{which}_km"),
                        format!("{v} is not finite"),
                    ));
                }
            }
            if lo >= hi {
                return Err((
                    format!("box.{axis}_max_km"),
                    format!("{hi} is not greater than {axis}_min_km {lo}"),
                ));
            }
        }
        Ok(())
    }
}

/// A `config.toml` as written; paths relative to the folder holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Region name; defaults to the config folder's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Station file: CSV (`network,station,lat,lon,elev_m`) or StationXML (`*.xml`).
    pub stations: PathBuf,
    /// 1-D layered velocity model, CSV `depth_top_km,vp_km_s,vs_km_s`.
    pub velocity: PathBuf,
    /// Folder of a trained eikonal network for this region (optional; need not exist yet).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Origin of the local frame.
    pub origin: OriginConfig,
    /// Source region and model extent, local km.
    #[serde(rename = "box")]
    pub model_box: ModelBox,
    /// Locator settings that belong to this network (optional `[locator]` table).
    #[serde(default)]
    pub locator: LocatorSection,
}

/// The optional `[locator]` table: what a network's operators tune for their picks and model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocatorSection {
    /// Distance weighting (Hypoinverse `DIS`):
    /// `distance_weighting = { min_stations = 6, full_km = 25.0, zero_factor = 2.0 }`.
    #[serde(default)]
    pub distance_weighting: Option<crate::locate::DistanceWeighting>,
}

impl StationConfig {
    /// Parses TOML text; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Self, ConfigError> {
        // toml's message already names the key and shows the line
        toml::from_str(text).map_err(|e| ConfigError::Toml {
            file: file.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a config file.
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, file)
    }

    /// Loads the files it names and checks the whole; `config_file` is where this config was
    /// read from (relative paths are resolved against its folder).
    pub fn resolve(self, config_file: &Path) -> Result<ResolvedStationConfig, ConfigError> {
        let file = config_file.to_path_buf();
        let dir = config_file.parent().unwrap_or(Path::new("."));
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.clone(),
            key: key.to_string(),
            message,
        };

        let origin = GeoPoint::new(self.origin.lat_deg, self.origin.lon_deg).map_err(|e| {
            let key = if matches!(e, crate::domain::GeoError::Latitude(_)) {
                "origin.lat_deg"
            } else {
                "origin.lon_deg"
            };
            invalid(key, e.to_string())
        })?;
        self.model_box
            .validate()
            .map_err(|(key, m)| invalid(&key, m))?;

        let stations_file = dir.join(&self.stations);
        let inventory =
            inventory::read_path(&stations_file).map_err(|source| ConfigError::Stations {
                file: file.clone(),
                source: Box::new(source),
            })?;
        let velocity_file = dir.join(&self.velocity);
        let velocity = crate::velocity::load_layered(&velocity_file).map_err(|source| {
            ConfigError::Velocity {
                file: file.clone(),
                source,
            }
        })?;

        let frame = LocalFrame::new(origin);
        let station_positions: Vec<LocalPoint> = inventory
            .stations()
            .iter()
            .map(|s| {
                let (x_km, y_km) = frame.to_local(s.geo());
                LocalPoint::new(x_km, y_km, s.depth_km())
            })
            .collect();
        // Receivers are evaluated at their own depth, so a station above the box top would
        // ask a trained network for points it never saw.
        if let Some((s, p)) = inventory
            .stations()
            .iter()
            .zip(&station_positions)
            .filter(|(_, p)| p.z_km < self.model_box.z_min_km)
            .min_by(|a, b| a.1.z_km.total_cmp(&b.1.z_km))
        {
            return Err(invalid(
                "box.z_min_km",
                format!(
                    "{} km is below station {} at elevation {} m (z {} km); raise the box top above every station",
                    self.model_box.z_min_km, s.code, s.elevation_m, p.z_km
                ),
            ));
        }

        if let Some(dw) = &self.locator.distance_weighting {
            dw.validate()
                .map_err(|m| invalid("locator.distance_weighting", m))?;
        }

        let name = match self.name {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => return Err(invalid("name", "empty name".into())),
            None => dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "default".into()),
        };
        Ok(ResolvedStationConfig {
            name,
            config_file: file.clone(),
            stations_file,
            inventory,
            velocity_file,
            velocity,
            frame,
            model_box: self.model_box,
            model_dir: self.model.map(|m| dir.join(m)),
            station_positions,
            locator: self.locator,
        })
    }
}

/// A station configuration ready to use: files loaded and checked, stations in the local frame.
#[derive(Debug, Clone)]
pub struct ResolvedStationConfig {
    /// Region name.
    pub name: String,
    /// The `config.toml` this came from.
    pub config_file: PathBuf,
    /// The station file, resolved against the config folder.
    pub stations_file: PathBuf,
    /// The stations (geographic, WGS84 degrees and m).
    pub inventory: StationInventory,
    /// The velocity file, resolved against the config folder.
    pub velocity_file: PathBuf,
    /// The 1-D layered velocity model (depth km below sea level, km/s).
    pub velocity: LayeredModel,
    /// The azimuthal-equidistant local frame about the configured origin.
    pub frame: LocalFrame,
    /// Source region and model extent, local km.
    pub model_box: ModelBox,
    /// Trained network folder, resolved against the config folder; it may not exist yet.
    pub model_dir: Option<PathBuf>,
    /// The network's locator settings (`[locator]`).
    pub locator: LocatorSection,
    /// Each station's local position (km east, km north, km depth = -elevation), in the
    /// order of `inventory.stations()`.
    pub station_positions: Vec<LocalPoint>,
}

impl ResolvedStationConfig {
    /// Every (phase, station position) pair of the inventory, in station order, P then S:
    /// the receivers the locator's traveltime tables are built for.
    pub fn receivers(&self) -> Vec<crate::traveltime::Receiver> {
        self.station_positions
            .iter()
            .flat_map(|p| {
                crate::domain::Phase::ALL.map(|phase| crate::traveltime::Receiver {
                    phase,
                    position: *p,
                })
            })
            .collect()
    }

    /// Loads a configuration from a folder (reading its `config.toml`) or a TOML file path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = if path.is_dir() {
            path.join(CONFIG_FILE_NAME)
        } else {
            path.to_path_buf()
        };
        StationConfig::from_file(&file)?.resolve(&file)
    }

    /// Local position of a station (location code ignored), local km.
    pub fn station_position(&self, network: &str, station: &str) -> Option<LocalPoint> {
        self.inventory
            .position(network, station)
            .map(|i| self.station_positions[i])
    }

    /// Stations with their local positions, in inventory order.
    pub fn stations_local(&self) -> impl Iterator<Item = (&Station, LocalPoint)> + '_ {
        self.inventory
            .stations()
            .iter()
            .zip(self.station_positions.iter().copied())
    }

    /// Largest epicentral distance, km, from any point of the box to any station: the range a
    /// 1-D traveltime table or network must cover for this region.
    pub fn max_source_receiver_distance_km(&self) -> f64 {
        let b = &self.model_box;
        let corners = [
            (b.x_min_km, b.y_min_km),
            (b.x_min_km, b.y_max_km),
            (b.x_max_km, b.y_min_km),
            (b.x_max_km, b.y_max_km),
        ];
        let mut d_max = 0.0f64;
        for p in &self.station_positions {
            for &(x, y) in &corners {
                d_max = d_max.max((p.x_km - x).hypot(p.y_km - y));
            }
        }
        d_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATIONS: &str =
        "network,station,lat,lon,elev_m\nXX,A,34.0,-117.0,500\nXX,B,34.2,-117.1,1200\n";
    const VELOCITY: &str = "depth_top_km,vp_km_s,vs_km_s\n0,5.5,3.2\n10,6.5,3.8\n";
    const CONFIG: &str = r#"
stations = "sta/stations.csv"
velocity = "vel.csv"
[origin]
lat_deg = 34.0
lon_deg = -117.0
[box]
x_min_km = -50.0
x_max_km = 50.0
y_min_km = -50.0
y_max_km = 50.0
z_min_km = -2.0
z_max_km = 30.0
"#;

    /// A region folder in a temp dir holding `config` (stations in a subfolder).
    fn region(config: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sta")).unwrap();
        std::fs::write(d.path().join("sta/stations.csv"), STATIONS).unwrap();
        std::fs::write(d.path().join("vel.csv"), VELOCITY).unwrap();
        std::fs::write(d.path().join(CONFIG_FILE_NAME), config).unwrap();
        d
    }

    fn load_err(config: &str) -> String {
        let d = region(config);
        ResolvedStationConfig::load(d.path())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn loads_by_folder_or_file_with_relative_paths() {
        let d = region(CONFIG);
        let a = ResolvedStationConfig::load(d.path()).unwrap();
        let b = ResolvedStationConfig::load(&d.path().join(CONFIG_FILE_NAME)).unwrap();
        assert_eq!(a.inventory.len(), 2);
        assert_eq!(a.station_positions, b.station_positions);
        assert_eq!(a.stations_file, d.path().join("sta/stations.csv"));
        assert!(a.model_dir.is_none());
        // name defaults to the folder name
        assert_eq!(
            a.name,
            d.path()
                .canonicalize()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
        );
        // station A is at the origin: x = y = 0, z = -0.5 km
        let p = a.station_position("XX", "A").unwrap();
        assert!(
            p.x_km.abs() < 1e-9 && p.y_km.abs() < 1e-9 && (p.z_km + 0.5).abs() < 1e-12,
            "{p:?}"
        );
        // station B: 0.2 deg north is 22.19 km on WGS84 at 34 N, 0.1 deg west about 9.24 km
        let p = a.station_position("XX", "B").unwrap();
        assert!(
            (p.y_km - 22.19).abs() < 0.05 && (p.x_km + 9.24).abs() < 0.05,
            "{p:?}"
        );
        assert_eq!(a.velocity.layers().len(), 2);
        // farthest source-receiver pair: corner (-50,-50) or (50,-50) to B
        let expected = (50.0 + 9.24f64)
            .hypot(50.0 + 22.19)
            .max((50.0 - 9.24f64).hypot(50.0 + 22.19));
        assert!((a.max_source_receiver_distance_km() - expected).abs() < 0.1);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load_err(&CONFIG.replace("velocity =", "velocty ="));
        assert!(e.contains("velocty") && e.contains("config.toml"), "{e}");
    }

    #[test]
    fn missing_key_is_named() {
        let e = load_err(&CONFIG.replace("z_max_km = 30.0", ""));
        assert!(e.contains("z_max_km"), "{e}");
    }

    #[test]
    fn empty_box_is_rejected() {
        let e = load_err(&CONFIG.replace("x_max_km = 50.0", "x_max_km = -60.0"));
        assert!(e.contains("box.x_max_km"), "{e}");
    }

    #[test]
    fn origin_off_the_earth_is_rejected() {
        let e = load_err(&CONFIG.replace("lat_deg = 34.0", "lat_deg = 134.0"));
        assert!(e.contains("origin.lat_deg"), "{e}");
    }

    #[test]
    fn locator_distance_weighting_is_read_and_checked() {
        let with = |table: &str| format!("{CONFIG}[locator]\ndistance_weighting = {table}\n");
        let d = region(&with(
            "{ min_stations = 6, full_km = 25.0, zero_factor = 2.0 }",
        ));
        let r = ResolvedStationConfig::load(d.path()).unwrap();
        let dw = r.locator.distance_weighting.unwrap();
        assert_eq!(
            (dw.min_stations, dw.full_km, dw.zero_factor),
            (6, 25.0, 2.0)
        );
        assert!(ResolvedStationConfig::load(region(CONFIG).path())
            .unwrap()
            .locator
            .distance_weighting
            .is_none());
        let e = load_err(&with(
            "{ min_stations = 2, full_km = 25.0, zero_factor = 2.0 }",
        ));
        assert!(
            e.contains("locator.distance_weighting") && e.contains("min_stations"),
            "{e}"
        );
        let e = load_err(&with(
            "{ min_stations = 6, full_km = 25.0, zero_fator = 2.0 }",
        ));
        assert!(e.contains("zero_fator"), "{e}");
    }

    #[test]
    fn station_above_box_top_is_rejected() {
        let e = load_err(&CONFIG.replace("z_min_km = -2.0", "z_min_km = -1.0"));
        assert!(e.contains("box.z_min_km") && e.contains("XX.B"), "{e}");
    }

    #[test]
    fn bad_station_file_names_key_file_and_line() {
        let d = region(CONFIG);
        std::fs::write(
            d.path().join("sta/stations.csv"),
            "network,station,lat,lon,elev_m\nXX,A,34.0,-117.0,500\nXX,C,95.0,-117.0,0\n",
        )
        .unwrap();
        let e = ResolvedStationConfig::load(d.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"stations\"") && e.contains("stations.csv:3") && e.contains("lat"),
            "{e}"
        );
    }

    #[test]
    fn missing_velocity_file_names_key_and_path() {
        let e = load_err(&CONFIG.replace("vel.csv", "nope.csv"));
        assert!(e.contains("\"velocity\"") && e.contains("nope.csv"), "{e}");
    }
}
