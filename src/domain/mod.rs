//! Plain value types shared by every layer: time, geography, stations, picks, events.
//! No I/O, no async.

pub mod event;
pub mod geo;
pub mod pick;
pub mod station;
pub mod time;

pub use event::{
    Arrival, ConfidenceEllipsoid, Event, HorizontalEllipse, Origin, OriginMethod, OriginUncertainty,
};
pub use geo::{GeoError, GeoPoint, LocalFrame, LocalPoint};
pub use pick::{Phase, PhaseError, Pick};
pub use station::{Station, StationCode, StationInventory};
pub use time::{format_utc, parse_utc, TimeError, UtcTime};
