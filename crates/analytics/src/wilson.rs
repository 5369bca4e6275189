//! The Wilson score interval for a favorite rate: unlike the plain k/n ± normal
//! approximation it stays inside [0, 1] and is honest for small groups, which is why
//! groups are ranked by its lower bound.

use serde::Serialize;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.96;

/// A closed interval of rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The Wilson score interval of `successes` out of `trials` at the given z. No trials gives
/// the uninformative [0, 1].
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> Interval {
    if trials == 0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let n = trials as f64;
    let p = (successes.min(trials)) as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(i: Interval, low: f64, high: f64) {
        assert!(
            (i.low - low).abs() < 1e-4 && (i.high - high).abs() < 1e-4,
            "{i:?} vs [{low}, {high}]"
        );
    }

    #[test]
    fn known_values() {
        close(wilson_interval(5, 10, Z95), 0.2366, 0.7634);
        close(wilson_interval(0, 10, Z95), 0.0, 0.2775);
        close(wilson_interval(10, 10, Z95), 0.7225, 1.0);
        // Wilson (1927) style textbook example: 81 of 263.
        close(wilson_interval(81, 263, Z95), 0.2553, 0.3662);
        close(wilson_interval(1, 1, Z95), 0.2065, 1.0);
    }

    #[test]
    fn no_trials_is_uninformative() {
        assert_eq!(
            wilson_interval(0, 0, Z95),
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
    }
}
