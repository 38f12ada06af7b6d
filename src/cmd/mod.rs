//! One module per subcommand: argument struct and `run`.

pub mod model;
#[cfg(feature = "train")]
pub mod train;
pub mod traveltime;
