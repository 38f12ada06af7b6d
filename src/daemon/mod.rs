//! The service: [`run`] wires ingest, the event pipeline, the store, the publishers and the
//! HTTP API with bounded channels, and stops cleanly when its `shutdown` future completes.
//!
//! As in mini-redis, the binary and the tests share one entry point: bind [`Listeners`]
//! (port 0 in tests), read their addresses, then `run(config, listeners, engine, shutdown)`.
//!
//! Shutdown order (SIGTERM in the binary): stop accepting and reading picks; hand every queued
//! pick to the pipeline; locate every event with picks newer than its last origin and finish
//! every run; store and publish those origins; flush publishers; then stop the origin stream
//! (after subscribers received what was published) and the HTTP API. Nothing accepted is
//! dropped, and events still open stay open in the store to resume at the next start.
//!
//! Backpressure: ingest -> pipeline is a bounded channel (`pipeline.pick_queue`); when it is
//! full, connection readers stop reading and TCP pushes back on the senders. Pipeline ->
//! publish is bounded too; the locate pool has a fixed number of threads and at most one run
//! per event in flight.

pub mod clock;
pub mod config;
pub mod demo;
pub mod engine;
pub mod http;
pub mod pipeline;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::domain::{Event, Pick};
use crate::ingest::IngestedPick;
use crate::metrics::Metrics;
use crate::publish::{EventFiles, OriginStream, PublishError, Publisher, RenderFn};
use crate::store::{Store, StoreError};
pub use clock::{Clock, VirtualClock, WallClock};
pub use config::{PipelineConfig, ResolvedServeConfig, ServeConfig, ServeConfigError};
pub use pipeline::{Association, EventChange, LocateRequest, Located, Locator};

/// Why the service could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A publisher could not be set up.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A thread or task could not be started or failed.
    #[error("service internals: {0}")]
    Internal(String),
}

/// The three bound sockets.
pub struct Listeners {
    ingest: TcpListener,
    stream: TcpListener,
    http: TcpListener,
}

/// The addresses the service actually listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// Pick ingest.
    pub ingest: SocketAddr,
    /// Origin stream.
    pub stream: SocketAddr,
    /// HTTP API.
    pub http: SocketAddr,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &ResolvedServeConfig) -> Result<Self, DaemonError> {
        async fn one(what: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { what, addr, source })
        }
        Ok(Self {
            ingest: one("ingest", config.ingest_addr).await?,
            stream: one("stream", config.stream_addr).await?,
            http: one("http", config.http_addr).await?,
        })
    }

    /// The bound addresses (with the actual ports when 0 was asked for).
    pub fn addresses(&self) -> Addresses {
        let a = |l: &TcpListener| {
            l.local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        Addresses {
            ingest: a(&self.ingest),
            stream: a(&self.stream),
            http: a(&self.http),
        }
    }
}

/// The science the service runs: association and location.
pub struct Engine {
    /// Streaming association.
    pub association: Box<dyn Association>,
    /// The locator, shared by the pool threads.
    pub locator: Arc<dyn Locator>,
}

/// Renders an event for the per-event files and `/events/{id}/quakeml`.
pub fn render_event(event: &Event) -> Result<String, String> {
    Ok(crate::catalog::quakeml::to_quakeml(std::slice::from_ref(
        event,
    )))
}

/// Extension of the per-event files.
pub const EVENT_FILE_EXTENSION: &str = "xml";

/// Picks to replay through the association at start: those stored within
/// `pipeline.replay_window_s` of the latest stored pick, except picks of closed events (their
/// origins are final already).
fn replay_picks(store: &Store, config: &PipelineConfig) -> Result<Vec<Pick>, StoreError> {
    let Some(latest) = store.latest_pick_time()? else {
        return Ok(Vec::new());
    };
    let since = crate::domain::time::add_seconds(&latest, -config.replay_window_s);
    store.replay_picks(&since)
}

/// Runs the service until `shutdown` completes, then drains and returns.
pub async fn run(
    config: ResolvedServeConfig,
    listeners: Listeners,
    engine: Engine,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let store = match &config.store_path {
        Some(p) => {
            if let Some(d) = p.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            Store::open(p)?
        }
        None => Store::open_in_memory()?,
    };
    let render: RenderFn = render_event;
    let stream = OriginStream::new(config.stream_capacity);
    let stream_tx = stream.sender();
    // The stream first: it is the low-latency channel, and the file publisher's fsync and
    // rename (tens of ms on a busy disk) would otherwise delay every subscriber.
    let publishers: Vec<Box<dyn Publisher>> = vec![
        Box::new(stream),
        Box::new(EventFiles::new(
            &config.quakeml_dir,
            EVENT_FILE_EXTENSION,
            render,
        )?),
    ];

    let replay = replay_picks(&store, &config.pipeline)?;
    let (tx, mut rx) = mpsc::channel::<IngestedPick>(config.pipeline.pick_queue);
    let (cb_tx, cb_rx) = crossbeam::channel::bounded::<IngestedPick>(config.pipeline.pick_queue);
    // The pipeline thread selects over picks and locate results with crossbeam; this bridge
    // keeps the ingest side async (send().await) with backpressure end to end.
    let bridge = std::thread::Builder::new()
        .name("eikoloc-ingest-bridge".into())
        .spawn(move || {
            while let Some(p) = rx.blocking_recv() {
                if cb_tx.send(p).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
    let pipeline = pipeline::Pipeline {
        config: config.pipeline.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        association: engine.association,
        locator: engine.locator,
        publishers,
        clock: Box::new(WallClock::new()),
        close_at_end: false,
    }
    .start(cb_rx, replay)
    .map_err(|e| DaemonError::Internal(e.to_string()))?;

    let (stop_ingest, ingest_stopped) = watch::channel(false);
    let (stop_output, output_stopped) = watch::channel(false);
    let inventory = Arc::new(config.station.inventory.clone());
    let ingest = tokio::spawn(crate::ingest::serve(
        listeners.ingest,
        config.ingest.clone(),
        inventory,
        metrics.clone(),
        tx,
        ingest_stopped,
    ));
    let stream_task = tokio::spawn(crate::publish::serve_stream(
        listeners.stream,
        stream_tx,
        metrics.clone(),
        output_stopped.clone(),
    ));
    let api = http::router(http::ApiState {
        store: store.clone(),
        metrics: metrics.clone(),
        quakeml: render,
    });
    let mut http_stop = output_stopped.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(listeners.http, api)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await
    });

    shutdown.await;
    tracing::info!("shutting down: ingest stopped, finishing open events");
    let _ = stop_ingest.send(true);
    if let Err(e) = ingest.await {
        tracing::error!("ingest task: {e}");
    }
    // Every ingest sender is gone now: the bridge ends, the pipeline drains and stops.
    tokio::task::spawn_blocking(move || {
        let _ = bridge.join();
        pipeline.join();
    })
    .await
    .map_err(|e| DaemonError::Internal(e.to_string()))?;
    let _ = stop_output.send(true);
    let _ = stream_task.await;
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("http server: {e}"),
        Err(e) => tracing::error!("http task: {e}"),
    }
    let (events, origins, picks) = store.counts()?;
    tracing::info!(events, origins, picks, "stopped cleanly");
    Ok(())
}
