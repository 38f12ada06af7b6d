//! A real Prometheus server (Debian package `prometheus`; CI installs it) scrapes the running
//! service on loopback and evaluates `deploy/alerts.yml`: the scrape must see our counters,
//! every rule must evaluate without error, and the station-silent alert must be pending for
//! a station that sent nothing and not for one that did.
//!
//! Skipped, with a message, only when no `prometheus` binary is on PATH.

mod serve_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use eikoloc::daemon::ResolvedServeConfig;
use eikoloc::ingest::WirePick;
use serve_support::*;

fn prometheus_binary() -> Option<String> {
    let ok = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success());
    matches!(ok, Ok(true)).then(|| "prometheus".to_string())
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(prom: std::net::SocketAddr, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(prom, path).await;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_service_and_evaluates_the_alert_rules() {
    let Some(bin) = prometheus_binary() else {
        eprintln!("SKIPPED: no `prometheus` binary on PATH (apt-get install -y prometheus); CI installs it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let station = demo_station();
    let mut cfg = ResolvedServeConfig::ephemeral(station.clone(), dir.path());
    cfg.pipeline.relocate_slope_s = 0.0;
    cfg.pipeline.idle_advance_s = 0.3;
    let svc = start(cfg, engine(&station)).await;

    // Three P picks from EK01 (accepted) and one from an unknown station (rejected).
    let s = &station.inventory.stations()[0].code;
    let now = chrono::Utc::now().timestamp() as f64;
    let mut picks: Vec<WirePick> = (0..3)
        .map(|i| WirePick {
            v: 1,
            id: None,
            network: s.network.clone(),
            station: s.station.clone(),
            location: None,
            phase: "P".into(),
            time: None,
            time_s: Some(now - 100.0 + i as f64 * 30.0),
            uncertainty_s: Some(0.05),
        })
        .collect();
    let mut bad = picks[0].clone();
    bad.station = "NOPE".into();
    picks.push(bad);
    send_json(svc.addrs.ingest, &picks).await;

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/alerts.yml");
    let prom_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: eikoloc\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            svc.addrs.http
        ),
    )
    .unwrap();
    let _prom = Child(
        Command::new(bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    let value = eventually(Duration::from_secs(60), || async {
        let v = query(
            prom_port,
            "/api/v1/query?query=eikoloc_picks_received_total%7Bphase%3D%22P%22%7D",
        )
        .await?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        r["value"][1].as_str().map(str::to_string)
    })
    .await
    .expect("prometheus scraped eikoloc_picks_received_total within 60 s");
    assert_eq!(value, "3");
    let rejected = eventually(Duration::from_secs(20), || async {
        let v = query(prom_port, "/api/v1/query?query=sum(eikoloc_picks_rejected_total%7Breason%3D%22unknown_station%22%7D)").await?;
        v["data"]["result"].as_array()?.first()?["value"][1].as_str().map(str::to_string)
    })
    .await
    .unwrap();
    assert_eq!(rejected, "1");

    // Every rule evaluated, none in error.
    let groups = eventually(Duration::from_secs(30), || async {
        let v = query(prom_port, "/api/v1/rules").await?;
        let groups = v["data"]["groups"].as_array()?.clone();
        let rules: Vec<&serde_json::Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = !rules.is_empty()
            && rules.iter().all(|r| {
                r["health"] == "ok"
                    && r["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"))
            });
        evaluated.then_some(rules.len())
    })
    .await
    .expect("every alert rule evaluated with health ok");
    assert_eq!(groups, 5);

    // Station-silent: pending for a station that never sent a pick, not for EK01.
    let pending = eventually(Duration::from_secs(30), || async {
        let v = query(prom_port, "/api/v1/alerts").await?;
        let alerts = v["data"]["alerts"].as_array()?.clone();
        let silent: Vec<String> = alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "EikolocStationSilent")
            .filter_map(|a| a["labels"]["station"].as_str().map(str::to_string))
            .collect();
        (!silent.is_empty()).then_some(silent)
    })
    .await
    .expect("station-silent alerts pending");
    let last = station
        .inventory
        .stations()
        .last()
        .unwrap()
        .code
        .to_string();
    assert!(pending.contains(&last), "{pending:?}");
    assert!(!pending.contains(&s.to_string()), "{pending:?}");
    svc.stop().await;
}
