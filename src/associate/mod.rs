//! Streaming phase association: P and S picks from many stations, some false, grouped into
//! events inside a sliding time window.
//!
//! Method (backprojection over a coarse source grid, as REAL / PyOcto-style space-time
//! partitioning but with a fixed grid):
//!
//! 1. At construction the [`TraveltimeModel`] is tabulated once: P and S times from every
//!    node of a coarse grid (default 8 km horizontally, 8 km in depth) to every station.
//! 2. Each pick votes, at every node, for the origin-time bins that contain
//!    `t_pick - T(node, station, phase) +- tol`, where `tol` covers the largest traveltime
//!    error a source anywhere in the node's cell can make (slowness x half cell diagonal)
//!    plus the pick tolerance. All picks of one event therefore share one bin at the node
//!    nearest the source.
//! 3. A bin is decided once the stream clock passes its end plus a decision delay (long
//!    enough for the nearest stations' S picks). Cells reaching the trigger count are tried
//!    best first: the picks consistent with the node are gathered, the hypocentre is refined
//!    on the interpolated tables (robust capped-L1 grid search, origin time the median), the
//!    picks within the tight tolerance are gathered again (one per station and phase, closest
//!    residual), and if enough stations remain the event is opened and its picks leave the
//!    pool (their votes are withdrawn), so overlapping events separate.
//! 4. An open event absorbs later picks that fit its predicted times, and is relocated as its
//!    pick count grows. It is closed once the clock passes its origin time plus the longest
//!    traveltime to any station plus a margin.
//!
//! Each node counts the votes of its `vote_stations` nearest stations only (the trigger); the
//! confirmation gathers picks from every station. Large refinement searches are shared among
//! rayon's threads, with the same result on any thread count.
//!
//! Everything is deterministic (same input order, same output) and bounded:
//! the window is pruned as the clock advances and the pick pool has global and per-station caps;
//! every refused pick is counted in [`AssociatorStats`].
//!
//! Times are f64 seconds on any fixed epoch (e.g. Unix seconds); positions are the local
//! frame of [`LocalPoint`] (km east, north, depth).

pub mod grid;
pub mod score;
pub mod stream_synth;

pub use grid::TraveltimeGrid;
pub use score::{score_association, AssociationScore, TruthPick};
pub use stream_synth::{synth_stream, StreamSynthConfig, SynthEvent, SynthPick, SynthStream};

use rayon::prelude::*;
use thiserror::Error;

use crate::domain::{LocalPoint, Phase};
use crate::traveltime::TraveltimeModel;

/// Why an associator could not be built.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AssociateError {
    #[error("invalid associator configuration: {0}")]
    InvalidConfig(String),
    #[error("no stations")]
    NoStations,
    #[error("station {station}: non-finite position")]
    StationPosition { station: usize },
    #[error("traveltime of {phase} from ({x_km:.2}, {y_km:.2}, {z_km:.2}) km to station {station}: {message}")]
    Traveltime {
        phase: Phase,
        station: usize,
        x_km: f64,
        y_km: f64,
        z_km: f64,
        message: String,
    },
}

/// Configures an [`Associator`].
#[derive(Debug, Clone, PartialEq)]
pub struct AssociatorConfig {
    /// Horizontal spacing of the candidate-source grid, km.
    pub grid_spacing_km: f64,
    /// Shallowest candidate depth, km below sea level.
    pub depth_min_km: f64,
    /// Deepest candidate depth, km below sea level.
    pub depth_max_km: f64,
    /// Vertical spacing of the candidate grid, km.
    pub depth_spacing_km: f64,
    /// Box `[x_min, x_max, y_min, y_max]` in local km; `None`: the stations' bounding box
    /// widened by `box_margin_km`.
    pub box_km: Option<[f64; 4]>,
    /// Margin around the stations' bounding box when `box_km` is `None`, km.
    pub box_margin_km: f64,
    /// Residual tolerance for P picks at a refined hypocentre, s.
    pub tolerance_p_s: f64,
    /// Residual tolerance for S picks at a refined hypocentre, s.
    pub tolerance_s_s: f64,
    /// Extra tolerance proportional to the traveltime (model error grows with distance), s/s.
    pub tolerance_relative: f64,
    /// Picks (P and S counted) in one node/origin-time cell that trigger a confirmation.
    pub trigger_picks: usize,
    /// Minimum distinct stations of an event.
    pub min_stations: usize,
    /// Minimum picks (P and S) of an event.
    pub min_picks: usize,
    /// Time after an origin-time bin's end before it is decided, s; `None`: the longest
    /// S traveltime, over the grid, to the `2 * min_stations`-th nearest station.
    pub decision_delay_s: Option<f64>,
    /// Extra time an event stays open after its last predicted arrival, s.
    pub close_margin_s: f64,
    /// Most unassociated picks held in the window (all stations).
    pub max_pool_picks: usize,
    /// Most unassociated picks held in the window for one station.
    pub max_station_picks: usize,
    /// Failed confirmations allowed per decision of one bin (bounds work on hostile input).
    pub max_tries_per_bin: usize,
    /// Fraction of an event's m stations that must be among the 2m stations nearest its
    /// epicentre: real events are picked on the nearest stations first, chance alignments of
    /// false picks are scattered over the network.
    pub min_nearest_fraction: f64,
    /// Stations that vote at a node: its `vote_stations` nearest (by P traveltime). Real
    /// events are picked first on their nearest stations, so the trigger loses little, while
    /// votes per pick and chance triggers of false picks (spread over the whole network) fall
    /// with the fraction of the network that votes. Confirmation still gathers every station.
    pub vote_stations: usize,
    /// Share large refinement searches among the threads of rayon's pool (same results).
    pub parallel: bool,
}

impl Default for AssociatorConfig {
    fn default() -> Self {
        Self {
            grid_spacing_km: 8.0,
            depth_min_km: 0.0,
            depth_max_km: 24.0,
            depth_spacing_km: 8.0,
            box_km: None,
            box_margin_km: 20.0,
            tolerance_p_s: 0.4,
            tolerance_s_s: 0.6,
            tolerance_relative: 0.01,
            trigger_picks: 6,
            min_stations: 4,
            min_picks: 6,
            decision_delay_s: None,
            close_margin_s: 5.0,
            max_pool_picks: 200_000,
            max_station_picks: 200,
            max_tries_per_bin: 8,
            min_nearest_fraction: 0.5,
            vote_stations: 20,
            parallel: true,
        }
    }
}

impl AssociatorConfig {
    fn validate(&self) -> Result<(), AssociateError> {
        let bad = |m: &str| Err(AssociateError::InvalidConfig(m.to_string()));
        let pos = [
            self.grid_spacing_km,
            self.depth_spacing_km,
            self.tolerance_p_s,
            self.tolerance_s_s,
        ];
        if !pos.iter().all(|v| v.is_finite() && *v > 0.0) {
            return bad("grid spacings and tolerances must be finite and positive");
        }
        if !(self.depth_min_km.is_finite()
            && self.depth_max_km.is_finite()
            && self.depth_max_km >= self.depth_min_km)
        {
            return bad("depth range must be finite with depth_max_km >= depth_min_km");
        }
        if !(self.tolerance_relative.is_finite() && (0.0..1.0).contains(&self.tolerance_relative)) {
            return bad("tolerance_relative must be in 0..1");
        }
        if !(self.box_margin_km.is_finite()
            && self.box_margin_km >= 0.0
            && self.close_margin_s.is_finite()
            && self.close_margin_s >= 0.0)
        {
            return bad("box_margin_km and close_margin_s must be finite and non-negative");
        }
        if let Some(d) = self.decision_delay_s {
            if !(d.is_finite() && d >= 0.0) {
                return bad("decision_delay_s must be finite and non-negative");
            }
        }
        if let Some(b) = self.box_km {
            if !b.iter().all(|v| v.is_finite()) || b[1] < b[0] || b[3] < b[2] {
                return bad("box_km must be finite [x_min, x_max, y_min, y_max] with min <= max");
            }
        }
        if self.min_stations < 2
            || self.min_picks < self.min_stations.min(3)
            || self.trigger_picks < 2
        {
            return bad("need min_stations >= 2, trigger_picks >= 2 and min_picks >= 3");
        }
        if !(0.0..=1.0).contains(&self.min_nearest_fraction) {
            return bad("min_nearest_fraction must be in 0..1");
        }
        if self.max_pool_picks == 0
            || self.max_station_picks == 0
            || self.max_tries_per_bin == 0
            || self.vote_stations == 0
        {
            return bad("caps must be positive");
        }
        Ok(())
    }
}

/// A pick as the associator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssocPick {
    /// Caller's id for the pick (echoed in outputs).
    pub id: u64,
    /// Index of the station in the list given to [`Associator::new`].
    pub station: usize,
    /// P or S.
    pub phase: Phase,
    /// Arrival time, s on the caller's epoch.
    pub time_s: f64,
}

/// A pick that belongs to an event, with its residual at the event's hypocentre when it was
/// added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssociatedPick {
    /// The pick.
    pub pick: AssocPick,
    /// Observed minus predicted arrival time, s.
    pub residual_s: f64,
}

/// What the associator tells its consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum AssociatorOutput {
    /// A new event with its first picks and a rough hypocentre (grid-search quality).
    EventOpened {
        /// Deterministic id (origin time in ms and the nearest grid node).
        id: String,
        /// Origin time, s on the caller's epoch.
        origin_time_s: f64,
        /// Rough hypocentre, local km.
        hypocentre: LocalPoint,
        /// Its picks.
        picks: Vec<AssociatedPick>,
    },
    /// An open event absorbed more picks (and may have moved).
    EventUpdated {
        /// Event id.
        id: String,
        /// Origin time, s.
        origin_time_s: f64,
        /// Rough hypocentre, local km.
        hypocentre: LocalPoint,
        /// Picks added by this update.
        new_picks: Vec<AssociatedPick>,
    },
    /// The event's window has closed: no more picks will be added.
    EventClosed {
        /// Event id.
        id: String,
        /// Origin time, s.
        origin_time_s: f64,
        /// Rough hypocentre, local km.
        hypocentre: LocalPoint,
        /// All its picks.
        picks: Vec<AssociatedPick>,
    },
}

/// Counters of what happened to the picks pushed (all `_total`-like, monotone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssociatorStats {
    /// Picks accepted for processing.
    pub picks_in: u64,
    /// Picks refused: non-finite time.
    pub rejected_non_finite: u64,
    /// Picks refused: station index unknown.
    pub rejected_unknown_station: u64,
    /// Picks refused: the pool (global or per station) was full.
    pub dropped_capacity: u64,
    /// Picks refused: older than the window and fitting no open event.
    pub dropped_too_late: u64,
    /// Unassociated picks that left the window.
    pub expired_unassociated: u64,
    /// Picks absorbed by an already open event.
    pub absorbed_late: u64,
    /// Events opened.
    pub events_opened: u64,
    /// Events closed.
    pub events_closed: u64,
    /// Candidate cells that did not confirm.
    pub confirm_failures: u64,
    /// Confirmed candidates merged into an open event next to them instead of opening one.
    pub events_merged: u64,
}

/// Scratch of one refinement cost evaluation (reused: the search evaluates thousands).
#[derive(Debug, Default)]
struct RefineBuf {
    taus: Vec<f64>,
    tts: Vec<f64>,
    sorted: Vec<f64>,
}

/// Residual evaluations (points x picks) above which one pattern-search step is shared among
/// threads; below it the hand-off costs more than it saves.
const PARALLEL_MIN_EVALS: usize = 1500;

#[derive(Debug, Clone, Copy)]
struct PoolPick {
    id: u64,
    phase: Phase,
    time_s: f64,
}

#[derive(Debug, Clone)]
struct OpenEvent {
    id: String,
    origin_time_s: f64,
    hypocentre: LocalPoint,
    weights: [(usize, f64); 8],
    picks: Vec<AssociatedPick>,
    /// Which (station, phase) slots are taken: index `2 * station + phase`.
    taken: Vec<bool>,
    close_at_s: f64,
    relocated_at_n: usize,
}

/// The streaming associator. Feed picks with [`Associator::push`], move the clock with
/// [`Associator::advance_to`], and drain with [`Associator::flush`].
#[derive(Debug)]
pub struct Associator {
    cfg: AssociatorConfig,
    grid: TraveltimeGrid,
    stations: Vec<LocalPoint>,
    n_sta: usize,
    n_nodes: usize,
    tol_vote_s: [f64; 2],
    tol_max_s: f64,
    dt_s: f64,
    inv_dt: f64,
    delay_s: f64,
    /// Longest S traveltime from each node to any station, s.
    max_tt_node: Vec<f32>,
    nb: usize,
    mask: i64,
    /// Per station: the nodes it votes at (those that count it among their
    /// `vote_stations` nearest), ascending.
    vote_nodes: Vec<Vec<u32>>,
    /// Per phase and station: the traveltimes to `vote_nodes[station]`, s.
    vote_tt: [Vec<Vec<f32>>; 2],
    /// Vote counts, 16 bit (saturating): with node-major layout a node's ring of bins is
    /// one or two cache lines, which halves the memory traffic of the voting loop.
    acc: Vec<u16>,
    /// Per ring slot: an upper bound of the largest count in the bin (exact after a scan).
    bin_max: Vec<u16>,
    /// A confirmation happened since deferred bins were last re-decided.
    confirmed: bool,
    initialized: bool,
    k_lo: i64,
    k_live: i64,
    now_s: f64,
    pool: Vec<Vec<PoolPick>>,
    pool_len: usize,
    /// Per cell (same layout as `acc`): the count at which its confirmation last failed;
    /// it is retried only once its count has grown past that.
    failed: Vec<u16>,
    /// Decided bins in which a new vote reached the trigger since the last decision.
    dirty: Vec<i64>,
    /// Bins whose best cell waits for a stronger cell in a later bin to be decided first.
    deferred: Vec<i64>,
    /// Bins after a candidate's bin that may hold a better explanation of its picks.
    span_bins: i64,
    open: Vec<OpenEvent>,
    stats: AssociatorStats,
}

impl Associator {
    /// Builds the grid over the stations (local km) and tabulates `model` once.
    pub fn new(
        stations: &[LocalPoint],
        model: &dyn TraveltimeModel,
        cfg: AssociatorConfig,
    ) -> Result<Self, AssociateError> {
        cfg.validate()?;
        if stations.is_empty() {
            return Err(AssociateError::NoStations);
        }
        for (i, s) in stations.iter().enumerate() {
            if !(s.x_km.is_finite() && s.y_km.is_finite() && s.z_km.is_finite()) {
                return Err(AssociateError::StationPosition { station: i });
            }
        }
        let [x0, x1, y0, y1] = cfg.box_km.unwrap_or_else(|| {
            let m = cfg.box_margin_km;
            let fold = |f: fn(&LocalPoint) -> f64, lo: bool| {
                stations.iter().map(f).fold(
                    if lo { f64::INFINITY } else { f64::NEG_INFINITY },
                    if lo { f64::min } else { f64::max },
                )
            };
            [
                fold(|p| p.x_km, true) - m,
                fold(|p| p.x_km, false) + m,
                fold(|p| p.y_km, true) - m,
                fold(|p| p.y_km, false) + m,
            ]
        });
        let grid = TraveltimeGrid::build(
            model,
            stations,
            (x0, x1),
            (y0, y1),
            (cfg.depth_min_km, cfg.depth_max_km),
            cfg.grid_spacing_km,
            cfg.depth_spacing_km,
        )?;
        let n_nodes = grid.n_nodes();
        let n_sta = stations.len();
        let hd = grid.half_diagonal_km();
        let tol_vote_s = [
            grid.max_slowness_s_per_km(Phase::P) * hd + cfg.tolerance_p_s,
            grid.max_slowness_s_per_km(Phase::S) * hd + cfg.tolerance_s_s,
        ];
        let tol_max_s = tol_vote_s[0].max(tol_vote_s[1]);
        // bins twice the widest tolerance: every vote spans at most two bins
        let dt_s = 2.0 * tol_max_s;
        let mut max_tt_node = vec![0.0f32; n_nodes];
        let k_near = (2 * cfg.min_stations).min(n_sta).max(1);
        let mut auto_delay: f64 = 0.0;
        let mut col = vec![0.0f32; n_sta];
        for (node, mx) in max_tt_node.iter_mut().enumerate() {
            for (s, c) in col.iter_mut().enumerate() {
                *c = grid.at_node(Phase::S, s, node) as f32;
            }
            *mx = col.iter().copied().fold(0.0, f32::max);
            col.sort_by(f32::total_cmp);
            auto_delay = auto_delay.max(f64::from(col[k_near - 1]));
        }
        let delay_s = cfg.decision_delay_s.unwrap_or(auto_delay + tol_max_s);
        let k_vote = cfg.vote_stations.min(n_sta);
        let mut vote_nodes: Vec<Vec<u32>> = vec![Vec::new(); n_sta];
        let mut order: Vec<(f32, usize)> = Vec::with_capacity(n_sta);
        for node in 0..n_nodes {
            order.clear();
            order.extend((0..n_sta).map(|s| (grid.at_node(Phase::P, s, node) as f32, s)));
            if k_vote < n_sta {
                order.select_nth_unstable_by(k_vote - 1, |a, b| {
                    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                });
            }
            for &(_, s) in &order[..k_vote] {
                vote_nodes[s].push(node as u32);
            }
        }
        let vote_tt = Phase::ALL.map(|ph| {
            vote_nodes
                .iter()
                .enumerate()
                .map(|(s, nodes)| {
                    let tab = grid.station_table(ph, s);
                    nodes.iter().map(|&n| tab[n as usize]).collect()
                })
                .collect()
        });
        let max_tt = max_tt_node.iter().copied().fold(0.0f32, f32::max) as f64;
        let window_s = delay_s.max(max_tt) + 2.0 * dt_s + tol_max_s + cfg.close_margin_s;
        let nb = ((window_s / dt_s).ceil() as usize + 4).next_power_of_two();
        Ok(Self {
            grid,
            stations: stations.to_vec(),
            n_sta,
            n_nodes,
            tol_vote_s,
            tol_max_s,
            dt_s,
            inv_dt: 1.0 / dt_s,
            delay_s,
            max_tt_node,
            nb,
            mask: nb as i64 - 1,
            vote_nodes,
            vote_tt,
            acc: vec![0; nb * n_nodes],
            bin_max: vec![0; nb],
            confirmed: false,
            initialized: false,
            k_lo: 0,
            k_live: 0,
            now_s: f64::NEG_INFINITY,
            pool: vec![Vec::new(); n_sta],
            pool_len: 0,
            failed: vec![0; nb * n_nodes],
            dirty: Vec::new(),
            deferred: Vec::new(),
            span_bins: ((max_tt + tol_max_s) / dt_s).ceil() as i64 + 1,
            open: Vec::new(),
            stats: AssociatorStats::default(),
            cfg,
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> &AssociatorStats {
        &self.stats
    }

    /// The decision delay in use, s.
    pub fn decision_delay_s(&self) -> f64 {
        self.delay_s
    }

    /// The voting tolerance per phase (P, S), s: pick tolerance plus the cell's traveltime spread.
    pub fn vote_tolerance_s(&self) -> [f64; 2] {
        self.tol_vote_s
    }

    /// The candidate-source grid and its tables.
    pub fn grid(&self) -> &TraveltimeGrid {
        &self.grid
    }

    /// Unassociated picks currently held.
    pub fn pool_len(&self) -> usize {
        self.pool_len
    }

    /// Events currently open.
    pub fn open_events(&self) -> usize {
        self.open.len()
    }

    /// The longest stream time, s, between a pick's time and the clock at which an output
    /// may still name that pick as new (unassociated picks leave the pool after this long);
    /// what callers keep per pick for the outputs can be dropped beyond it.
    pub fn retention_s(&self) -> f64 {
        self.nb as f64 * self.dt_s + 2.0 * self.tol_max_s
    }

    /// The stream clock: the latest pick time or `advance_to` time seen, s.
    pub fn now_s(&self) -> f64 {
        self.now_s
    }

    fn init_ring(&mut self, t: f64) {
        let top = ((t + self.tol_max_s) * self.inv_dt).floor() as i64 + 1;
        self.k_lo = top + 1 - self.nb as i64;
        self.k_live = self.k_lo - 1;
        self.initialized = true;
    }

    /// Feeds one pick; returns what changed (events opened, updated, closed).
    pub fn push(&mut self, pick: AssocPick) -> Vec<AssociatorOutput> {
        let mut out = Vec::new();
        if !pick.time_s.is_finite() {
            self.stats.rejected_non_finite += 1;
            return out;
        }
        if pick.station >= self.n_sta {
            self.stats.rejected_unknown_station += 1;
            return out;
        }
        self.stats.picks_in += 1;
        if !self.initialized {
            self.init_ring(pick.time_s);
        }
        if pick.time_s > self.now_s {
            self.advance(pick.time_s, &mut out);
        }
        if let Some(e) = self.best_open_event(&pick) {
            self.absorb(e, pick, &mut out);
            self.stats.absorbed_late += 1;
            return out;
        }
        if pick.time_s + self.tol_max_s < self.k_lo as f64 * self.dt_s {
            self.stats.dropped_too_late += 1;
            return out;
        }
        let station_pool = &mut self.pool[pick.station];
        if self.pool_len >= self.cfg.max_pool_picks
            || station_pool.len() >= self.cfg.max_station_picks
        {
            self.stats.dropped_capacity += 1;
            return out;
        }
        let at = station_pool.partition_point(|p| p.time_s <= pick.time_s);
        station_pool.insert(
            at,
            PoolPick {
                id: pick.id,
                phase: pick.phase,
                time_s: pick.time_s,
            },
        );
        self.pool_len += 1;
        self.vote(pick.station, pick.phase, pick.time_s, true);
        self.process_dirty(&mut out);
        out
    }

    /// Moves the stream clock to `time_s` (s) without a pick: decides due bins, closes events.
    pub fn advance_to(&mut self, time_s: f64) -> Vec<AssociatorOutput> {
        let mut out = Vec::new();
        if time_s.is_finite() && self.initialized && time_s > self.now_s {
            self.advance(time_s, &mut out);
        }
        out
    }

    /// Decides every pending bin and closes every open event (end of stream).
    pub fn flush(&mut self) -> Vec<AssociatorOutput> {
        let mut out = Vec::new();
        if !self.initialized {
            return out;
        }
        let top = self.k_lo + self.nb as i64 - 1;
        for k in (self.k_live + 1).max(self.k_lo)..=top {
            self.k_live = k;
            self.process_bin(k, &mut out);
        }
        self.process_deferred(&mut out);
        let open = std::mem::take(&mut self.open);
        for e in open {
            self.close(e, &mut out);
        }
        out
    }

    fn advance(&mut self, now: f64, out: &mut Vec<AssociatorOutput>) {
        self.now_s = now;
        let top_old = self.k_lo + self.nb as i64 - 1;
        let target_live = ((now - self.delay_s) * self.inv_dt).floor() as i64 - 1;
        let first = (self.k_live + 1).max(self.k_lo);
        let last = target_live.min(top_old);
        for k in first..=last {
            self.k_live = k;
            self.process_bin(k, out);
        }
        self.k_live = self.k_live.max(target_live);
        if first <= last {
            // a newly decided bin may have released the cells that blocked deferred ones
            self.confirmed = true;
        }
        self.process_deferred(out);
        // slide the ring so that it ends just above the newest possible vote
        let top_new = ((now + self.tol_max_s) * self.inv_dt).floor() as i64 + 1;
        let lo_new = top_new + 1 - self.nb as i64;
        if lo_new > self.k_lo {
            let n_clear = ((lo_new - self.k_lo) as usize).min(self.nb);
            for i in 0..n_clear {
                let slot = ((self.k_lo + i as i64) & self.mask) as usize;
                for node in 0..self.n_nodes {
                    self.acc[node * self.nb + slot] = 0;
                    self.failed[node * self.nb + slot] = 0;
                }
                self.bin_max[slot] = 0;
            }
            self.k_lo = lo_new;
        }
        // close events whose window has passed (in opening order)
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].close_at_s <= now {
                let e = self.open.remove(i);
                self.close(e, out);
            } else {
                i += 1;
            }
        }
        // drop picks whose every vote has left the ring
        let horizon = self.k_lo as f64 * self.dt_s - self.tol_max_s;
        for sp in &mut self.pool {
            let n_old = sp.partition_point(|p| p.time_s < horizon);
            if n_old > 0 {
                sp.drain(..n_old);
                self.pool_len -= n_old;
                self.stats.expired_unassociated += n_old as u64;
            }
        }
    }

    fn close(&mut self, e: OpenEvent, out: &mut Vec<AssociatorOutput>) {
        self.stats.events_closed += 1;
        out.push(AssociatorOutput::EventClosed {
            id: e.id,
            origin_time_s: e.origin_time_s,
            hypocentre: e.hypocentre,
            picks: e.picks,
        });
    }

    /// Adds (or withdraws) one pick's votes at every node. New votes in already decided bins
    /// that reach the trigger are remembered as dirty cells.
    fn vote(&mut self, sta: usize, ph: Phase, t: f64, add: bool) {
        let nodes = &self.vote_nodes[sta];
        let tab = &self.vote_tt[ph.index()][sta];
        let tol = self.tol_vote_s[ph.index()];
        // offset keeps the argument positive so truncation is floor (libm floor is a call)
        const OFF: f64 = 1024.0;
        let base = (t - tol - self.k_lo as f64 * self.dt_s) * self.inv_dt + OFF;
        // bins are at least twice the widest tolerance, so a vote covers bin r1 and at most
        // r1 + 1; both are written without a data-dependent branch (a 0 increment when a bin
        // is not covered or off the ring), which the 1-or-2-bins loop mispredicted half the time
        let width = 2.0 * tol * self.inv_dt;
        let nb = self.nb as i64;
        let r_live = self.k_live - self.k_lo;
        let thr = u16::try_from(self.cfg.trigger_picks).unwrap_or(u16::MAX);
        let inv_dt = self.inv_dt;
        let k_lo = self.k_lo;
        let mask = self.mask;
        let nbu = self.nb;
        for (&node, &tt) in nodes.iter().zip(tab.iter()) {
            let node = node as usize;
            let a = base - f64::from(tt) * inv_dt;
            let r1 = a as i64 - OFF as i64;
            let r2 = (a + width) as i64 - OFF as i64;
            let in1 = u16::from((0..nb).contains(&r1));
            let in2 = u16::from(r2 != r1 && (0..nb).contains(&r2));
            let s1 = ((k_lo + r1) & mask) as usize;
            let s2 = ((k_lo + r1 + 1) & mask) as usize;
            let row = &mut self.acc[node * nbu..(node + 1) * nbu];
            if add {
                let c1 = row[s1].saturating_add(in1);
                row[s1] = c1;
                let c2 = row[s2].saturating_add(in2);
                row[s2] = c2;
                // bin_max bounds every count of its bin, so max with an unchanged count is a no-op
                self.bin_max[s1] = self.bin_max[s1].max(c1);
                self.bin_max[s2] = self.bin_max[s2].max(c2);
                if (c1 >= thr && in1 != 0 && r1 <= r_live)
                    || (c2 >= thr && in2 != 0 && r2 <= r_live)
                {
                    for (inc, r, c) in [(in1, r1, c1), (in2, r2, c2)] {
                        let k = k_lo + r;
                        if inc != 0 && r <= r_live && c >= thr && !self.dirty.contains(&k) {
                            self.dirty.push(k);
                        }
                    }
                }
            } else {
                row[s1] = row[s1].saturating_sub(in1);
                row[s2] = row[s2].saturating_sub(in2);
            }
        }
    }

    fn count(&self, k: i64, node: usize) -> u32 {
        if k < self.k_lo || k >= self.k_lo + self.nb as i64 {
            return 0;
        }
        u32::from(self.acc[self.cell(k, node)])
    }

    /// Index of cell (bin k, node) in `acc` and `failed`: node-major, so that one pick's votes
    /// (one or two adjacent bins at every node in turn) stream through memory.
    fn cell(&self, k: i64, node: usize) -> usize {
        node * self.nb + (k & self.mask) as usize
    }

    fn process_dirty(&mut self, out: &mut Vec<AssociatorOutput>) {
        if self.dirty.is_empty() {
            return;
        }
        let mut bins = std::mem::take(&mut self.dirty);
        bins.sort_unstable();
        for k in bins {
            // a deferred bin is re-decided anyway once something is confirmed or a bin goes live
            if !self.deferred.contains(&k) {
                self.process_bin(k, out);
            }
        }
        self.process_deferred(out);
        // bins dirtied while deciding were just decided; their counts only fell
        self.dirty.clear();
    }

    /// Decides bin `k`: tries its strongest eligible cells.
    fn process_bin(&mut self, k: i64, out: &mut Vec<AssociatorOutput>) {
        if k < self.k_lo || k >= self.k_lo + self.nb as i64 {
            return;
        }
        let thr = self.cfg.trigger_picks as u32;
        let slot = (k & self.mask) as usize;
        // bin_max bounds every count of the bin: most bins are decided without a node scan
        if u32::from(self.bin_max[slot]) < thr {
            return;
        }
        let cands: Vec<u32> = (0..self.n_nodes)
            .filter(|&i| u32::from(self.acc[i * self.nb + slot]) >= thr)
            .map(|i| i as u32)
            .collect();
        if cands.is_empty() {
            // the scan gave the exact maximum (below the trigger): later calls skip it
            self.bin_max[slot] = self.bin_max[slot].min(thr as u16 - 1);
            return;
        }
        let mut failures = 0;
        loop {
            let mut best: Option<(u32, u32)> = None;
            for &node in &cands {
                let c = self.count(k, node as usize);
                if c < thr {
                    continue;
                }
                if c <= u32::from(self.failed[self.cell(k, node as usize)]) {
                    continue;
                }
                if best.is_none_or(|(bc, bn)| c > bc || (c == bc && node < bn)) {
                    best = Some((c, node));
                }
            }
            let Some((c, node)) = best else { break };
            if self.stronger_nearby(k, node, c) {
                if !self.deferred.contains(&k) {
                    self.deferred.push(k);
                }
                break;
            }
            if self.confirm(k, node as usize, out) {
                self.confirmed = true;
                continue;
            }
            self.stats.confirm_failures += 1;
            let i = self.cell(k, node as usize);
            self.failed[i] = u16::try_from(c).unwrap_or(u16::MAX);
            failures += 1;
            if failures >= self.cfg.max_tries_per_bin {
                break;
            }
        }
    }

    /// True when a cell within `span_bins` bins of `k` (before or after) has more votes than
    /// `c` and has not failed at that count. The picks behind a cell are often a subset of a
    /// better explained event nearby in origin time (a far node with an early origin time sees
    /// the nearest picks of a central event as a plane wave), so the strongest cell of a
    /// neighbourhood is decided first; strict `>` means the strongest is never blocked.
    fn stronger_nearby(&mut self, k: i64, node: u32, c: u32) -> bool {
        let lo = (k - self.span_bins).max(self.k_lo);
        let hi = (k + self.span_bins).min(self.k_lo + self.nb as i64 - 1);
        let slots: Vec<usize> = (lo..=hi)
            .map(|kk| (kk & self.mask) as usize)
            .filter(|&sl| u32::from(self.bin_max[sl]) > c)
            .collect();
        if slots.is_empty() {
            return false;
        }
        let own = (k & self.mask) as usize;
        let mut exact = vec![0u16; slots.len()];
        for nd in 0..self.n_nodes {
            let base = nd * self.nb;
            for (j, &sl) in slots.iter().enumerate() {
                let cc = self.acc[base + sl];
                exact[j] = exact[j].max(cc);
                let cc32 = u32::from(cc);
                if cc32 > c && cc > self.failed[base + sl] && !(sl == own && nd as u32 == node) {
                    return true;
                }
            }
        }
        // nothing stronger: the scan gave exact maxima, which tighten later checks
        for (j, &sl) in slots.iter().enumerate() {
            self.bin_max[sl] = exact[j];
        }
        false
    }

    /// Re-decides bins that were waiting for a stronger later cell (in time order); those
    /// still blocked stay deferred.
    fn process_deferred(&mut self, out: &mut Vec<AssociatorOutput>) {
        // each round that confirms something removes picks, so this ends
        while self.confirmed && !self.deferred.is_empty() {
            self.confirmed = false;
            let mut bins = std::mem::take(&mut self.deferred);
            bins.sort_unstable();
            for k in bins {
                if k >= self.k_lo && k <= self.k_live {
                    self.process_bin(k, out);
                }
            }
        }
        self.confirmed = false;
    }

    fn tolerance(&self, ph: Phase, tt: f64) -> f64 {
        let base = match ph {
            Phase::P => self.cfg.tolerance_p_s,
            Phase::S => self.cfg.tolerance_s_s,
        };
        base + self.cfg.tolerance_relative * tt
    }

    /// Tries to confirm an event at `node` with origin time in bin `k`; on success opens it.
    fn confirm(&mut self, k: i64, node: usize, out: &mut Vec<AssociatorOutput>) -> bool {
        // 1. picks consistent with the node within the voting tolerance
        let lo = k as f64 * self.dt_s - self.tol_max_s;
        let hi = (k + 1) as f64 * self.dt_s + self.tol_max_s;
        let mut cands: Vec<(f64, usize, Phase, f64)> = Vec::new(); // (tau, station, phase, time)
        for s in 0..self.n_sta {
            let sp = &self.pool[s];
            if sp.is_empty() {
                continue;
            }
            for ph in Phase::ALL {
                let tt = self.grid.at_node(ph, s, node);
                let from = sp.partition_point(|p| p.time_s < lo + tt);
                for p in &sp[from..] {
                    if p.time_s > hi + tt {
                        break;
                    }
                    if p.phase == ph {
                        cands.push((p.time_s - tt, s, ph, p.time_s));
                    }
                }
            }
        }
        if cands.len() < self.cfg.min_picks {
            return false;
        }
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        // densest window of width 2 tol_max in tau
        let w = 2.0 * self.tol_max_s;
        let (mut best_n, mut best_i) = (0usize, 0usize);
        let mut j = 0;
        for i in 0..cands.len() {
            while cands[i].0 - cands[j].0 > w {
                j += 1;
            }
            if i + 1 - j > best_n {
                best_n = i + 1 - j;
                best_i = j;
            }
        }
        let win = &cands[best_i..best_i + best_n];
        let t0 = win[win.len() / 2].0;
        let mut chosen: Vec<(f64, usize, Phase, f64)> = Vec::new();
        for c in cands.iter() {
            if (c.0 - t0).abs() > self.tol_vote_s[c.2.index()] {
                continue;
            }
            match chosen.iter_mut().find(|d| d.1 == c.1 && d.2 == c.2) {
                Some(d) => {
                    if (c.0 - t0).abs() < (d.0 - t0).abs() {
                        *d = *c;
                    }
                }
                None => chosen.push(*c),
            }
        }
        if chosen.len() < self.cfg.min_picks
            || distinct_stations(chosen.iter().map(|c| c.1)) < self.cfg.min_stations
        {
            return false;
        }
        // the coverage test, looser (3m nearest), at the node: cheap, and it spares most
        // chance alignments the refinement
        let near_picks: Vec<usize> = chosen.iter().map(|c| c.1).collect();
        if !self.nearest_stations_picked(self.grid.node_position(node), &near_picks, 3) {
            return false;
        }
        // 2. refine on the interpolated tables, gather tightly, refine and gather again
        let obs: Vec<(usize, Phase, f64)> = chosen.iter().map(|c| (c.1, c.2, c.3)).collect();
        let start = self.grid.node_position(node);
        let (h, hz) = (self.grid.dh_km, self.grid.dz_km);
        let (x, t0) = self.refine(start, &obs, h / 2.0, hz / 2.0, 2, 4);
        let mut picks = self.gather(x, t0);
        if picks.len() < self.cfg.min_picks {
            return false;
        }
        let obs: Vec<(usize, Phase, f64)> = picks
            .iter()
            .map(|p| (p.pick.station, p.pick.phase, p.pick.time_s))
            .collect();
        let (x, t0) = self.refine(x, &obs, h / 8.0, hz / 8.0, 1, 3);
        picks = self.gather(x, t0);
        if picks.len() < self.cfg.min_picks
            || distinct_stations(picks.iter().map(|p| p.pick.station)) < self.cfg.min_stations
        {
            return false;
        }
        let stas: Vec<usize> = picks.iter().map(|p| p.pick.station).collect();
        if !self.nearest_stations_picked(x, &stas, 2) {
            return false;
        }
        // 3. a candidate next to an open event in space and time is the leftovers of that event
        // (picks that missed its first, rougher location): they join it instead of splitting it
        if let Some(i) = self.open.iter().position(|e| {
            (e.origin_time_s - t0).abs() < self.tol_max_s
                && ((e.hypocentre.x_km - x.x_km).powi(2)
                    + (e.hypocentre.y_km - x.y_km).powi(2)
                    + (e.hypocentre.z_km - x.z_km).powi(2))
                .sqrt()
                    < 2.0 * self.grid.dh_km
        }) {
            return self.merge_into(i, picks, out);
        }
        self.open_event(x, t0, picks, out)
    }

    /// Adds a confirmed candidate's picks to open event `i` (free slots only).
    fn merge_into(
        &mut self,
        i: usize,
        picks: Vec<AssociatedPick>,
        out: &mut Vec<AssociatorOutput>,
    ) -> bool {
        {
            let mut added = Vec::new();
            for p in picks {
                let slot = 2 * p.pick.station + p.pick.phase.index();
                if !self.open[i].taken[slot] {
                    self.remove_from_pool(&p.pick);
                    self.open[i].taken[slot] = true;
                    self.open[i].picks.push(p);
                    added.push(p);
                }
            }
            if added.is_empty() {
                return false;
            }
            self.stats.events_merged += 1;
            let e = &self.open[i];
            out.push(AssociatorOutput::EventUpdated {
                id: e.id.clone(),
                origin_time_s: e.origin_time_s,
                hypocentre: e.hypocentre,
                new_picks: added,
            });
            true
        }
    }

    /// Opens an event at `x` with origin time `t0` (s) and withdraws its picks from the pool.
    fn open_event(
        &mut self,
        x: LocalPoint,
        t0: f64,
        picks: Vec<AssociatedPick>,
        out: &mut Vec<AssociatorOutput>,
    ) -> bool {
        for p in &picks {
            self.remove_from_pool(&p.pick);
        }
        let nearest = self.grid.nearest_node(x);
        let id = format!("e{}n{}", (t0 * 1000.0).round() as i64, nearest);
        let mut taken = vec![false; 2 * self.n_sta];
        for p in &picks {
            taken[2 * p.pick.station + p.pick.phase.index()] = true;
        }
        let close_at_s =
            t0 + f64::from(self.max_tt_node[nearest]) + self.tol_max_s + self.cfg.close_margin_s;
        let ev = OpenEvent {
            id: id.clone(),
            origin_time_s: t0,
            hypocentre: x,
            weights: self.grid.weights(x),
            relocated_at_n: picks.len(),
            picks: picks.clone(),
            taken,
            close_at_s,
        };
        self.stats.events_opened += 1;
        out.push(AssociatorOutput::EventOpened {
            id,
            origin_time_s: t0,
            hypocentre: x,
            picks,
        });
        if close_at_s <= self.now_s {
            self.close(ev, out);
        } else {
            self.open.push(ev);
        }
        true
    }

    /// The coverage test of [`AssociatorConfig::min_nearest_fraction`].
    /// `factor` m nearest stations are searched (2 for the final test).
    fn nearest_stations_picked(&self, x: LocalPoint, stations: &[usize], factor: usize) -> bool {
        let mut picked = vec![false; self.n_sta];
        for &s in stations {
            picked[s] = true;
        }
        let m = picked.iter().filter(|&&b| b).count();
        if m == 0 || factor * m >= self.n_sta {
            return true;
        }
        let mut d: Vec<(f64, usize)> = self
            .stations
            .iter()
            .enumerate()
            .map(|(i, s)| (s.horizontal_distance_km(&x), i))
            .collect();
        d.select_nth_unstable_by(factor * m - 1, |a, b| {
            a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
        });
        let near = d[..factor * m].iter().filter(|(_, i)| picked[*i]).count();
        near as f64 >= self.cfg.min_nearest_fraction * m as f64
    }

    fn remove_from_pool(&mut self, p: &AssocPick) {
        let sp = &mut self.pool[p.station];
        if let Some(i) = sp
            .iter()
            .position(|q| q.id == p.id && q.time_s == p.time_s && q.phase == p.phase)
        {
            sp.remove(i);
            self.pool_len -= 1;
            self.vote(p.station, p.phase, p.time_s, false);
        }
    }

    /// Robust grid search around `start`: capped L1 of residuals (cap: the voting tolerance)
    /// scaled by the tight tolerance; origin time the median. `half` points each side on the
    /// first level, then `levels - 1` halvings with one point each side.
    fn refine(
        &self,
        start: LocalPoint,
        obs: &[(usize, Phase, f64)],
        step_h: f64,
        step_z: f64,
        half: i32,
        levels: usize,
    ) -> (LocalPoint, f64) {
        let eval = |x: LocalPoint, buf: &mut RefineBuf| self.refine_cost(x, obs, buf);
        let mut buf = RefineBuf::default();
        let mut best = self.grid.clamp(start);
        let (mut best_cost, mut best_t0) = eval(best, &mut buf);
        let (mut sh, mut sz) = (step_h, step_z);
        let mut hw = half;
        let mut points: Vec<LocalPoint> = Vec::new();
        let mut costs: Vec<(f64, f64)> = Vec::new();
        for _ in 0..levels {
            // pattern search: keep stepping at this resolution while the cost falls (bounded)
            for _ in 0..(if hw > 1 { 2 } else { 6 }) {
                let centre = best;
                points.clear();
                for iz in -hw..=hw {
                    for iy in -hw..=hw {
                        for ix in -hw..=hw {
                            if ix == 0 && iy == 0 && iz == 0 {
                                continue;
                            }
                            points.push(self.grid.clamp(LocalPoint::new(
                                centre.x_km + f64::from(ix) * sh,
                                centre.y_km + f64::from(iy) * sh,
                                centre.z_km + f64::from(iz) * sz,
                            )));
                        }
                    }
                }
                // the points are independent: on a large search they are shared among
                // threads; the best is then chosen in point order either way, so the result
                // does not depend on the thread count
                costs.clear();
                if self.cfg.parallel && points.len() * obs.len() >= PARALLEL_MIN_EVALS {
                    points
                        .par_iter()
                        .map_init(RefineBuf::default, |b, &x| eval(x, b))
                        .collect_into_vec(&mut costs);
                } else {
                    costs.extend(points.iter().map(|&x| eval(x, &mut buf)));
                }
                for (&x, &(c, t0)) in points.iter().zip(&costs) {
                    if c < best_cost - 1e-9 {
                        best_cost = c;
                        best_t0 = t0;
                        best = x;
                    }
                }
                if best == centre {
                    break;
                }
            }
            sh /= 2.0;
            sz /= 2.0;
            hw = 1;
        }
        (best, best_t0)
    }

    /// The refinement's cost at `x` (inside the box) and its origin time, s: the capped L1
    /// of residuals scaled by the tight tolerance; origin time the median.
    fn refine_cost(
        &self,
        x: LocalPoint,
        obs: &[(usize, Phase, f64)],
        buf: &mut RefineBuf,
    ) -> (f64, f64) {
        let w = self.grid.weights(x);
        buf.taus.clear();
        buf.tts.clear();
        for &(s, ph, t) in obs {
            let tt = self.grid.interpolate_inside(ph, s, x, &w);
            buf.taus.push(t - tt);
            buf.tts.push(tt);
        }
        buf.sorted.clear();
        buf.sorted.extend_from_slice(&buf.taus);
        let mid = buf.sorted.len() / 2;
        let t0 = *buf.sorted.select_nth_unstable_by(mid, f64::total_cmp).1;
        let mut cost = 0.0;
        for (i, &(_, ph, _)) in obs.iter().enumerate() {
            let tol = self.tolerance(ph, buf.tts[i]);
            cost += (buf.taus[i] - t0).abs().min(self.tol_vote_s[ph.index()]) / tol;
        }
        (cost, t0)
    }

    /// Pool picks within the tight tolerance of the predictions for a source at `x` with
    /// origin time `t0`: one per station and phase, the closest.
    fn gather(&self, x: LocalPoint, t0: f64) -> Vec<AssociatedPick> {
        let w = self.grid.weights(x);
        let mut out = Vec::new();
        for s in 0..self.n_sta {
            let sp = &self.pool[s];
            if sp.is_empty() {
                continue;
            }
            for ph in Phase::ALL {
                let tt = self.grid.interpolate_inside(ph, s, x, &w);
                let tp = t0 + tt;
                let tol = self.tolerance(ph, tt);
                let from = sp.partition_point(|p| p.time_s < tp - tol);
                let mut best: Option<(f64, PoolPick)> = None;
                for p in &sp[from..] {
                    if p.time_s > tp + tol {
                        break;
                    }
                    let r = p.time_s - tp;
                    if p.phase == ph && best.is_none_or(|(br, _)| r.abs() < br.abs()) {
                        best = Some((r, *p));
                    }
                }
                if let Some((r, p)) = best {
                    out.push(AssociatedPick {
                        pick: AssocPick {
                            id: p.id,
                            station: s,
                            phase: ph,
                            time_s: p.time_s,
                        },
                        residual_s: r,
                    });
                }
            }
        }
        out
    }

    /// The open event whose prediction this pick fits best (relative to the tolerance).
    fn best_open_event(&self, pick: &AssocPick) -> Option<usize> {
        let slot = 2 * pick.station + pick.phase.index();
        let mut best: Option<(f64, usize)> = None;
        for (i, e) in self.open.iter().enumerate() {
            if e.taken[slot] {
                continue;
            }
            let tt =
                self.grid
                    .interpolate_inside(pick.phase, pick.station, e.hypocentre, &e.weights);
            let r = pick.time_s - e.origin_time_s - tt;
            let score = r.abs() / self.tolerance(pick.phase, tt);
            if score <= 1.0 && best.is_none_or(|(b, _)| score < b) {
                best = Some((score, i));
            }
        }
        best.map(|b| b.1)
    }

    fn absorb(&mut self, i: usize, pick: AssocPick, out: &mut Vec<AssociatorOutput>) {
        let tt = self.grid.interpolate_inside(
            pick.phase,
            pick.station,
            self.open[i].hypocentre,
            &self.open[i].weights,
        );
        let r = pick.time_s - self.open[i].origin_time_s - tt;
        let mut new_picks = vec![AssociatedPick {
            pick,
            residual_s: r,
        }];
        {
            let e = &mut self.open[i];
            e.taken[2 * pick.station + pick.phase.index()] = true;
            e.picks.push(new_picks[0]);
        }
        // relocate once the pick count has grown by half, then sweep the pool for picks that
        // now fit (they arrived before the event opened but missed the rough location)
        if 2 * self.open[i].picks.len() >= 3 * self.open[i].relocated_at_n {
            let obs: Vec<(usize, Phase, f64)> = self.open[i]
                .picks
                .iter()
                .map(|p| (p.pick.station, p.pick.phase, p.pick.time_s))
                .collect();
            let (h, hz) = (self.grid.dh_km, self.grid.dz_km);
            let (x, t0) = self.refine(self.open[i].hypocentre, &obs, h / 4.0, hz / 4.0, 1, 4);
            let w = self.grid.weights(x);
            let mut swept = self.gather(x, t0);
            swept.retain(|p| !self.open[i].taken[2 * p.pick.station + p.pick.phase.index()]);
            for p in &swept {
                self.remove_from_pool(&p.pick);
            }
            let nearest = self.grid.nearest_node(x);
            let close_at = t0
                + f64::from(self.max_tt_node[nearest])
                + self.tol_max_s
                + self.cfg.close_margin_s;
            let e = &mut self.open[i];
            e.hypocentre = x;
            e.origin_time_s = t0;
            e.weights = w;
            e.close_at_s = e.close_at_s.max(close_at);
            for p in &swept {
                e.taken[2 * p.pick.station + p.pick.phase.index()] = true;
                e.picks.push(*p);
            }
            e.relocated_at_n = e.picks.len();
            new_picks.extend(swept);
        }
        let e = &self.open[i];
        out.push(AssociatorOutput::EventUpdated {
            id: e.id.clone(),
            origin_time_s: e.origin_time_s,
            hypocentre: e.hypocentre,
            new_picks,
        });
    }
}

fn distinct_stations(it: impl Iterator<Item = usize>) -> usize {
    let mut v: Vec<usize> = it.collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}
