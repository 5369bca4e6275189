//! Timing marks for the GUI benchmark: with `IMAGELAB_GUI_TRACE=<file>` the app appends
//! `<mark> <milliseconds>` lines (time since start, or a measured delay); without it,
//! nothing is recorded.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();
static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();

/// Called first thing in `main`: the clock every mark is measured from.
pub fn start() {
    START.get_or_init(Instant::now);
    FILE.get_or_init(|| {
        let path = std::env::var_os("IMAGELAB_GUI_TRACE")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some(Mutex::new(file))
    });
}

pub fn enabled() -> bool {
    FILE.get().is_some_and(Option::is_some)
}

fn write(mark: &str, ms: f64) {
    if let Some(Some(file)) = FILE.get() {
        if let Ok(mut file) = file.lock() {
            let _ = writeln!(file, "{mark} {ms:.2}");
        }
    }
}

/// A mark at the time since start.
pub fn mark(mark: &str) {
    if let Some(start) = START.get() {
        write(mark, start.elapsed().as_secs_f64() * 1000.0);
    }
}

/// A measured delay.
pub fn delay(mark: &str, delay: Duration) {
    write(mark, delay.as_secs_f64() * 1000.0);
}
