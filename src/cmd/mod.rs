//! One module per subcommand: argument struct and `run`.

pub mod model;
pub mod traveltime;
