//! The running service, end to end on loopback: processing latency from the pick that
//! completes an event to its first published origin, and a sustained-rate mode that prints
//! memory, rejects and queue depth every 10 s.
//!
//! Two latencies are reported: to the event's first origin (the preliminary linearized one,
//! published as soon as the event opens) and to its first full posterior (the SVGD run that
//! follows it).
//!
//! The service is the real one (`eikoloc::daemon::run` with the real associator and SVGD
//! locator, listeners on 127.0.0.1:0, as `tests/serve.rs` starts it); a synthetic stream
//! (`eikoloc::daemon::demo::generate`: events, P and S picks with noise, missed and false
//! picks) is sent over TCP as JSON lines, each pick when its arrival time comes on the wall
//! clock, and a stream subscriber receives the origins.
//!
//! Which pick completes an event: the associator is deterministic, so the bench runs a second,
//! identical association over the same picks in the same order beforehand and notes, for each
//! event id, the pick whose push opened it. The service's clock moves only with picks here
//! (`idle_advance_s` is set far away), so both see the same sequence. Latency = arrival of the
//! event's first origin at the subscriber minus the send time of that pick: ingest, association,
//! location, store and publication, with nothing of the association's own waiting (the
//! decision delay is stream time, spent before the completing pick arrives).
//!
//! ```text
//! cargo bench --bench serve_latency                      # latency: demo region, 120 s
//! cargo bench --bench serve_latency -- --sustained       # 500 picks/s for 60 s
//! cargo bench --bench serve_latency -- --sustained --seconds 600 --rate 500   # 10 minutes
//! ```
//!
//! Sustained mode runs on a generated 100-station region (10 x 10 stations, 20 km apart, the
//! demo's velocity model), events spaced to give `--rate` picks/s with 20 % false picks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eikoloc::config::{ResolvedStationConfig, StationConfig};
use eikoloc::daemon::demo::{generate, DemoConfig, DemoRecord};
use eikoloc::daemon::{self, EventChange, Listeners, ResolvedServeConfig};
use eikoloc::domain::OriginMethod;
use eikoloc::ingest::wire::{validate, PickLimits};
use eikoloc::metrics::{unix_now_s, Metrics};
use eikoloc::publish::OriginMessage;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    sustained: bool,
    seconds: f64,
    rate: f64,
}

fn args() -> Args {
    let mut a = Args {
        sustained: false,
        seconds: f64::NAN,
        rate: 500.0,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let num = |j: usize| -> f64 {
            v.get(j)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", v[i]))
        };
        match v[i].as_str() {
            "--sustained" => a.sustained = true,
            "--seconds" => {
                a.seconds = num(i + 1);
                i += 1;
            }
            "--rate" => {
                a.rate = num(i + 1);
                i += 1;
            }
            _ => {} // cargo's own `--bench`
        }
        i += 1;
    }
    if a.seconds.is_nan() {
        // events open about 40 s (the decision delay) after their origin time: latency mode
        // runs long enough for some 40 of them
        a.seconds = if a.sustained { 60.0 } else { 120.0 };
    }
    a
}

/// The repository root: where it was built, or the working directory when the binary runs
/// from a copy of the repository elsewhere.
fn root() -> std::path::PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    if built.join("station-configs").is_dir() {
        built.to_path_buf()
    } else {
        std::env::current_dir().expect("working directory")
    }
}

fn demo_station() -> ResolvedStationConfig {
    let f = root().join("station-configs/demo/config.toml");
    StationConfig::from_file(&f)
        .expect("demo config")
        .resolve(&f)
        .expect("demo config resolves")
}

/// A 10 x 10 station region 20 km apart around the demo origin, with the demo's velocity model,
/// written under `dir`.
fn big_station(dir: &Path) -> ResolvedStationConfig {
    let demo = demo_station();
    let mut csv = String::from("network,station,lat,lon,elev_m\n");
    for iy in 0..10 {
        for ix in 0..10 {
            let g = demo
                .frame
                .to_geo(-90.0 + 20.0 * ix as f64, -90.0 + 20.0 * iy as f64);
            csv.push_str(&format!(
                "XB,B{iy}{ix},{:.5},{:.5},{}\n",
                g.lat_deg,
                g.lon_deg,
                100 * ((ix + iy) % 5)
            ));
        }
    }
    std::fs::write(dir.join("stations.csv"), csv).expect("stations.csv");
    let o = demo.frame.origin();
    let toml = format!(
        "name = \"bench100\"\nstations = \"stations.csv\"\nvelocity = {:?}\n\
         [origin]\nlat_deg = {}\nlon_deg = {}\n\
         [box]\nx_min_km = -110.0\nx_max_km = 110.0\ny_min_km = -110.0\ny_max_km = 110.0\n\
         z_min_km = -3.0\nz_max_km = 40.0\n",
        demo.velocity_file.display().to_string(),
        o.lat_deg,
        o.lon_deg
    );
    let f = dir.join("config.toml");
    std::fs::write(&f, toml).expect("config.toml");
    StationConfig::from_file(&f)
        .expect("bench config")
        .resolve(&f)
        .expect("bench config resolves")
}

/// Resident set size of this process (service and client), MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// Sum of a metric's samples whose line starts with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (station, demo_cfg) = if a.sustained {
        let station = big_station(dir.path());
        // demo::generate picks every station (miss 10 %): 180 true picks per event
        let n_sta = station.station_positions.len() as f64;
        let true_per_event = 2.0 * n_sta * 0.9;
        let true_rate = 0.8 * a.rate;
        let cfg = DemoConfig {
            event_interval_s: true_per_event / true_rate,
            false_picks_per_station_min: 0.2 * a.rate * 60.0 / n_sta,
            ..DemoConfig::default()
        };
        (station, cfg)
    } else {
        (
            demo_station(),
            DemoConfig {
                event_interval_s: 2.0,
                ..DemoConfig::default()
            },
        )
    };
    let n_events = (a.seconds / demo_cfg.event_interval_s).ceil() as usize;
    let start_unix = unix_now_s() + 3.0;
    let (events, records) = generate(&station, &demo_cfg, n_events, start_unix);
    let records: Vec<DemoRecord> = records
        .into_iter()
        .filter(|r| !r.hostile && r.at_s <= a.seconds)
        .collect();

    // The shadow association: which pick opens which event.
    let t_build = Instant::now();
    let mut shadow = daemon::engine::build(&station).expect("engine").association;
    let inventory = station.inventory.clone();
    let now = chrono::Utc::now();
    let mut completing: HashMap<String, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        // checked as the service checks it: at its send time (with `now` for every pick, the
        // limit on future picks cut a stream longer than 300 s short)
        let sent = chrono::DateTime::from_timestamp_micros((1e6 * (start_unix + r.at_s)) as i64)
            .unwrap_or(now);
        let Ok(p) = validate(r.pick.clone(), &inventory, &PickLimits::default(), sent) else {
            continue;
        };
        for c in shadow.push(&p) {
            if let EventChange::Opened { id, .. } = c {
                completing.entry(id).or_insert(i);
            }
        }
    }
    drop(shadow);
    let lines: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let mut l = serde_json::to_vec(&r.pick).expect("json");
            l.push(b'\n');
            l
        })
        .collect();
    let at_s: Vec<f64> = records.iter().map(|r| r.at_s).collect();
    drop(records);
    println!(
        "{} mode: {} stations, {} events, {} picks over {:.0} s ({:.0} picks/s); the shadow association opens {} events (engine built and stream pre-associated in {:.1} s)",
        if a.sustained { "sustained" } else { "latency" },
        station.station_positions.len(),
        events.len(),
        lines.len(),
        a.seconds,
        lines.len() as f64 / a.seconds,
        completing.len(),
        t_build.elapsed().as_secs_f64()
    );

    // The service.
    let mut cfg = ResolvedServeConfig::ephemeral(station.clone(), dir.path());
    cfg.pipeline.idle_advance_s = 1e6;
    if a.sustained {
        cfg.pipeline.locate_threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .saturating_sub(2)
            .max(2);
    }
    let listeners = Listeners::bind(&cfg).await.expect("bind");
    let addrs = listeners.addresses();
    let codes: Vec<_> = station
        .inventory
        .stations()
        .iter()
        .map(|s| s.code.clone())
        .collect();
    let metrics = Metrics::new(&codes);
    let engine = daemon::engine::build(&station).expect("engine");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(daemon::run(
        cfg,
        listeners,
        engine,
        metrics.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));

    // The subscriber: arrival of each event's first origin, and of its first full posterior
    // (the first preliminary one is linearized; the posterior follows as a later version).
    let first_origin: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let first_posterior: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let n_origins = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut sub = TcpStream::connect(addrs.stream).await.expect("subscribe");
    sub.write_all(b"json\n").await.expect("subscribe");
    let sub_task = {
        let first_origin = first_origin.clone();
        let first_posterior = first_posterior.clone();
        let n_origins = n_origins.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(sub).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let t = Instant::now();
                let Ok(m) = serde_json::from_str::<OriginMessage>(&line) else {
                    continue;
                };
                n_origins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if m.origin.method == OriginMethod::Svgd {
                    first_posterior
                        .lock()
                        .unwrap()
                        .entry(m.event_id.clone())
                        .or_insert(t);
                }
                first_origin.lock().unwrap().entry(m.event_id).or_insert(t);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Progress every 10 s (sustained mode).
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reporter = a.sustained.then(|| {
        let (metrics, sent, n_origins) = (metrics.clone(), sent.clone(), n_origins.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let text = http_get(addrs.http, "/metrics").await;
                println!(
                    "  t {:4.0} s  sent {:7}  accepted {:7}  rejected {:4.0}  pick queue {:4.0}  locate queue {:3.0} (running {:1.0}, coalesced {:5.0}, dropped {:5.0}, interval x{:4.1})  publish queue {:3.0}  open events {:3.0}  origins {:6}  RSS {:7.1} MiB",
                    t0.elapsed().as_secs_f64(),
                    sent.load(std::sync::atomic::Ordering::Relaxed),
                    metrics.accepted_count(),
                    metric_sum(&text, "eikoloc_picks_rejected_total"),
                    metric_sum(&text, "eikoloc_queue_depth{queue=\"picks\"}"),
                    metric_sum(&text, "eikoloc_queue_depth{queue=\"locate\"}"),
                    metric_sum(&text, "eikoloc_locate_runs_in_flight"),
                    metric_sum(&text, "eikoloc_locate_coalesced_total"),
                    metric_sum(&text, "eikoloc_locate_dropped_total"),
                    metric_sum(&text, "eikoloc_relocate_interval_factor"),
                    metric_sum(&text, "eikoloc_queue_depth{queue=\"publish\"}"),
                    metric_sum(&text, "eikoloc_events_total{state=\"opened\"}")
                        - metric_sum(&text, "eikoloc_events_total{state=\"closed\"}"),
                    n_origins.load(std::sync::atomic::Ordering::Relaxed),
                    rss_mib()
                );
            }
        })
    });

    // The sender: each pick when its time comes.
    let mut conn = TcpStream::connect(addrs.ingest).await.expect("ingest");
    conn.set_nodelay(true).expect("nodelay");
    let wall0 = Instant::now() + Duration::from_secs_f64((start_unix - unix_now_s()).max(0.0));
    let mut sent_at: Vec<Option<Instant>> = vec![None; lines.len()];
    let mut i = 0;
    let mut lag_max_s: f64 = 0.0;
    while i < lines.len() {
        let due = wall0 + Duration::from_secs_f64(at_s[i].max(0.0));
        tokio::time::sleep_until(due.into()).await;
        // everything due by now goes out, one write per pick
        let now = Instant::now();
        while i < lines.len() && wall0 + Duration::from_secs_f64(at_s[i].max(0.0)) <= now {
            let t = Instant::now();
            conn.write_all(&lines[i]).await.expect("send");
            sent_at[i] = Some(t);
            lag_max_s = lag_max_s.max(
                t.saturating_duration_since(wall0 + Duration::from_secs_f64(at_s[i].max(0.0)))
                    .as_secs_f64(),
            );
            i += 1;
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let send_done = Instant::now();
    // the last events' first origins
    let wait_until = send_done + Duration::from_secs(10);
    while Instant::now() < wait_until {
        let all = {
            let f = first_posterior.lock().unwrap();
            completing.keys().all(|k| f.contains_key(k))
        };
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics_text = http_get(addrs.http, "/metrics").await;
    if let Some(r) = reporter {
        r.abort();
    }

    let latencies = |arrivals: &Mutex<HashMap<String, Instant>>| {
        let f = arrivals.lock().unwrap();
        let mut lat_s: Vec<f64> = Vec::new();
        let mut missing = 0;
        for (id, &i) in &completing {
            match (f.get(id), sent_at[i]) {
                (Some(&arr), Some(sent)) => {
                    lat_s.push(arr.saturating_duration_since(sent).as_secs_f64())
                }
                _ => missing += 1,
            }
        }
        lat_s.sort_by(f64::total_cmp);
        (lat_s, missing)
    };
    println!(
        "  sent {} picks (largest send lag behind schedule {:.1} ms); {} origins received",
        lines.len(),
        1e3 * lag_max_s,
        n_origins.load(std::sync::atomic::Ordering::Relaxed)
    );
    for (what, arrivals) in [
        ("first origin (any method)", &first_origin),
        ("first full posterior (SVGD)", &first_posterior),
    ] {
        let (lat_s, missing) = latencies(arrivals);
        println!(
            "  completing pick -> {what} at the subscriber, {} events ({} without one): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat_s.len(),
            missing,
            1e3 * quantile(&lat_s, 0.5),
            1e3 * quantile(&lat_s, 0.95),
            1e3 * quantile(&lat_s, 0.99),
            1e3 * lat_s.last().copied().unwrap_or(f64::NAN)
        );
    }
    let hist = |name: &str| {
        let count = metric_sum(&metrics_text, &format!("{name}_count"));
        let sum = metric_sum(&metrics_text, &format!("{name}_sum"));
        (count, if count > 0.0 { sum / count } else { f64::NAN })
    };
    let (n_loc, mean_loc) = hist("eikoloc_locate_duration_seconds");
    let (n_pre, mean_pre) = hist("eikoloc_preliminary_duration_seconds");
    let (_, mean_assoc) = hist("eikoloc_association_step_seconds");
    let pto = |kind: &str| {
        let q = |suffix: &str| {
            metric_sum(
                &metrics_text,
                &format!("eikoloc_pick_to_origin_seconds_{suffix}{{kind=\"{kind}\"}}"),
            )
        };
        1e3 * q("sum") / q("count").max(1.0)
    };
    println!(
        "  inside the service: association per pick, mean {:.2} ms; triggering pick received -> origin handed to the stream, mean: first {:.1} ms, first_posterior (from the opening pick) {:.1} ms, update {:.1} ms, final {:.1} ms",
        1e3 * mean_assoc,
        pto("first"),
        pto("first_posterior"),
        pto("update"),
        pto("final")
    );
    println!(
        "  SVGD runs {n_loc:.0}, mean {:.1} ms; preliminary (linearized) solutions {n_pre:.0}, mean {:.1} ms; accepted {}, rejected {:.0}; RSS {:.1} MiB",
        1e3 * mean_loc,
        1e3 * mean_pre,
        metrics.accepted_count(),
        metric_sum(&metrics_text, "eikoloc_picks_rejected_total"),
        rss_mib()
    );
    let stages: Vec<String> = ["store", "stream", "read", "files"]
        .iter()
        .map(|st| {
            let count = metric_sum(
                &metrics_text,
                &format!("eikoloc_publish_stage_seconds_count{{stage=\"{st}\"}}"),
            );
            let sum = metric_sum(
                &metrics_text,
                &format!("eikoloc_publish_stage_seconds_sum{{stage=\"{st}\"}}"),
            );
            format!("{st} {:.2} ms", 1e3 * sum / count.max(1.0))
        })
        .collect();
    println!(
        "  publish stages, mean per origin (in order; the stream goes out after store): {}; locate runs coalesced {:.0}, dropped {:.0}",
        stages.join(", "),
        metric_sum(&metrics_text, "eikoloc_locate_coalesced_total"),
        metric_sum(&metrics_text, "eikoloc_locate_dropped_total")
    );
    drop(conn);
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(120), service).await {
        Ok(Ok(Ok(()))) => {}
        other => println!("  service did not stop cleanly: {other:?}"),
    }
    sub_task.abort();
    drop(dir);
}
