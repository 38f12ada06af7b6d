//! The service end to end on loopback ports: picks in (MessagePack and JSON lines, several
//! clients at once) -> QuakeML files, stream messages and HTTP answers out; hostile frames
//! rejected and counted while good picks flow; a restart in the middle of a stream.
//!
//! These tests exercise the plumbing (ingest, store, pipeline scheduling, publishers, HTTP,
//! shutdown) with a transparent association (picks grouped by the minute they fall in) and a
//! locator that builds its origin from the picks' stations, so every expected output is known
//! exactly. The real associator and SVGD locator are tested in their own modules and in
//! `tests/serve_engine.rs`.

mod serve_support;

use std::time::Duration;

use eikoloc::catalog::quakeml::read_quakeml;
use eikoloc::catalog::PickOptions;
use eikoloc::daemon::ResolvedServeConfig;
use eikoloc::domain::Event;
use eikoloc::ingest::WirePick;
use eikoloc::metrics::RejectReason;
use eikoloc::publish::OriginMessage;
use serve_support::*;
use tokio::io::AsyncWriteExt;

fn config(dir: &std::path::Path) -> ResolvedServeConfig {
    let mut c = ResolvedServeConfig::ephemeral(demo_station(), dir);
    c.pipeline.relocate_slope_s = 0.0;
    c.pipeline.idle_advance_s = 0.3;
    c
}

/// `n` P picks at the first `n` demo stations, `second_s` seconds into `minute`, 0.5 s apart.
fn picks(minute: i64, second_s: f64, n: usize, first_station: usize) -> Vec<WirePick> {
    let st = demo_station();
    (0..n)
        .map(|i| {
            let s = &st.inventory.stations()[first_station + i];
            WirePick {
                v: 1,
                id: None,
                network: s.code.network.clone(),
                station: s.code.station.clone(),
                location: None,
                phase: "P".into(),
                time: None,
                time_s: Some((minute * 60) as f64 + second_s + 0.5 * i as f64),
                uncertainty_s: Some(0.05),
            }
        })
        .collect()
}

fn this_minute() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60) - 5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_in_quakeml_stream_and_http_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let station = cfg.station.clone();
    let svc = start(cfg, engine(&station)).await;
    let mut json_sub = subscribe_json(svc.addrs.stream).await;
    let mut mp_sub = subscribe_msgpack(svc.addrs.stream).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let m = this_minute();
    // Two events, each from its own client and format, sent at the same time.
    let a = picks(m, 10.0, 6, 0);
    let b = picks(m + 1, 20.0, 5, 6);
    tokio::join!(
        send_msgpack(svc.addrs.ingest, &a),
        send_json(svc.addrs.ingest, &b)
    );

    let listed = wait_final(svc.addrs.http, 2, Duration::from_secs(30)).await;
    let ids: Vec<String> = listed
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&format!("ev{m}")) && ids.contains(&format!("ev{}", m + 1)),
        "{ids:?}"
    );

    // The full event over HTTP: every pick, versions 1..n, the last one final.
    let (status, body) = http_get(svc.addrs.http, &format!("/events/ev{m}")).await;
    assert_eq!(status, 200);
    let ev: Event = serde_json::from_str(&body).unwrap();
    assert_eq!(ev.picks.len(), 6);
    let versions: Vec<u32> = ev.origins.iter().map(|o| o.version).collect();
    assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
    assert!(
        ev.origins.last().unwrap().is_final && ev.origins.iter().rev().skip(1).all(|o| !o.is_final)
    );
    assert_eq!(ev.origins.last().unwrap().arrivals.len(), 6);

    // The QuakeML file and the QuakeML endpoint hold the same event, readable by our reader.
    // (The store answers HTTP as soon as a version is stored; the file follows a moment later.)
    let file = dir.path().join("events").join(format!("ev{m}.xml"));
    let (status, http_xml) = http_get(svc.addrs.http, &format!("/events/ev{m}/quakeml")).await;
    assert_eq!(status, 200);
    let xml = eventually(Duration::from_secs(5), || {
        let (file, http_xml) = (file.clone(), http_xml.clone());
        async move {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|x| *x == http_xml)
        }
    })
    .await
    .expect("the QuakeML file holds what /quakeml serves");
    let parsed = read_quakeml(&xml, &PickOptions::default()).unwrap();
    assert_eq!(parsed.records.len(), 1);
    assert_eq!(parsed.records[0].origins.len(), ev.origins.len());
    assert_eq!(parsed.records[0].picks.len(), 6);

    let (status, body) = http_get(svc.addrs.http, &format!("/events/ev{m}/posterior")).await;
    assert_eq!(status, 200);
    let post: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(post["particles"].as_array().unwrap().len(), 2);
    assert_eq!(http_get(svc.addrs.http, "/events/nope").await.0, 404);
    assert_eq!(http_get(svc.addrs.http, "/events?limit=x").await.0, 400);
    let (status, body) = http_get(svc.addrs.http, "/healthz").await;
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (h["events"].as_u64(), h["picks"].as_u64()),
        (Some(2), Some(11))
    );

    // Both subscribers received every origin version of both events, in the same order.
    let total: usize = listed
        .iter()
        .map(|e| e["n_origins"].as_u64().unwrap() as usize)
        .sum();
    let mut from_json = Vec::new();
    let mut from_mp = Vec::new();
    for _ in 0..total {
        let line = tokio::time::timeout(Duration::from_secs(5), json_sub.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        from_json.push(serde_json::from_str::<OriginMessage>(&line).unwrap());
        let msg: OriginMessage =
            tokio::time::timeout(Duration::from_secs(5), read_msgpack(&mut mp_sub))
                .await
                .unwrap()
                .unwrap();
        from_mp.push(msg);
    }
    assert_eq!(from_json, from_mp);
    assert_eq!(from_json.iter().filter(|m| m.origin.is_final).count(), 2);

    let (_, text) = http_get(svc.addrs.http, "/metrics").await;
    assert!(
        text.contains("eikoloc_picks_received_total{phase=\"P\"} 11"),
        "{text}"
    );
    assert!(text.contains("eikoloc_events_total{state=\"closed\"} 2"));
    assert!(text.contains("eikoloc_origins_total{kind=\"final\"} 2"));
    assert!(text.contains("eikoloc_locate_duration_seconds_count"));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_rejected_and_counted_while_good_picks_flow() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let station = cfg.station.clone();
    let svc = start(cfg, engine(&station)).await;
    let addr = svc.addrs.ingest;
    let m = this_minute();
    let good = picks(m, 5.0, 5, 0);

    let hostile = async {
        // MessagePack connection: garbage body, then an unknown station, a NaN time, a pick
        // from the year 3000, a duplicate; then a good pick; then a 1 GB length prefix.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]).await.unwrap();
        let mut w = picks(m, 30.0, 1, 10).remove(0);
        w.station = "NOPE".into();
        s.write_all(&msgpack_frame(&w)).await.unwrap();
        let mut w = picks(m, 31.0, 1, 10).remove(0);
        w.time_s = Some(f64::NAN);
        s.write_all(&msgpack_frame(&w)).await.unwrap();
        let mut w = picks(m, 32.0, 1, 10).remove(0);
        w.time_s = None;
        w.time = Some("3000-01-01T00:00:00Z".into());
        s.write_all(&msgpack_frame(&w)).await.unwrap();
        let w = picks(m - 2, 40.0, 1, 12).remove(0);
        s.write_all(&msgpack_frame(&w)).await.unwrap();
        s.write_all(&msgpack_frame(&w)).await.unwrap();
        s.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
        let _ = s.write_all(&[0u8; 1024]).await; // may meet the close already
                                                 // The service closes the connection on the oversized prefix.
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
        )
        .await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "connection closed after the 1 GB prefix: {r:?}"
        );
        // JSON connection: a broken line, a wrong version, then a good pick.
        send_json_raw(addr, b"{\"v\":1,\"network\":\n{\"v\":7,\"network\":\"EK\",\"station\":\"EK01\",\"phase\":\"P\",\"time_s\":1.0}\n").await;
    };
    tokio::join!(hostile, send_json(addr, &good));

    // Reasons in order, and how many records of each the two hostile connections carry.
    let reasons = [
        RejectReason::Malformed,
        RejectReason::UnknownStation,
        RejectReason::BadTime,
        RejectReason::TimeOutOfRange,
        RejectReason::FrameTooLarge,
        RejectReason::Version,
        RejectReason::Duplicate,
    ];
    let expected: Vec<u64> = vec![2, 1, 1, 1, 1, 1, 1];
    let m2 = svc.metrics.clone();
    let counts = eventually(Duration::from_secs(10), || {
        let m2 = m2.clone();
        let expected = expected.clone();
        async move {
            let got: Vec<u64> = reasons.iter().map(|r| m2.rejected_count(*r)).collect();
            (m2.accepted_count() == 7 && got == expected).then_some(got)
        }
    })
    .await;
    let now: Vec<(RejectReason, u64)> = reasons
        .iter()
        .map(|r| (*r, svc.metrics.rejected_count(*r)))
        .collect();
    assert_eq!(
        counts,
        Some(expected),
        "7 good picks accepted and every hostile record counted by reason: {now:?}"
    );
    // The good picks made their event, located and final.
    let ev = wait_final(svc.addrs.http, 1, Duration::from_secs(30)).await;
    assert_eq!(ev[0]["n_picks"], 5);
    let (_, text) = http_get(svc.addrs.http, "/metrics").await;
    assert!(
        text.contains(r#"eikoloc_picks_rejected_total{phase="P",reason="unknown_station"} 1"#),
        "{text}"
    );
    svc.stop().await;
}

async fn send_json_raw(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = this_minute();
    let all = picks(m, 10.0, 8, 0);
    let station = demo_station();

    // First life: the first 5 picks; the event opens and gets origins, then SIGTERM.
    let mut cfg = config(dir.path());
    cfg.pipeline.idle_advance_s = 1000.0;
    let svc = start(cfg, engine(&station)).await;
    send_json(svc.addrs.ingest, &all[..5]).await;
    let m2 = svc.metrics.clone();
    eventually(Duration::from_secs(10), || {
        let m2 = m2.clone();
        async move { (m2.accepted_count() == 5).then_some(()) }
    })
    .await
    .unwrap();
    // Stop at once (the idle close is far away, so the event is still open): the pipeline
    // must still store and publish an origin with all 5 picks.
    svc.stop().await;

    let store = eikoloc::store::Store::open(&dir.path().join("eikoloc.sqlite")).unwrap();
    let e = store
        .event(&format!("ev{m}"))
        .unwrap()
        .expect("event stored before the stop");
    assert_eq!(e.picks.len(), 5);
    assert_eq!(
        e.origins.last().unwrap().arrivals.len(),
        5,
        "the stop located the last picks"
    );
    assert!(!e.origins.last().unwrap().is_final);
    let versions_before = e.origins.len();
    drop(store);

    // Second life: the rest of the stream, including one pick sent again.
    let mut cfg = config(dir.path());
    cfg.pipeline.idle_advance_s = 0.3;
    let svc = start(cfg, engine(&station)).await;
    send_json(svc.addrs.ingest, &all[4..]).await;
    let ev = wait_final(svc.addrs.http, 1, Duration::from_secs(30)).await;
    assert_eq!(
        ev.len(),
        1,
        "the same event resumed, none duplicated: {ev:?}"
    );
    let (_, body) = http_get(svc.addrs.http, &format!("/events/ev{m}")).await;
    let e: Event = serde_json::from_str(&body).unwrap();
    assert_eq!(e.picks.len(), 8, "every pick of both lives");
    assert!(e.origins.len() > versions_before);
    let versions: Vec<u32> = e.origins.iter().map(|o| o.version).collect();
    assert_eq!(
        versions,
        (1..=versions.len() as u32).collect::<Vec<_>>(),
        "versions continue without gaps or repeats"
    );
    assert_eq!(e.origins.last().unwrap().arrivals.len(), 8);
    assert_eq!(svc.metrics.rejected_count(RejectReason::Duplicate), 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relocation_waits_for_the_throttle_and_the_final_origin_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // scautoloc-style a * N + b: with 100 s per pick no relocation can come during the test.
    cfg.pipeline.relocate_slope_s = 100.0;
    cfg.pipeline.idle_advance_s = 1.0;
    let station = cfg.station.clone();
    let svc = start(cfg, engine(&station)).await;
    let m = this_minute();
    send_json(svc.addrs.ingest, &picks(m, 10.0, 8, 0)).await;
    wait_final(svc.addrs.http, 1, Duration::from_secs(30)).await;
    let (_, body) = http_get(svc.addrs.http, &format!("/events/ev{m}")).await;
    let e: Event = serde_json::from_str(&body).unwrap();
    let shape: Vec<(u32, usize, bool)> = e
        .origins
        .iter()
        .map(|o| (o.version, o.arrivals.len(), o.is_final))
        .collect();
    // The first origin at once from the 4 opening picks; the 4 later picks wait for the final.
    assert_eq!(shape, vec![(1, 4, false), (2, 8, true)]);
    svc.stop().await;
}
