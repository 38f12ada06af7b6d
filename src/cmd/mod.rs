//! One module per subcommand: argument struct and `run`.

pub mod compare;
pub mod locate;
pub mod model;
pub mod replay;
pub mod seedlink_log;
pub mod seedlink_pick;
pub mod seedlink_serve;
pub mod seedlink_synth;
pub mod serve;
pub mod synth;
#[cfg(feature = "train")]
pub mod train;
pub mod traveltime;
// Without burn the subcommand still exists, so `eikoloc train` explains how to get it.
#[cfg(not(feature = "train"))]
#[path = "train_disabled.rs"]
pub mod train;
