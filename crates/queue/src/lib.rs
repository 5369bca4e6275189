//! The durable job queue of imagelab: jobs stored on sled in `jobs/`, a validated state
//! machine (queued → leased → done | failed | dead | cancelled), atomic leases, dispatch
//! order (priority, then model affinity, then FIFO), recovery after a crash, and the
//! `jobs/jobs.log` record of every finished job.
//!
//! The API is synchronous: the daemon calls it from its actors. Every call that changes a
//! job returns only after the change is flushed to disk.

pub mod dispatch;
pub mod error;
pub mod job;
pub mod log;
pub mod state;
mod store;

pub use dispatch::WorkerView;
pub use error::{QueueError, Result};
pub use job::{
    output_stem, Completion, Job, JobId, JobSpec, JobState, NewJob, Placement, Priority, Source,
    Timings,
};
pub use log::{read_log, JobLog, LogRead, LogRecord};
pub use store::{
    Counts, Favorite, FavoriteTarget, Queue, QueueOptions, Recovery, RecoveryPolicy,
    DEFAULT_MAX_INTERRUPTIONS,
};
