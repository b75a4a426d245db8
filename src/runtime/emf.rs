//! The update checks' metrics: counted in the process (`domain::check_counts`) and written as
//! CloudWatch Embedded Metric Format lines to stdout, where Lambda's log capture turns them
//! into metrics (namespace `Updraft`, metric `UpdateChecks`).
//!
//! Lambda freezes the process between invocations and sends no shutdown signal (without an
//! extension), so nothing can be written after the last request: counts are written by the
//! check that finds the interval passed, inside its invocation. What an instance counted since
//! its last write is lost when Lambda reclaims it idle: at most one interval (60 s) of that
//! instance's checks.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::CheckCounter;
use crate::clock::{Clock, SystemClock};
use crate::domain::check_counts::{CountKey, DecisionCounts, emf_line};

/// The longest time counts wait to be written (the default of `UPDRAFT_METRICS_INTERVAL`).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

type Sink = Box<dyn Write + Send>;

/// Update checks counted in memory and written as EMF lines at most every interval.
pub struct CheckMetrics {
    counts: Mutex<(DecisionCounts, Sink)>,
    interval: Duration,
    epoch: Instant,
}

impl CheckMetrics {
    /// Writes EMF lines to stdout every `interval` (at most `MAX_INTERVAL`).
    pub fn emf_stdout(interval: Duration) -> Self {
        Self::emf_to(Box::new(std::io::stdout()), interval)
    }

    /// Writes EMF lines to `sink` every `interval` (at most `MAX_INTERVAL`).
    pub fn emf_to(sink: Sink, interval: Duration) -> Self {
        CheckMetrics {
            counts: Mutex::new((DecisionCounts::new(0), sink)),
            interval: interval.min(MAX_INTERVAL),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Writes whatever was counted (at a graceful shutdown).
    pub fn flush(&self) {
        let now_ms = self.now_ms();
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (counts, sink) = &mut *guard;
        if let Some(due) = counts.take(now_ms) {
            write_lines(sink, &due);
        }
    }
}

impl CheckCounter for CheckMetrics {
    /// Counts one check and, when the interval has passed, writes every count.
    fn count(&self, app: &str, channel: &str, version: &str, decision: &'static str) {
        let now_ms = self.now_ms();
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (counts, sink) = &mut *guard;
        counts.count(app, channel, version, decision);
        if let Some(due) = counts.take_due(now_ms, self.interval.as_millis() as u64) {
            write_lines(sink, &due);
        }
    }
}

fn write_lines(sink: &mut Sink, due: &[(CountKey, u64)]) {
    let unix_ms = SystemClock.now_micros() / 1000;
    let mut text = String::new();
    for (key, n) in due {
        text.push_str(&emf_line(key, *n, unix_ms));
        text.push('\n');
    }
    // One write for all lines; a failed write loses these counts, never the check.
    if let Err(e) = sink.write_all(text.as_bytes()).and_then(|_| sink.flush()) {
        tracing::warn!(error = %e, "cannot write the update-check metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_zero_interval_writes_at_every_check_and_flush_writes_the_rest() {
        let buf = Buf::default();
        let m = CheckMetrics::emf_to(Box::new(buf.clone()), Duration::ZERO);
        m.count("a", "production", "1.0.1", "offer");
        m.count("a", "production", "1.0.1", "offer");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let slow = Buf::default();
        let m = CheckMetrics::emf_to(Box::new(slow.clone()), MAX_INTERVAL * 10);
        m.count("a", "production", "1.0.1", "offer");
        m.count("a", "production", "1.0.1", "offer");
        assert!(slow.0.lock().unwrap().is_empty());
        m.flush();
        let text = String::from_utf8(slow.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["UpdateChecks"], 2);
    }
}
