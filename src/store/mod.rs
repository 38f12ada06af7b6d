//! The event store: picks, events, every origin version, arrivals and posterior particles in
//! one SQLite file (rusqlite, bundled SQLite, WAL journal).
//!
//! Writes are idempotent so a restart that replays recent picks can neither lose nor duplicate:
//! picks are keyed by their id, events by their deterministic id, origins by
//! (event id, version). Each origin version is written in one transaction with its arrivals
//! and particles, so a crash leaves either the whole version or none of it.
//!
//! Times are stored as integer nanoseconds since the Unix epoch (exact), and each origin also
//! as its full JSON form, so a read returns exactly what was written.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{Event, Origin, Phase, Pick, StationCode};

/// What went wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite refused an operation (the message names it).
    #[error("event store {op}: {source}")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    /// A stored row could not be decoded (a corrupted or foreign database).
    #[error("event store: row {what} is invalid: {message}")]
    Corrupt { what: String, message: String },
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { op, source }
}

/// Posterior particles of one origin version, geographic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Particles {
    /// Origin id these belong to.
    pub origin_id: String,
    /// Rows of (latitude deg, longitude deg, depth km below sea level, origin time offset s
    /// from the origin's time).
    pub rows: Vec<[f64; 4]>,
}

/// A short listing row of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    /// Event id.
    pub id: String,
    /// Origin versions stored.
    pub n_origins: u32,
    /// Picks associated.
    pub n_picks: u32,
    /// The latest origin (the preferred one), if any.
    pub preferred: Option<Origin>,
    /// True once the event's window has closed.
    pub closed: bool,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS picks (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL, station TEXT NOT NULL, location TEXT NOT NULL,
    phase TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    uncertainty_s REAL NOT NULL,
    received_unix_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS picks_by_time ON picks(time_ns);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    created_unix_s REAL NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS event_picks (
    event_id TEXT NOT NULL REFERENCES events(id),
    pick_id TEXT NOT NULL REFERENCES picks(id),
    PRIMARY KEY (event_id, pick_id)
);
CREATE TABLE IF NOT EXISTS origins (
    event_id TEXT NOT NULL REFERENCES events(id),
    version INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    time_ns INTEGER NOT NULL,
    lat_deg REAL NOT NULL, lon_deg REAL NOT NULL, depth_km REAL NOT NULL,
    is_final INTEGER NOT NULL,
    json TEXT NOT NULL,
    created_unix_s REAL NOT NULL,
    PRIMARY KEY (event_id, version)
);
CREATE TABLE IF NOT EXISTS arrivals (
    origin_id TEXT NOT NULL REFERENCES origins(id),
    pick_id TEXT NOT NULL,
    station TEXT NOT NULL, phase TEXT NOT NULL,
    residual_s REAL NOT NULL, weight REAL NOT NULL,
    distance_km REAL NOT NULL, azimuth_deg REAL NOT NULL, outlier INTEGER NOT NULL,
    PRIMARY KEY (origin_id, pick_id)
);
CREATE TABLE IF NOT EXISTS particles (
    origin_id TEXT PRIMARY KEY REFERENCES origins(id),
    json TEXT NOT NULL
);
";

/// The SQLite event store; cheap to clone (one shared connection).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

fn time_ns(t: &DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn now_unix_s() -> f64 {
    crate::metrics::unix_now_s()
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(sql("open"))?;
        Self::init(conn)
    }

    /// An in-memory store (tests, `--demo` without a path).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql("open"))?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql("busy_timeout"))?;
        conn.execute_batch(SCHEMA).map_err(sql("create schema"))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a pick; `Ok(false)` when a pick with its id is already stored (a duplicate).
    pub fn insert_pick(&self, p: &Pick) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .execute(
                "INSERT OR IGNORE INTO picks (id, network, station, location, phase, time_ns, uncertainty_s, received_unix_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    p.id,
                    p.station.network,
                    p.station.station,
                    p.station.location,
                    p.phase.as_str(),
                    time_ns(&p.time),
                    p.uncertainty_s,
                    now_unix_s()
                ],
            )
            .map_err(sql("insert pick"))?;
        Ok(n == 1)
    }

    /// Picks with times at or after `since`, oldest first (the replay on restart).
    pub fn picks_since(&self, since: &DateTime<Utc>) -> Result<Vec<Pick>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare("SELECT id, network, station, location, phase, time_ns, uncertainty_s FROM picks WHERE time_ns >= ?1 ORDER BY time_ns, id")
            .map_err(sql("select picks"))?;
        let rows = st
            .query_map(params![time_ns(since)], row_to_pick)
            .map_err(sql("select picks"))?;
        rows.map(|r| r.map_err(sql("select picks")).and_then(|r| r))
            .collect()
    }

    /// Picks at or after `since` that belong to no closed event, oldest first: what the
    /// association must see again after a restart.
    pub fn replay_picks(&self, since: &DateTime<Utc>) -> Result<Vec<Pick>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT id, network, station, location, phase, time_ns, uncertainty_s FROM picks p
                 WHERE time_ns >= ?1 AND NOT EXISTS (
                    SELECT 1 FROM event_picks ep JOIN events e ON e.id = ep.event_id
                    WHERE ep.pick_id = p.id AND e.closed = 1)
                 ORDER BY time_ns, id",
            )
            .map_err(sql("select replay picks"))?;
        let rows = st
            .query_map(params![time_ns(since)], row_to_pick)
            .map_err(sql("select replay picks"))?;
        rows.map(|r| r.map_err(sql("select replay picks")).and_then(|r| r))
            .collect()
    }

    /// Time of the latest stored pick.
    pub fn latest_pick_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<i64> = self
            .lock()
            .query_row("SELECT MAX(time_ns) FROM picks", [], |r| r.get(0))
            .map_err(sql("latest pick"))?;
        Ok(t.map(DateTime::<Utc>::from_timestamp_nanos))
    }

    /// Creates the event if new and attaches picks to it (idempotent).
    pub fn upsert_event(&self, event_id: &str, pick_ids: &[String]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("begin"))?;
        tx.execute(
            "INSERT OR IGNORE INTO events (id, created_unix_s) VALUES (?1, ?2)",
            params![event_id, now_unix_s()],
        )
        .map_err(sql("insert event"))?;
        for p in pick_ids {
            tx.execute(
                "INSERT OR IGNORE INTO event_picks (event_id, pick_id) SELECT ?1, id FROM picks WHERE id = ?2",
                params![event_id, p],
            )
            .map_err(sql("insert event pick"))?;
        }
        tx.commit().map_err(sql("commit"))
    }

    /// Marks an event's window closed.
    pub fn close_event(&self, event_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE events SET closed = 1 WHERE id = ?1",
                params![event_id],
            )
            .map_err(sql("close event"))?;
        Ok(())
    }

    /// True when the event exists and is closed.
    pub fn is_closed(&self, event_id: &str) -> Result<bool, StoreError> {
        let c: Option<i64> = self
            .lock()
            .query_row(
                "SELECT closed FROM events WHERE id = ?1",
                params![event_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("select event"))?;
        Ok(c == Some(1))
    }

    /// Highest stored origin version of an event (0 when none).
    pub fn latest_version(&self, event_id: &str) -> Result<u32, StoreError> {
        let v: Option<i64> = self
            .lock()
            .query_row(
                "SELECT MAX(version) FROM origins WHERE event_id = ?1",
                params![event_id],
                |r| r.get(0),
            )
            .map_err(sql("latest version"))?;
        Ok(v.unwrap_or(0) as u32)
    }

    /// Stores one origin version with its arrivals and particles in one transaction;
    /// `Ok(false)` when that version was already stored.
    pub fn insert_origin(
        &self,
        event_id: &str,
        origin: &Origin,
        particles: Option<&Particles>,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(origin).map_err(|e| StoreError::Corrupt {
            what: origin.id.clone(),
            message: e.to_string(),
        })?;
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("begin"))?;
        tx.execute(
            "INSERT OR IGNORE INTO events (id, created_unix_s) VALUES (?1, ?2)",
            params![event_id, now_unix_s()],
        )
        .map_err(sql("insert event"))?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO origins (event_id, version, id, time_ns, lat_deg, lon_deg, depth_km, is_final, json, created_unix_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    event_id,
                    origin.version,
                    origin.id,
                    time_ns(&origin.time),
                    origin.lat_deg,
                    origin.lon_deg,
                    origin.depth_km,
                    origin.is_final,
                    json,
                    now_unix_s()
                ],
            )
            .map_err(sql("insert origin"))?;
        if n == 1 {
            for a in &origin.arrivals {
                tx.execute(
                    "INSERT OR IGNORE INTO arrivals (origin_id, pick_id, station, phase, residual_s, weight, distance_km, azimuth_deg, outlier)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        origin.id,
                        a.pick_id,
                        a.station.to_string(),
                        a.phase.as_str(),
                        a.residual_s,
                        a.weight,
                        a.distance_km,
                        a.azimuth_deg,
                        a.outlier
                    ],
                )
                .map_err(sql("insert arrival"))?;
            }
            if let Some(p) = particles {
                let pj = serde_json::to_string(p).map_err(|e| StoreError::Corrupt {
                    what: p.origin_id.clone(),
                    message: e.to_string(),
                })?;
                tx.execute(
                    "INSERT OR REPLACE INTO particles (origin_id, json) VALUES (?1, ?2)",
                    params![origin.id, pj],
                )
                .map_err(sql("insert particles"))?;
            }
        }
        tx.commit().map_err(sql("commit"))?;
        Ok(n == 1)
    }

    /// The whole event: picks, all origin versions (oldest first), preferred = the latest.
    pub fn event(&self, event_id: &str) -> Result<Option<Event>, StoreError> {
        let conn = self.lock();
        let exists: Option<String> = conn
            .query_row(
                "SELECT id FROM events WHERE id = ?1",
                params![event_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("select event"))?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut st = conn
            .prepare(
                "SELECT p.id, p.network, p.station, p.location, p.phase, p.time_ns, p.uncertainty_s
                 FROM event_picks e JOIN picks p ON p.id = e.pick_id WHERE e.event_id = ?1 ORDER BY p.time_ns, p.id",
            )
            .map_err(sql("select event picks"))?;
        let picks = st
            .query_map(params![event_id], row_to_pick)
            .map_err(sql("select event picks"))?
            .map(|r| r.map_err(sql("select event picks")).and_then(|r| r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = conn
            .prepare("SELECT json FROM origins WHERE event_id = ?1 ORDER BY version")
            .map_err(sql("select origins"))?;
        let origins = st
            .query_map(params![event_id], |r| r.get::<_, String>(0))
            .map_err(sql("select origins"))?
            .map(|r| {
                let j = r.map_err(sql("select origins"))?;
                serde_json::from_str::<Origin>(&j).map_err(|e| StoreError::Corrupt {
                    what: format!("origin of {event_id}"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let preferred_origin = origins.len().checked_sub(1);
        Ok(Some(Event {
            id: event_id.to_string(),
            picks,
            origins,
            preferred_origin,
        }))
    }

    /// Events, newest first (by latest origin time, then creation), at most `limit`.
    pub fn list_events(&self, limit: usize) -> Result<Vec<EventSummary>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT e.id, e.closed,
                    (SELECT COUNT(*) FROM origins o WHERE o.event_id = e.id),
                    (SELECT COUNT(*) FROM event_picks p WHERE p.event_id = e.id),
                    (SELECT json FROM origins o WHERE o.event_id = e.id ORDER BY version DESC LIMIT 1),
                    (SELECT time_ns FROM origins o WHERE o.event_id = e.id ORDER BY version DESC LIMIT 1) AS t
                 FROM events e ORDER BY t DESC, e.created_unix_s DESC LIMIT ?1",
            )
            .map_err(sql("list events"))?;
        let rows = st
            .query_map(params![limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(sql("list events"))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, closed, n_o, n_p, json) = r.map_err(sql("list events"))?;
            let preferred =
                match json {
                    Some(j) => Some(serde_json::from_str::<Origin>(&j).map_err(|e| {
                        StoreError::Corrupt {
                            what: format!("origin of {id}"),
                            message: e.to_string(),
                        }
                    })?),
                    None => None,
                };
            out.push(EventSummary {
                id,
                n_origins: n_o as u32,
                n_picks: n_p as u32,
                preferred,
                closed: closed == 1,
            });
        }
        Ok(out)
    }

    /// Particles of the latest origin version of an event that has them.
    pub fn latest_particles(&self, event_id: &str) -> Result<Option<Particles>, StoreError> {
        let j: Option<String> = self
            .lock()
            .query_row(
                "SELECT p.json FROM particles p JOIN origins o ON o.id = p.origin_id WHERE o.event_id = ?1 ORDER BY o.version DESC LIMIT 1",
                params![event_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("select particles"))?;
        j.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError::Corrupt {
                what: format!("particles of {event_id}"),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Counts of (events, origins, picks) stored.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let conn = self.lock();
        let c = |q: &str| {
            conn.query_row(q, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(sql("count"))
        };
        Ok((
            c("SELECT COUNT(*) FROM events")?,
            c("SELECT COUNT(*) FROM origins")?,
            c("SELECT COUNT(*) FROM picks")?,
        ))
    }

    /// Ids of every stored event, sorted (an archive replay writes its catalog from them).
    pub fn event_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare("SELECT id FROM events ORDER BY id")
            .map_err(sql("event ids"))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql("event ids"))?;
        rows.map(|r| r.map_err(sql("event ids"))).collect()
    }

    /// Ids of events not yet closed.
    pub fn open_event_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare("SELECT id FROM events WHERE closed = 0 ORDER BY id")
            .map_err(sql("open events"))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql("open events"))?;
        rows.map(|r| r.map_err(sql("open events"))).collect()
    }
}

fn row_to_pick(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Pick, StoreError>> {
    let id: String = r.get(0)?;
    let phase: String = r.get(4)?;
    let station = StationCode {
        network: r.get(1)?,
        station: r.get(2)?,
        location: r.get(3)?,
    };
    let t: i64 = r.get(5)?;
    let sigma: f64 = r.get(6)?;
    Ok(match phase.parse::<Phase>() {
        Ok(phase) => Ok(Pick {
            id,
            station,
            phase,
            time: DateTime::<Utc>::from_timestamp_nanos(t),
            uncertainty_s: sigma,
        }),
        Err(e) => Err(StoreError::Corrupt {
            what: format!("pick {id}"),
            message: e.to_string(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{parse_utc, Arrival, OriginUncertainty};

    pub(crate) fn origin(event: &str, version: u32, pick: &Pick) -> Origin {
        Origin {
            id: format!("{event}/{version}"),
            time: parse_utc("2024-01-01T00:00:00.123456789Z").unwrap(),
            time_sigma_s: 0.05,
            lat_deg: 34.01,
            lon_deg: -117.31,
            depth_km: 8.5,
            uncertainty: OriginUncertainty::default(),
            rms_s: 0.04,
            gap_deg: 90.0,
            min_distance_km: 3.2,
            arrivals: vec![Arrival {
                pick_id: pick.id.clone(),
                station: pick.station.clone(),
                phase: pick.phase,
                distance_km: 3.2,
                azimuth_deg: 45.0,
                residual_s: 0.01,
                weight: 1.0,
                outlier: false,
            }],
            version,
            is_final: false,
            method: Default::default(),
        }
    }

    #[test]
    fn round_trips_and_ignores_repeats_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sqlite");
        let pick = Pick::new(
            StationCode::new("EK", "EK01"),
            Phase::P,
            parse_utc("2024-01-01T00:00:01.000000001Z").unwrap(),
            0.05,
        );
        {
            let s = Store::open(&path).unwrap();
            assert!(s.insert_pick(&pick).unwrap());
            assert!(!s.insert_pick(&pick).unwrap());
            s.upsert_event("ev1", std::slice::from_ref(&pick.id))
                .unwrap();
            let o = origin("ev1", 1, &pick);
            let parts = Particles {
                origin_id: o.id.clone(),
                rows: vec![[34.0, -117.3, 8.0, 0.01]],
            };
            assert!(s.insert_origin("ev1", &o, Some(&parts)).unwrap());
            assert!(!s.insert_origin("ev1", &o, None).unwrap());
        }
        let s = Store::open(&path).unwrap();
        s.upsert_event("ev1", std::slice::from_ref(&pick.id))
            .unwrap();
        let e = s.event("ev1").unwrap().unwrap();
        assert_eq!(e.picks, vec![pick.clone()]);
        assert_eq!(e.origins, vec![origin("ev1", 1, &pick)]);
        assert_eq!(e.preferred_origin, Some(0));
        assert_eq!(s.latest_version("ev1").unwrap(), 1);
        assert_eq!(s.counts().unwrap(), (1, 1, 1));
        assert_eq!(s.latest_particles("ev1").unwrap().unwrap().rows.len(), 1);
        assert_eq!(s.open_event_ids().unwrap(), vec!["ev1".to_string()]);
        s.close_event("ev1").unwrap();
        assert!(s.is_closed("ev1").unwrap());
        assert!(s.event("nope").unwrap().is_none());
        assert_eq!(s.picks_since(&pick.time).unwrap().len(), 1);
    }
}
