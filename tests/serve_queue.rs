//! The locate queue on loopback: a preliminary origin first, then the posterior as the next
//! version; when runs wait for a locate thread, a queued run takes the newer picks instead of
//! queueing another (coalescing), the queue stays within its bound by dropping relocations and
//! first posteriors, and every event still gets its final origin with every pick.
//!
//! Plumbing engine (`serve_support`): picks grouped by minute, an origin from the picking
//! stations, full runs that sleep to make the pool busy.

mod serve_support;

use std::time::Duration;

use eikoloc::daemon::ResolvedServeConfig;
use eikoloc::domain::{Event, OriginMethod};
use eikoloc::ingest::WirePick;
use eikoloc::publish::OriginMessage;
use serve_support::*;

fn config(dir: &std::path::Path) -> ResolvedServeConfig {
    let mut c = ResolvedServeConfig::ephemeral(demo_station(), dir);
    c.pipeline.relocate_slope_s = 0.0;
    c.pipeline.idle_advance_s = 0.5;
    c
}

/// `n` P picks of the event of `minute` at the first `n` demo stations, 0.5 s apart.
fn picks(minute: i64, n: usize) -> Vec<WirePick> {
    let st = demo_station();
    (0..n)
        .map(|i| {
            let s = &st.inventory.stations()[i];
            WirePick {
                v: 1,
                id: None,
                network: s.code.network.clone(),
                station: s.code.station.clone(),
                location: None,
                phase: "P".into(),
                time: None,
                time_s: Some((minute * 60) as f64 + 10.0 + 0.5 * i as f64),
                uncertainty_s: Some(0.05),
            }
        })
        .collect()
}

fn first_minute() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60) - 10
}

async fn event(addr: std::net::SocketAddr, id: &str) -> Event {
    let (status, body) = http_get(addr, &format!("/events/{id}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preliminary_origin_is_published_first_and_the_posterior_follows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let station = cfg.station.clone();
    let svc = start(cfg, slow_engine(&station, 100)).await;
    let mut sub = subscribe_json(svc.addrs.stream).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = first_minute();
    send_json(svc.addrs.ingest, &picks(m, 6)).await;
    wait_final(svc.addrs.http, 1, Duration::from_secs(60)).await;

    // The stream, in order: the preliminary at the 4 opening picks, then full posteriors, the
    // last one final with all 6 picks.
    let mut got: Vec<OriginMessage> = Vec::new();
    while got.last().is_none_or(|m| !m.origin.is_final) {
        let line = tokio::time::timeout(Duration::from_secs(10), sub.next_line())
            .await
            .expect("stream message within 10 s")
            .unwrap()
            .unwrap();
        got.push(serde_json::from_str(&line).unwrap());
    }
    let shape: Vec<(u32, OriginMethod, usize)> = got
        .iter()
        .map(|m| (m.origin.version, m.origin.method, m.origin.arrivals.len()))
        .collect();
    assert_eq!(shape[0], (1, OriginMethod::Linearized, 4), "{shape:?}");
    assert_eq!(shape[1].0, 2, "{shape:?}");
    assert!(
        shape[1..].iter().all(|s| s.1 == OriginMethod::Svgd),
        "{shape:?}"
    );
    assert_eq!(shape.last().unwrap().2, 6, "{shape:?}");
    let versions: Vec<u32> = shape.iter().map(|s| s.0).collect();
    assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());

    // The QuakeML file says which is which; the store keeps both.
    let ev = event(svc.addrs.http, &format!("ev{m}")).await;
    assert_eq!(ev.origins.len(), got.len());
    assert_eq!(ev.origins[0].method, OriginMethod::Linearized);
    let file = dir.path().join("events").join(format!("ev{m}.xml"));
    let xml = eventually(Duration::from_secs(5), || {
        let file = file.clone();
        async move {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|x| x.contains("<evaluationStatus>final"))
        }
    })
    .await
    .expect("the final QuakeML file");
    assert_eq!(xml.matches("smi:eikoloc/method/linearized").count(), 1);
    assert!(xml.contains("preliminary linearized origin"));
    assert_eq!(
        xml.matches("smi:eikoloc/method/svgd").count(),
        got.len() - 1
    );
    let metrics = svc.metrics.render();
    assert!(
        metrics.contains(r#"eikoloc_origins_total{kind="first_posterior"} 1"#),
        "{metrics}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locate_queue_coalesces_stays_bounded_and_never_loses_a_final_origin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // One thread, 150 ms per run, room for one waiting run: six events of 10 picks sent at
    // once cannot all be located as their picks come.
    cfg.pipeline.locate_threads = 1;
    cfg.pipeline.locate_queue = 1;
    let station = cfg.station.clone();
    let svc = start(cfg, slow_engine(&station, 150)).await;
    let m = first_minute();
    let all: Vec<WirePick> = (0..6).flat_map(|k| picks(m + k, 10)).collect();
    send_json(svc.addrs.ingest, &all).await;
    wait_final(svc.addrs.http, 6, Duration::from_secs(60)).await;

    let mut total_origins = 0;
    for k in 0..6 {
        let ev = event(svc.addrs.http, &format!("ev{}", m + k)).await;
        let shape: Vec<(u32, OriginMethod, usize, bool)> = ev
            .origins
            .iter()
            .map(|o| (o.version, o.method, o.arrivals.len(), o.is_final))
            .collect();
        // The preliminary at once, whatever the queue holds.
        assert_eq!(
            shape[0],
            (1, OriginMethod::Linearized, 4, false),
            "ev{}: {shape:?}",
            m + k
        );
        // Exactly one final origin, the latest version, with every pick.
        let last = shape.last().unwrap();
        assert!(last.3 && last.2 == 10, "ev{}: {shape:?}", m + k);
        assert_eq!(shape.iter().filter(|s| s.3).count(), 1, "{shape:?}");
        let versions: Vec<u32> = shape.iter().map(|s| s.0).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
        total_origins += shape.len();
    }
    // 60 picks, each of which changed an event: without coalescing up to 60 full runs; with
    // it, the preliminaries plus a few runs per event.
    assert!(total_origins <= 6 * 4, "{total_origins} origins");
    let text = svc.metrics.render();
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        sum("eikoloc_locate_coalesced_total") > 0.0,
        "queued runs took newer picks: {text}"
    );
    assert!(
        sum("eikoloc_locate_dropped_total") > 0.0,
        "the queue bound dropped relocations: {text}"
    );
    assert_eq!(sum(r#"eikoloc_origins_total{kind="final"}"#), 6.0);
    assert_eq!(sum("eikoloc_queue_depth{queue=\"locate\"}"), 0.0);
    svc.stop().await;
}
