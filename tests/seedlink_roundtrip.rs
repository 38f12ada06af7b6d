//! Our SeedLink client against our playback server and against misbehaving fake servers
//! (corrupt records, disconnects, stalls), all on 127.0.0.1:0 and bounded in time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eikoloc::domain::time::{add_seconds, seconds_between};
use eikoloc::domain::{parse_utc, Phase};
use eikoloc::ingest::seedlink::client::{
    self, ClientConfig, ClientStats, ReceivedRecord, ResumeState, StationRequest,
};
use eikoloc::ingest::seedlink::pipeline::spawn_pick_source;
use eikoloc::ingest::seedlink::protocol::data_header;
use eikoloc::ingest::seedlink::server::{serve, Archive, ServerConfig};
use eikoloc::picker::PickerSettings;
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;
use eikoloc::waveform::synth::{
    demo_scenario, synthesize, write_archive, SynthWaveforms, WaveformSynthConfig,
};
use eikoloc::waveform::{read_file, Encoding};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const T0: &str = "2024-05-01T10:00:00Z";

fn make_archive(dir: &Path, lead_s: f64, tail_s: f64) -> SynthWaveforms {
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.04, 0.025).unwrap());
    let (stations, events) = demo_scenario(3, 2, 40.0, parse_utc(T0).unwrap(), 40.0, 2);
    let cfg = WaveformSynthConfig {
        snr: 20.0,
        lead_s,
        tail_s,
        seed: 2,
        ..Default::default()
    };
    let w = synthesize(&model, &stations, &events, &cfg).unwrap();
    write_archive(dir, &w, Encoding::Steim2).unwrap();
    w
}

/// Raw records of the archive per station key, in file order per channel.
fn archive_records(dir: &Path) -> BTreeMap<String, HashSet<Vec<u8>>> {
    let mut out: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "mseed") {
            for (raw, r) in read_file(&p).unwrap().0 {
                out.entry(format!("{}_{}", r.trace.id.network, r.trace.id.station))
                    .or_default()
                    .insert(raw);
            }
        }
    }
    out
}

async fn start_server(dir: &Path, speed: f64) -> (String, oneshot::Sender<()>) {
    let archive = Arc::new(Archive::load(dir).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        archive,
        ServerConfig {
            speed,
            ..Default::default()
        },
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

fn stations() -> Vec<StationRequest> {
    (0..3)
        .map(|i| StationRequest::parse(&format!("XS_S{i:03}")).unwrap())
        .collect()
}

fn quick(cfg: &mut ClientConfig) {
    cfg.backoff_min_s = 0.05;
    cfg.backoff_max_s = 0.2;
    cfg.reply_timeout_s = 2.0;
    cfg.state_interval_s = 0.0;
}

async fn collect(mut rx: mpsc::Receiver<ReceivedRecord>) -> Vec<ReceivedRecord> {
    let mut v = Vec::new();
    while let Some(r) = rx.recv().await {
        v.push(r);
    }
    v
}

#[tokio::test]
async fn client_gets_every_record_of_a_time_window_intact_and_picks_follow() {
    let dir = tempfile::tempdir().unwrap();
    let w = make_archive(dir.path(), 15.0, 30.0);
    let (addr, _stop) = start_server(dir.path(), 0.0).await;
    let mut cfg = ClientConfig::new(&addr, stations());
    cfg.begin_time = Some(parse_utc("2024-05-01T09:00:00Z").unwrap());
    cfg.end_time = Some(parse_utc("2024-05-01T11:00:00Z").unwrap());
    quick(&mut cfg);
    let (tx, rx) = mpsc::channel(16);
    let stats = Arc::new(ClientStats::default());
    let run = tokio::spawn(client::run(
        cfg.clone(),
        tx,
        stats.clone(),
        std::future::pending(),
    ));
    let got = tokio::time::timeout(Duration::from_secs(60), collect(rx))
        .await
        .unwrap();
    let state = run.await.unwrap().unwrap();
    let mut by_station: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
    for r in &got {
        by_station
            .entry(format!(
                "{}_{}",
                r.record.trace.id.network, r.record.trace.id.station
            ))
            .or_default()
            .insert(r.raw.clone());
    }
    let expected = archive_records(dir.path());
    assert_eq!(
        got.len(),
        expected.values().map(HashSet::len).sum::<usize>(),
        "no record lost or repeated"
    );
    assert_eq!(by_station, expected);
    assert_eq!(state.last.len(), 3);
    // Sequence numbers per station are 1..n in order.
    for (k, set) in &expected {
        assert_eq!(state.last[k] as usize, set.len());
    }

    // The same window through the picking pipeline: every P onset picked within 0.1 s.
    let src =
        spawn_pick_source(cfg, PickerSettings::default(), 64, std::future::pending()).unwrap();
    let mut picks = Vec::new();
    let mut rx = src.picks;
    while let Some(p) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap()
    {
        picks.push(p);
    }
    for o in w.onsets.iter().filter(|o| o.phase == Phase::P) {
        assert!(
            picks.iter().any(|p| p.phase == Phase::P
                && p.station == o.station
                && seconds_between(&o.time, &p.time).abs() < 0.1),
            "P at {} {:?} not picked; picks {picks:?}",
            o.station,
            o.time
        );
    }
}

#[tokio::test]
async fn resume_from_state_file_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_archive(dir.path(), 10.0, 20.0);
    let (addr, _stop) = start_server(dir.path(), 0.0).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("seedlink.state");
    let mut cfg = ClientConfig::new(&addr, stations());
    cfg.begin_time = Some(parse_utc("2024-05-01T09:00:00Z").unwrap());
    cfg.state_file = Some(state_file.clone());
    quick(&mut cfg);

    // First run: stop after 40 records (shutdown, as a service restart would).
    let (tx, mut rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stats = Arc::new(ClientStats::default());
    let run = tokio::spawn(client::run(cfg.clone(), tx, stats.clone(), async move {
        let _ = stop_rx.await;
    }));
    let mut got = Vec::new();
    while got.len() < 40 {
        got.push(
            tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    stop_tx.send(()).unwrap();
    let state1 = run.await.unwrap().unwrap();
    // Records already handed to the channel are delivered: drain them.
    got.extend(collect(rx).await);
    assert_eq!(ResumeState::load(&state_file).unwrap(), state1);

    // Second run: stations in the state resume with DATA <next sequence>; the link stays
    // open (live), so stop once every record is in.
    let (tx, rx) = mpsc::channel(16);
    let run = tokio::spawn(client::run(cfg, tx, stats.clone(), std::future::pending()));
    let expected = archive_records(dir.path());
    let total: usize = expected.values().map(HashSet::len).sum();
    let mut rx = rx;
    while got.len() < total {
        got.push(
            tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("record within 30 s")
                .unwrap(),
        );
    }
    run.abort();
    let raws: Vec<&Vec<u8>> = got.iter().map(|r| &r.raw).collect();
    let unique: HashSet<&Vec<u8>> = raws.iter().copied().collect();
    assert_eq!(unique.len(), raws.len(), "a record was delivered twice");
    assert_eq!(unique.len(), total, "a record was lost");
}

#[tokio::test]
async fn accelerated_playback_publishes_records_at_the_playback_clock() {
    let dir = tempfile::tempdir().unwrap();
    let w = make_archive(dir.path(), 0.0, 0.0);
    let span_s = seconds_between(&w.traces[0].start, &w.traces[0].end());
    let speed = span_s / 2.0; // the whole archive plays in about 2 s
    let (addr, _stop) = start_server(dir.path(), speed).await;
    let mut cfg = ClientConfig::new(&addr, stations());
    cfg.begin_time = Some(add_seconds(&w.traces[0].start, -1.0));
    cfg.end_time = Some(add_seconds(&w.traces[0].end(), 1.0));
    quick(&mut cfg);
    let (tx, rx) = mpsc::channel(16);
    let t = std::time::Instant::now();
    tokio::spawn(client::run(
        cfg,
        tx,
        Arc::new(ClientStats::default()),
        std::future::pending(),
    ));
    let got = tokio::time::timeout(Duration::from_secs(30), collect(rx))
        .await
        .unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    assert_eq!(
        got.len(),
        archive_records(dir.path())
            .values()
            .map(HashSet::len)
            .sum::<usize>()
    );
    assert!(
        elapsed > 1.5 && elapsed < 10.0,
        "playback of {span_s:.0} s at {speed:.0}x took {elapsed:.2} s"
    );
}

/// A fake server: answers the negotiation with OK, records the action commands it was sent,
/// then runs `script` for the connection number.
async fn fake_server<F, Fut>(script: F) -> (String, mpsc::UnboundedReceiver<Vec<String>>)
where
    F: Fn(usize, tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let script = Arc::new(script);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((sock, _)) = listener.accept().await {
            let (script, cmd_tx) = (script.clone(), cmd_tx.clone());
            // Each connection on its own task: a stalled one must not block the next.
            tokio::spawn(async move {
                let mut rd = BufReader::new(sock);
                let mut cmds = Vec::new();
                loop {
                    let mut line = String::new();
                    if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim().to_string();
                    if line == "END" {
                        break;
                    }
                    let reply: &[u8] = if line == "HELLO" {
                        b"SeedLink v3.1 fake\r\nfake\r\n"
                    } else {
                        b"OK\r\n"
                    };
                    rd.get_mut().write_all(reply).await.unwrap();
                    cmds.push(line);
                }
                let _ = cmd_tx.send(cmds);
                script(n, rd.into_inner()).await;
            });
            n += 1;
        }
    });
    (addr, cmd_rx)
}

fn frames(records: &[Vec<u8>], first_seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        out.extend_from_slice(&data_header(first_seq + i as u32));
        out.extend_from_slice(r);
    }
    out
}

fn one_station_records() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    make_archive(dir.path(), 5.0, 5.0);
    read_file(&dir.path().join("XS.S000..HHZ.mseed"))
        .unwrap()
        .0
        .into_iter()
        .map(|(raw, _)| raw)
        .take(12)
        .collect()
}

#[tokio::test]
async fn corrupt_record_and_disconnect_are_counted_and_the_link_resumes() {
    let recs = Arc::new(one_station_records());
    let r2 = recs.clone();
    let (addr, mut cmds) = fake_server(move |n, mut sock| {
        let recs = r2.clone();
        async move {
            if n == 0 {
                // 5 good records, one corrupt (bad quality byte), 1 good, then hang up.
                let mut bad = recs[5].clone();
                bad[6] = b'#';
                let mut data = frames(&recs[..5], 1);
                data.extend_from_slice(&frames(&[bad, recs[6].clone()], 6));
                sock.write_all(&data).await.unwrap();
            } else {
                sock.write_all(&frames(&recs[7..], 8)).await.unwrap();
                sock.write_all(b"END").await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    })
    .await;
    let mut cfg = ClientConfig::new(&addr, vec![StationRequest::parse("XS_S000").unwrap()]);
    quick(&mut cfg);
    let (tx, rx) = mpsc::channel(4);
    let stats = Arc::new(ClientStats::default());
    tokio::spawn(client::run(cfg, tx, stats.clone(), std::future::pending()));
    let got = tokio::time::timeout(Duration::from_secs(20), collect(rx))
        .await
        .unwrap();
    let seqs: Vec<u32> = got.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]);
    assert_eq!(ClientStats::get(&stats.corrupt_records), 1);
    assert_eq!(ClientStats::get(&stats.link_failures), 1);
    assert_eq!(cmds.recv().await.unwrap().last().unwrap(), "DATA");
    // Resumed right after the last record seen, the corrupt one included.
    assert_eq!(cmds.recv().await.unwrap().last().unwrap(), "DATA 000008");
}

#[tokio::test]
async fn a_stalled_server_times_out_and_the_client_resumes() {
    let recs = Arc::new(one_station_records());
    let r2 = recs.clone();
    let (addr, mut cmds) = fake_server(move |n, mut sock| {
        let recs = r2.clone();
        async move {
            if n == 0 {
                // Three records and half a frame, then silence with the socket open.
                let mut data = frames(&recs[..4], 1);
                data.truncate(3 * 520 + 100);
                sock.write_all(&data).await.unwrap();
                tokio::time::sleep(Duration::from_secs(30)).await;
            } else {
                sock.write_all(&frames(&recs[3..], 4)).await.unwrap();
                sock.write_all(b"END").await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    })
    .await;
    let mut cfg = ClientConfig::new(&addr, vec![StationRequest::parse("XS_S000").unwrap()]);
    quick(&mut cfg);
    cfg.keepalive_s = 0.2;
    cfg.idle_timeout_s = 0.6;
    cfg.reply_timeout_s = 0.6;
    let (tx, rx) = mpsc::channel(4);
    let stats = Arc::new(ClientStats::default());
    tokio::spawn(client::run(cfg, tx, stats.clone(), std::future::pending()));
    let got = tokio::time::timeout(Duration::from_secs(20), collect(rx))
        .await
        .unwrap();
    let seqs: Vec<u32> = got.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<u32>>());
    assert!(ClientStats::get(&stats.timeouts) >= 1);
    let _ = cmds.recv().await;
    assert_eq!(cmds.recv().await.unwrap().last().unwrap(), "DATA 000004");
}

#[tokio::test]
async fn keepalive_is_answered_by_our_server_with_info_frames() {
    let dir = tempfile::tempdir().unwrap();
    make_archive(dir.path(), 5.0, 5.0);
    let (addr, _stop) = start_server(dir.path(), 0.0).await;
    // DATA without sequence: live only, and at speed 0 everything is old: the link is quiet.
    let mut cfg = ClientConfig::new(&addr, vec![StationRequest::parse("XS_S000").unwrap()]);
    quick(&mut cfg);
    cfg.keepalive_s = 0.2;
    cfg.idle_timeout_s = 5.0;
    let (tx, _rx) = mpsc::channel(4);
    let stats = Arc::new(ClientStats::default());
    let run = tokio::spawn(client::run(cfg, tx, stats.clone(), std::future::pending()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run.abort();
    assert!(ClientStats::get(&stats.info_frames) >= 2, "{:?}", stats);
    assert_eq!(ClientStats::get(&stats.link_failures), 0);
}

#[test]
fn archive_with_a_corrupt_record_loads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    make_archive(dir.path(), 5.0, 5.0);
    let p = dir.path().join("XS.S000..HHZ.mseed");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[512 + 6] = b'#';
    bytes.extend_from_slice(&[7u8; 100]); // truncated trailing record
    std::fs::write(&p, bytes).unwrap();
    let a = Archive::load(dir.path()).unwrap();
    assert_eq!(a.stats.records_bad, 2);
    assert!(a.record_count() > 10);
    assert!(Archive::load(tempfile::tempdir().unwrap().path()).is_err());
}
