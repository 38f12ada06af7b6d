//! Publishers: the push model. Every publisher receives every origin version, in order, from
//! the publish stage after the version is stored.
//!
//! - [`EventFiles`]: one file per event (QuakeML 1.2 by default), rewritten atomically
//!   (temporary file + rename) on each new version, so a reader never sees half a file.
//! - [`OriginStream`]: each version as one message to every TCP subscriber
//!   ([`serve_stream`]), JSON lines or length-prefixed MessagePack, as the subscriber asks.
//!
//! The HTTP API reads the store instead (pull model); see [`crate::daemon::http`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::domain::{Event, Origin};
use crate::metrics::Metrics;

/// Why a publisher could not deliver.
#[derive(Debug, Error)]
pub enum PublishError {
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Encoding failed.
    #[error("encoding {what}: {message}")]
    Encode { what: String, message: String },
}

/// Something that is told about every new origin version (push model).
pub trait Publisher: Send {
    /// Short name for logs and the `publisher` metric label.
    fn name(&self) -> &'static str;
    /// A new origin version: `event` holds every version so far, the new one last (or, for a
    /// publisher whose [`Publisher::wants_event`] is false, only the event id and the new
    /// origin).
    fn publish(&mut self, event: &Event, origin: &Origin) -> Result<(), PublishError>;
    /// True when the publisher needs the whole event (picks, every version); false lets the
    /// publish stage call it before reading the event back from the store.
    fn wants_event(&self) -> bool {
        true
    }
    /// Called once at shutdown after the last version.
    fn flush(&mut self) -> Result<(), PublishError> {
        Ok(())
    }
}

/// A file name for an event id: characters other than ASCII letters, digits, `.`, `_`, `-`
/// become `_` (ids are deterministic, so the name is too).
pub fn file_stem(event_id: &str) -> String {
    let s: String = event_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("event_{s}")
    } else {
        s
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let io = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// How an event is rendered to a file.
pub type RenderFn = fn(&Event) -> Result<String, String>;

/// One file per event in a folder, rewritten atomically on every version.
pub struct EventFiles {
    dir: PathBuf,
    extension: &'static str,
    render: RenderFn,
}

impl EventFiles {
    /// Files `<dir>/<event id>.<extension>` rendered by `render`; creates `dir`.
    pub fn new(
        dir: &Path,
        extension: &'static str,
        render: RenderFn,
    ) -> Result<Self, PublishError> {
        std::fs::create_dir_all(dir).map_err(|source| PublishError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            extension,
            render,
        })
    }

    /// The path an event is written to.
    pub fn path_of(&self, event_id: &str) -> PathBuf {
        self.dir
            .join(format!("{}.{}", file_stem(event_id), self.extension))
    }
}

impl Publisher for EventFiles {
    fn name(&self) -> &'static str {
        "files"
    }
    fn publish(&mut self, event: &Event, _origin: &Origin) -> Result<(), PublishError> {
        let text = (self.render)(event).map_err(|message| PublishError::Encode {
            what: event.id.clone(),
            message,
        })?;
        write_atomic(&self.path_of(&event.id), text.as_bytes())
    }
}

/// One message of the origin stream (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginMessage {
    /// Schema version (1).
    pub v: u32,
    /// The event the origin belongs to.
    pub event_id: String,
    /// The new origin version.
    pub origin: Origin,
}

/// Both encodings of one message, made once and shared by every subscriber.
#[derive(Debug, Clone)]
pub struct EncodedMessage {
    /// One JSON line, newline included.
    pub json_line: Arc<Vec<u8>>,
    /// 4-byte big-endian length, then the MessagePack map.
    pub msgpack_frame: Arc<Vec<u8>>,
}

/// Broadcasts origin versions to stream subscribers.
pub struct OriginStream {
    tx: broadcast::Sender<EncodedMessage>,
}

impl OriginStream {
    /// A stream whose subscribers may fall `capacity` messages behind before being dropped.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }
    /// The sender the TCP listener subscribes from.
    pub fn sender(&self) -> broadcast::Sender<EncodedMessage> {
        self.tx.clone()
    }
}

impl Publisher for OriginStream {
    fn name(&self) -> &'static str {
        "stream"
    }
    fn wants_event(&self) -> bool {
        false
    }
    fn publish(&mut self, event: &Event, origin: &Origin) -> Result<(), PublishError> {
        let msg = OriginMessage {
            v: 1,
            event_id: event.id.clone(),
            origin: origin.clone(),
        };
        let enc = |message: String| PublishError::Encode {
            what: origin.id.clone(),
            message,
        };
        let mut json = serde_json::to_vec(&msg).map_err(|e| enc(e.to_string()))?;
        json.push(b'\n');
        let body = rmp_serde::to_vec_named(&msg).map_err(|e| enc(e.to_string()))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        // No subscriber is not an error: the message is simply not wanted.
        let _ = self.tx.send(EncodedMessage {
            json_line: Arc::new(json),
            msgpack_frame: Arc::new(frame),
        });
        Ok(())
    }
}

/// Serves the origin stream: a subscriber connects and writes one line, `json` or `msgpack`,
/// then receives every later origin version in that encoding. A subscriber too slow to keep
/// up (more than the stream's capacity behind) is disconnected, so it cannot hold memory.
pub async fn serve_stream(
    listener: TcpListener,
    tx: broadcast::Sender<EncodedMessage>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                // Subscribe before reading the hello, so nothing published after the
                // connection is accepted is missed.
                let mut rx = tx.subscribe();
                let metrics = metrics.clone();
                let mut shutdown = shutdown.clone();
                tasks.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let (read, mut write) = stream.into_split();
                    let mut hello = String::new();
                    let mut reader = BufReader::new(read).take(64);
                    let got = tokio::time::timeout(std::time::Duration::from_secs(10), reader.read_line(&mut hello)).await;
                    let msgpack = match (got, hello.trim()) {
                        (Ok(Ok(_)), "json") => false,
                        (Ok(Ok(_)), "msgpack") => true,
                        _ => {
                            let _ = write.write_all(b"{\"error\":\"send json or msgpack as the first line\"}\n").await;
                            return;
                        }
                    };
                    metrics.stream_subscriber(1);
                    tracing::info!(%peer, msgpack, "stream subscriber connected");
                    loop {
                        let m = tokio::select! {
                            _ = shutdown.changed() => {
                                // Deliver what was published before the shutdown.
                                while let Ok(m) = rx.try_recv() {
                                    let b = if msgpack { m.msgpack_frame } else { m.json_line };
                                    if write.write_all(&b).await.is_err() { break; }
                                }
                                break;
                            }
                            m = rx.recv() => m,
                        };
                        match m {
                            Ok(m) => {
                                let b = if msgpack { m.msgpack_frame } else { m.json_line };
                                if write.write_all(&b).await.is_err() {
                                    break;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(%peer, "stream subscriber fell {n} messages behind; disconnecting");
                                break;
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                    let _ = write.shutdown().await;
                    metrics.stream_subscriber(-1);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Let subscribers drain what is already queued, briefly.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe_and_atomic_writes_replace() {
        assert_eq!(file_stem("ev/1:2"), "ev_1_2");
        assert_eq!(file_stem("../x"), "event_.._x");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.xml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
