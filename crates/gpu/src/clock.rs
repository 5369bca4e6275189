//! Time as the policy and `gpu-pick --wait` see it: a `Duration` since some start, plus sleeping.
//!
//! The real clock wraps `Instant`; the fake one only moves when slept or told to, and is shared
//! with [`crate::ScriptedProbe`] so a scripted timeline and a waiting pick agree on "now".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub trait Clock {
    /// Time since this clock's start.
    fn now(&self) -> Duration;
    /// Waits `duration` (the fake advances its time instead).
    fn sleep(&mut self, duration: Duration);
}

/// Wall-clock time since construction.
#[derive(Debug, Clone)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A clock that moves only when slept or advanced; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    // Nanoseconds; an atomic so a clone can live in a probe that is moved to another thread.
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, now: Duration) {
        self.nanos.store(to_nanos(now), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(to_nanos(by), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep(&mut self, duration: Duration) {
        self.advance(duration);
    }
}

fn to_nanos(d: Duration) -> u64 {
    // Saturate instead of wrapping: 584 years of fake time is plenty.
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
