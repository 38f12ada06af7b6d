//! SeedLink v3 client on tokio: multi-station negotiation (HELLO, STATION, SELECT,
//! DATA/TIME, END), resume from the last sequence number per station (kept in a state file
//! across restarts), keepalive (`INFO ID` when the link is quiet), read timeouts, and
//! reconnection with exponential backoff.
//!
//! Records go out through a bounded channel; a station's sequence number is advanced only
//! after its record was handed over, so a reconnect or restart resumes with the first record
//! not yet delivered and nothing already received is lost. Corrupt records are counted,
//! logged and skipped (their sequence number still advances, so they are not re-requested
//! forever); repeated sequence numbers are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::protocol::{
    format_time, info_text, next_sequence, parse_header, FrameKind, Selector, HEADER_LEN,
    MAX_SEQUENCE,
};
use crate::domain::UtcTime;
use crate::waveform::{decode_record, Record, RECORD_LEN};

/// Why the client stopped for good (transient network failures are retried, not returned).
#[derive(Debug, Error)]
pub enum ClientError {
    /// The configuration is unusable.
    #[error("SeedLink client configuration: {0}")]
    Config(String),
    /// The state file could not be read or written.
    #[error("state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
    /// The server refused every selector or station.
    #[error("server {server} refused {what}")]
    Refused { server: String, what: String },
}

/// One station to request, with optional SELECT patterns (`HH?`, `00HHZ`, `!LOG`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct StationRequest {
    /// Network code.
    pub network: String,
    /// Station code.
    pub station: String,
    /// SELECT patterns; empty means every stream.
    pub selectors: Vec<String>,
}

impl StationRequest {
    /// Parses `NET_STA` or `NET_STA:SEL1 SEL2` (the ObsPy/slinktool multiselect form).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let (ns, sel) = text.split_once(':').unwrap_or((text, ""));
        let (net, sta) = ns.split_once('_').ok_or_else(|| {
            ClientError::Config(format!("stream {text:?}: expected NET_STA[:SELECTORS]"))
        })?;
        let selectors: Vec<String> = sel.split_whitespace().map(str::to_string).collect();
        for s in &selectors {
            Selector::parse(s).map_err(|e| ClientError::Config(e.to_string()))?;
        }
        if net.is_empty() || sta.is_empty() {
            return Err(ClientError::Config(format!(
                "stream {text:?}: empty network or station"
            )));
        }
        Ok(Self {
            network: net.to_string(),
            station: sta.to_string(),
            selectors,
        })
    }
    fn key(&self) -> String {
        format!("{}_{}", self.network, self.station)
    }
}

/// Settings of the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Server address, `host:port`.
    pub server: String,
    /// Stations to request.
    pub stations: Vec<StationRequest>,
    /// Where to start a station that has no saved sequence number: `None` = live data only.
    pub begin_time: Option<UtcTime>,
    /// Optional end of a time window: the server sends `END` after it and the client stops.
    pub end_time: Option<UtcTime>,
    /// File with the last sequence number per station (read at start, rewritten as data come).
    pub state_file: Option<PathBuf>,
    /// TCP connect timeout, s.
    pub connect_timeout_s: f64,
    /// Timeout for each negotiation reply, s.
    pub reply_timeout_s: f64,
    /// Send `INFO ID` after this long without data, s.
    pub keepalive_s: f64,
    /// Reconnect when nothing (data or INFO) arrives for this long, s.
    pub idle_timeout_s: f64,
    /// First reconnect delay, s (doubled after each failure up to `backoff_max_s`).
    pub backoff_min_s: f64,
    /// Longest reconnect delay, s.
    pub backoff_max_s: f64,
    /// Write the state file at most this often, s.
    pub state_interval_s: f64,
}

impl ClientConfig {
    /// Defaults for `server` and `stations`.
    pub fn new(server: &str, stations: Vec<StationRequest>) -> Self {
        Self {
            server: server.to_string(),
            stations,
            begin_time: None,
            end_time: None,
            state_file: None,
            connect_timeout_s: 10.0,
            reply_timeout_s: 10.0,
            keepalive_s: 60.0,
            idle_timeout_s: 150.0,
            backoff_min_s: 1.0,
            backoff_max_s: 60.0,
            state_interval_s: 5.0,
        }
    }

    fn validate(&self) -> Result<(), ClientError> {
        if self.stations.is_empty() {
            return Err(ClientError::Config("no station requested".into()));
        }
        let all = [
            self.connect_timeout_s,
            self.reply_timeout_s,
            self.keepalive_s,
            self.idle_timeout_s,
            self.backoff_min_s,
            self.backoff_max_s,
        ];
        if all.iter().any(|v| !(v.is_finite() && *v > 0.0)) || self.state_interval_s < 0.0 {
            return Err(ClientError::Config(
                "timeouts and backoff must be positive numbers of seconds".into(),
            ));
        }
        Ok(())
    }
}

/// A record as received: the station key, its sequence number, raw bytes and decoded form.
#[derive(Debug, Clone)]
pub struct ReceivedRecord {
    /// SeedLink sequence number.
    pub sequence: u32,
    /// The 512 raw bytes.
    pub raw: Vec<u8>,
    /// The decoded record.
    pub record: Record,
}

/// Counters of the client (shared; read them while it runs).
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Successful connections (negotiation completed).
    pub connections: std::sync::atomic::AtomicU64,
    /// Failed connection or negotiation attempts and dropped links.
    pub link_failures: std::sync::atomic::AtomicU64,
    /// Links dropped for silence (idle timeout).
    pub timeouts: std::sync::atomic::AtomicU64,
    /// Records delivered.
    pub records: std::sync::atomic::AtomicU64,
    /// Records that failed to decode (skipped).
    pub corrupt_records: std::sync::atomic::AtomicU64,
    /// Records whose sequence number was already delivered (dropped).
    pub duplicates: std::sync::atomic::AtomicU64,
    /// Frames with an unreadable header (link restarted).
    pub bad_frames: std::sync::atomic::AtomicU64,
    /// INFO frames received (keepalive answers).
    pub info_frames: std::sync::atomic::AtomicU64,
}

impl ClientStats {
    fn inc(c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    /// Reads a counter.
    pub fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Last sequence number per station (`NET_STA`), as kept in the state file: one line
/// `NET_STA HEXSEQ` each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeState {
    /// Station key to last delivered sequence number.
    pub last: HashMap<String, u32>,
}

impl ResumeState {
    /// Reads a state file; a missing file is an empty state, a bad line an error naming it.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(ClientError::State {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let mut last = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || ClientError::State {
                path: path.to_path_buf(),
                reason: format!("line {}: expected `NET_STA HEXSEQ`, got {line:?}", i + 1),
            };
            let (k, v) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let seq = u32::from_str_radix(v.trim(), 16).map_err(|_| bad())?;
            if seq > MAX_SEQUENCE {
                return Err(bad());
            }
            last.insert(k.to_string(), seq);
        }
        Ok(Self { last })
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let mut keys: Vec<&String> = self.last.keys().collect();
        keys.sort();
        let mut text =
            String::from("# eikoloc SeedLink resume state: NET_STA last-sequence (hex)\n");
        for k in keys {
            text.push_str(&format!("{k} {:06X}\n", self.last[k]));
        }
        let tmp = path.with_extension("tmp");
        let err = |e: std::io::Error| ClientError::State {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// How one link ended.
enum LinkEnd {
    /// The server sent END (time window or FETCH complete).
    Finished,
    /// The receiver of records was dropped or shutdown was asked.
    Stopped,
    /// A failure worth a reconnect.
    Failed(String),
}

/// Runs the client until shutdown, until the receiver is dropped, or (with an end time)
/// until the server says END. Network failures are logged, counted and retried with backoff.
pub async fn run(
    cfg: ClientConfig,
    tx: mpsc::Sender<ReceivedRecord>,
    stats: Arc<ClientStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<ResumeState, ClientError> {
    cfg.validate()?;
    for s in &cfg.stations {
        for sel in &s.selectors {
            Selector::parse(sel).map_err(|e| ClientError::Config(e.to_string()))?;
        }
    }
    let mut state = match &cfg.state_file {
        Some(p) => ResumeState::load(p)?,
        None => ResumeState::default(),
    };
    tokio::pin!(shutdown);
    let mut backoff_s = cfg.backoff_min_s;
    loop {
        let delivered_before = ClientStats::get(&stats.records);
        let end = tokio::select! {
            _ = &mut shutdown => LinkEnd::Stopped,
            e = link(&cfg, &tx, &stats, &mut state) => e,
        };
        if let Some(p) = &cfg.state_file {
            state.save(p)?;
        }
        match end {
            LinkEnd::Finished | LinkEnd::Stopped => return Ok(state),
            LinkEnd::Failed(why) => {
                ClientStats::inc(&stats.link_failures);
                tracing::warn!(server = %cfg.server, reason = %why, retry_in_s = backoff_s, "SeedLink link lost");
                let wait_s = if ClientStats::get(&stats.records) > delivered_before {
                    cfg.backoff_min_s
                } else {
                    backoff_s
                };
                tokio::select! {
                    _ = &mut shutdown => return Ok(state),
                    _ = tokio::time::sleep(Duration::from_secs_f64(wait_s)) => {}
                }
                // A link that delivered data was healthy for a while: start the backoff over.
                backoff_s = if ClientStats::get(&stats.records) > delivered_before {
                    cfg.backoff_min_s
                } else {
                    (backoff_s * 2.0).min(cfg.backoff_max_s)
                };
            }
        }
    }
}

/// Sends one command and reads its reply line(s) within the reply timeout.
async fn command(
    sock: &mut BufReader<TcpStream>,
    cmd: &str,
    lines: usize,
    timeout: Duration,
) -> Result<String, String> {
    sock.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .map_err(|e| format!("send {cmd}: {e}"))?;
    let mut out = String::new();
    for _ in 0..lines {
        let mut line = Vec::new();
        let read = async {
            loop {
                let b = sock.read_u8().await?;
                if b == b'\n' {
                    return Ok::<_, std::io::Error>(());
                }
                line.push(b);
                if line.len() > 4096 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "reply too long",
                    ));
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| format!("no reply to {cmd}"))?
            .map_err(|e| format!("reply to {cmd}: {e}"))?;
        out.push_str(String::from_utf8_lossy(&line).trim_end_matches('\r'));
        out.push('\n');
    }
    Ok(out)
}

async fn link(
    cfg: &ClientConfig,
    tx: &mpsc::Sender<ReceivedRecord>,
    stats: &ClientStats,
    state: &mut ResumeState,
) -> LinkEnd {
    let secs = Duration::from_secs_f64;
    let sock =
        match tokio::time::timeout(secs(cfg.connect_timeout_s), TcpStream::connect(&cfg.server))
            .await
        {
            Err(_) => return LinkEnd::Failed("connect timed out".into()),
            Ok(Err(e)) => return LinkEnd::Failed(format!("connect: {e}")),
            Ok(Ok(s)) => s,
        };
    let _ = sock.set_nodelay(true);
    let mut sock = BufReader::with_capacity(64 * 1024, sock);
    let rt = secs(cfg.reply_timeout_s);
    match command(&mut sock, "HELLO", 2, rt).await {
        Ok(hello) => tracing::debug!(server = %cfg.server, hello = %hello.trim(), "connected"),
        Err(e) => return LinkEnd::Failed(e),
    }
    let mut accepted = 0;
    for s in &cfg.stations {
        match command(
            &mut sock,
            &format!("STATION {} {}", s.station, s.network),
            1,
            rt,
        )
        .await
        {
            Ok(r) if r.starts_with("OK") => {}
            Ok(r) => {
                tracing::warn!(station = %s.key(), reply = %r.trim(), "station refused");
                continue;
            }
            Err(e) => return LinkEnd::Failed(e),
        }
        for sel in &s.selectors {
            match command(&mut sock, &format!("SELECT {sel}"), 1, rt).await {
                Ok(r) if r.starts_with("OK") => {}
                Ok(r) => {
                    tracing::warn!(station = %s.key(), selector = %sel, reply = %r.trim(), "selector refused")
                }
                Err(e) => return LinkEnd::Failed(e),
            }
        }
        let action = match (state.last.get(&s.key()), cfg.begin_time) {
            (Some(&seq), _) => format!("DATA {:06X}", next_sequence(seq)),
            (None, Some(b)) => match cfg.end_time {
                Some(e) => format!("TIME {} {}", format_time(&b), format_time(&e)),
                None => format!("TIME {}", format_time(&b)),
            },
            (None, None) => "DATA".to_string(),
        };
        match command(&mut sock, &action, 1, rt).await {
            Ok(r) if r.starts_with("OK") => accepted += 1,
            Ok(r) => {
                tracing::warn!(station = %s.key(), action = %action, reply = %r.trim(), "action refused")
            }
            Err(e) => return LinkEnd::Failed(e),
        }
    }
    if accepted == 0 {
        return LinkEnd::Failed("server accepted no station".into());
    }
    if let Err(e) = sock.get_mut().write_all(b"END\r\n").await {
        return LinkEnd::Failed(format!("send END: {e}"));
    }
    ClientStats::inc(&stats.connections);
    let mut last_save = tokio::time::Instant::now();
    let mut last_keepalive = tokio::time::Instant::now();
    let mut frame = vec![0u8; HEADER_LEN + RECORD_LEN];
    loop {
        // Wait for the first bytes of a frame with keepalive and idle timeout.
        let idle = secs(cfg.idle_timeout_s);
        let since = tokio::time::Instant::now();
        let first = loop {
            let wait = secs(cfg.keepalive_s).min(idle.saturating_sub(since.elapsed()));
            match tokio::time::timeout(wait, sock.read_exact(&mut frame[..3])).await {
                Ok(Ok(_)) => break Ok(()),
                Ok(Err(e)) => break Err(format!("read: {e}")),
                Err(_) => {
                    if since.elapsed() >= idle {
                        ClientStats::inc(&stats.timeouts);
                        break Err(format!("no data for {:.0} s", cfg.idle_timeout_s));
                    }
                    if last_keepalive.elapsed() >= secs(cfg.keepalive_s) {
                        if let Err(e) = sock.get_mut().write_all(b"INFO ID\r\n").await {
                            break Err(format!("keepalive: {e}"));
                        }
                        last_keepalive = tokio::time::Instant::now();
                    }
                }
            }
        };
        if let Err(e) = first {
            return LinkEnd::Failed(e);
        }
        if &frame[..3] == b"END" {
            tracing::info!(server = %cfg.server, "server finished the requested window");
            return LinkEnd::Finished;
        }
        // The rest of the frame must follow promptly.
        match tokio::time::timeout(
            secs(cfg.reply_timeout_s.max(cfg.idle_timeout_s)),
            sock.read_exact(&mut frame[3..]),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return LinkEnd::Failed(format!("read: {e}")),
            Err(_) => {
                ClientStats::inc(&stats.timeouts);
                return LinkEnd::Failed("frame stalled half-way".into());
            }
        }
        let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("8 bytes");
        let seq = match parse_header(&header) {
            Ok(FrameKind::Info { .. }) => {
                ClientStats::inc(&stats.info_frames);
                tracing::trace!(text = ?info_text(&frame[HEADER_LEN..]), "INFO frame");
                continue;
            }
            Ok(FrameKind::Data(seq)) => seq,
            Err(e) => {
                // Framing is lost: the only safe way back is a fresh link resuming by sequence.
                ClientStats::inc(&stats.bad_frames);
                return LinkEnd::Failed(e.to_string());
            }
        };
        let raw = frame[HEADER_LEN..].to_vec();
        let rec = match decode_record(&raw, &cfg.server, seq as usize, 0) {
            Ok(r) => r,
            Err(e) => {
                ClientStats::inc(&stats.corrupt_records);
                tracing::warn!(sequence = seq, error = %e, "corrupt record skipped");
                // Advance past it when the header still names the station, so a resume does
                // not ask for the same broken record again.
                let code =
                    |a: usize, b: usize| String::from_utf8_lossy(&raw[a..b]).trim().to_string();
                let (net, sta) = (code(18, 20), code(8, 13));
                if !net.is_empty()
                    && !sta.is_empty()
                    && (net.clone() + &sta)
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric())
                {
                    state.last.insert(format!("{net}_{sta}"), seq);
                }
                continue;
            }
        };
        let key = format!("{}_{}", rec.trace.id.network, rec.trace.id.station);
        if let Some(&last) = state.last.get(&key) {
            // Within half the 24-bit circle behind the last one means already delivered.
            let behind = last.wrapping_sub(seq) & MAX_SEQUENCE;
            if behind <= MAX_SEQUENCE / 2 {
                ClientStats::inc(&stats.duplicates);
                continue;
            }
        }
        if tx
            .send(ReceivedRecord {
                sequence: seq,
                raw,
                record: rec,
            })
            .await
            .is_err()
        {
            return LinkEnd::Stopped;
        }
        ClientStats::inc(&stats.records);
        state.last.insert(key, seq);
        if let Some(p) = &cfg.state_file {
            if last_save.elapsed() >= secs(cfg.state_interval_s) {
                if let Err(e) = state.save(p) {
                    tracing::error!(error = %e, "cannot write SeedLink state file");
                }
                last_save = tokio::time::Instant::now();
            }
        }
    }
}
