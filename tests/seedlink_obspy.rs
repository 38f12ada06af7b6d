//! Interoperability with a SeedLink client nobody here wrote: ObsPy's
//! `obspy.clients.seedlink.basic_client.Client` reads our playback server, and its samples
//! agree with our own decoding of the archive, sample for sample. Skipped (with a message)
//! only when `python3` cannot import obspy; CI installs it (`.ci/run`).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use eikoloc::domain::{format_utc, parse_utc};
use eikoloc::ingest::seedlink::server::{serve, Archive, ServerConfig};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;
use eikoloc::waveform::synth::{demo_scenario, synthesize, write_archive, WaveformSynthConfig};
use eikoloc::waveform::{merge_records, read_file, Encoding};

fn obspy_available() -> bool {
    Command::new("python3")
        .args(["-c", "import obspy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

const SCRIPT: &str = r#"
import json, sys
from obspy import UTCDateTime
from obspy.clients.seedlink.basic_client import Client
port, stations, t0, t1 = int(sys.argv[1]), sys.argv[2].split(','), UTCDateTime(sys.argv[3]), UTCDateTime(sys.argv[4])
c = Client('127.0.0.1', port, timeout=20)
out = {}
for s in stations:
    net, sta = s.split('_')
    st = c.get_waveforms(net, sta, '', 'HH?', t0, t1)
    for tr in st:
        out.setdefault(tr.id, []).append({'start': tr.stats.starttime.isoformat(), 'rate': tr.stats.sampling_rate,
                                          'data': [int(x) for x in tr.data]})
print(json.dumps(out))
"#;

#[test]
fn obspy_reads_our_server_and_agrees_sample_for_sample() {
    if !obspy_available() {
        eprintln!("SKIPPED: python3 cannot import obspy (pip install obspy); CI installs it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.04, 0.025).unwrap());
    let (stations, events) = demo_scenario(
        2,
        1,
        40.0,
        parse_utc("2024-05-01T10:00:00Z").unwrap(),
        40.0,
        4,
    );
    let cfg = WaveformSynthConfig {
        lead_s: 10.0,
        tail_s: 30.0,
        seed: 4,
        ..Default::default()
    };
    let w = synthesize(&model, &stations, &events, &cfg).unwrap();
    // Steim2 for one station, uncompressed INT32 for the other: both decoders meet both.
    let (a, b): (Vec<_>, Vec<_>) = w
        .traces
        .iter()
        .cloned()
        .partition(|t| t.id.station == "S000");
    write_archive(
        dir.path(),
        &eikoloc::waveform::synth::SynthWaveforms {
            traces: a,
            onsets: vec![],
        },
        Encoding::Steim2,
    )
    .unwrap();
    write_archive(
        dir.path(),
        &eikoloc::waveform::synth::SynthWaveforms {
            traces: b,
            onsets: vec![],
        },
        Encoding::Int32,
    )
    .unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let archive = Arc::new(Archive::load(dir.path()).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(
        listener,
        archive,
        ServerConfig {
            speed: 0.0,
            ..Default::default()
        },
        async move {
            let _ = stop_rx.await;
        },
    ));

    let out = Command::new("timeout")
        .args([
            "120",
            "python3",
            "-c",
            SCRIPT,
            &port.to_string(),
            "XS_S000,XS_S001",
            "2024-05-01T09:00:00",
            "2024-05-01T11:00:00",
        ])
        .output()
        .unwrap();
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap().unwrap();
    assert!(
        out.status.success(),
        "obspy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, Vec<serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap();

    // Our own decoding of the same files.
    let mut ours = BTreeMap::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "mseed") {
            let recs = read_file(&p)
                .unwrap()
                .0
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            for t in merge_records(recs) {
                ours.insert(t.id.to_string(), t);
            }
        }
    }
    assert_eq!(ours.len(), 6);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (id, traces) in &got {
        assert_eq!(
            traces.len(),
            1,
            "{id}: ObsPy saw a gap, so a record is missing"
        );
        let t = &ours[id];
        let data: Vec<f64> = traces[0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(data.len(), t.samples.len(), "{id}: sample count");
        assert_eq!(data, t.samples, "{id}: samples differ");
        let start = parse_utc(traces[0]["start"].as_str().unwrap()).unwrap();
        assert_eq!(format_utc(&start), format_utc(&t.start), "{id}: start time");
        // And both equal what the generator wrote.
        let orig = w.traces.iter().find(|o| &o.id.to_string() == id).unwrap();
        assert_eq!(orig.samples, t.samples);
    }
}
