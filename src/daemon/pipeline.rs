//! The event pipeline, off the async runtime: one thread runs association and decides when
//! to locate; a pool runs the locator; one thread stores and publishes.
//!
//! ```text
//! picks ──> [pipeline thread: Association, EventTracker] ──LocateRequest──> [locate pool]
//!                       ^                                                        │
//!                       └───────────────────── Located ──────────────────────────┘
//!                       │
//!                       └──PublishJob──> [publish thread: Store, every Publisher]
//! ```
//!
//! Per event at most one locate run is in flight; picks that arrive meanwhile mark it dirty
//! and one more run follows (coalescing, so a burst of picks costs two runs, not one per pick).
//! Relocation waits `slope * N + intercept` seconds after the previous origin (scautoloc's
//! publication interval); the first origin and the final one (when the association window
//! closes) go at once. Each successful run is the event's next version.
//!
//! At shutdown open events are not forced closed: pending runs are done, the results stored
//! and published, and the events stay open in the store; at the next start their picks are
//! replayed through the association, which re-opens them under the same deterministic ids.
//! An archive replay ([`crate::replay`]) asks instead for every event to be closed and
//! located a final time when its input ends ([`Pipeline::close_at_end`]).
//!
//! Time comes from a [`Clock`]: the wall clock for the service, the picks' own times for a
//! replay. On a virtual clock a locate run takes no time: the throttle counts from the run's
//! start, the next run of the event may be scheduled at once, and the pipeline thread never
//! waits for the locator except to bound the runs in flight. The pool still computes runs in
//! parallel, but their results are applied (versioned, stored, published) strictly in the
//! order the runs were started, so the same archive gives the same origins, in the same
//! order, on any machine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam::channel::{self, Receiver, Sender};

use crate::domain::{Event, Origin, Pick};
use crate::ingest::IngestedPick;
use crate::metrics::{Coalesced, Metrics, OriginKind, Queue, RejectReason};
use crate::publish::Publisher;
use crate::store::{Particles, Store};

use super::clock::Clock;
use super::config::PipelineConfig;

/// What association reports about events (the service's view of the associator's outputs).
#[derive(Debug, Clone, PartialEq)]
pub enum EventChange {
    /// A new event with its first picks (ids).
    Opened { id: String, pick_ids: Vec<String> },
    /// More picks joined an open event.
    Updated { id: String, pick_ids: Vec<String> },
    /// The event's window closed: no more picks will join.
    Closed { id: String },
}

/// Streaming association: fed picks one at a time, in arrival order.
pub trait Association: Send {
    /// One pick in; what changed.
    fn push(&mut self, pick: &Pick) -> Vec<EventChange>;
    /// The stream clock moves to `t` without a pick (quiet network); what closed.
    fn advance_to(&mut self, t: DateTime<Utc>) -> Vec<EventChange>;
    /// End of the stream (an archive replay ends): decide what is pending and close every
    /// open event. The default closes nothing, for associations that only close by time.
    fn finish(&mut self) -> Vec<EventChange> {
        Vec::new()
    }

    /// How long (s of stream time) a pick may still be named in a change after its own
    /// time: the pipeline keeps picks in memory this long, and no longer, so memory stays
    /// flat on a months-long stream.
    fn retention_s(&self) -> f64 {
        3600.0
    }
}

/// One locate run to do.
#[derive(Debug, Clone)]
pub struct LocateRequest {
    /// Event id.
    pub event_id: String,
    /// Every pick of the event so far.
    pub picks: Vec<Pick>,
    /// True for the final run after the window closed.
    pub is_final: bool,
}

/// A locate run's result: the origin (id, version and finality are set by the pipeline) and
/// its posterior particles.
#[derive(Debug, Clone)]
pub struct Located {
    /// The origin.
    pub origin: Origin,
    /// Posterior particles (geographic), if the locator has them.
    pub particles: Option<Vec<[f64; 4]>>,
}

/// A hypocentre locator, called on pool threads.
pub trait Locator: Send + Sync {
    /// Locates an event from its picks; the error is a message for the log.
    fn locate(&self, request: &LocateRequest) -> Result<Located, String>;

    /// Locates with these station corrections instead of the locator's own (the replay's
    /// station-terms passes); arrival residuals are relative to the corrected prediction.
    /// Locators without corrections refuse.
    fn locate_corrected(
        &self,
        _request: &LocateRequest,
        _corrections: &crate::locate::station_terms::EventCorrections,
    ) -> Result<Located, String> {
        Err("this locator takes no station corrections".into())
    }

    /// A quick preliminary solution (e.g. linearized, without a posterior) that the pipeline
    /// publishes as an event's first origin before the full run; `None`: this locator has
    /// none, and the first origin is a full run.
    fn locate_preliminary(&self, _request: &LocateRequest) -> Option<Result<Located, String>> {
        None
    }
}

/// A stored-and-published origin version, to the publish thread.
struct PublishJob {
    event_id: String,
    origin: Origin,
    particles: Option<Particles>,
    trigger: Instant,
    kind: RunKind,
}

/// What a run is for; decides its place in the locate queue and its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RunKind {
    /// The quick linearized first origin, computed on the pipeline thread at once.
    Preliminary,
    /// The final run after the event's window closed (never dropped).
    Final,
    /// The event's first full (posterior) run.
    FirstFull,
    /// A later full run with more picks.
    Relocation,
}

#[derive(Debug)]
struct Tracked {
    picks: Vec<Pick>,
    locating: bool,
    dirty: bool,
    closed: bool,
    final_sent: bool,
    /// Clock time (s) the previous full run finished: the relocation throttle counts from it.
    last_run_s: Option<f64>,
    /// Wall instant of the latest change (for the pick-to-origin latency metric only).
    trigger: Instant,
    /// Wall instant the event opened: the first posterior's latency counts from it.
    opened: Instant,
    /// A full run has started (in this process, or the event had origins before a restart).
    full_started: bool,
    /// The preliminary origin is still to be computed (a new event).
    needs_preliminary: bool,
    /// Clock time (s) since which a due run has waited for a locate thread; `None` when no
    /// run waits (wall clock only: on a virtual clock nothing waits).
    queued_since_s: Option<f64>,
    /// A run was dropped from the full queue: picks newer than the last origin wait for the
    /// next change (at the latest the final run), or for the drain at shutdown.
    deferred: bool,
}

impl Tracked {
    /// The kind of this event's next full run.
    fn next_kind(&self) -> RunKind {
        if self.closed {
            RunKind::Final
        } else if !self.full_started {
            RunKind::FirstFull
        } else {
            RunKind::Relocation
        }
    }
}

struct Done {
    /// Start order of the run (results are applied in this order on a virtual clock).
    seq: u64,
    event_id: String,
    kind: RunKind,
    trigger: Instant,
    duration_s: f64,
    result: Result<Located, String>,
}

impl RunKind {
    fn is_final(self) -> bool {
        self == RunKind::Final
    }
}

/// Runs in flight per pool thread before a virtual-clock pipeline stops taking picks: enough
/// to keep the pool busy, few enough to bound the results held for in-order application.
const VIRTUAL_RUNS_PER_THREAD: usize = 4;

/// The pipeline's moving parts, built by [`super::run`] (the service) and
/// [`crate::replay`] (an archive).
pub struct Pipeline {
    pub(crate) config: PipelineConfig,
    pub(crate) store: Store,
    pub(crate) metrics: Metrics,
    pub(crate) association: Box<dyn Association>,
    pub(crate) locator: std::sync::Arc<dyn Locator>,
    pub(crate) publishers: Vec<Box<dyn Publisher>>,
    /// Where "now" comes from.
    pub(crate) clock: Box<dyn Clock>,
    /// When the input ends: true closes every event ([`Association::finish`]) and locates
    /// it a final time (an archive); false leaves open events open for a restart (the service).
    pub(crate) close_at_end: bool,
}

/// Handle of the running pipeline threads.
pub struct PipelineHandle {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl PipelineHandle {
    /// Waits until the pipeline has drained (after its input closed).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl Pipeline {
    /// Starts the threads; the pipeline ends after `picks` closes and every event is final,
    /// stored and published. `replay` is fed to the association first (restart).
    pub fn start(
        self,
        picks: Receiver<IngestedPick>,
        replay: Vec<Pick>,
    ) -> std::io::Result<PipelineHandle> {
        let Pipeline {
            config,
            store,
            metrics,
            association,
            locator,
            publishers,
            clock,
            close_at_end,
        } = self;
        let (pub_tx, pub_rx) = channel::bounded::<PublishJob>(1024);
        let nice = config.locate_nice;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.locate_threads)
            .thread_name(|i| format!("eikoloc-locate-{i}"))
            .start_handler(move |_| lower_priority(nice))
            .build()
            .map_err(std::io::Error::other)?;
        let publish = {
            let store = store.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("eikoloc-publish".into())
                .spawn(move || publish_loop(pub_rx, store, metrics, publishers))?
        };
        let core = std::thread::Builder::new()
            .name("eikoloc-pipeline".into())
            .spawn(move || {
                let mut core = Core {
                    config,
                    store,
                    metrics,
                    association,
                    locator,
                    pool,
                    clock,
                    close_at_end,
                    events: HashMap::new(),
                    versions: HashMap::new(),
                    done: channel::unbounded(),
                    publish: pub_tx,
                    in_flight: 0,
                    waiting: 0,
                    next_seq: 0,
                    next_apply: 0,
                    held: BTreeMap::new(),
                    draining: false,
                    recent: HashMap::new(),
                    recent_order: VecDeque::new(),
                };
                core.run(picks, replay);
            })?;
        Ok(PipelineHandle {
            threads: vec![core, publish],
        })
    }
}

/// Lowers the calling thread's CPU priority by `nice` (Linux; elsewhere nothing): the locate
/// pool's long runs then yield the cores to the pipeline and publish threads, whose work is
/// short and on the latency path (a preliminary origin waits for no SVGD run).
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: gettid and setpriority take no pointers; on Linux a thread id names one
        // thread, so only this thread is reniced.
        let r = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice.min(19))
        };
        if r != 0 {
            tracing::warn!(
                "cannot lower the locate thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

struct Core {
    config: PipelineConfig,
    store: Store,
    metrics: Metrics,
    association: Box<dyn Association>,
    locator: std::sync::Arc<dyn Locator>,
    pool: rayon::ThreadPool,
    clock: Box<dyn Clock>,
    close_at_end: bool,
    events: HashMap<String, Tracked>,
    /// Next origin version per event; kept apart from [`Tracked`] because on a virtual clock
    /// an event's schedule may end (final run started) before its results are applied.
    versions: HashMap<String, u32>,
    done: (Sender<Done>, Receiver<Done>),
    publish: Sender<PublishJob>,
    /// Full runs started and not finished.
    in_flight: usize,
    /// Due runs waiting for a locate thread (wall clock), after the last scheduling pass.
    waiting: usize,
    /// Start-order number of the next run.
    next_seq: u64,
    /// Start-order number of the next result to apply (virtual clock).
    next_apply: u64,
    /// Results that finished before an earlier-started run (virtual clock), by start order.
    held: BTreeMap<u64, Done>,
    draining: bool,
    /// Picks of the association's retention (stream time, plus [`RECENT_MARGIN_S`]) by id,
    /// so event changes (which name picks by id) need no store query.
    recent: HashMap<String, Pick>,
    recent_order: VecDeque<(DateTime<Utc>, String)>,
}

/// Kept beyond the association's retention, s of stream time: picks arrive a little out of
/// order, and memory is cheap at this scale (a minute at 500 picks/s is 30,000 picks).
const RECENT_MARGIN_S: f64 = 60.0;

impl Core {
    fn run(&mut self, picks: Receiver<IngestedPick>, replay: Vec<Pick>) {
        if !replay.is_empty() {
            tracing::info!(
                "replaying {} stored picks through the associator",
                replay.len()
            );
        }
        let now = Instant::now();
        for p in replay {
            self.remember(&p);
            self.clock.pick_seen(&p.time);
            let changes = self.association.push(&p);
            self.apply(changes, now);
        }
        let mut last_pick_wall = Instant::now();
        let mut last_pick_time: Option<DateTime<Utc>> = None;
        let tick = Duration::from_millis(100);
        let done_rx = self.done.1.clone();
        let virtual_clock = self.clock.is_virtual();
        let max_in_flight = VIRTUAL_RUNS_PER_THREAD * self.config.locate_threads.max(1);
        let mut input_open = true;
        while input_open {
            if virtual_clock && self.in_flight >= max_in_flight {
                // Nothing on a virtual clock waits for a result, so bound the runs ahead of
                // the pool here: the pick channel fills and the archive reader waits.
                if let Ok(d) = done_rx.recv() {
                    self.on_done(d);
                }
                continue;
            }
            if !virtual_clock && self.waiting > self.config.locate_queue {
                // Only final runs are left beyond the bound (the others were dropped): stop
                // taking picks until the pool catches up; the pick queue fills and ingest
                // pushes back on the senders. Nothing is lost, the stream just waits.
                if let Ok(d) = done_rx.recv_timeout(tick) {
                    self.on_done(d);
                }
                self.schedule_due();
                continue;
            }
            channel::select! {
                recv(picks) -> m => match m {
                    Ok(ip) => {
                        self.metrics.set_queue_depth(Queue::Picks, picks.len());
                        let t = ip.pick.time;
                        last_pick_time = Some(last_pick_time.map_or(t, |l| l.max(t)));
                        last_pick_wall = Instant::now();
                        self.on_pick(ip);
                    }
                    Err(_) => input_open = false,
                },
                recv(done_rx) -> d => if let Ok(d) = d { self.on_done(d) },
                default(tick) => {}
            }
            // A quiet network must not hold events open forever: move the stream clock with
            // the wall clock once no pick came for `idle_advance_s`. A virtual clock has no
            // idle time: only picks move it, and the end of the archive closes what is open.
            let idle = last_pick_wall.elapsed().as_secs_f64();
            if let (false, Some(t)) = (virtual_clock, last_pick_time) {
                if idle >= self.config.idle_advance_s {
                    let to = crate::domain::time::add_seconds(&t, idle);
                    let changes = self.association.advance_to(to);
                    self.apply(changes, Instant::now());
                }
            }
            self.schedule_due();
        }
        if self.close_at_end {
            let changes = self.association.finish();
            self.apply(changes, Instant::now());
        }
        // Input closed (shutdown): locate what changed since the last origin without waiting
        // for the throttle, finish every run, then stop. Unless `close_at_end`, open events
        // stay open in the store: after a restart the replay re-opens them under the same ids
        // and they go on.
        self.draining = true;
        for ev in self.events.values_mut() {
            // what the full queue dropped is located now, like every other change
            ev.dirty |= ev.deferred;
        }
        self.schedule_due();
        while self.in_flight > 0 || self.events.values().any(|e| e.dirty || e.locating) {
            match done_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(d) => self.on_done(d),
                Err(_) => {
                    tracing::error!(
                        "locate runs did not finish within 60 s of shutdown; giving up on {} runs",
                        self.in_flight
                    );
                    break;
                }
            }
        }
    }

    fn on_pick(&mut self, ip: IngestedPick) {
        match self.store.insert_pick(&ip.pick) {
            Ok(true) => {}
            Ok(false) => {
                self.metrics
                    .pick_rejected(RejectReason::Duplicate, Some(ip.pick.phase));
                tracing::info!("duplicate pick {} ignored", ip.pick.id);
                return;
            }
            Err(e) => tracing::error!("storing pick {}: {e}", ip.pick.id),
        }
        self.remember(&ip.pick);
        self.clock.pick_seen(&ip.pick.time);
        let t = Instant::now();
        let changes = self.association.push(&ip.pick);
        self.metrics.association_step(t.elapsed().as_secs_f64());
        self.apply(changes, ip.received);
    }

    fn remember(&mut self, p: &Pick) {
        self.recent.insert(p.id.clone(), p.clone());
        self.recent_order.push_back((p.time, p.id.clone()));
        let keep_s = self.association.retention_s() + RECENT_MARGIN_S;
        let horizon = crate::domain::time::add_seconds(&p.time, -keep_s);
        while let Some((t, _)) = self.recent_order.front() {
            if *t >= horizon {
                break;
            }
            // Picks arrive roughly in time order; an old straggler just lives a little longer.
            let (_, id) = self.recent_order.pop_front().expect("front exists");
            self.recent.remove(&id);
        }
    }

    fn apply(&mut self, changes: Vec<EventChange>, trigger: Instant) {
        for c in changes {
            match c {
                EventChange::Opened { id, pick_ids } | EventChange::Updated { id, pick_ids } => {
                    if let Err(e) = self.store.upsert_event(&id, &pick_ids) {
                        tracing::error!("storing event {id}: {e}");
                    }
                    if !self.events.contains_key(&id) {
                        if !self.versions.contains_key(&id) {
                            let next = self.store.latest_version(&id).unwrap_or(0) + 1;
                            self.versions.insert(id.clone(), next);
                        }
                        // After a restart an event with origins goes on with full runs.
                        let fresh = self.versions.get(&id) == Some(&1);
                        self.metrics.event_opened();
                        tracing::info!(event = %id, "event opened");
                        self.events.insert(
                            id.clone(),
                            Tracked {
                                picks: Vec::new(),
                                locating: false,
                                dirty: false,
                                closed: false,
                                final_sent: false,
                                last_run_s: None,
                                trigger,
                                opened: trigger,
                                full_started: !fresh,
                                needs_preliminary: fresh && self.config.preliminary_origin,
                                queued_since_s: None,
                                deferred: false,
                            },
                        );
                    } else if let Some(ev) = self.events.get(&id) {
                        if ev.queued_since_s.is_some() && !ev.locating {
                            // The queued run takes these picks too (it reads them when it starts).
                            self.metrics.locate_coalesced(Coalesced::NewerPicks);
                        }
                    }
                    let mut missing = false;
                    let ev = self.events.get_mut(&id).expect("inserted above");
                    for pid in &pick_ids {
                        match self.recent.get(pid) {
                            Some(p) if !ev.picks.iter().any(|q| q.id == *pid) => {
                                ev.picks.push(p.clone())
                            }
                            Some(_) => {}
                            None => missing = true,
                        }
                    }
                    if missing || ev.picks.is_empty() {
                        // After a restart an event's older picks may only be in the store.
                        if let Ok(Some(e)) = self.store.event(&id) {
                            ev.picks = e.picks;
                        }
                    }
                    ev.picks
                        .sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
                    ev.dirty = true;
                    ev.trigger = trigger;
                }
                EventChange::Closed { id } => {
                    if let Err(e) = self.store.close_event(&id) {
                        tracing::error!("closing event {id}: {e}");
                    }
                    self.metrics.event_closed();
                    if let Some(ev) = self.events.get_mut(&id) {
                        if ev.queued_since_s.is_some() && !ev.closed {
                            // A queued relocation becomes the final run.
                            self.metrics.locate_coalesced(Coalesced::IntoFinal);
                        }
                        ev.closed = true;
                        ev.dirty = true;
                        ev.trigger = trigger;
                    }
                }
            }
        }
        self.schedule_due();
    }

    /// Starts what is due. New events get their preliminary origin at once, on this thread;
    /// full runs go to the pool, at most one per event, and on the wall clock only while a
    /// locate thread is free. What waits is the locate queue: one entry per event at most (a
    /// newer pick set replaces the queued one, since a run reads the event's picks when it
    /// starts), served final runs first, then first posteriors, then relocations, oldest
    /// first within a kind. Relocations wait `(slope * N + intercept) * (1 + queued /
    /// threads)` after the previous run (scautoloc's interval, stretched while runs wait);
    /// beyond `locate_queue` entries the relocations and then the first posteriors are
    /// dropped (their picks go into the event's next run, at the latest its final one).
    ///
    /// On a virtual clock a run takes no time: every due run starts at once, nothing waits
    /// and nothing is dropped, so a replay decides everything on its own timeline.
    fn schedule_due(&mut self) {
        // On a virtual clock a run finishes as it starts, which may make the event due again
        // (a closed event's final run): repeat until nothing is due. Each event has at most
        // one run after the one that follows its closing, so this ends.
        let virtual_clock = self.clock.is_virtual();
        let threads = self.config.locate_threads.max(1);
        loop {
            self.run_preliminaries();
            let now_s = self.clock.now_s();
            let stretch = 1.0 + self.waiting as f64 / threads as f64;
            let mut due: Vec<(RunKind, f64, String)> = Vec::new();
            for (id, ev) in self.events.iter_mut() {
                if ev.locating || !ev.dirty {
                    continue;
                }
                let kind = ev.next_kind();
                let ready = kind != RunKind::Relocation || self.draining || {
                    let wait_s = (self.config.relocate_slope_s * ev.picks.len() as f64
                        + self.config.relocate_intercept_s)
                        * stretch;
                    ev.last_run_s.is_none_or(|t| now_s - t >= wait_s)
                };
                if ready {
                    let since = *ev.queued_since_s.get_or_insert(now_s);
                    due.push((kind, since, id.clone()));
                } else {
                    ev.queued_since_s = None;
                }
            }
            if due.is_empty() {
                self.waiting = 0;
                break;
            }
            // Start order decides the order results are applied on a virtual clock; make it
            // independent of the hash map's iteration order.
            due.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then_with(|| a.2.cmp(&b.2))
            });
            let free = if virtual_clock {
                due.len()
            } else {
                threads.saturating_sub(self.in_flight)
            };
            let started: Vec<(RunKind, f64, String)> = due.drain(..free.min(due.len())).collect();
            if !virtual_clock && !self.draining {
                self.drop_beyond_bound(&mut due);
            }
            self.waiting = due.len();
            for (_, _, id) in &started {
                self.dispatch(id);
            }
            if !virtual_clock || started.is_empty() {
                break;
            }
        }
        self.metrics.set_queue_depth(Queue::Locate, self.waiting);
        self.metrics.set_locate_in_flight(self.in_flight);
        self.metrics
            .set_relocate_stretch(1.0 + self.waiting as f64 / threads as f64);
    }

    /// Keeps at most `locate_queue` waiting runs: drops relocations, then first posteriors,
    /// the latest in serving order first; final runs are never dropped.
    fn drop_beyond_bound(&mut self, waiting: &mut Vec<(RunKind, f64, String)>) {
        let cap = self.config.locate_queue;
        let mut i = waiting.len();
        while waiting.len() > cap && i > 0 {
            i -= 1;
            if waiting[i].0 == RunKind::Final {
                continue;
            }
            let (kind, _, id) = waiting.remove(i);
            if let Some(ev) = self.events.get_mut(&id) {
                ev.dirty = false;
                ev.queued_since_s = None;
                ev.deferred = true;
            }
            self.metrics.locate_dropped(kind == RunKind::FirstFull);
            tracing::debug!(event = %id, ?kind, "locate queue full: run dropped");
        }
    }

    /// The quick first origin of every new event, computed here (a few ms) so it never waits
    /// behind full runs; in id order, numbered in start order like every run.
    fn run_preliminaries(&mut self) {
        let mut ids: Vec<String> = self
            .events
            .iter()
            .filter(|(_, e)| e.needs_preliminary)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        ids.sort();
        for id in ids {
            let Some(ev) = self.events.get_mut(&id) else {
                continue;
            };
            // Also for an event that closed as it opened (the associator decides an event
            // once its nearest stations' S picks are due, which may be after its window):
            // the final run may wait for a thread, the preliminary does not.
            ev.needs_preliminary = false;
            let request = LocateRequest {
                event_id: id.clone(),
                picks: ev.picks.clone(),
                is_final: false,
            };
            let trigger = ev.trigger;
            let start = Instant::now();
            let locator = &self.locator;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                locator.locate_preliminary(&request)
            }))
            .unwrap_or_else(|_| Some(Err("the locator panicked".into())));
            let Some(result) = result else {
                continue;
            };
            self.metrics
                .preliminary_finished(start.elapsed().as_secs_f64(), result.is_ok());
            let seq = self.next_seq;
            self.next_seq += 1;
            self.complete(Done {
                seq,
                event_id: id,
                kind: RunKind::Preliminary,
                trigger,
                duration_s: start.elapsed().as_secs_f64(),
                result,
            });
        }
    }

    fn dispatch(&mut self, id: &str) {
        let Some(ev) = self.events.get_mut(id) else {
            return;
        };
        let kind = ev.next_kind();
        ev.locating = true;
        ev.dirty = false;
        ev.deferred = false;
        ev.queued_since_s = None;
        ev.full_started = true;
        if kind == RunKind::Final {
            ev.final_sent = true;
        }
        let request = LocateRequest {
            event_id: id.to_string(),
            picks: ev.picks.clone(),
            is_final: kind.is_final(),
        };
        let trigger = if kind == RunKind::FirstFull {
            ev.opened
        } else {
            ev.trigger
        };
        let locator = self.locator.clone();
        let tx = self.done.0.clone();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight += 1;
        self.pool.spawn(move || {
            let start = Instant::now();
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| locator.locate(&request)))
                    .unwrap_or_else(|_| Err("the locator panicked".into()));
            let _ = tx.send(Done {
                seq,
                event_id: request.event_id,
                kind,
                trigger,
                duration_s: start.elapsed().as_secs_f64(),
                result,
            });
        });
        if self.clock.is_virtual() {
            // The run takes no time on this clock; its result is applied later, in order.
            self.run_finished(id, kind.is_final());
        }
    }

    /// The event's schedule after a run: the throttle restarts, a final run ends it, and a
    /// run that started before the window closed is followed by the final one.
    fn run_finished(&mut self, id: &str, is_final: bool) {
        let now_s = self.clock.now_s();
        if is_final {
            self.events.remove(id);
        } else if let Some(ev) = self.events.get_mut(id) {
            ev.locating = false;
            ev.last_run_s = Some(now_s);
            if ev.closed {
                ev.dirty = true;
            }
        }
    }

    fn on_done(&mut self, d: Done) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.metrics.locate_finished(d.duration_s, d.result.is_ok());
        if !self.clock.is_virtual() {
            self.run_finished(&d.event_id, d.kind.is_final());
        }
        self.complete(d);
        self.schedule_due();
    }

    /// Applies a finished run: at once on the wall clock, in start order on a virtual clock.
    fn complete(&mut self, d: Done) {
        if self.clock.is_virtual() {
            self.held.insert(d.seq, d);
            while let Some(d) = self.held.remove(&self.next_apply) {
                self.next_apply += 1;
                self.apply_result(d);
            }
        } else {
            self.apply_result(d);
        }
    }

    /// Numbers, stores and publishes a run's origin.
    fn apply_result(&mut self, d: Done) {
        match d.result {
            Ok(located) => {
                let Some(version) = self.versions.get_mut(&d.event_id) else {
                    return;
                };
                let mut origin = located.origin;
                origin.version = *version;
                origin.is_final = d.kind.is_final();
                origin.id = format!("{}/v{}", d.event_id, origin.version);
                *version += 1;
                let particles = located.particles.map(|rows| Particles {
                    origin_id: origin.id.clone(),
                    rows,
                });
                // Blocking send: if publishing falls behind, locating waits for it.
                let _ = self.publish.send(PublishJob {
                    event_id: d.event_id.clone(),
                    origin,
                    particles,
                    trigger: d.trigger,
                    kind: d.kind,
                });
                self.metrics
                    .set_queue_depth(Queue::Publish, self.publish.len());
            }
            Err(e) => {
                tracing::warn!(event = %d.event_id, kind = ?d.kind, "locate failed: {e}")
            }
        }
        if d.kind.is_final() && !self.events.contains_key(&d.event_id) {
            self.versions.remove(&d.event_id);
        }
    }
}

/// The publish stage: stores each version, hands it to the publishers that need only the
/// origin (the stream) at once, then to the thread of the publishers that need the whole
/// event read back from the store (the QuakeML files), so a slow disk never delays a stream
/// subscriber. Every publisher still receives every version, in order.
fn publish_loop(
    rx: Receiver<PublishJob>,
    store: Store,
    metrics: Metrics,
    publishers: Vec<Box<dyn Publisher>>,
) {
    let (mut fast, slow): (Vec<_>, Vec<_>) = publishers.into_iter().partition(|p| !p.wants_event());
    let (slow_tx, slow_rx) = channel::bounded::<(String, Origin)>(1024);
    let slow_thread = (!slow.is_empty())
        .then(|| {
            let (store, metrics) = (store.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("eikoloc-publish-files".into())
                .spawn(move || event_publish_loop(slow_rx, store, metrics, slow))
                .map_err(|e| tracing::error!("cannot start the file publisher thread: {e}"))
                .ok()
        })
        .flatten();
    for job in rx.iter() {
        metrics.set_queue_depth(Queue::Publish, rx.len());
        let t = Instant::now();
        let stored = store.insert_origin(&job.event_id, &job.origin, job.particles.as_ref());
        metrics.publish_stage("store", t.elapsed().as_secs_f64());
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(origin = %job.origin.id, "origin version already stored; not published again");
                continue;
            }
            Err(e) => tracing::error!(origin = %job.origin.id, "storing origin: {e}"),
        }
        let event = Event {
            id: job.event_id.clone(),
            picks: Vec::new(),
            origins: vec![job.origin.clone()],
            preferred_origin: Some(0),
        };
        publish_to(&mut fast, &event, &job.origin, &metrics);
        let kind = match job.kind {
            RunKind::Final => OriginKind::Final,
            _ if job.origin.version == 1 => OriginKind::First,
            RunKind::FirstFull => OriginKind::FirstPosterior,
            _ => OriginKind::Update,
        };
        metrics.origin_published(
            kind,
            job.trigger.elapsed().as_secs_f64(),
            job.origin.uncertainty.horizontal_68.major_km,
        );
        tracing::info!(
            event = %job.event_id,
            version = job.origin.version,
            is_final = job.origin.is_final,
            method = job.origin.method.as_str(),
            lat = job.origin.lat_deg,
            lon = job.origin.lon_deg,
            depth_km = job.origin.depth_km,
            "origin published"
        );
        if slow_thread.is_some() {
            // Blocking: if the files fall behind, the publish stage waits for them.
            let _ = slow_tx.send((job.event_id, job.origin));
        }
    }
    for p in fast.iter_mut() {
        if let Err(e) = p.flush() {
            tracing::error!(publisher = p.name(), "flush failed: {e}");
        }
    }
    drop(slow_tx);
    if let Some(t) = slow_thread {
        let _ = t.join();
    }
}

/// The publishers that need the whole event: read it back from the store, then publish.
fn event_publish_loop(
    rx: Receiver<(String, Origin)>,
    store: Store,
    metrics: Metrics,
    mut publishers: Vec<Box<dyn Publisher>>,
) {
    for (event_id, origin) in rx.iter() {
        let t = Instant::now();
        let event = match store.event(&event_id) {
            Ok(Some(e)) => e,
            other => {
                if let Err(e) = other {
                    tracing::warn!(event = %event_id, "reading the event back: {e}");
                }
                Event {
                    id: event_id.clone(),
                    picks: Vec::new(),
                    origins: vec![origin.clone()],
                    preferred_origin: Some(0),
                }
            }
        };
        metrics.publish_stage("read", t.elapsed().as_secs_f64());
        publish_to(&mut publishers, &event, &origin, &metrics);
    }
    for p in publishers.iter_mut() {
        if let Err(e) = p.flush() {
            tracing::error!(publisher = p.name(), "flush failed: {e}");
        }
    }
}

fn publish_to(
    publishers: &mut [Box<dyn Publisher>],
    event: &Event,
    origin: &Origin,
    metrics: &Metrics,
) {
    for p in publishers.iter_mut() {
        let t = Instant::now();
        if let Err(e) = p.publish(event, origin) {
            metrics.publish_failed(p.name());
            tracing::error!(publisher = p.name(), origin = %origin.id, "publish failed: {e}");
        }
        metrics.publish_stage(p.name(), t.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rand::Rng;

    use super::*;
    use crate::daemon::clock::VirtualClock;
    use crate::domain::{parse_utc, Phase, StationCode};
    use crate::publish::PublishError;
    use crate::replay::ArchiveGrouping;

    /// Finishes runs in a random order on purpose; the origin's depth records the pick count.
    /// With `preliminary`, it has a preliminary solution too (the same origin, linearized).
    struct Jittery {
        preliminary: bool,
    }

    impl Locator for Jittery {
        fn locate_preliminary(&self, r: &LocateRequest) -> Option<Result<Located, String>> {
            self.preliminary.then(|| {
                self.locate(r).map(|mut l| {
                    l.origin.method = crate::domain::OriginMethod::Linearized;
                    l
                })
            })
        }

        fn locate(&self, r: &LocateRequest) -> Result<Located, String> {
            let us = rand::thread_rng().gen_range(0..2000);
            std::thread::sleep(Duration::from_micros(us));
            Ok(Located {
                origin: Origin {
                    id: String::new(),
                    time: r.picks[0].time,
                    time_sigma_s: 0.1,
                    lat_deg: 34.0,
                    lon_deg: -117.0,
                    depth_km: r.picks.len() as f64,
                    uncertainty: Default::default(),
                    rms_s: 0.1,
                    gap_deg: 90.0,
                    min_distance_km: 1.0,
                    arrivals: Vec::new(),
                    version: 0,
                    is_final: false,
                    method: Default::default(),
                },
                particles: None,
            })
        }
    }

    type Log = Arc<Mutex<Vec<(String, u32, usize, bool, crate::domain::OriginMethod)>>>;

    struct Recorder(Log);

    impl Publisher for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn publish(&mut self, event: &Event, o: &Origin) -> Result<(), PublishError> {
            let mut log = self.0.lock().unwrap();
            log.push((
                event.id.clone(),
                o.version,
                o.depth_km as usize,
                o.is_final,
                o.method,
            ));
            Ok(())
        }
    }

    fn replay_once(
        picks: &[(String, Pick)],
        preliminary: bool,
    ) -> Vec<(String, u32, usize, bool, crate::domain::OriginMethod)> {
        let log: Log = Arc::default();
        let (tx, rx) = channel::bounded(16);
        let grouping =
            ArchiveGrouping::new(picks.iter().map(|(e, p)| (e.as_str(), p.id.as_str())), 3);
        let config = PipelineConfig {
            locate_threads: 4,
            relocate_slope_s: 0.25,
            ..PipelineConfig::default()
        };
        let handle = Pipeline {
            config,
            store: Store::open_in_memory().unwrap(),
            metrics: Metrics::new(&[]),
            association: Box::new(grouping),
            locator: Arc::new(Jittery { preliminary }),
            publishers: vec![Box::new(Recorder(log.clone()))],
            clock: Box::new(VirtualClock::new()),
            close_at_end: true,
        }
        .start(rx, Vec::new())
        .unwrap();
        for (_, p) in picks {
            tx.send(IngestedPick {
                pick: p.clone(),
                received: Instant::now(),
            })
            .unwrap();
        }
        drop(tx);
        handle.join();
        let log = log.lock().unwrap().clone();
        log
    }

    #[test]
    fn a_virtual_clock_applies_results_in_start_order_whatever_order_runs_finish() {
        // 24 overlapping events of 10 picks, 0.7 s apart, a new event every 3 s: several
        // events and several versions of each are in flight at once on 4 threads.
        let t0 = parse_utc("2020-01-01T00:00:00Z").unwrap();
        let mut picks = Vec::new();
        for e in 0..24 {
            for j in 0..10 {
                let t = crate::domain::time::add_seconds(&t0, 3.0 * e as f64 + 0.7 * j as f64);
                let p = Pick::new(StationCode::new("EK", &format!("S{j}")), Phase::P, t, 0.1);
                picks.push((format!("ev{e:02}"), p));
            }
        }
        picks.sort_by_key(|a| a.1.time);
        for preliminary in [false, true] {
            check_replays(&picks, preliminary);
        }
    }

    fn check_replays(picks: &[(String, Pick)], preliminary: bool) {
        use crate::domain::OriginMethod;
        let first = replay_once(picks, preliminary);
        for _ in 0..2 {
            assert_eq!(
                replay_once(picks, preliminary),
                first,
                "same input, same publication sequence"
            );
        }
        for e in 0..24 {
            let id = format!("ev{e:02}");
            let mine: Vec<_> = first.iter().filter(|r| r.0 == id).collect();
            let versions: Vec<u32> = mine.iter().map(|r| r.1).collect();
            assert_eq!(
                versions,
                (1..=mine.len() as u32).collect::<Vec<_>>(),
                "{id}"
            );
            assert!(
                mine.len() >= 2,
                "{id}: first origin and relocations: {mine:?}"
            );
            let last = mine.last().unwrap();
            assert!(
                last.3 && last.2 == 10,
                "{id}: the final origin has every pick"
            );
            assert!(mine[0].2 == 3 && !mine[0].3, "{id}: the first at 3 picks");
            if preliminary {
                // the preliminary first, then the first full run on the same picks
                assert_eq!(mine[0].4, OriginMethod::Linearized, "{id}: {mine:?}");
                assert!(
                    mine[1].2 == 3 && mine[1].4 == OriginMethod::Svgd,
                    "{id}: {mine:?}"
                );
                assert!(mine[1..].iter().all(|r| r.4 == OriginMethod::Svgd));
            } else {
                assert!(mine.iter().all(|r| r.4 == OriginMethod::Svgd));
            }
        }
    }
}
