//! SeedLink records -> picker -> picks: the pick source the streaming service plugs in.
//!
//! [`spawn_pick_source`] starts the client and a picker task and returns a
//! [`SeedLinkPickSource`]: a bounded `mpsc::Receiver<Pick>` (backpressure reaches the
//! client, which then stops reading the socket, so nothing is dropped), live counters, and a
//! join handle. The service reads picks with `recv().await` and feeds them to the same
//! ingest path as external picks.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::client::{self, ClientConfig, ClientError, ClientStats, ReceivedRecord, ResumeState};
use crate::domain::Pick;
use crate::picker::{Picker, PickerError, PickerSettings, PickerStats};

/// A running SeedLink pick source.
pub struct SeedLinkPickSource {
    /// Picks in the order they are decided.
    pub picks: mpsc::Receiver<Pick>,
    /// Client counters (connections, records, corrupt records, timeouts...).
    pub client_stats: Arc<ClientStats>,
    /// Picker counters, updated after each record.
    pub picker_stats: Arc<Mutex<PickerStats>>,
    /// Ends with the client: its final resume state, or why it stopped.
    pub client: JoinHandle<Result<ResumeState, ClientError>>,
    /// Ends after the picker flushed its last picks (when the client ended).
    pub picker: JoinHandle<()>,
}

/// Starts client and picker; `capacity` bounds both channels (records and picks).
pub fn spawn_pick_source(
    cfg: ClientConfig,
    settings: PickerSettings,
    capacity: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SeedLinkPickSource, PickerError> {
    let mut picker = Picker::new(settings)?;
    let (rec_tx, mut rec_rx) = mpsc::channel::<ReceivedRecord>(capacity.max(1));
    let (pick_tx, pick_rx) = mpsc::channel::<Pick>(capacity.max(1));
    let client_stats = Arc::new(ClientStats::default());
    let picker_stats = Arc::new(Mutex::new(PickerStats::default()));
    let client = tokio::spawn(client::run(cfg, rec_tx, client_stats.clone(), shutdown));
    let ps = picker_stats.clone();
    let picker = tokio::spawn(async move {
        while let Some(r) = rec_rx.recv().await {
            let picks = picker.process(&r.record.trace);
            if let Ok(mut s) = ps.lock() {
                *s = picker.stats().clone();
            }
            for p in picks {
                if pick_tx.send(p).await.is_err() {
                    return;
                }
            }
        }
        for p in picker.flush() {
            if pick_tx.send(p).await.is_err() {
                return;
            }
        }
        if let Ok(mut s) = ps.lock() {
            *s = picker.stats().clone();
        }
    });
    Ok(SeedLinkPickSource {
        picks: pick_rx,
        client_stats,
        picker_stats,
        client,
        picker,
    })
}
