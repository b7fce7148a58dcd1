//! The registry's wall clock, in whole seconds since the Unix epoch. Every time-based rule
//! (token expiry, leases, grace periods, rate-limit windows, policy cadence) reads it here
//! rather than the system clock, so a test moves time forward instead of waiting for it.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// The system clock plus an offset that only [`Clock::advance`] changes. Clones share the
/// offset: advancing one moves every holder, the server's handles included.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    /// Seconds since the Unix epoch, as this clock reads them.
    pub fn now(&self) -> i64 {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        system + self.offset_secs.load(Ordering::Relaxed)
    }

    /// The time as this clock reads it, to the nanosecond (for ordering events that may fall
    /// within one second).
    pub fn now_utc(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) `secs` seconds forward.
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_every_holder() {
        let clock = Clock::default();
        let held = clock.clone();
        let before = held.now();
        clock.advance(3600);
        let after = held.now();
        assert!(
            (3600..3700).contains(&(after - before)),
            "moved {}",
            after - before
        );
    }
}
