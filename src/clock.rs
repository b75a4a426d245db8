//! The one clock. Everything that needs the time (history entries, expiries, the hourly
//! evidence buckets, the rollout gate's schedule) asks a `Clock`, so tests can move time
//! instead of waiting for it. The domain never reads a clock: it is handed `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the time comes from.
pub trait Clock: Send + Sync {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now(&self) -> u64 {
        self.now_micros() / 1_000_000
    }
}

/// The system's clock; a time before 1970 reads as 0 rather than failing a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `secs` seconds since the epoch.
    pub fn at(secs: u64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(secs * 1_000_000)))
    }

    /// Sets the time, in seconds since the epoch.
    pub fn set(&self, secs: u64) {
        self.0.store(secs * 1_000_000, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs` seconds.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        // Every reading is a distinct microsecond, as the system clock's readings are in
        // practice: history entries are keyed by their time.
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_time_moves_only_when_told() {
        let c = ManualClock::at(1000);
        assert_eq!(c.now(), 1000);
        c.advance(61);
        assert_eq!(c.now(), 1061);
        assert!(c.now_micros() < c.now_micros(), "readings are distinct");
        assert!(SystemClock.now() > 1_700_000_000);
    }
}
