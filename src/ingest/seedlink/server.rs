//! SeedLink v3 playback server: serves the 512-byte miniSEED records of an archive folder to
//! any SeedLink client, at real time, accelerated (`speed` > 1) or all at once (`speed` 0).
//!
//! Each station (network, station) is one ring with sequence numbers 1, 2, ... in record start
//! time order. A playback clock starts at the earliest record start when the server starts;
//! a record is published once the clock passes its end time, as a datalogger would. Commands:
//! HELLO, STATION, SELECT, DATA [seq [time]], FETCH [seq [time]], TIME begin [end], END,
//! INFO (ID, STATIONS, STREAMS, CAPABILITIES), BYE. TIME windows and FETCH finish with `END`.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::protocol::{
    data_header, format_time, info_frames, parse_time, selectors_match, wildcard_match, Selector,
};
use crate::domain::time::{add_seconds, format_utc, seconds_between};
use crate::domain::UtcTime;
use crate::waveform::{read_file, ReadStats, WaveformError};

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Reading the archive failed.
    #[error(transparent)]
    Waveform(#[from] WaveformError),
    /// The archive folder could not be listed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No usable record in the archive.
    #[error("archive {0} holds no readable 512-byte miniSEED record")]
    Empty(PathBuf),
    /// Accepting connections failed.
    #[error("accept: {0}")]
    Accept(std::io::Error),
}

/// One archived record ready to send.
#[derive(Debug, Clone)]
struct ArchivedRecord {
    seq: u32,
    location: String,
    channel: String,
    start: UtcTime,
    end: UtcTime,
    bytes: Arc<[u8]>,
}

/// One station's ring of records.
#[derive(Debug, Clone)]
struct StationRing {
    network: String,
    station: String,
    records: Vec<ArchivedRecord>,
}

/// The records of an archive folder, by station.
#[derive(Debug, Clone)]
pub struct Archive {
    stations: Vec<StationRing>,
    /// Earliest record start, UTC.
    pub first_time: UtcTime,
    /// Latest record end, UTC.
    pub last_time: UtcTime,
    /// What reading the files met.
    pub stats: ReadStats,
}

impl Archive {
    /// Loads every regular file of `dir` (not recursive) as 512-byte miniSEED records; files
    /// and records that do not decode are logged, counted and skipped.
    pub fn load(dir: &Path) -> Result<Self, ServerError> {
        let io = |source| ServerError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        let mut stats = ReadStats::default();
        let mut stations: Vec<StationRing> = Vec::new();
        for p in paths {
            if p.extension()
                .is_some_and(|e| e == "csv" || e == "txt" || e == "toml" || e == "json")
            {
                continue;
            }
            let (recs, s) = read_file(&p)?;
            stats.records_ok += s.records_ok;
            stats.records_bad += s.records_bad;
            for (bytes, r) in recs {
                let t = &r.trace;
                let ring = match stations
                    .iter_mut()
                    .position(|s| s.network == t.id.network && s.station == t.id.station)
                {
                    Some(i) => &mut stations[i],
                    None => {
                        stations.push(StationRing {
                            network: t.id.network.clone(),
                            station: t.id.station.clone(),
                            records: Vec::new(),
                        });
                        stations.last_mut().expect("just pushed")
                    }
                };
                ring.records.push(ArchivedRecord {
                    seq: 0,
                    location: t.id.location.clone(),
                    channel: t.id.channel.clone(),
                    start: t.start,
                    end: t.end(),
                    bytes: bytes.into(),
                });
            }
        }
        for ring in &mut stations {
            ring.records
                .sort_by(|a, b| (a.start, &a.channel).cmp(&(b.start, &b.channel)));
            for (i, r) in ring.records.iter_mut().enumerate() {
                r.seq = (i as u32 + 1) & super::protocol::MAX_SEQUENCE;
            }
        }
        let all = stations.iter().flat_map(|s| s.records.iter());
        let first_time = all
            .clone()
            .map(|r| r.start)
            .min()
            .ok_or_else(|| ServerError::Empty(dir.to_path_buf()))?;
        let last_time = all
            .map(|r| r.end)
            .max()
            .ok_or_else(|| ServerError::Empty(dir.to_path_buf()))?;
        Ok(Self {
            stations,
            first_time,
            last_time,
            stats,
        })
    }

    /// Number of stations.
    pub fn station_count(&self) -> usize {
        self.stations.len()
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.stations.iter().map(|s| s.records.len()).sum()
    }
}

/// Settings of the playback server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Playback speed: 1 real time, 10 ten times faster, 0 everything available at once.
    pub speed: f64,
    /// A client that sends no complete command for this long during negotiation is dropped, s.
    pub handshake_timeout_s: f64,
    /// Most simultaneous clients; further ones are refused.
    pub max_clients: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            speed: 1.0,
            handshake_timeout_s: 60.0,
            max_clients: 64,
        }
    }
}

/// Maps wall-clock time to archive time.
#[derive(Debug, Clone, Copy)]
struct PlaybackClock {
    data_start: UtcTime,
    wall_start: Instant,
    speed: f64,
}

impl PlaybackClock {
    /// Archive time now; `None` means everything is published (speed 0).
    fn now(&self) -> Option<UtcTime> {
        (self.speed > 0.0).then(|| {
            add_seconds(
                &self.data_start,
                self.wall_start.elapsed().as_secs_f64() * self.speed,
            )
        })
    }
    fn published(&self, r: &ArchivedRecord) -> bool {
        self.now().is_none_or(|t| r.end <= t)
    }
    /// Wall time until `r` is published.
    fn wait_for(&self, r: &ArchivedRecord) -> Duration {
        match self.now() {
            None => Duration::ZERO,
            Some(t) => Duration::from_secs_f64((seconds_between(&t, &r.end) / self.speed).max(0.0)),
        }
    }
}

/// Serves `archive` on `listener` until `shutdown` completes. Returns the number of clients
/// served.
pub async fn serve(
    listener: TcpListener,
    archive: Arc<Archive>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, ServerError> {
    let clock = PlaybackClock {
        data_start: archive.first_time,
        wall_start: Instant::now(),
        speed: cfg.speed.max(0.0),
    };
    let active = Arc::new(tokio::sync::Semaphore::new(cfg.max_clients.max(1)));
    let mut served = 0u64;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => {
                let (sock, peer) = match acc {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = active.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many clients: connection refused");
                    continue;
                };
                served += 1;
                let archive = archive.clone();
                let cfg = cfg.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    tokio::select! {
                        r = handle_client(sock, peer, archive, cfg, clock) => {
                            if let Err(e) = r {
                                tracing::info!(%peer, error = %e, "client connection ended");
                            }
                        }
                        _ = stop.changed() => {}
                    }
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    Ok(served)
}

/// Where a station's transfer starts and ends.
#[derive(Debug, Clone, PartialEq)]
enum Start {
    /// Only records published from now on (DATA without arguments).
    Next,
    /// From this sequence number on (DATA n / FETCH n).
    Sequence(u32),
    /// Records ending after `begin` and starting before `end` (TIME).
    Window {
        begin: UtcTime,
        end: Option<UtcTime>,
    },
}

/// A STATION request with its selectors and start.
#[derive(Debug, Clone)]
struct Request {
    network: String,
    station: String,
    selectors: Vec<Selector>,
    start: Start,
    fetch: bool,
}

async fn handle_client(
    sock: TcpStream,
    peer: SocketAddr,
    archive: Arc<Archive>,
    cfg: ServerConfig,
    clock: PlaybackClock,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let mut reqs: Vec<Request> = Vec::new();
    let hs_timeout = Duration::from_secs_f64(cfg.handshake_timeout_s.max(0.1));
    tracing::debug!(%peer, "client connected");
    // Negotiation: one reply per command, written at once (ObsPy reads each with one recv).
    loop {
        let line = match tokio::time::timeout(hs_timeout, read_command(&mut rd)).await {
            Err(_) => {
                tracing::info!(%peer, "negotiation timed out");
                return Ok(());
            }
            Ok(r) => match r? {
                Some(l) => l,
                None => return Ok(()),
            },
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(cmd) = words.first().map(|w| w.to_ascii_uppercase()) else {
            continue;
        };
        match cmd.as_str() {
            "HELLO" => {
                wr.write_all(b"SeedLink v3.1 (eikoloc playback) :: SLPROTO:3.1 CAP EXTREPLY NSWILDCARD\r\neikoloc SeedLink playback\r\n").await?;
            }
            "BYE" => return Ok(()),
            "CAT" => {
                let mut text = String::new();
                for s in &archive.stations {
                    text.push_str(&format!(
                        "{:<2} {:<5} {}\r\n",
                        s.network, s.station, s.station
                    ));
                }
                text.push_str("END");
                wr.write_all(text.as_bytes()).await?;
            }
            "INFO" => {
                let level = words
                    .get(1)
                    .map(|w| w.to_ascii_uppercase())
                    .unwrap_or_default();
                let xml = info_xml(&archive, &level);
                wr.write_all(&info_frames(&xml, &chrono::Utc::now()))
                    .await?;
            }
            "STATION" => match words.get(1) {
                Some(sta) => {
                    reqs.push(Request {
                        network: words.get(2).unwrap_or(&"*").to_string(),
                        station: sta.to_string(),
                        selectors: Vec::new(),
                        start: Start::Next,
                        fetch: false,
                    });
                    wr.write_all(b"OK\r\n").await?;
                }
                None => wr.write_all(b"ERROR\r\n").await?,
            },
            "SELECT" => {
                let ok = match (reqs.last_mut(), words.get(1)) {
                    (Some(r), Some(pat)) => match Selector::parse(pat) {
                        Ok(s) => {
                            r.selectors.push(s);
                            true
                        }
                        Err(_) => false,
                    },
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                wr.write_all(if ok { b"OK\r\n" } else { b"ERROR\r\n" })
                    .await?;
            }
            "DATA" | "FETCH" | "TIME" => {
                let start = parse_start(&cmd, &words[1..]);
                let uni = reqs.is_empty();
                if uni {
                    // Uni-station mode: the action applies to every station and starts at once.
                    reqs.push(Request {
                        network: "*".into(),
                        station: "*".into(),
                        selectors: Vec::new(),
                        start: Start::Next,
                        fetch: false,
                    });
                }
                match (start, reqs.last_mut()) {
                    (Some(s), Some(r)) => {
                        r.start = s;
                        r.fetch = cmd == "FETCH";
                        wr.write_all(b"OK\r\n").await?;
                        if uni {
                            break;
                        }
                    }
                    _ => wr.write_all(b"ERROR\r\n").await?,
                }
            }
            "END" => break,
            _ => wr.write_all(b"ERROR\r\n").await?,
        }
    }
    stream_records(rd, wr, &archive, reqs, clock, peer).await
}

/// Reads one command line (terminated by CR, LF or both); `None` at end of stream.
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(
    rd: &mut R,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    loop {
        let avail = rd.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                None
            } else {
                Some(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\r' || b == b'\n') {
            buf.extend_from_slice(&avail[..i]);
            rd.consume(i + 1);
            let s = String::from_utf8_lossy(&buf).trim().to_string();
            if s.is_empty() {
                buf.clear();
                continue;
            }
            return Ok(Some(s));
        }
        let n = avail.len();
        buf.extend_from_slice(avail);
        rd.consume(n);
        if buf.len() > 4096 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "command line too long",
            ));
        }
    }
}

fn parse_start(cmd: &str, args: &[&str]) -> Option<Start> {
    match cmd {
        "TIME" => {
            let begin = parse_time(args.first()?)?;
            let end = match args.get(1) {
                Some(e) => Some(parse_time(e)?),
                None => None,
            };
            Some(Start::Window { begin, end })
        }
        _ => match args.first() {
            None => Some(Start::Next),
            Some(seq) => u32::from_str_radix(seq, 16).ok().map(Start::Sequence),
        },
    }
}

/// Per-station transfer state during streaming.
struct Cursor<'a> {
    ring: &'a StationRing,
    selectors: Vec<Selector>,
    next: usize,
    end: Option<UtcTime>,
    finite: bool,
}

impl Cursor<'_> {
    /// Index of the next record to send that passes the selectors and the window, if any.
    fn peek(&mut self) -> Option<&ArchivedRecord> {
        while let Some(r) = self.ring.records.get(self.next) {
            if self.end.is_some_and(|e| r.start >= e) {
                self.next = self.ring.records.len();
                return None;
            }
            if selectors_match(&self.selectors, &r.location, &r.channel, 'D') {
                return Some(r);
            }
            self.next += 1;
        }
        None
    }
}

async fn stream_records(
    mut rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    archive: &Archive,
    reqs: Vec<Request>,
    clock: PlaybackClock,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let mut cursors: Vec<Cursor> = Vec::new();
    let mut seen = BTreeSet::new();
    for req in &reqs {
        for (i, ring) in archive.stations.iter().enumerate() {
            let wanted = wildcard_match(&req.station, &ring.station)
                && wildcard_match(&req.network, &ring.network);
            // A station matched by two STATION requests is served once, by the first.
            if !wanted || !seen.insert(i) {
                continue;
            }
            let recs = &ring.records;
            let (next, end) = match &req.start {
                Start::Next => (
                    recs.iter()
                        .position(|r| !clock.published(r))
                        .unwrap_or(recs.len()),
                    None,
                ),
                Start::Sequence(n) => {
                    let i = recs.iter().position(|r| r.seq == *n);
                    (
                        i.unwrap_or_else(|| {
                            recs.iter()
                                .position(|r| !clock.published(r))
                                .unwrap_or(recs.len())
                        }),
                        None,
                    )
                }
                Start::Window { begin, end } => (
                    recs.iter()
                        .position(|r| r.end > *begin)
                        .unwrap_or(recs.len()),
                    *end,
                ),
            };
            let finite = req.fetch || end.is_some();
            cursors.push(Cursor {
                ring,
                selectors: req.selectors.clone(),
                next,
                end,
                finite,
            });
        }
    }
    tracing::debug!(%peer, stations = cursors.len(), "streaming");
    let finite = !cursors.is_empty() && cursors.iter().all(|c| c.finite);
    let fetch = reqs.iter().any(|r| r.fetch);
    let mut buf = Vec::with_capacity(super::protocol::FRAME_LEN);
    loop {
        // Send every published record, oldest end time first across stations.
        let mut sent_any = false;
        loop {
            let mut best: Option<(usize, UtcTime)> = None;
            for (i, c) in cursors.iter_mut().enumerate() {
                if let Some(r) = c.peek() {
                    if clock.published(r) && best.is_none_or(|(_, t)| r.end < t) {
                        best = Some((i, r.end));
                    }
                }
            }
            let Some((i, _)) = best else { break };
            let c = &mut cursors[i];
            let r = c.peek().expect("peeked above");
            buf.clear();
            buf.extend_from_slice(&data_header(r.seq));
            buf.extend_from_slice(&r.bytes);
            c.next += 1;
            wr.write_all(&buf).await?;
            sent_any = true;
        }
        let pending: Vec<Duration> = cursors
            .iter_mut()
            .filter_map(|c| c.peek().map(|r| clock.wait_for(r)))
            .collect();
        let done = (finite && pending.is_empty()) || (fetch && !sent_any);
        if done {
            wr.write_all(b"END").await?;
            wr.flush().await?;
            // Let the client close first so it reads END before the FIN.
            let _ = tokio::time::timeout(Duration::from_secs(10), read_command(&mut rd)).await;
            return Ok(());
        }
        let wait = pending
            .into_iter()
            .min()
            .unwrap_or(Duration::from_secs(3600))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            line = read_command(&mut rd) => {
                match line? {
                    None => return Ok(()),
                    Some(l) => {
                        let w: Vec<String> = l.split_whitespace().map(|s| s.to_ascii_uppercase()).collect();
                        match w.first().map(String::as_str) {
                            Some("BYE") => return Ok(()),
                            Some("INFO") => {
                                let xml = info_xml(archive, w.get(1).map(String::as_str).unwrap_or(""));
                                wr.write_all(&info_frames(&xml, &chrono::Utc::now())).await?;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

/// The XML answer to `INFO level`.
fn info_xml(archive: &Archive, level: &str) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\"?>\n<seedlink software=\"eikoloc SeedLink playback\" organization=\"eikoloc\" started=\"{}\"",
        format_utc(&archive.first_time)
    );
    match level {
        "STATIONS" | "STREAMS" => {
            x.push_str(">\n");
            for s in &archive.stations {
                let first = s.records.first().map(|r| r.seq).unwrap_or(0);
                let last = s.records.last().map(|r| r.seq).unwrap_or(0);
                x.push_str(&format!(
                    "<station name=\"{}\" network=\"{}\" description=\"playback\" begin_seq=\"{first:06X}\" end_seq=\"{last:06X}\" stream_check=\"enabled\"",
                    s.station, s.network
                ));
                if level == "STREAMS" {
                    x.push_str(">\n");
                    let mut streams: Vec<(&str, &str)> = s.records.iter().map(|r| (r.location.as_str(), r.channel.as_str())).collect();
                    streams.sort();
                    streams.dedup();
                    for (loc, cha) in streams {
                        let (b, e) = s
                            .records
                            .iter()
                            .filter(|r| r.location == loc && r.channel == cha)
                            .fold((None::<UtcTime>, None::<UtcTime>), |(b, e), r| {
                                (Some(b.map_or(r.start, |b| b.min(r.start))), Some(e.map_or(r.end, |e| e.max(r.end))))
                            });
                        x.push_str(&format!(
                            "<stream location=\"{loc}\" seedname=\"{cha}\" type=\"D\" begin_time=\"{}\" end_time=\"{}\"/>\n",
                            b.map(|t| format_time(&t)).unwrap_or_default(),
                            e.map(|t| format_time(&t)).unwrap_or_default()
                        ));
                    }
                    x.push_str("</station>\n");
                } else {
                    x.push_str("/>\n");
                }
            }
            x.push_str("</seedlink>\n");
        }
        "CAPABILITIES" => x.push_str(">\n<capability name=\"dialup\"/>\n<capability name=\"multistation\"/>\n<capability name=\"window-extraction\"/>\n<capability name=\"info:id\"/>\n<capability name=\"info:stations\"/>\n<capability name=\"info:streams\"/>\n</seedlink>\n"),
        _ => x.push_str("/>\n"),
    }
    x
}
