//! A running job's progress as the toolbar shows it: steps done of total, the fraction
//! for the bar, and the time left, estimated from the steps so far.

use std::time::Duration;

/// What the progress events of one job said so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    pub job: u64,
    pub done: usize,
    pub total: usize,
    /// When its first step event arrived, and the time of the latest, measured from
    /// the first (the first step includes the model load, so it is left out of the rate).
    pub first_step_done: usize,
    pub since_first: Duration,
}

impl JobProgress {
    /// The first step event of a job, `at` after nothing in particular (only differences
    /// of times matter).
    pub fn start(job: u64, done: usize, total: usize) -> JobProgress {
        JobProgress {
            job,
            done,
            total,
            first_step_done: done,
            since_first: Duration::ZERO,
        }
    }

    /// A later step event, `elapsed` after the first.
    pub fn step(&mut self, done: usize, total: usize, elapsed: Duration) {
        (self.done, self.total, self.since_first) = (done, total, elapsed);
    }

    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }

    /// The time left at the rate of the steps since the first event; `None` until two
    /// events have arrived.
    pub fn remaining(&self) -> Option<Duration> {
        let steps = self.done.checked_sub(self.first_step_done)?;
        if steps == 0 {
            return None;
        }
        let per_step = self.since_first / steps as u32;
        Some(per_step * self.total.saturating_sub(self.done) as u32)
    }

    /// "Step 5 of 20 · about 12 s left".
    pub fn text(&self, queued_after: usize) -> String {
        let mut text = format!("Step {} of {}", self.done, self.total);
        if let Some(left) = self.remaining() {
            text.push_str(&format!(" · about {} left", human_duration(left)));
        }
        if queued_after > 0 {
            text.push_str(&format!(" · {queued_after} more queued"));
        }
        text
    }
}

/// `850 ms`, `12 s`, `3 min 20 s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{} ms", d.as_millis())
    } else if secs < 60 {
        format!("{secs} s")
    } else {
        format!("{} min {} s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_steps_since_the_first_event() {
        let mut p = JobProgress::start(4, 1, 20);
        assert_eq!(p.remaining(), None);
        assert_eq!(p.text(0), "Step 1 of 20");
        p.step(5, 20, Duration::from_secs(2));
        // 4 steps in 2 s: 0.5 s a step, 15 to go.
        assert_eq!(p.remaining(), Some(Duration::from_millis(7500)));
        assert_eq!(p.text(2), "Step 5 of 20 · about 7 s left · 2 more queued");
        assert!((p.fraction() - 0.25).abs() < 1e-12);
        p.step(20, 20, Duration::from_secs(8));
        assert_eq!(p.remaining(), Some(Duration::ZERO));
        assert_eq!(p.fraction(), 1.0);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_secs(12)), "12 s");
        assert_eq!(human_duration(Duration::from_secs(200)), "3 min 20 s");
    }
}
