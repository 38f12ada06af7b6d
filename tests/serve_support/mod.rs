//! Shared helpers of the `serve*` tests: start the service on loopback ports, send picks in
//! both wire formats, subscribe to the origin stream, and a minimal HTTP/1.1 GET.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eikoloc::config::{ResolvedStationConfig, StationConfig};
use eikoloc::daemon::{
    self, Addresses, Association, DaemonError, Engine, EventChange, Listeners, LocateRequest,
    Located, Locator, ResolvedServeConfig,
};
use eikoloc::domain::{Arrival, Origin, OriginUncertainty, Pick};
use eikoloc::ingest::WirePick;
use eikoloc::metrics::Metrics;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bundled demo region.
pub fn demo_station() -> ResolvedStationConfig {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("station-configs/demo/config.toml");
    StationConfig::from_file(&f).unwrap().resolve(&f).unwrap()
}

/// A running service.
pub struct Running {
    pub addrs: Addresses,
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl Running {
    /// Stops it (the SIGTERM path) and waits for a clean exit.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(60), self.task.take().unwrap()).await;
        r.expect("service stopped within 60 s")
            .expect("service task")
            .expect("service returned Ok");
    }
}

/// Binds loopback ephemeral ports and runs the service with `engine`.
pub async fn start(config: ResolvedServeConfig, engine: Engine) -> Running {
    let listeners = Listeners::bind(&config).await.unwrap();
    let addrs = listeners.addresses();
    let codes: Vec<_> = config
        .station
        .inventory
        .stations()
        .iter()
        .map(|s| s.code.clone())
        .collect();
    let metrics = Metrics::new(&codes);
    let (tx, rx) = oneshot::channel::<()>();
    let m = metrics.clone();
    let task = tokio::spawn(daemon::run(config, listeners, engine, m, async move {
        let _ = rx.await;
    }));
    Running {
        addrs,
        metrics,
        stop: Some(tx),
        task: Some(task),
    }
}

/// Sends picks as JSON lines on one connection, then closes it.
pub async fn send_json(addr: std::net::SocketAddr, picks: &[WirePick]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for p in picks {
        let mut line = serde_json::to_vec(p).unwrap();
        line.push(b'\n');
        s.write_all(&line).await.unwrap();
    }
    s.shutdown().await.unwrap();
}

/// One MessagePack frame (4-byte big-endian length, named map).
pub fn msgpack_frame<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let body = rmp_serde::to_vec_named(v).unwrap();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

/// Sends picks as MessagePack frames on one connection, then closes it.
pub async fn send_msgpack(addr: std::net::SocketAddr, picks: &[WirePick]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for p in picks {
        s.write_all(&msgpack_frame(p)).await.unwrap();
    }
    s.shutdown().await.unwrap();
}

/// A JSON-lines subscriber of the origin stream.
pub async fn subscribe_json(addr: std::net::SocketAddr) -> tokio::io::Lines<BufReader<TcpStream>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"json\n").await.unwrap();
    BufReader::new(s).lines()
}

/// A MessagePack subscriber of the origin stream.
pub async fn subscribe_msgpack(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"msgpack\n").await.unwrap();
    s
}

/// Reads one MessagePack frame.
pub async fn read_msgpack<T: serde::de::DeserializeOwned>(s: &mut TcpStream) -> Option<T> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(rmp_serde::from_slice(&buf).unwrap())
}

/// `GET path` over HTTP/1.1; (status, body); status 0 when the server cannot be reached.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    if s.read_to_end(&mut raw).await.is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
/// The service's `/events` listing as JSON values (asserts HTTP 200).
pub async fn events(addr: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let (status, body) = http_get(addr, "/events").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until exactly `n` listed events have a final preferred origin; returns the listing.
pub async fn wait_final(
    addr: std::net::SocketAddr,
    n: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    eventually(timeout, || async {
        let ev = events(addr).await;
        let finals = ev
            .iter()
            .filter(|e| e["preferred"]["is_final"] == true)
            .count();
        (finals == n).then_some(ev)
    })
    .await
    .unwrap_or_else(|| panic!("{n} final events within {timeout:?}"))
}

pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Plumbing-test engine: a transparent association and a locator with known answers.

/// Groups picks by the UTC minute they fall in; an event opens at its 4th pick, later picks
/// of the minute update it, and it closes once the stream goes quiet past the minute's picks.
#[derive(Default)]
pub struct MinuteAssociation {
    buckets: HashMap<i64, (Vec<String>, bool)>,
}

impl MinuteAssociation {
    fn id(minute: i64) -> String {
        format!("ev{minute}")
    }
    fn close_before(&mut self, minute: i64) -> Vec<EventChange> {
        let mut closed: Vec<i64> = self
            .buckets
            .iter()
            .filter(|(m, (_, open))| **m < minute && *open)
            .map(|(m, _)| *m)
            .collect();
        closed.sort();
        closed
            .into_iter()
            .map(|m| {
                self.buckets.remove(&m);
                EventChange::Closed { id: Self::id(m) }
            })
            .collect()
    }
}

impl Association for MinuteAssociation {
    fn push(&mut self, pick: &Pick) -> Vec<EventChange> {
        let minute = pick.time.timestamp().div_euclid(60);
        // Closing happens only on advance_to (a quiet stream), so clients sending different
        // minutes concurrently cannot split an event.
        let mut out = Vec::new();
        let (ids, open) = self.buckets.entry(minute).or_default();
        ids.push(pick.id.clone());
        if *open {
            out.push(EventChange::Updated {
                id: Self::id(minute),
                pick_ids: vec![pick.id.clone()],
            });
        } else if ids.len() == 4 {
            *open = true;
            out.push(EventChange::Opened {
                id: Self::id(minute),
                pick_ids: ids.clone(),
            });
        }
        out
    }
    fn advance_to(&mut self, t: chrono::DateTime<chrono::Utc>) -> Vec<EventChange> {
        self.close_before(t.timestamp().div_euclid(60) + 1)
    }
}

/// An origin at the mean of the picking stations, 1 s before the first pick, with one arrival
/// per pick and a particle cloud around it.
pub struct CentroidLocator {
    pub station: eikoloc::config::ResolvedStationConfig,
}

impl Locator for CentroidLocator {
    fn locate(&self, r: &LocateRequest) -> Result<Located, String> {
        let inv = &self.station.inventory;
        let st: Vec<_> = r
            .picks
            .iter()
            .filter_map(|p| inv.get(&p.station.network, &p.station.station))
            .collect();
        if st.is_empty() {
            return Err("no picks".into());
        }
        let lat = st.iter().map(|s| s.lat_deg).sum::<f64>() / st.len() as f64;
        let lon = st.iter().map(|s| s.lon_deg).sum::<f64>() / st.len() as f64;
        let time = r.picks.iter().map(|p| p.time).min().unwrap() - chrono::TimeDelta::seconds(1);
        let mut u = OriginUncertainty::default();
        u.horizontal_68.major_km = 1.0;
        u.horizontal_68.minor_km = 0.5;
        let origin = Origin {
            id: String::new(),
            time,
            time_sigma_s: 0.1,
            lat_deg: lat,
            lon_deg: lon,
            depth_km: 8.0,
            uncertainty: u,
            rms_s: 0.05,
            gap_deg: 120.0,
            min_distance_km: 2.0,
            arrivals: r
                .picks
                .iter()
                .map(|p| Arrival {
                    pick_id: p.id.clone(),
                    station: p.station.clone(),
                    phase: p.phase,
                    distance_km: 10.0,
                    azimuth_deg: 0.0,
                    residual_s: 0.0,
                    weight: 1.0,
                    outlier: false,
                })
                .collect(),
            version: 0,
            is_final: false,
            method: Default::default(),
        };
        Ok(Located {
            origin,
            particles: Some(vec![[lat, lon, 8.0, 0.0], [lat + 0.01, lon, 9.0, 0.1]]),
        })
    }
}

pub fn engine(station: &eikoloc::config::ResolvedStationConfig) -> Engine {
    Engine {
        association: Box::new(MinuteAssociation::default()),
        locator: Arc::new(CentroidLocator {
            station: station.clone(),
        }),
    }
}

/// [`CentroidLocator`] with a preliminary solution (the same origin, marked linearized and
/// returned at once) and full runs that take `run_ms` of wall time, so tests can fill the
/// locate queue.
pub struct SlowCentroid {
    pub inner: CentroidLocator,
    pub run_ms: u64,
}

impl Locator for SlowCentroid {
    fn locate(&self, r: &LocateRequest) -> Result<Located, String> {
        std::thread::sleep(Duration::from_millis(self.run_ms));
        self.inner.locate(r)
    }
    fn locate_preliminary(&self, r: &LocateRequest) -> Option<Result<Located, String>> {
        Some(self.inner.locate(r).map(|mut l| {
            l.origin.method = eikoloc::domain::OriginMethod::Linearized;
            l.particles = None;
            l
        }))
    }
}

/// The minute association with a [`SlowCentroid`] locator.
pub fn slow_engine(station: &eikoloc::config::ResolvedStationConfig, run_ms: u64) -> Engine {
    Engine {
        association: Box::new(MinuteAssociation::default()),
        locator: Arc::new(SlowCentroid {
            inner: CentroidLocator {
                station: station.clone(),
            },
            run_ms,
        }),
    }
}
