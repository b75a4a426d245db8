//! The trace of a decision: which rule of design.md §4 it passed or stopped at, for
//! `updraft explain`. Generic, so the update check's `NoTrace` compiles to nothing: no string
//! is built unless someone asked for the trace.

use serde::Serialize;

/// Where a decision reports each rule it went through.
pub trait Tracer {
    /// Records that `rule` had `outcome` (built only when traced).
    fn step(&mut self, rule: &'static str, outcome: impl FnOnce() -> String);
}

/// The update check's tracer: records nothing.
pub struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn step(&mut self, _: &'static str, _: impl FnOnce() -> String) {}
}

/// One rule and what it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    pub rule: &'static str,
    pub outcome: String,
}

/// Records every step, in order.
#[derive(Debug, Default)]
pub struct Trace(pub Vec<TraceStep>);

impl Tracer for Trace {
    fn step(&mut self, rule: &'static str, outcome: impl FnOnce() -> String) {
        self.0.push(TraceStep {
            rule,
            outcome: outcome(),
        });
    }
}
