//! Where the pipeline's "now" comes from: the wall clock when serving, the picks' own times
//! when replaying an archive.
//!
//! The pipeline reads time for two decisions only: whether an event's relocation throttle has
//! run out, and (on the wall clock) whether a quiet network should move the association's
//! stream clock. On a [`VirtualClock`] both follow the pick times, so a replay takes the same
//! decisions whatever the machine's speed, and a locate run takes no time: scheduling never
//! waits for the locator, and results are applied in the order the runs were started
//! (see [`super::pipeline`]). That is what makes a replay deterministic.

use std::time::Instant;

use chrono::{DateTime, Utc};

/// The pipeline's notion of "now".
pub trait Clock: Send {
    /// Seconds on this clock since a fixed but arbitrary epoch (only differences are used).
    fn now_s(&self) -> f64;
    /// A pick entered the pipeline (after ingest); a virtual clock moves to its time.
    fn pick_seen(&mut self, time: &DateTime<Utc>);
    /// True for a clock driven by the data rather than by the machine: locate runs then take
    /// no time on it, and their results are applied in start order.
    fn is_virtual(&self) -> bool;
}

/// The machine's monotonic clock (the service).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    start: Instant,
}

impl WallClock {
    /// A wall clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for WallClock {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
    fn pick_seen(&mut self, _time: &DateTime<Utc>) {}
    fn is_virtual(&self) -> bool {
        false
    }
}

/// Time as the picks tell it: Unix seconds of the latest pick seen (never going back), so an
/// archive replays on its own timeline (a replay).
#[derive(Debug, Clone, Copy, Default)]
pub struct VirtualClock {
    now_unix_s: f64,
}

impl VirtualClock {
    /// A virtual clock that has seen no pick (reads 0 until the first one).
    pub fn new() -> Self {
        Self::default()
    }
}

/// Unix seconds of a UTC time (nanoseconds kept as far as an f64 allows, ~0.2 us today).
pub fn unix_s(t: &DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) * 1e-9
}

impl Clock for VirtualClock {
    fn now_s(&self) -> f64 {
        self.now_unix_s
    }
    fn pick_seen(&mut self, time: &DateTime<Utc>) {
        self.now_unix_s = self.now_unix_s.max(unix_s(time));
    }
    fn is_virtual(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_clock_follows_the_latest_pick_and_never_goes_back() {
        let mut c = VirtualClock::new();
        let t = |s: &str| crate::domain::parse_utc(s).unwrap();
        c.pick_seen(&t("2020-01-01T00:00:10.5Z"));
        assert_eq!(c.now_s(), 1_577_836_810.5);
        c.pick_seen(&t("2020-01-01T00:00:09Z"));
        assert_eq!(
            c.now_s(),
            1_577_836_810.5,
            "a late pick does not move time back"
        );
        assert!(c.is_virtual() && !WallClock::new().is_virtual());
    }
}
