//! Installing the process's subscriber: one file per run (`<logs>/<command>-<instance>.log`,
//! the instance being `$INSTANCE_ID` or the time and PID, so concurrent runs never share a
//! file), the journal beside it when systemd runs us, and a panic hook that logs the panic
//! in the span it happened in before the default hook prints it.

use crate::settings::{Format, LogSettings};
use crate::LogError;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::time::UtcTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// What a process asks of its log.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The first part of the file name: `daemon`, `worker`, `generate`.
    pub command: &'a str,
    /// Where the files go (`<settings>/logs`).
    pub dir: &'a Path,
    /// Write a `close` line with the busy and idle time of every span that ends (the
    /// worker's load, encode, step, decode and write). Off in the daemon, whose job spans
    /// are many and short.
    pub span_timings: bool,
    /// Send the lines to the journal as well when stderr is systemd's journal stream.
    pub journal: bool,
    pub settings: LogSettings,
}

/// The log a process writes to.
#[derive(Debug, Clone)]
pub struct Started {
    pub path: PathBuf,
    pub instance_id: String,
    /// Whether lines also go to the journal.
    pub journal: bool,
}

/// Opens the instance's file and installs the subscriber (the first call in a process
/// wins; a later one still opens its file, which tests rely on only for the path).
pub fn init(options: Options<'_>) -> Result<Started, LogError> {
    std::fs::create_dir_all(options.dir).map_err(|source| LogError::Folder {
        path: options.dir.to_path_buf(),
        source,
    })?;
    let instance_id = instance_id();
    let path = options
        .dir
        .join(format!("{}-{instance_id}.log", options.command));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| LogError::File {
            path: path.clone(),
            source,
        })?;
    let mut layers = vec![file_layer(file, &options)];
    let journal = options.journal && crate::journal::stderr_is_journal();
    if journal {
        match tracing_journald::layer() {
            // Our fields as IMAGELAB_*: `journalctl SPAN_NAME=job IMAGELAB_ID=12`.
            Ok(layer) => layers.push(layer.with_field_prefix(Some("IMAGELAB".into())).boxed()),
            Err(e) => {
                eprintln!("note: the journal does not answer ({e}); logging to the file only")
            }
        }
    }
    let installed = tracing_subscriber::registry()
        .with(layers.with_filter(options.settings.env_filter()))
        .try_init()
        .is_ok();
    if installed {
        log_panics();
    }
    Ok(Started {
        path,
        instance_id,
        journal,
    })
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

pub(crate) fn file_layer(file: File, options: &Options<'_>) -> BoxedLayer {
    // One formatted line is one write on an O_APPEND file, so lines never interleave.
    let writer = Arc::new(Mutex::new(file));
    let spans = if options.span_timings {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_timer(UtcTime::rfc_3339())
        .with_span_events(spans)
        .with_writer(move || SharedFile(writer.clone()));
    match options.settings.format {
        Format::Text => layer.boxed(),
        Format::Json => layer.json().with_span_list(true).boxed(),
    }
}

/// A handle on the one log file, for the subscriber's writer.
struct SharedFile(Arc<Mutex<File>>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::io::Write::write_all(&mut *file, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The id that names this run's log file: `$INSTANCE_ID` (made safe for a file name), or
/// the UTC time and the PID.
fn instance_id() -> String {
    if let Ok(id) = std::env::var("INSTANCE_ID") {
        let clean: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !clean.is_empty() {
            return clean;
        }
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]"
        ))
        .unwrap_or_else(|_| "now".into());
    format!("{stamp}-{}", std::process::id())
}

/// Logs a panic, on one line and inside the spans the panicking thread was in (a job's,
/// in a worker), then lets the previous hook print it as usual.
fn log_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a non-text panic payload)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            target: "imagelab::panic",
            %location,
            "panicked: {}",
            message.replace('\n', " | ")
        );
        previous(info);
    }));
}
