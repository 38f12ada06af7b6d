//! One module per subcommand: argument struct and `run`.

pub mod locate;
pub mod synth;
pub mod traveltime;
