//! `eikoloc traveltime`: traveltimes for rows `phase,epicentral_distance_km,source_depth_km,receiver_elevation_m`.

use std::path::PathBuf;

/// Arguments of `eikoloc traveltime`.
#[derive(clap::Args)]
pub struct Args {
    /// Velocity model file (CSV `depth_top_km,vp_km_s,vs_km_s`).
    #[arg(long)]
    pub velocity: PathBuf,
    /// Rows to evaluate (CSV with header).
    #[arg(long)]
    pub pairs: PathBuf,
}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
