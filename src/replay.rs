//! Archive replay: the service's own ingest check -> association -> location -> store ->
//! publish core ([`crate::daemon::pipeline`]), fed from a pick archive under a
//! [`VirtualClock`] instead of from TCP under the wall clock.
//!
//! Picks are sorted by time and each is checked by the ingest's [`validate`] (inventory,
//! limits) as if it arrived at its own time; the pipeline's clock follows the pick times, so
//! relocation throttling and window closing happen on the archive's timeline. `--speed`
//! only paces the feeding in wall time; it does not change a single decision. Locate runs
//! are computed in parallel but applied in start order, and the catalog files are written
//! from the store once the pipeline has drained, so the same archive gives byte-identical
//! `catalog.csv` and QuakeML on every run and machine.
//!
//! With `keep_association` the associator is replaced by [`ArchiveGrouping`]: the archive's
//! own `event_id` groups the picks, and everything downstream is the same.
//!
//! Output folder: `eikoloc.sqlite` (the store: picks, events, every origin version,
//! arrivals, particles), `events/<id>.xml` (one QuakeML file per event, every version, as the
//! service writes them), `catalog.csv` (the final origin of each located event, columns of
//! [`crate::catalog::csv::CATALOG_HEADER`]), `catalog.xml` (QuakeML: every event with its
//! picks and final origin) and `rejected.csv` (archive records not replayed, by line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::catalog::csv::{read_picks_with_lines, CatalogRow};
use crate::catalog::{
    read_event_picks, read_text, sniff, CatalogError, Format, PickOptions, RecordProblem,
};
use crate::config::ResolvedStationConfig;
use crate::daemon::clock::{unix_s, VirtualClock};
use crate::daemon::pipeline::{Association, EventChange, Pipeline};
use crate::daemon::{render_event, Engine, PipelineConfig, EVENT_FILE_EXTENSION};
use crate::domain::{Event, Origin, Pick};
use crate::ingest::{validate, IngestedPick, PickLimits, WirePick};
use crate::metrics::{Metrics, RejectReason};
use crate::publish::{write_atomic, EventFiles, PublishError, Publisher};
use crate::store::{Store, StoreError};

/// Why a replay could not run or finish.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The archive could not be read at all (individual bad records are not errors).
    #[error(transparent)]
    Archive(#[from] CatalogError),
    /// The output folder already holds a store: replaying into it would mix two runs.
    #[error("{0} already exists; replay into a new or empty folder")]
    OutputExists(PathBuf),
    /// A file of the output folder could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A publisher could not be set up or write.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Station terms could not be estimated or written.
    #[error(transparent)]
    Terms(#[from] crate::locate::station_terms::StationTermsError),
    /// A pipeline thread could not be started.
    #[error("replay internals: {0}")]
    Internal(String),
}

/// How fast picks are fed, in archive seconds per wall second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline takes them.
    Max,
    /// This many archive seconds per wall second (60: an hour of archive in a minute).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Self::Factor(f)),
            _ => Err(format!(
                "speed {s:?}: give `max` or a positive factor such as 60"
            )),
        }
    }
}

/// One archive pick with the event it was filed under and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivePick {
    /// The archive's event id.
    pub event_id: String,
    /// The pick as read (not yet checked against the inventory).
    pub pick: Pick,
    /// 1-based line in the archive, where the format tells it (picks CSV).
    pub line: Option<u64>,
}

/// An archive as read: the good picks in file order, and the records the reader skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    /// Format recognised.
    pub format: Format,
    /// Picks, in file order.
    pub picks: Vec<ArchivePick>,
    /// Records skipped by the reader (malformed time, missing field, truncated line, ...).
    pub problems: Vec<RecordProblem>,
    /// Number of archive events with at least one good pick.
    pub n_events: usize,
}

/// Reads a pick archive in any pick format [`sniff`] recognises (picks CSV with line numbers,
/// QuakeML, NLLOC_OBS with bare station labels in `default_network`, Hypoinverse archive).
pub fn read_archive(
    path: &Path,
    options: &PickOptions,
    default_network: &str,
) -> Result<Archive, CatalogError> {
    let text = read_text(path)?;
    let (format, report, lines) = if sniff(&text) == Some(Format::PicksCsv) {
        let (report, lines) =
            read_picks_with_lines(text.as_bytes(), options).map_err(|e| e.in_file(path))?;
        (Format::PicksCsv, report, Some(lines))
    } else {
        let (format, report) =
            read_event_picks(&text, options, default_network).map_err(|e| e.in_file(path))?;
        (format, report, None)
    };
    let n_events = report
        .records
        .iter()
        .filter(|e| !e.picks.is_empty())
        .count();
    let mut picks = Vec::new();
    for (i, ev) in report.records.into_iter().enumerate() {
        for (j, pick) in ev.picks.into_iter().enumerate() {
            let line = lines.as_ref().and_then(|l| l.get(i)?.get(j).copied());
            picks.push(ArchivePick {
                event_id: ev.event_id.clone(),
                pick,
                line,
            });
        }
    }
    Ok(Archive {
        format,
        picks,
        problems: report.problems,
        n_events,
    })
}

/// What a replay does besides the pipeline settings.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Feeding pace.
    pub speed: Speed,
    /// Group picks by the archive's event ids instead of associating them.
    pub keep_association: bool,
    /// Queues, locate threads and relocation throttle (seconds of archive time).
    pub pipeline: PipelineConfig,
    /// The ingest's limits, checked against each pick at its own time.
    pub limits: PickLimits,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Station terms to estimate from the replayed catalog's final origins, relocating the
    /// final events with them (`None`: no terms pass).
    pub terms: Option<crate::locate::station_terms::TermsConfig>,
    /// Terms the service's locator already applied in the replay (the terms passes start
    /// from them).
    pub start_terms: Option<crate::locate::station_terms::StationTerms>,
}

/// Live counters for a progress display, updated while the replay runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Picks handed to the pipeline so far.
    pub picks_fed: AtomicU64,
    /// Picks to feed in all.
    pub picks_total: AtomicU64,
    /// Origin versions published so far.
    pub origins: AtomicU64,
    /// Final origins published so far (events done).
    pub events_final: AtomicU64,
}

/// An archive record that was not replayed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// 1-based line in the archive, when the format has lines.
    pub line: Option<u64>,
    /// Archive event id, when it was read.
    pub event_id: Option<String>,
    /// Field at fault.
    pub field: String,
    /// Why, for a person.
    pub message: String,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySummary {
    /// Picks read from the archive.
    pub picks_read: usize,
    /// Picks handed to the pipeline.
    pub picks_replayed: usize,
    /// Archive records not replayed (reader problems, then ingest rejections), by line.
    pub rejected: Vec<Rejected>,
    /// Archive events with at least one good pick.
    pub archive_events: usize,
    /// Events the pipeline made (associated, or archive groups).
    pub events: usize,
    /// Events with at least one origin (the catalog rows).
    pub events_located: usize,
    /// Events whose latest origin is final.
    pub events_final: usize,
    /// Origin versions stored.
    pub origins: usize,
    /// Wall time of the replay, s.
    pub wall_s: f64,
    /// With station terms: each pass (0 = the replay's own final origins) and how many
    /// final events the last pass relocated (the rows of the terms catalog).
    pub terms: Option<(Vec<crate::locate::station_terms::PassStats>, usize)>,
}

/// Counts published origins for [`Progress`] (a publisher like any other).
struct ProgressPublisher(Arc<Progress>);

impl Publisher for ProgressPublisher {
    fn name(&self) -> &'static str {
        "progress"
    }
    fn publish(&mut self, _event: &Event, origin: &Origin) -> Result<(), PublishError> {
        self.0.origins.fetch_add(1, Ordering::Relaxed);
        if origin.is_final {
            self.0.events_final.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The archive's own grouping as an [`Association`]: each archive event opens once it has
/// `min_picks` picks (or all of its picks, if fewer) and closes with its last pick.
pub struct ArchiveGrouping {
    event_of: HashMap<String, usize>,
    groups: Vec<Group>,
    min_picks: usize,
}

struct Group {
    id: String,
    remaining: usize,
    pending: Vec<String>,
    opened: bool,
    closed: bool,
}

impl ArchiveGrouping {
    /// Groups by `event_id` the picks that will be fed (ids must be unique).
    pub fn new<'a>(picks: impl IntoIterator<Item = (&'a str, &'a str)>, min_picks: usize) -> Self {
        let mut event_of = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (event_id, pick_id) in picks {
            let g = *index.entry(event_id.to_string()).or_insert_with(|| {
                groups.push(Group {
                    id: event_id.to_string(),
                    remaining: 0,
                    pending: Vec::new(),
                    opened: false,
                    closed: false,
                });
                groups.len() - 1
            });
            if event_of.insert(pick_id.to_string(), g).is_none() {
                groups[g].remaining += 1;
            }
        }
        Self {
            event_of,
            groups,
            min_picks: min_picks.max(1),
        }
    }
}

impl Association for ArchiveGrouping {
    fn push(&mut self, pick: &Pick) -> Vec<EventChange> {
        let Some(&g) = self.event_of.get(&pick.id) else {
            return Vec::new();
        };
        let g = &mut self.groups[g];
        if g.closed {
            return Vec::new();
        }
        g.remaining = g.remaining.saturating_sub(1);
        let mut out = Vec::new();
        if g.opened {
            out.push(EventChange::Updated {
                id: g.id.clone(),
                pick_ids: vec![pick.id.clone()],
            });
        } else {
            g.pending.push(pick.id.clone());
            if g.pending.len() >= self.min_picks || g.remaining == 0 {
                g.opened = true;
                out.push(EventChange::Opened {
                    id: g.id.clone(),
                    pick_ids: std::mem::take(&mut g.pending),
                });
            }
        }
        if g.remaining == 0 {
            g.closed = true;
            out.push(EventChange::Closed { id: g.id.clone() });
        }
        out
    }

    fn advance_to(&mut self, _t: DateTime<Utc>) -> Vec<EventChange> {
        Vec::new()
    }

    fn finish(&mut self) -> Vec<EventChange> {
        let mut out = Vec::new();
        for g in self.groups.iter_mut().filter(|g| !g.closed) {
            if !g.opened && !g.pending.is_empty() {
                g.opened = true;
                out.push(EventChange::Opened {
                    id: g.id.clone(),
                    pick_ids: std::mem::take(&mut g.pending),
                });
            }
            if g.opened {
                out.push(EventChange::Closed { id: g.id.clone() });
            }
            g.closed = true;
        }
        out
    }
}

/// Name of the store file in the output folder.
pub const STORE_FILE: &str = "eikoloc.sqlite";
/// Name of the catalog CSV in the output folder.
pub const CATALOG_CSV: &str = "catalog.csv";
/// Name of the QuakeML catalog in the output folder.
pub const CATALOG_QUAKEML: &str = "catalog.xml";
/// Name of the per-event QuakeML folder in the output folder.
pub const EVENTS_DIR: &str = "events";
/// Name of the rejected-records CSV in the output folder.
pub const REJECTED_CSV: &str = "rejected.csv";

/// Replays `archive` through the service core built in `engine` (its association is
/// replaced by [`ArchiveGrouping`] with `keep_association`), writing into `config.out_dir`.
pub fn replay(
    station: &ResolvedStationConfig,
    engine: Engine,
    archive: &Archive,
    config: &ReplayConfig,
    progress: Arc<Progress>,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let out = &config.out_dir;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReplayError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let store_path = out.join(STORE_FILE);
    if store_path.exists() {
        return Err(ReplayError::OutputExists(store_path));
    }

    // Ingest: the records the reader skipped, then each pick checked as the service checks
    // it on arrival (at its own time), and the same pick twice (the store would drop it).
    let mut rejected: Vec<Rejected> = archive
        .problems
        .iter()
        .map(|p| Rejected {
            line: Some(p.line),
            event_id: None,
            field: p.field.clone(),
            message: p.message.clone(),
        })
        .collect();
    let mut order: Vec<usize> = (0..archive.picks.len()).collect();
    order.sort_by(|&a, &b| archive.picks[a].pick.time.cmp(&archive.picks[b].pick.time));
    let inventory = &station.inventory;
    let mut seen: HashMap<String, Option<u64>> = HashMap::new();
    let mut feed: Vec<(usize, Pick)> = Vec::with_capacity(order.len());
    for &i in &order {
        let a = &archive.picks[i];
        let reject = |field: &str, message: String| Rejected {
            line: a.line,
            event_id: Some(a.event_id.clone()),
            field: field.to_string(),
            message,
        };
        match validate(
            WirePick::from_pick(&a.pick),
            inventory,
            &config.limits,
            a.pick.time,
        ) {
            Ok(p) => match seen.get(&p.id) {
                Some(first) => rejected.push(reject(
                    "time_iso",
                    format!(
                        "the same pick as {} (replayed once)",
                        first.map_or("an earlier record".into(), |l| format!("line {l}"))
                    ),
                )),
                None => {
                    seen.insert(p.id.clone(), a.line);
                    feed.push((i, p));
                }
            },
            Err(r) => rejected.push(reject(
                field_of(r.reason),
                format!("{} ({})", r.detail, r.reason.as_str()),
            )),
        }
    }
    rejected.sort_by(|a, b| a.line.cmp(&b.line).then_with(|| a.message.cmp(&b.message)));
    progress
        .picks_total
        .store(feed.len() as u64, Ordering::Relaxed);

    let association: Box<dyn Association> = if config.keep_association {
        Box::new(ArchiveGrouping::new(
            feed.iter()
                .map(|(i, p)| (archive.picks[*i].event_id.as_str(), p.id.as_str())),
            crate::associate::AssociatorConfig::default().min_picks,
        ))
    } else {
        engine.association
    };
    let store = Store::open(&store_path)?;
    let events_dir = out.join(EVENTS_DIR);
    let files = EventFiles::new(&events_dir, EVENT_FILE_EXTENSION, render_event)?;
    let publishers: Vec<Box<dyn Publisher>> = vec![
        Box::new(files),
        Box::new(ProgressPublisher(progress.clone())),
    ];
    let codes: Vec<_> = inventory
        .stations()
        .iter()
        .map(|s| s.code.clone())
        .collect();
    let (tx, rx) = crossbeam::channel::bounded::<IngestedPick>(config.pipeline.pick_queue);
    let locator = engine.locator.clone();
    let pipeline = Pipeline {
        config: config.pipeline.clone(),
        store: store.clone(),
        metrics: Metrics::new(&codes),
        association,
        locator: engine.locator,
        publishers,
        clock: Box::new(VirtualClock::new()),
        close_at_end: true,
    }
    .start(rx, Vec::new())
    .map_err(|e| ReplayError::Internal(e.to_string()))?;

    let t0 = feed.first().map(|(_, p)| unix_s(&p.time));
    let wall0 = Instant::now();
    let n_fed = feed.len();
    for (_, pick) in feed {
        if let (Speed::Factor(f), Some(t0)) = (config.speed, t0) {
            let due = Duration::from_secs_f64(((unix_s(&pick.time) - t0) / f).max(0.0));
            if let Some(wait) = due.checked_sub(wall0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let ip = IngestedPick {
            pick,
            received: Instant::now(),
        };
        if tx.send(ip).is_err() {
            return Err(ReplayError::Internal("the pipeline stopped early".into()));
        }
        progress.picks_fed.fetch_add(1, Ordering::Relaxed);
    }
    drop(tx);
    pipeline.join();

    let (events, finals, origins) = write_catalogs(&store, out, &events_dir)?;
    write_rejected(&out.join(REJECTED_CSV), &rejected)?;
    let terms = match &config.terms {
        Some(tc) => Some(terms_pass(
            station,
            locator.as_ref(),
            &finals,
            tc,
            config.start_terms.as_ref(),
            out,
        )?),
        None => None,
    };
    Ok(ReplaySummary {
        picks_read: archive.picks.len(),
        picks_replayed: n_fed,
        rejected,
        archive_events: archive.n_events,
        events: events.len(),
        events_located: events.iter().filter(|e| e.preferred().is_some()).count(),
        events_final: events
            .iter()
            .filter(|e| e.preferred().is_some_and(|o| o.is_final))
            .count(),
        origins,
        wall_s: started.elapsed().as_secs_f64(),
        terms,
    })
}

/// Catalog of the replay's own final origins when a terms pass rewrites `catalog.csv`.
pub const PIPELINE_CATALOG_CSV: &str = "catalog_pipeline.csv";
/// QuakeML of the replay's own final origins when a terms pass rewrites `catalog.xml`.
pub const PIPELINE_CATALOG_QUAKEML: &str = "catalog_pipeline.xml";
/// Station terms estimated by a terms pass (static CSV, or the SSST residual table).
pub const STATION_TERMS_CSV: &str = "station_terms.csv";

/// Estimates station terms from the final origins (`finals`: one origin each, time order)
/// and relocates the final events with them through the service's locator
/// ([`relocate_with_terms`](crate::locate::station_terms::relocate_with_terms)); the replay's
/// own catalog moves to [`PIPELINE_CATALOG_CSV`] / [`PIPELINE_CATALOG_QUAKEML`], the
/// relocated pass becomes [`CATALOG_CSV`] / [`CATALOG_QUAKEML`] (events the last pass could not
/// locate are left out), and the terms go to [`STATION_TERMS_CSV`].
fn terms_pass(
    station: &ResolvedStationConfig,
    locator: &dyn crate::daemon::pipeline::Locator,
    finals: &[Event],
    config: &crate::locate::station_terms::TermsConfig,
    start: Option<&crate::locate::station_terms::StationTerms>,
    out: &Path,
) -> Result<(Vec<crate::locate::station_terms::PassStats>, usize), ReplayError> {
    use crate::daemon::pipeline::LocateRequest;
    use crate::locate::station_terms::{relocate_with_terms, LocatedEvent};
    let ids: Vec<String> = finals.iter().map(|e| e.id.clone()).collect();
    let run = relocate_with_terms(&ids, &station.frame, config, start, |i, c| {
        let e = &finals[i];
        // Without starting terms the first pass is the replay itself: its final origin
        // came from the same picks, seed and (absent) corrections.
        let origin = if c.is_none() {
            Some(e.origins[0].clone())
        } else {
            let request = LocateRequest {
                event_id: e.id.clone(),
                picks: e.picks.clone(),
                is_final: true,
            };
            match locator.locate_corrected(&request, c) {
                Ok(l) => Some(l.origin),
                Err(err) => {
                    tracing::info!(event = %e.id, "not relocated with station terms: {err}");
                    None
                }
            }
        };
        let located = origin
            .as_ref()
            .map(|o| LocatedEvent::from_origin(&e.id, o, &|n, s, p| c.correction_s(n, s, p)));
        (origin, located)
    })?;
    let relocated: Vec<Event> = finals
        .iter()
        .zip(run.outcomes)
        .filter_map(|(e, o)| {
            let mut o = o?;
            let before = &e.origins[0];
            o.id = format!("{}/terms", before.id);
            o.version = before.version;
            o.is_final = before.is_final;
            Some(Event {
                id: e.id.clone(),
                picks: e.picks.clone(),
                origins: vec![o],
                preferred_origin: Some(0),
            })
        })
        .collect();
    let rename = |from: &str, to: &str| {
        std::fs::rename(out.join(from), out.join(to)).map_err(|source| ReplayError::Io {
            path: out.join(from),
            source,
        })
    };
    rename(CATALOG_CSV, PIPELINE_CATALOG_CSV)?;
    rename(CATALOG_QUAKEML, PIPELINE_CATALOG_QUAKEML)?;
    write_catalog_files(&relocated, out)?;
    if let Some(t) = &run.terms {
        t.write_path(&out.join(STATION_TERMS_CSV))?;
    }
    Ok((run.passes, relocated.len()))
}

/// The archive column an ingest rejection is about.
fn field_of(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::UnknownStation => "station",
        RejectReason::BadPhase => "phase",
        RejectReason::BadTime | RejectReason::TimeOutOfRange | RejectReason::Duplicate => {
            "time_iso"
        }
        RejectReason::BadUncertainty => "uncertainty_s",
        _ => "record",
    }
}

/// Writes `catalog.csv` and `catalog.xml` from the store and renders every event file once
/// more from it: the pipeline is drained, so this is the final state, independent of how the
/// publish thread interleaved with the rest. Returns the events and the origin count.
fn write_catalogs(
    store: &Store,
    out: &Path,
    events_dir: &Path,
) -> Result<(Vec<Event>, Vec<Event>, usize), ReplayError> {
    let mut events = Vec::new();
    let mut origins = 0;
    for id in store.event_ids()? {
        if let Some(e) = store.event(&id)? {
            origins += e.origins.len();
            events.push(e);
        }
    }
    let files = EventFiles::new(events_dir, EVENT_FILE_EXTENSION, render_event)?;
    for e in &events {
        let text = render_event(e).map_err(|message| PublishError::Encode {
            what: e.id.clone(),
            message,
        })?;
        write_atomic(&files.path_of(&e.id), text.as_bytes())?;
    }
    // The catalog: each located event once, with its final (latest) origin, in time order.
    let mut finals: Vec<Event> = events
        .iter()
        .filter_map(|e| {
            let o = e.preferred()?.clone();
            Some(Event {
                id: e.id.clone(),
                picks: e.picks.clone(),
                origins: vec![o],
                preferred_origin: Some(0),
            })
        })
        .collect();
    finals.sort_by(|a, b| {
        let t = |e: &Event| e.origins[0].time;
        t(a).cmp(&t(b)).then_with(|| a.id.cmp(&b.id))
    });
    write_catalog_files(&finals, out)?;
    Ok((events, finals, origins))
}

/// Writes `catalog.csv` and `catalog.xml` of events holding one origin each.
fn write_catalog_files(finals: &[Event], out: &Path) -> Result<(), ReplayError> {
    let rows: Vec<CatalogRow> = finals.iter().filter_map(CatalogRow::from_event).collect();
    let csv_path = out.join(CATALOG_CSV);
    let f = std::fs::File::create(&csv_path).map_err(|source| ReplayError::Io {
        path: csv_path.clone(),
        source,
    })?;
    crate::catalog::csv::write_catalog(std::io::BufWriter::new(f), &rows)
        .map_err(|e| e.in_file(&csv_path))?;
    let xml_path = out.join(CATALOG_QUAKEML);
    let f = std::fs::File::create(&xml_path).map_err(|source| ReplayError::Io {
        path: xml_path.clone(),
        source,
    })?;
    crate::catalog::quakeml::write_quakeml(std::io::BufWriter::new(f), finals)
        .map_err(|e| e.in_file(&xml_path))?;
    Ok(())
}

fn write_rejected(path: &Path, rejected: &[Rejected]) -> Result<(), ReplayError> {
    let mut w = ::csv::Writer::from_path(path)
        .map_err(|e| ReplayError::Internal(format!("{}: {e}", path.display())))?;
    let rows = std::iter::once(["line", "event_id", "field", "message"].map(String::from)).chain(
        rejected.iter().map(|r| {
            [
                r.line.map(|l| l.to_string()).unwrap_or_default(),
                r.event_id.clone().unwrap_or_default(),
                r.field.clone(),
                r.message.clone(),
            ]
        }),
    );
    for row in rows {
        w.write_record(&row)
            .map_err(|e| ReplayError::Internal(format!("{}: {e}", path.display())))?;
    }
    w.flush().map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{parse_utc, Phase, StationCode};

    fn pick(sta: &str, s: u32) -> Pick {
        Pick::new(
            StationCode::new("EK", sta),
            Phase::P,
            parse_utc(&format!("2020-01-01T00:00:{s:02}Z")).unwrap(),
            0.1,
        )
    }

    #[test]
    fn the_archive_grouping_opens_at_min_picks_and_closes_with_the_last() {
        let a: Vec<Pick> = (0..4).map(|i| pick(&format!("A{i}"), i)).collect();
        let b = [pick("B0", 10)];
        let ids: Vec<(&str, &str)> = a
            .iter()
            .map(|p| ("a", p.id.as_str()))
            .chain(b.iter().map(|p| ("b", p.id.as_str())))
            .collect();
        let mut g = ArchiveGrouping::new(ids, 3);
        assert!(g.push(&a[0]).is_empty() && g.push(&a[1]).is_empty());
        let opened = g.push(&a[2]);
        assert_eq!(
            opened,
            vec![EventChange::Opened {
                id: "a".into(),
                pick_ids: a[..3].iter().map(|p| p.id.clone()).collect()
            }]
        );
        let last = g.push(&a[3]);
        assert_eq!(last.len(), 2);
        assert_eq!(last[1], EventChange::Closed { id: "a".into() });
        // a single-pick event opens and closes with its only pick; unknown picks do nothing
        assert_eq!(g.push(&b[0]).len(), 2);
        assert!(g.push(&pick("Z9", 30)).is_empty());
        assert!(g.finish().is_empty());
    }

    #[test]
    fn finish_closes_groups_whose_last_pick_never_came() {
        let a: Vec<Pick> = (0..3).map(|i| pick(&format!("A{i}"), i)).collect();
        let mut g = ArchiveGrouping::new(a.iter().map(|p| ("a", p.id.as_str())), 6);
        g.push(&a[0]);
        let end = g.finish();
        assert_eq!(
            end,
            vec![
                EventChange::Opened {
                    id: "a".into(),
                    pick_ids: vec![a[0].id.clone()]
                },
                EventChange::Closed { id: "a".into() }
            ]
        );
    }

    #[test]
    fn speed_parses_max_and_factors() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("60".parse::<Speed>(), Ok(Speed::Factor(60.0)));
        assert!("0".parse::<Speed>().is_err() && "fast".parse::<Speed>().is_err());
    }
}
