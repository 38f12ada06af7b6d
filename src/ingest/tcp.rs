//! The service's pick ingest over TCP: length-prefixed MessagePack or JSON lines, many
//! clients at once.
//!
//! The format is sniffed per connection from its first byte: `{` (or whitespace) starts JSON
//! lines; anything else is read as MessagePack frames, each a 4-byte big-endian length followed
//! by that many bytes of one MessagePack map ([`super::wire::WirePick`]). A `{` can never begin a valid
//! length prefix, because it would announce a frame of at least 2 GB, beyond any frame limit.
//!
//! Every record is validated ([`super::wire::validate`]); a bad one is counted by reason
//! ([`crate::metrics::RejectReason`]), logged, and skipped, and the connection goes on. Only
//! what breaks the framing (an oversized length prefix or line) or failed authentication closes
//! the connection. Validated picks go into a bounded channel with `send().await`: when the
//! pipeline falls behind, readers stop reading and TCP flow control pushes back on the
//! senders instead of the service buffering without bound.

use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::wire::{validate, PickLimits, WireHello, WirePick};
use crate::domain::{Pick, StationInventory};
use crate::metrics::{Metrics, RejectReason};

/// Configures the ingest listener.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestConfig {
    /// Largest MessagePack frame or JSON line, bytes.
    pub max_frame_bytes: usize,
    /// Most simultaneous client connections; later ones are closed at once.
    pub max_clients: usize,
    /// Shared token required as the first record of a connection (`None`: open ingest).
    pub token: Option<String>,
    /// Checks besides the inventory.
    pub limits: PickLimits,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_clients: 256,
            token: None,
            limits: PickLimits::default(),
        }
    }
}

/// A validated pick with the instant it was received (for the pick-to-origin latency).
#[derive(Debug, Clone)]
pub struct IngestedPick {
    /// The pick.
    pub pick: Pick,
    /// When the service read it.
    pub received: Instant,
}

/// Why the ingest listener stopped.
#[derive(Debug, Error)]
pub enum IngestError {
    /// Accepting a connection failed in a way that will not heal.
    #[error("ingest listener: {0}")]
    Io(#[from] std::io::Error),
}

/// What every connection handler shares.
struct Shared {
    config: IngestConfig,
    inventory: Arc<StationInventory>,
    metrics: Metrics,
    tx: mpsc::Sender<IngestedPick>,
}

/// Accepts ingest connections on `listener` until `shutdown` turns true; each connection
/// runs in its own task and sends validated picks to `tx`.
pub async fn serve(
    listener: TcpListener,
    config: IngestConfig,
    inventory: Arc<StationInventory>,
    metrics: Metrics,
    tx: mpsc::Sender<IngestedPick>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let limit = Arc::new(Semaphore::new(config.max_clients.max(1)));
    let shared = Arc::new(Shared {
        config,
        inventory,
        metrics,
        tx,
    });
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Per-connection failures (reset before accept, fd exhaustion) must
                        // not end the service; back off briefly instead.
                        tracing::warn!("ingest accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "ingest connection refused: {} clients already connected", shared.config.max_clients);
                    continue;
                };
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let _ = stream.set_nodelay(true);
                    handle(stream, peer, shared, shutdown).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Stop reading: readers end at their next await point; picks already sent stay queued.
    tasks.shutdown().await;
    Ok(())
}

/// The end of one connection's framing.
enum Frame {
    Record(Vec<u8>),
    Eof,
    TooLarge(usize),
}

async fn read_msgpack_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Frame::Eof),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Ok(Frame::TooLarge(n));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    Ok(Frame::Record(buf))
}

async fn read_json_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Frame> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(Frame::Eof);
    }
    if buf.last() != Some(&b'\n') && buf.len() > max {
        return Ok(Frame::TooLarge(buf.len()));
    }
    Ok(Frame::Record(buf))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    MsgPack,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::MsgPack => "msgpack",
        }
    }
    fn decode<T: serde::de::DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

async fn handle(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reader = BufReader::new(stream);
    let first = match reader.fill_buf().await {
        Ok([]) | Err(_) => return,
        Ok(b) => b[0],
    };
    let format = if first == b'{' || first.is_ascii_whitespace() {
        Format::Json
    } else {
        Format::MsgPack
    };
    let metrics = &shared.metrics;
    metrics.ingest_connection(format.as_str(), 1);
    tracing::info!(%peer, format = format.as_str(), "ingest client connected");
    let max = shared.config.max_frame_bytes;
    let mut authenticated = shared.config.token.is_none();
    let mut first_record = true;
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            f = async {
                match format {
                    Format::Json => read_json_line(&mut reader, max).await,
                    Format::MsgPack => read_msgpack_frame(&mut reader, max).await,
                }
            } => f,
        };
        let bytes = match frame {
            Ok(Frame::Record(b)) => b,
            Ok(Frame::Eof) => break,
            Ok(Frame::TooLarge(n)) => {
                metrics.pick_rejected(RejectReason::FrameTooLarge, None);
                tracing::warn!(%peer, "ingest frame of {n} bytes exceeds the {max}-byte limit; closing the connection");
                break;
            }
            Err(e) => {
                tracing::info!(%peer, "ingest connection ended: {e}");
                break;
            }
        };
        if format == Format::Json && bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if first_record {
            first_record = false;
            if let Ok(hello) = format.decode::<WireHello>(&bytes) {
                match &shared.config.token {
                    Some(t) if *t == hello.token => authenticated = true,
                    Some(_) => {}
                    None => {}
                }
                if !authenticated {
                    metrics.pick_rejected(RejectReason::Auth, None);
                    tracing::warn!(%peer, "ingest authentication failed; closing the connection");
                    break;
                }
                continue;
            }
        }
        if !authenticated {
            metrics.pick_rejected(RejectReason::Auth, None);
            tracing::warn!(%peer, "ingest record before authentication; closing the connection");
            break;
        }
        let record: WirePick = match format.decode(&bytes) {
            Ok(r) => r,
            Err(e) => {
                metrics.pick_rejected(RejectReason::Malformed, None);
                tracing::warn!(%peer, "malformed {} record: {e}", format.as_str());
                continue;
            }
        };
        match validate(
            record,
            &shared.inventory,
            &shared.config.limits,
            chrono::Utc::now(),
        ) {
            Ok(pick) => {
                let received = Instant::now();
                metrics.pick_accepted(&pick.station, pick.phase);
                if shared
                    .tx
                    .send(IngestedPick { pick, received })
                    .await
                    .is_err()
                {
                    break; // pipeline gone: the service is stopping
                }
                metrics.set_queue_depth(
                    crate::metrics::Queue::Picks,
                    shared.tx.max_capacity() - shared.tx.capacity(),
                );
            }
            Err(r) => {
                metrics.pick_rejected(r.reason, r.phase);
                tracing::warn!(%peer, reason = r.reason.as_str(), "pick rejected: {}", r.detail);
            }
        }
    }
    metrics.ingest_connection(format.as_str(), -1);
}
