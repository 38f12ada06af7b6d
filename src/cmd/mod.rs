//! One module per subcommand: argument struct and `run`.

pub mod model;
pub mod locate;
pub mod synth;
pub mod compare;
pub mod traveltime;
pub mod seedlink_log;
pub mod seedlink_pick;
pub mod seedlink_serve;
pub mod seedlink_synth;
pub mod serve;
