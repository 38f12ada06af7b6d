//! `eikoloc serve`: the streaming service (see `eikoloc::daemon`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use eikoloc::config::{StationConfig, CONFIG_FILE_NAME};
use eikoloc::daemon::demo::{self, DemoConfig};
use eikoloc::daemon::{self, Listeners, ResolvedServeConfig, ServeConfig};
use eikoloc::metrics::Metrics;
use tokio::io::AsyncWriteExt;

/// Arguments of `eikoloc serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Service configuration (TOML; see deploy/serve.toml).
    #[arg(required_unless_present = "demo")]
    config: Option<PathBuf>,
    /// Validate the configuration (and the station configuration it names), then exit.
    #[arg(long, requires = "config")]
    check: bool,
    /// Run on the bundled demo region and feed it a synthetic live pick stream.
    #[arg(long, conflicts_with = "check")]
    demo: bool,
    /// With --demo: stop after this many synthetic events (default: run until stopped).
    #[arg(long, requires = "demo")]
    demo_events: Option<usize>,
    /// Pick ingest address (overrides the configuration).
    #[arg(long)]
    ingest: Option<SocketAddr>,
    /// HTTP API address (overrides the configuration).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Origin stream address (overrides the configuration).
    #[arg(long)]
    stream: Option<SocketAddr>,
    /// Static station-terms file applied to every located event (overrides the
    /// configuration's `terms`); terms of unknown stations are ignored with a warning.
    #[arg(long)]
    terms: Option<PathBuf>,
    /// Where the locator's traveltimes come from: `auto` (the station config's trained
    /// network when its folder holds one, else the exact 1-D solver), `network` (the
    /// network; an error when there is none) or `exact`. Either is tabulated once at start.
    #[arg(long, default_value = "auto", value_parser = ["auto", "network", "exact"])]
    traveltimes: String,
}

/// The locator's traveltime engine for `config` by `--traveltimes`, with a line saying which.
fn locator_traveltimes(
    config: &ResolvedServeConfig,
    choice: &str,
) -> Result<(
    std::sync::Arc<dyn eikoloc::traveltime::TraveltimeModel>,
    String,
)> {
    let exact = || -> std::sync::Arc<dyn eikoloc::traveltime::TraveltimeModel> {
        std::sync::Arc::new(eikoloc::traveltime::LayeredExact::new(
            config.station.velocity.clone(),
        ))
    };
    if choice == "exact" {
        return Ok((exact(), "exact 1-D solver (--traveltimes exact)".into()));
    }
    match daemon::engine::configured_network(&config.station).map_err(anyhow::Error::msg)? {
        Some(net) => {
            let m = net.manifest();
            let p99 = m
                .validation
                .as_ref()
                .map(|v| {
                    v.phases
                        .iter()
                        .map(|e| format!("{} p99 {:.1} ms", e.phase, e.p99_abs_s * 1e3))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "not validated".into());
            let what = format!("network {} ({p99})", net.dir().display());
            Ok((std::sync::Arc::new(net), what))
        }
        None if choice == "network" => anyhow::bail!(
            "--traveltimes network: region {} has no trained network{} (train one with \
             `eikoloc train --config DIR`)",
            config.station.name,
            config
                .station
                .model_dir
                .as_ref()
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default()
        ),
        None => Ok((
            exact(),
            match &config.station.model_dir {
                Some(d) => format!(
                    "exact 1-D solver (no trained network in {} yet)",
                    d.display()
                ),
                None => "exact 1-D solver (the station config names no trained network)".into(),
            },
        )),
    }
}

fn demo_station_dir() -> PathBuf {
    let here = Path::new("station-configs/demo");
    if here.join(CONFIG_FILE_NAME).is_file() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("station-configs/demo")
    }
}

fn load(args: &Args) -> Result<ResolvedServeConfig> {
    let mut config = if args.demo {
        let f = demo_station_dir().join(CONFIG_FILE_NAME);
        let station = StationConfig::from_file(&f)
            .and_then(|c| c.resolve(&f))
            .context("bundled demo region")?;
        let dir = std::env::temp_dir().join(format!("eikoloc-demo-{}", std::process::id()));
        let mut c = ResolvedServeConfig::ephemeral(station, &dir);
        c.ingest_addr = "127.0.0.1:7400".parse()?;
        c.stream_addr = "127.0.0.1:7401".parse()?;
        c.http_addr = "127.0.0.1:7480".parse()?;
        c.pipeline.idle_advance_s = 5.0;
        c
    } else {
        let file = args
            .config
            .as_deref()
            .context("a configuration file is required")?;
        ServeConfig::from_file(file)?.resolve(file)?
    };
    if let Some(a) = args.ingest {
        config.ingest_addr = a;
    }
    if let Some(a) = args.http {
        config.http_addr = a;
    }
    if let Some(a) = args.stream {
        config.stream_addr = a;
    }
    if let Some(t) = &args.terms {
        config.terms = Some(t.clone());
    }
    Ok(config)
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<()> {
    let config = load(&args)?;
    // Read before anything starts, so a bad file stops the service (and --check) at once.
    let terms = match &config.terms {
        Some(p) => {
            let (t, unknown) = daemon::engine::load_static_terms(p, &config.station)
                .with_context(|| format!("station terms {}", p.display()))?;
            if !unknown.is_empty() {
                eprintln!(
                    "warning: {}: terms of stations not in the inventory ignored: {}",
                    p.display(),
                    unknown.join(", ")
                );
            }
            Some(std::sync::Arc::new(t))
        }
        None => None,
    };
    // the network is loaded and checked against the region before anything starts, too
    let (traveltimes, traveltimes_what) = locator_traveltimes(&config, &args.traveltimes)?;
    if args.check {
        println!(
            "{}: ok (region {}, {} stations; ingest {}, stream {}, http {}; store {}; traveltimes {})",
            args.config.as_deref().unwrap_or(Path::new("-")).display(),
            config.station.name,
            config.station.inventory.len(),
            config.ingest_addr,
            config.stream_addr,
            config.http_addr,
            config
                .store_path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "in memory".into()),
            traveltimes_what,
        );
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(
        config,
        terms,
        (traveltimes, traveltimes_what),
        args.demo,
        args.demo_events,
    ))
}

async fn serve(
    config: ResolvedServeConfig,
    terms: Option<std::sync::Arc<eikoloc::locate::station_terms::StaticTerms>>,
    (traveltimes, traveltimes_what): (
        std::sync::Arc<dyn eikoloc::traveltime::TraveltimeModel>,
        String,
    ),
    demo: bool,
    demo_events: Option<usize>,
) -> Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let addrs = listeners.addresses();
    let engine = daemon::engine::build_with_terms(
        &config.station,
        traveltimes,
        daemon::engine::associator_config(&config.station),
        terms,
    )
    .map_err(|e| anyhow::anyhow!("building the associator and locator: {e}"))?;
    let codes: Vec<_> = config
        .station
        .inventory
        .stations()
        .iter()
        .map(|s| s.code.clone())
        .collect();
    let metrics = Metrics::new(&codes);
    println!(
        "eikoloc serve: region {} ({} stations)",
        config.station.name,
        config.station.inventory.len()
    );
    println!(
        "  ingest  tcp://{}  (MessagePack frames or JSON lines)",
        addrs.ingest
    );
    println!(
        "  stream  tcp://{}  (send `json` or `msgpack` and a newline)",
        addrs.stream
    );
    println!("  http    http://{}/events  /healthz  /metrics", addrs.http);
    println!("  traveltimes  {traveltimes_what}");
    if let Some(p) = &config.store_path {
        println!("  store   {}", p.display());
    }
    println!("  files   {}", config.quakeml_dir.display());

    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    if demo {
        let station = config.station.clone();
        let ingest = addrs.ingest;
        tokio::spawn(async move {
            if let Err(e) = feed_demo(&station, ingest, demo_events).await {
                tracing::error!("demo feed: {e:#}");
            }
            if demo_events.is_some() {
                // Give the last events time to close before stopping.
                tokio::time::sleep(Duration::from_secs(40)).await;
                let _ = done_tx.send(());
            }
        });
    }
    let shutdown = async move {
        let term = async {
            #[cfg(unix)]
            {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
            _ = term => tracing::info!("SIGTERM received"),
            _ = done_rx => tracing::info!("demo finished"),
        }
    };
    daemon::run(config, listeners, engine, metrics, shutdown).await?;
    Ok(())
}

/// Sends the synthetic stream to the ingest port as JSON lines, each record at its time.
async fn feed_demo(
    station: &eikoloc::config::ResolvedStationConfig,
    ingest: SocketAddr,
    n_events: Option<usize>,
) -> Result<()> {
    let mut batch = 0u64;
    loop {
        let n = n_events.unwrap_or(30);
        let start_unix = eikoloc::metrics::unix_now_s();
        let cfg = DemoConfig {
            seed: 7 + batch,
            ..DemoConfig::default()
        };
        let (events, records) = demo::generate(station, &cfg, n, start_unix);
        let mut conn = tokio::net::TcpStream::connect(ingest)
            .await
            .context("connecting to ingest")?;
        let t0 = tokio::time::Instant::now();
        let mut next_event = 0;
        for r in records {
            while next_event < events.len() && events[next_event].origin_time_s <= r.at_s {
                let h = events[next_event].hypocentre;
                let g = station.frame.to_geo(h.x_km, h.y_km);
                println!(
                    "demo: synthetic earthquake at {:.4} N {:.4} E, depth {:.1} km",
                    g.lat_deg, g.lon_deg, h.z_km
                );
                next_event += 1;
            }
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(r.at_s.max(0.0))).await;
            let mut line = serde_json::to_vec(&r.pick)?;
            line.push(b'\n');
            conn.write_all(&line).await.context("sending a demo pick")?;
        }
        conn.shutdown().await.ok();
        if n_events.is_some() {
            return Ok(());
        }
        batch += 1;
    }
}
