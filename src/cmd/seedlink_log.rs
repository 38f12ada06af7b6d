//! Log output for the SeedLink subcommands: `tracing` events to stderr, level from
//! `EIKOLOC_LOG` (error, warn, info, debug, trace; default info).

/// Installs the stderr subscriber once (later calls are no-ops).
pub fn init() {
    let level = std::env::var("EIKOLOC_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
