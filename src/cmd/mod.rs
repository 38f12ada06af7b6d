//! One module per subcommand: argument struct and `run`.

pub mod compare;
pub mod locate;
pub mod model;
pub mod seedlink_log;
pub mod seedlink_pick;
pub mod seedlink_serve;
pub mod seedlink_synth;
pub mod synth;
pub mod traveltime;
