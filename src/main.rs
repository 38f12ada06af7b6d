//! The `eikoloc` command line: a thin layer over the library; anyhow lives only here.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "eikoloc",
    version,
    about = "Real-time earthquake location with eikonal PINN traveltimes and SVGD posteriors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Traveltimes for (phase, distance, depth, elevation) rows, CSV in and out.
    Traveltime(cmd::traveltime::Args),
    /// Locate the events of a picks CSV (SVGD posterior), one catalog row per event.
    Locate(cmd::locate::Args),
    /// Synthetic events and picks with known truth.
    Synth(cmd::synth::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Traveltime(a) => cmd::traveltime::run(a),
        Command::Locate(a) => cmd::locate::run(a),
        Command::Synth(a) => cmd::synth::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
