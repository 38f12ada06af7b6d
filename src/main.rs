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
    /// Match a catalog to a reference: differences, missed/extra events, coverage, SVG figures.
    Compare(cmd::compare::Args),
    /// Traveltimes for (phase, distance, depth, elevation) rows, CSV in and out.
    Traveltime(cmd::traveltime::Args),
    /// The location service: picks in over TCP, events out (QuakeML files, stream, HTTP, metrics).
    Serve(cmd::serve::Args),
    /// Serve a miniSEED archive over SeedLink v3 (real-time or accelerated playback).
    SeedlinkServe(cmd::seedlink_serve::Args),
    /// Read waveforms from a SeedLink server, pick P and S, print picks as CSV.
    SeedlinkPick(cmd::seedlink_pick::Args),
    /// Write synthetic miniSEED waveforms (P and S pulses plus noise) and their true onsets.
    SynthWaveforms(cmd::seedlink_synth::Args),
    /// Inspect trained traveltime networks (`model check DIR`).
    Model(cmd::model::Args),
    /// Locate the events of a picks CSV (SVGD posterior), one catalog row per event.
    Locate(cmd::locate::Args),
    /// Replay a pick archive through the service's pipeline under a virtual clock.
    Replay(cmd::replay::Args),
    /// Synthetic events and picks with known truth.
    Synth(cmd::synth::Args),
    /// Train the eikonal traveltime network for a region (needs `--features train`).
    Train(cmd::train::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(a) => cmd::compare::run(a),
        Command::Traveltime(a) => cmd::traveltime::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::SeedlinkServe(a) => cmd::seedlink_serve::run(a),
        Command::SeedlinkPick(a) => cmd::seedlink_pick::run(a),
        Command::SynthWaveforms(a) => cmd::seedlink_synth::run(a),
        Command::Model(a) => cmd::model::run(a),
        Command::Locate(a) => cmd::locate::run(a),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Train(a) => cmd::train::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
