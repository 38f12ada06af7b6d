//! `eikoloc seedlink-pick`: connect to a SeedLink server, pick P and S, print picks as CSV
//! (`id,network,station,phase,time,uncertainty_s`) on stdout.

use std::path::PathBuf;

use anyhow::Context;
use eikoloc::domain::{format_utc, parse_utc};
use eikoloc::ingest::seedlink::client::{ClientConfig, ClientStats, StationRequest};
use eikoloc::ingest::seedlink::pipeline::spawn_pick_source;
use eikoloc::picker::PickerSettings;

/// Arguments of `eikoloc seedlink-pick`.
#[derive(clap::Args)]
pub struct Args {
    /// SeedLink server, host:port.
    #[arg(long)]
    pub server: String,
    /// Streams, `NET_STA` or `NET_STA:SEL1 SEL2` (repeat the option for more stations).
    #[arg(long = "stream", required = true)]
    pub streams: Vec<String>,
    /// Start of data for stations without saved state (ISO-8601 UTC); default: live data.
    #[arg(long)]
    pub begin: Option<String>,
    /// End of a time window: stop when the server has sent it.
    #[arg(long)]
    pub end: Option<String>,
    /// Resume state file (last sequence number per station).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Picker settings (TOML: `[default]` and `[stations."NET.STA"]` tables).
    #[arg(long)]
    pub picker: Option<PathBuf>,
}

/// Runs until the window ends or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::seedlink_log::init();
    let stations = args
        .streams
        .iter()
        .map(|s| StationRequest::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cfg = ClientConfig::new(&args.server, stations);
    cfg.begin_time = args
        .begin
        .as_deref()
        .map(parse_utc)
        .transpose()
        .context("--begin")?;
    cfg.end_time = args
        .end
        .as_deref()
        .map(parse_utc)
        .transpose()
        .context("--end")?;
    cfg.state_file = args.state.clone();
    let settings: PickerSettings = match &args.picker {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("parsing picker settings {}", p.display()))?
        }
        None => PickerSettings::default(),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let mut src = spawn_pick_source(cfg, settings, 1024, shutdown)?;
        println!("id,network,station,phase,time,uncertainty_s");
        while let Some(p) = src.picks.recv().await {
            println!("{},{},{},{},{},{:.3}", p.id, p.station.network, p.station.station, p.phase, format_utc(&p.time), p.uncertainty_s);
        }
        let state = src.client.await.context("client task")??;
        let s = &src.client_stats;
        eprintln!(
            "records {} (corrupt {}, duplicate {}), connections {}, link failures {}, timeouts {}; stations in state: {}",
            ClientStats::get(&s.records),
            ClientStats::get(&s.corrupt_records),
            ClientStats::get(&s.duplicates),
            ClientStats::get(&s.connections),
            ClientStats::get(&s.link_failures),
            ClientStats::get(&s.timeouts),
            state.last.len()
        );
        Ok(())
    })
}
