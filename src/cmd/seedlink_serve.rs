//! `eikoloc seedlink-serve`: SeedLink v3 playback of a miniSEED archive folder.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use eikoloc::ingest::seedlink::server::{serve, Archive, ServerConfig};

/// Arguments of `eikoloc seedlink-serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of miniSEED files (512-byte records; other files are skipped).
    #[arg(long)]
    pub archive: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:18000.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub listen: String,
    /// Playback speed: 1 real time, 10 ten times faster, 0 everything at once.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Most simultaneous clients.
    #[arg(long, default_value_t = 64)]
    pub max_clients: usize,
}

/// Runs the server until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::seedlink_log::init();
    anyhow::ensure!(
        args.speed.is_finite() && args.speed >= 0.0,
        "--speed must be >= 0 (0 = all at once), got {}",
        args.speed
    );
    let archive = Archive::load(&args.archive)
        .with_context(|| format!("loading archive {}", args.archive.display()))?;
    eprintln!(
        "archive {}: {} stations, {} records ({} unreadable skipped), {} .. {}",
        args.archive.display(),
        archive.station_count(),
        archive.record_count(),
        archive.stats.records_bad,
        eikoloc::domain::format_utc(&archive.first_time),
        eikoloc::domain::format_utc(&archive.last_time)
    );
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // Printed on stdout so scripts (and tests) can find the port when given port 0.
        println!("listening on {}", listener.local_addr()?);
        let cfg = ServerConfig {
            speed: args.speed,
            max_clients: args.max_clients,
            ..Default::default()
        };
        let served = serve(listener, Arc::new(archive), cfg, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        eprintln!("served {served} clients");
        Ok(())
    })
}
