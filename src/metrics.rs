//! The service's Prometheus metrics: one [`Metrics`] struct owning its registry, with intent
//! methods (`pick_accepted`, `pick_rejected`, `origin_published`, ...) so call sites never build
//! label sets by hand.
//!
//! Names are `eikoloc_*`, values in base units (seconds, not milliseconds), counters end in
//! `_total`. Label values come from closed sets ([`RejectReason`], [`Phase`], station codes of
//! the configured inventory), so a hostile client cannot grow the label space.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::{Phase, StationCode};

/// Why an ingested record was refused; the `reason` label of `eikoloc_picks_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The frame is not valid MessagePack / JSON, or lacks a required field.
    Malformed,
    /// A length prefix or line longer than the configured limit (the connection is closed).
    FrameTooLarge,
    /// The schema version field is missing or not one this service reads.
    Version,
    /// Authentication token missing or wrong (the connection is closed).
    Auth,
    /// The station is not in the configured inventory.
    UnknownStation,
    /// The phase is neither a P nor an S first arrival.
    BadPhase,
    /// The time is missing, not a number, or not parseable.
    BadTime,
    /// The time is implausible (outside 1900..2200) or too far from the wall clock.
    TimeOutOfRange,
    /// The uncertainty is not a finite positive number of seconds within limits.
    BadUncertainty,
    /// The same pick (id) was already received.
    Duplicate,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::Malformed,
        RejectReason::FrameTooLarge,
        RejectReason::Version,
        RejectReason::Auth,
        RejectReason::UnknownStation,
        RejectReason::BadPhase,
        RejectReason::BadTime,
        RejectReason::TimeOutOfRange,
        RejectReason::BadUncertainty,
        RejectReason::Duplicate,
    ];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::FrameTooLarge => "frame_too_large",
            RejectReason::Version => "version",
            RejectReason::Auth => "auth",
            RejectReason::UnknownStation => "unknown_station",
            RejectReason::BadPhase => "bad_phase",
            RejectReason::BadTime => "bad_time",
            RejectReason::TimeOutOfRange => "time_out_of_range",
            RejectReason::BadUncertainty => "bad_uncertainty",
            RejectReason::Duplicate => "duplicate",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which queue a depth gauge describes (`queue` label of `eikoloc_queue_depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Validated picks waiting for the associator.
    Picks,
    /// Events waiting for (or in) a locate run.
    Locate,
    /// Origin versions waiting to be stored and published.
    Publish,
}

impl Queue {
    fn as_str(self) -> &'static str {
        match self {
            Queue::Picks => "picks",
            Queue::Locate => "locate",
            Queue::Publish => "publish",
        }
    }
}

/// What an origin version is to its event (`kind` label of `eikoloc_origins_total` and
/// `eikoloc_pick_to_origin_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    /// Version 1: the preliminary (linearized) origin, or the first full run when the
    /// locator has no preliminary.
    First,
    /// The first full posterior after a preliminary origin (latency from the opening pick).
    FirstPosterior,
    /// A relocation with more picks.
    Update,
    /// The final origin after the event's window closed.
    Final,
}

impl OriginKind {
    const ALL: [OriginKind; 4] = [
        OriginKind::First,
        OriginKind::FirstPosterior,
        OriginKind::Update,
        OriginKind::Final,
    ];
    fn as_str(self) -> &'static str {
        match self {
            OriginKind::First => "first",
            OriginKind::FirstPosterior => "first_posterior",
            OriginKind::Update => "update",
            OriginKind::Final => "final",
        }
    }
}

/// Why a queued locate run was folded into another (`reason` label of
/// `eikoloc_locate_coalesced_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalesced {
    /// Newer picks joined an event whose run was waiting: the one run takes them all.
    NewerPicks,
    /// The event closed while its relocation waited: the final run replaces it.
    IntoFinal,
}

impl Coalesced {
    fn as_str(self) -> &'static str {
        match self {
            Coalesced::NewerPicks => "newer_picks",
            Coalesced::IntoFinal => "into_final",
        }
    }
}

/// The label used for a phase that could not be read.
const PHASE_UNKNOWN: &str = "unknown";

/// All service metrics, registered in one private registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    picks_received: IntCounterVec,
    picks_rejected: IntCounterVec,
    events: IntCounterVec,
    origins: IntCounterVec,
    locate_failures: IntCounter,
    locate_duration: Histogram,
    pick_to_origin: HistogramVec,
    queue_depth: IntGaugeVec,
    last_pick_time: GaugeVec,
    uncertainty: Histogram,
    ingest_connections: IntGaugeVec,
    stream_subscribers: prometheus::IntGauge,
    publish_failures: IntCounterVec,
    start_time: Gauge,
    preliminary_duration: Histogram,
    locate_in_flight: prometheus::IntGauge,
    locate_coalesced: IntCounterVec,
    locate_dropped: IntCounterVec,
    relocate_stretch: Gauge,
    publish_stage: HistogramVec,
    association_step: Histogram,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl Metrics {
    /// Registers every metric; `stations` pre-creates the per-station series so a station that
    /// never sent anything is visible (its last-pick time stays 0, which the
    /// silent-station alert reads as silent).
    pub fn new(stations: &[StationCode]) -> Self {
        let registry = Registry::new();
        let picks_received = counter_vec(
            &registry,
            "eikoloc_picks_received_total",
            "Picks accepted by ingest (valid, known station), by phase.",
            &["phase"],
        );
        let picks_rejected = counter_vec(
            &registry,
            "eikoloc_picks_rejected_total",
            "Ingested records refused, by reason and phase (phase \"unknown\" when unreadable).",
            &["reason", "phase"],
        );
        let events = counter_vec(
            &registry,
            "eikoloc_events_total",
            "Events by state change: opened or closed.",
            &["state"],
        );
        let origins = counter_vec(
            &registry,
            "eikoloc_origins_total",
            "Origin versions published, by kind: first, update or final.",
            &["kind"],
        );
        let publish_failures = counter_vec(
            &registry,
            "eikoloc_publish_failures_total",
            "Origin versions a publisher failed to deliver, by publisher.",
            &["publisher"],
        );
        let locate_failures = IntCounter::new(
            "eikoloc_locate_failures_total",
            "Locate runs that returned an error (too few usable picks, model failure).",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(locate_failures.clone()))
            .expect("metric registered once");
        let locate_duration = Histogram::with_opts(
            HistogramOpts::new(
                "eikoloc_locate_duration_seconds",
                "Wall time of one locate run (first estimate + SVGD), seconds.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(locate_duration.clone()))
            .expect("metric registered once");
        let pick_to_origin = HistogramVec::new(
            HistogramOpts::new(
                "eikoloc_pick_to_origin_seconds",
                "Wall time from receiving the pick that triggered a locate run to the origin \
                 being published, seconds, by origin kind.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(pick_to_origin.clone()))
            .expect("metric registered once");
        let queue_depth = IntGaugeVec::new(
            Opts::new("eikoloc_queue_depth", "Items waiting in an internal queue."),
            &["queue"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(queue_depth.clone()))
            .expect("metric registered once");
        let last_pick_time = GaugeVec::new(
            Opts::new(
                "eikoloc_station_last_pick_timestamp_seconds",
                "Wall-clock Unix time the last valid pick of a station was received, seconds \
                 (0: none since start). Age = time() - this.",
            ),
            &["station"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(last_pick_time.clone()))
            .expect("metric registered once");
        let uncertainty = Histogram::with_opts(
            HistogramOpts::new(
                "eikoloc_origin_uncertainty_meters",
                "Semi-major axis of the 68 % horizontal posterior ellipse of each published \
                 origin, metres.",
            )
            .buckets(vec![
                50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
            ]),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(uncertainty.clone()))
            .expect("metric registered once");
        let ingest_connections = IntGaugeVec::new(
            Opts::new(
                "eikoloc_ingest_connections",
                "Open ingest connections, by wire format.",
            ),
            &["format"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(ingest_connections.clone()))
            .expect("metric registered once");
        let stream_subscribers = prometheus::IntGauge::new(
            "eikoloc_stream_subscribers",
            "Connected origin-stream subscribers.",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(stream_subscribers.clone()))
            .expect("metric registered once");
        let start_time = Gauge::new(
            "eikoloc_start_time_seconds",
            "Unix time the service started, seconds.",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(start_time.clone()))
            .expect("metric registered once");
        start_time.set(unix_now_s());
        let preliminary_duration = Histogram::with_opts(
            HistogramOpts::new(
                "eikoloc_preliminary_duration_seconds",
                "Wall time of one preliminary (linearized) solution, seconds.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(preliminary_duration.clone()))
            .expect("metric registered once");
        let locate_in_flight = prometheus::IntGauge::new(
            "eikoloc_locate_runs_in_flight",
            "Full locate runs started on the pool and not finished.",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(locate_in_flight.clone()))
            .expect("metric registered once");
        let locate_coalesced = counter_vec(
            &registry,
            "eikoloc_locate_coalesced_total",
            "Queued locate runs folded into one run, by reason: newer_picks (more picks joined \
             the waiting run) or into_final (the event closed while its relocation waited).",
            &["reason"],
        );
        let locate_dropped = counter_vec(
            &registry,
            "eikoloc_locate_dropped_total",
            "Queued locate runs dropped because the locate queue was full, by kind \
             (relocation, first_posterior); their picks go into the event's next run. Final \
             runs are never dropped.",
            &["kind"],
        );
        let relocate_stretch = Gauge::new(
            "eikoloc_relocate_interval_factor",
            "Factor on the relocation interval (slope * N + intercept): 1 + queued runs / \
             locate threads.",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(relocate_stretch.clone()))
            .expect("metric registered once");
        relocate_stretch.set(1.0);
        let publish_stage = HistogramVec::new(
            HistogramOpts::new(
                "eikoloc_publish_stage_seconds",
                "Wall time of one stage of publishing an origin version, seconds: store \
                 (insert), read (the event for the publishers), and each publisher by name.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
            &["stage"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(publish_stage.clone()))
            .expect("metric registered once");
        let association_step = Histogram::with_opts(
            HistogramOpts::new(
                "eikoloc_association_step_seconds",
                "Wall time the associator took for one pick (deciding, opening and updating \
                 events included), seconds.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(association_step.clone()))
            .expect("metric registered once");
        for r in [Coalesced::NewerPicks, Coalesced::IntoFinal] {
            locate_coalesced.with_label_values(&[r.as_str()]);
        }
        for k in ["relocation", "first_posterior"] {
            locate_dropped.with_label_values(&[k]);
        }

        for p in Phase::ALL {
            picks_received.with_label_values(&[p.as_str()]);
        }
        for r in RejectReason::ALL {
            picks_rejected.with_label_values(&[r.as_str(), PHASE_UNKNOWN]);
        }
        for s in ["opened", "closed"] {
            events.with_label_values(&[s]);
        }
        for k in OriginKind::ALL {
            origins.with_label_values(&[k.as_str()]);
            pick_to_origin.with_label_values(&[k.as_str()]);
        }
        for q in [Queue::Picks, Queue::Locate, Queue::Publish] {
            queue_depth.with_label_values(&[q.as_str()]);
        }
        for s in stations {
            last_pick_time.with_label_values(&[&s.to_string()]);
        }
        Self {
            registry,
            picks_received,
            picks_rejected,
            events,
            origins,
            locate_failures,
            locate_duration,
            pick_to_origin,
            queue_depth,
            last_pick_time,
            uncertainty,
            ingest_connections,
            stream_subscribers,
            publish_failures,
            start_time,
            preliminary_duration,
            locate_in_flight,
            locate_coalesced,
            locate_dropped,
            relocate_stretch,
            publish_stage,
            association_step,
        }
    }

    /// A valid pick entered the pipeline.
    pub fn pick_accepted(&self, station: &StationCode, phase: Phase) {
        self.picks_received
            .with_label_values(&[phase.as_str()])
            .inc();
        self.last_pick_time
            .with_label_values(&[&station.to_string()])
            .set(unix_now_s());
    }

    /// A record was refused; `phase` when it could be read.
    pub fn pick_rejected(&self, reason: RejectReason, phase: Option<Phase>) {
        let p = phase.map_or(PHASE_UNKNOWN, Phase::as_str);
        self.picks_rejected
            .with_label_values(&[reason.as_str(), p])
            .inc();
    }

    /// Total rejected records for one reason, all phases (for tests and the demo summary).
    pub fn rejected_count(&self, reason: RejectReason) -> u64 {
        ["P", "S", PHASE_UNKNOWN]
            .iter()
            .map(|p| {
                self.picks_rejected
                    .with_label_values(&[reason.as_str(), p])
                    .get()
            })
            .sum()
    }

    /// Total accepted picks, all phases.
    pub fn accepted_count(&self) -> u64 {
        Phase::ALL
            .iter()
            .map(|p| self.picks_received.with_label_values(&[p.as_str()]).get())
            .sum()
    }

    /// The associator opened an event.
    pub fn event_opened(&self) {
        self.events.with_label_values(&["opened"]).inc();
    }

    /// An event's window closed.
    pub fn event_closed(&self) {
        self.events.with_label_values(&["closed"]).inc();
    }

    /// A locate run finished after `seconds` of wall time.
    pub fn locate_finished(&self, seconds: f64, ok: bool) {
        self.locate_duration.observe(seconds);
        if !ok {
            self.locate_failures.inc();
        }
    }

    /// An origin version was stored and handed to the publishers; `latency_s` is the wall time
    /// since the pick that triggered it was received (for the first posterior: since the
    /// event opened); `semi_major_68_km` its 68 % ellipse.
    pub fn origin_published(&self, kind: OriginKind, latency_s: f64, semi_major_68_km: f64) {
        let kind = kind.as_str();
        self.origins.with_label_values(&[kind]).inc();
        if latency_s.is_finite() && latency_s >= 0.0 {
            self.pick_to_origin
                .with_label_values(&[kind])
                .observe(latency_s);
        }
        if semi_major_68_km.is_finite() {
            self.uncertainty.observe(semi_major_68_km * 1000.0);
        }
    }

    /// A preliminary (linearized) solution took `seconds` of wall time.
    pub fn preliminary_finished(&self, seconds: f64, ok: bool) {
        self.preliminary_duration.observe(seconds);
        if !ok {
            self.locate_failures.inc();
        }
    }

    /// The associator took `seconds` for one pick.
    pub fn association_step(&self, seconds: f64) {
        self.association_step.observe(seconds);
    }

    /// Full locate runs now on the pool.
    pub fn set_locate_in_flight(&self, runs: usize) {
        self.locate_in_flight.set(runs as i64);
    }

    /// A queued locate run was folded into another.
    pub fn locate_coalesced(&self, reason: Coalesced) {
        self.locate_coalesced
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// A queued locate run was dropped (queue full): a first posterior or a relocation.
    pub fn locate_dropped(&self, first_posterior: bool) {
        let k = if first_posterior {
            "first_posterior"
        } else {
            "relocation"
        };
        self.locate_dropped.with_label_values(&[k]).inc();
    }

    /// The current stretch of the relocation interval.
    pub fn set_relocate_stretch(&self, factor: f64) {
        self.relocate_stretch.set(factor);
    }

    /// One publishing stage (`store`, `read` or a publisher's name) took `seconds`.
    pub fn publish_stage(&self, stage: &str, seconds: f64) {
        self.publish_stage
            .with_label_values(&[stage])
            .observe(seconds);
    }

    /// A publisher failed to deliver an origin version.
    pub fn publish_failed(&self, publisher: &str) {
        self.publish_failures.with_label_values(&[publisher]).inc();
    }

    /// Sets the depth of an internal queue.
    pub fn set_queue_depth(&self, queue: Queue, depth: usize) {
        self.queue_depth
            .with_label_values(&[queue.as_str()])
            .set(depth as i64);
    }

    /// An ingest connection opened (+1) or closed (-1).
    pub fn ingest_connection(&self, format: &str, delta: i64) {
        self.ingest_connections
            .with_label_values(&[format])
            .add(delta);
    }

    /// A stream subscriber connected (+1) or left (-1).
    pub fn stream_subscriber(&self, delta: i64) {
        self.stream_subscribers.add(delta);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Unix time the service started, s.
    pub fn start_time_s(&self) -> f64 {
        self.start_time.get()
    }
}

/// Wall-clock Unix time, seconds.
pub fn unix_now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_the_conventions() {
        let m = Metrics::new(&[StationCode::new("EK", "EK01")]);
        m.pick_accepted(&StationCode::new("EK", "EK01"), Phase::P);
        m.pick_rejected(RejectReason::UnknownStation, Some(Phase::S));
        m.origin_published(OriginKind::First, 0.05, 1.2);
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("eikoloc_"), "{name}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
        assert!(
            text.contains(r#"eikoloc_picks_rejected_total{phase="S",reason="unknown_station"} 1"#)
        );
        assert!(text.contains(r#"eikoloc_origin_uncertainty_meters_bucket{le="2500"} 1"#));
        assert_eq!(m.rejected_count(RejectReason::UnknownStation), 1);
        assert_eq!(m.accepted_count(), 1);
    }
}
