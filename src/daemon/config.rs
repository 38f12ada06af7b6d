//! The service configuration: one TOML file (raw, [`ServeConfig`]) resolved into
//! [`ResolvedServeConfig`] (station configuration loaded, paths resolved against the file's
//! folder, addresses parsed, limits checked).
//!
//! ```toml
//! station_config = "../station-configs/demo"   # folder holding config.toml, or the file
//! [listen]                                     # loopback unless you mean otherwise
//! ingest = "127.0.0.1:7400"                    # picks in (MessagePack frames or JSON lines)
//! stream = "127.0.0.1:7401"                    # origin versions out (TCP subscribers)
//! http = "127.0.0.1:7480"                      # HTTP API and /metrics
//! [ingest]
//! token = "change-me"                          # optional shared token
//! max_frame_bytes = 65536
//! max_clients = 256
//! max_future_s = 300.0                         # picks ahead of the clock beyond this: rejected
//! # max_age_s = 86400.0                        # picks older than this: rejected (default: any)
//! max_uncertainty_s = 10.0
//! [store]
//! path = "eikoloc.sqlite"
//! [publish]
//! quakeml_dir = "events"
//! stream_capacity = 1024
//! [pipeline]
//! pick_queue = 4096
//! locate_threads = 2
//! locate_queue = 32                            # runs waiting for a thread, one per event at most
//! preliminary_origin = true                    # linearized first origin before the posterior
//! locate_nice = 5                              # locate threads yield to association (Linux)
//! relocate_slope_s = 0.5                       # relocate no sooner than slope * N + intercept
//! relocate_intercept_s = 0.0                   #   seconds after the previous origin (N picks),
//!                                              #   times 1 + queued runs / threads
//! idle_advance_s = 30.0
//! replay_window_s = 600.0
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{ConfigError, ResolvedStationConfig, StationConfig, CONFIG_FILE_NAME};
use crate::ingest::{IngestConfig, PickLimits};

/// What a service configuration got wrong, naming the file and the key.
#[derive(Debug, Error)]
pub enum ServeConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown key or a missing one (the message names it).
    #[error("{file}: {message}")]
    Toml { file: PathBuf, message: String },
    /// A value is impossible.
    #[error("{file}: key {key:?}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// The station configuration it names is invalid.
    #[error("{file}: key \"station_config\": {source}")]
    Station {
        file: PathBuf,
        source: Box<ConfigError>,
    },
}

/// `[listen]`: socket addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Pick ingest.
    pub ingest: String,
    /// Origin stream to subscribers.
    pub stream: String,
    /// HTTP API and metrics.
    pub http: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            ingest: "127.0.0.1:7400".into(),
            stream: "127.0.0.1:7401".into(),
            http: "127.0.0.1:7480".into(),
        }
    }
}

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Shared token; absent: no authentication.
    pub token: Option<String>,
    /// Largest frame or line, bytes.
    pub max_frame_bytes: usize,
    /// Most simultaneous clients.
    pub max_clients: usize,
    /// Largest lead of a pick time over the wall clock, s.
    pub max_future_s: f64,
    /// Largest age of a pick behind the wall clock, s (absent: any plausible time).
    pub max_age_s: Option<f64>,
    /// Largest pick uncertainty, s.
    pub max_uncertainty_s: f64,
}

impl Default for IngestSection {
    fn default() -> Self {
        let d = IngestConfig::default();
        Self {
            token: None,
            max_frame_bytes: d.max_frame_bytes,
            max_clients: d.max_clients,
            max_future_s: d.limits.max_future_s,
            max_age_s: d.limits.max_age_s,
            max_uncertainty_s: d.limits.max_uncertainty_s,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// SQLite file, relative to the config file's folder.
    pub path: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("eikoloc.sqlite"),
        }
    }
}

/// `[publish]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishSection {
    /// Folder of per-event QuakeML files, relative to the config file's folder.
    pub quakeml_dir: PathBuf,
    /// Messages a stream subscriber may fall behind before it is disconnected.
    pub stream_capacity: usize,
}

impl Default for PublishSection {
    fn default() -> Self {
        Self {
            quakeml_dir: PathBuf::from("events"),
            stream_capacity: 1024,
        }
    }
}

/// `[pipeline]`: queues, the locate pool and relocation throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Validated picks queued for the associator before ingest pushes back.
    pub pick_queue: usize,
    /// Threads of the locate pool.
    pub locate_threads: usize,
    /// Locate runs that may wait for a thread (one per event at most); beyond it relocations,
    /// then first posteriors, are dropped (their picks go into the event's next run), and
    /// when only final runs are left the pipeline stops taking picks until one starts.
    pub locate_queue: usize,
    /// Publish a quick linearized origin as soon as an event opens, before its first
    /// posterior (if the locator has one).
    pub preliminary_origin: bool,
    /// Nice increment of the locate threads (0..=19; Linux): their long runs yield the cores
    /// to the short, latency-critical association and publish work.
    pub locate_nice: i32,
    /// Relocation throttle (scautoloc's publication interval): an event is relocated no sooner
    /// than `relocate_slope_s * N + relocate_intercept_s` seconds after its previous locate
    /// run, N its number of picks (seconds of the pipeline's clock: wall time when serving,
    /// archive time when replaying). The first origin and the final one are never delayed.
    pub relocate_slope_s: f64,
    /// See `relocate_slope_s`, s.
    pub relocate_intercept_s: f64,
    /// With no pick for this long (wall clock, s), the stream clock advances by the wall time
    /// elapsed, so events close even when the network goes quiet.
    pub idle_advance_s: f64,
    /// On start, stored picks this far (s) before the latest stored pick are replayed through
    /// the associator, so events open at a restart resume.
    pub replay_window_s: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            pick_queue: 4096,
            locate_threads: 2,
            locate_queue: 32,
            preliminary_origin: true,
            locate_nice: 5,
            relocate_slope_s: 0.5,
            relocate_intercept_s: 0.0,
            idle_advance_s: 30.0,
            replay_window_s: 600.0,
        }
    }
}

/// The service configuration file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Station configuration folder (holding `config.toml`) or file, relative to this file.
    pub station_config: PathBuf,
    /// Listen addresses.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Ingest limits and authentication.
    #[serde(default)]
    pub ingest: IngestSection,
    /// Event store.
    #[serde(default)]
    pub store: StoreSection,
    /// Publishers.
    #[serde(default)]
    pub publish: PublishSection,
    /// Queues and throttling.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Static station-terms file (`network,station,phase,correction_s,n`, as `eikoloc locate
    /// --write-terms` or `eikoloc replay --station-terms static` write it), relative to this
    /// file; its corrections (s) are applied to every event the service locates.
    #[serde(default)]
    pub terms: Option<PathBuf>,
}

/// A service configuration ready to run.
#[derive(Debug, Clone)]
pub struct ResolvedServeConfig {
    /// The station configuration (inventory, velocity, frame, box).
    pub station: ResolvedStationConfig,
    /// Ingest address.
    pub ingest_addr: SocketAddr,
    /// Stream address.
    pub stream_addr: SocketAddr,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Ingest settings.
    pub ingest: IngestConfig,
    /// SQLite file; `None`: in memory (lost at exit).
    pub store_path: Option<PathBuf>,
    /// QuakeML folder.
    pub quakeml_dir: PathBuf,
    /// Stream subscriber lag allowance, messages.
    pub stream_capacity: usize,
    /// Queues and throttling.
    pub pipeline: PipelineConfig,
    /// Static station-terms file, resolved against the configuration's folder (read when
    /// the engine is built: [`crate::daemon::engine::load_static_terms`]).
    pub terms: Option<PathBuf>,
}

impl ServeConfig {
    /// Parses TOML text; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Self, ServeConfigError> {
        toml::from_str(text).map_err(|e| ServeConfigError::Toml {
            file: file.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn from_file(file: &Path) -> Result<Self, ServeConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ServeConfigError::Io {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, file)
    }

    /// Loads the station configuration and checks every value; `file` is where this was read
    /// from (relative paths resolve against its folder).
    pub fn resolve(self, file: &Path) -> Result<ResolvedServeConfig, ServeConfigError> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let invalid = |key: &str, message: String| ServeConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.into(),
            message,
        };
        let addr = |key: &str, s: &str| -> Result<SocketAddr, ServeConfigError> {
            s.parse().map_err(|e| {
                invalid(
                    key,
                    format!("{s:?} is not a socket address (e.g. 127.0.0.1:7400): {e}"),
                )
            })
        };
        let ingest_addr = addr("listen.ingest", &self.listen.ingest)?;
        let stream_addr = addr("listen.stream", &self.listen.stream)?;
        let http_addr = addr("listen.http", &self.listen.http)?;
        let i = &self.ingest;
        if i.max_frame_bytes < 64 || i.max_frame_bytes > 16 << 20 {
            return Err(invalid(
                "ingest.max_frame_bytes",
                format!("{} is outside 64 .. 16 MiB", i.max_frame_bytes),
            ));
        }
        if i.max_clients == 0 {
            return Err(invalid("ingest.max_clients", "must be at least 1".into()));
        }
        if !(i.max_future_s.is_finite() && i.max_future_s >= 0.0) {
            return Err(invalid(
                "ingest.max_future_s",
                format!("{} must be finite and >= 0", i.max_future_s),
            ));
        }
        if let Some(a) = i.max_age_s {
            if !(a.is_finite() && a > 0.0) {
                return Err(invalid(
                    "ingest.max_age_s",
                    format!("{a} must be finite and > 0"),
                ));
            }
        }
        if !(i.max_uncertainty_s.is_finite() && i.max_uncertainty_s > 0.0) {
            return Err(invalid(
                "ingest.max_uncertainty_s",
                format!("{} must be finite and > 0", i.max_uncertainty_s),
            ));
        }
        if matches!(&i.token, Some(t) if t.trim().is_empty()) {
            return Err(invalid(
                "ingest.token",
                "empty token; remove the key to disable authentication".into(),
            ));
        }
        let p = &self.pipeline;
        if p.pick_queue == 0 || p.locate_threads == 0 || p.locate_threads > 256 {
            return Err(invalid(
                "pipeline",
                "pick_queue must be >= 1 and locate_threads in 1..=256".into(),
            ));
        }
        if !(0..=19).contains(&p.locate_nice) {
            return Err(invalid(
                "pipeline.locate_nice",
                format!("{} is outside 0..=19", p.locate_nice),
            ));
        }
        if p.locate_queue == 0 {
            return Err(invalid(
                "pipeline.locate_queue",
                "must be at least 1".into(),
            ));
        }
        for (k, v) in [
            ("pipeline.relocate_slope_s", p.relocate_slope_s),
            ("pipeline.relocate_intercept_s", p.relocate_intercept_s),
            ("pipeline.idle_advance_s", p.idle_advance_s),
            ("pipeline.replay_window_s", p.replay_window_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(k, format!("{v} must be finite and >= 0")));
            }
        }
        if self.publish.stream_capacity == 0 {
            return Err(invalid(
                "publish.stream_capacity",
                "must be at least 1".into(),
            ));
        }
        let mut station_file = dir.join(&self.station_config);
        if station_file.is_dir() {
            station_file = station_file.join(CONFIG_FILE_NAME);
        }
        let station = StationConfig::from_file(&station_file)
            .and_then(|c| c.resolve(&station_file))
            .map_err(|e| ServeConfigError::Station {
                file: file.to_path_buf(),
                source: Box::new(e),
            })?;
        Ok(ResolvedServeConfig {
            station,
            ingest_addr,
            stream_addr,
            http_addr,
            ingest: IngestConfig {
                max_frame_bytes: i.max_frame_bytes,
                max_clients: i.max_clients,
                token: i.token.clone(),
                limits: PickLimits {
                    max_future_s: i.max_future_s,
                    max_age_s: i.max_age_s,
                    max_uncertainty_s: i.max_uncertainty_s,
                },
            },
            store_path: Some(dir.join(&self.store.path)),
            quakeml_dir: dir.join(&self.publish.quakeml_dir),
            stream_capacity: self.publish.stream_capacity,
            pipeline: self.pipeline.clone(),
            terms: self.terms.as_ref().map(|t| dir.join(t)),
        })
    }
}

impl ResolvedServeConfig {
    /// A configuration for a station configuration with every default, listening on
    /// loopback ephemeral ports, storing under `dir` (tests and `--demo`).
    pub fn ephemeral(station: ResolvedStationConfig, dir: &Path) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        Self {
            station,
            ingest_addr: any,
            stream_addr: any,
            http_addr: any,
            ingest: IngestConfig::default(),
            store_path: Some(dir.join("eikoloc.sqlite")),
            quakeml_dir: dir.join("events"),
            stream_capacity: 1024,
            pipeline: PipelineConfig::default(),
            terms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
    }

    #[test]
    fn the_example_config_resolves() {
        let f = demo_dir().join("serve.toml");
        let c = ServeConfig::from_file(&f).unwrap().resolve(&f).unwrap();
        assert!(c.ingest_addr.ip().is_loopback());
        assert_eq!(c.station.name, "demo");
    }

    #[test]
    fn errors_name_the_key() {
        let f = demo_dir().join("serve.toml");
        let text = std::fs::read_to_string(&f).unwrap();
        let bad = text.replace("ingest = \"127.0.0.1:7400\"", "ingest = \"localhost\"");
        let e = ServeConfig::from_toml_str(&bad, &f)
            .unwrap()
            .resolve(&f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen.ingest"), "{e}");
        let e = ServeConfig::from_toml_str("station_config = \"x\"\nbogus = 1\n", &f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = ServeConfig::from_toml_str("station_config = \"nowhere\"\n", &f)
            .unwrap()
            .resolve(&f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("station_config"), "{e}");
    }
}
