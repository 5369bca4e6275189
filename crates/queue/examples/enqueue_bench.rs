//! Durable enqueues per second: each `enqueue` is flushed to disk before it returns, as the
//! daemon acknowledges a submission. Also times `enqueue_batch` (one flush per batch, for
//! `submit --count N`) and a lease + complete round trip.
//!
//! `cargo run --release -p imagelab-queue --example enqueue_bench [-- N [DIR]]`
//! DIR defaults to a temporary folder; pass one on the disk the daemon's `jobs/` lives on.

use imagelab_core::GenerationParams;
use imagelab_queue::{Completion, JobState, NewJob, Queue, QueueOptions, WorkerView};
use std::time::Instant;

fn new_job(n: usize) -> NewJob {
    NewJob::new(GenerationParams {
        model: "sd_xl_base_1.0.safetensors".into(),
        prompt: format!("a lighthouse at dusk, oil painting, variation {n}"),
        negative: "blurry, low quality".into(),
        seed: n as i64,
        ..Default::default()
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let options = QueueOptions {
        history_limit: None,
        ..QueueOptions::default()
    };
    let queue = Queue::open(&dir, options)?;

    let started = Instant::now();
    for i in 0..n {
        queue.enqueue(new_job(i))?;
    }
    let single = started.elapsed().as_secs_f64();
    println!(
        "durable enqueue (flush each):      {n} jobs in {single:.3} s = {:.0} jobs/s ({:.2} ms each)",
        n as f64 / single,
        single * 1000.0 / n as f64
    );

    let batch = 100;
    let started = Instant::now();
    for b in 0..n / batch {
        queue.enqueue_batch((0..batch).map(|i| new_job(b * batch + i)).collect())?;
    }
    let batched = started.elapsed().as_secs_f64();
    let done = n / batch * batch;
    println!(
        "durable enqueue_batch ({batch} a flush): {done} jobs in {batched:.3} s = {:.0} jobs/s",
        done as f64 / batched
    );

    let worker = WorkerView::new(
        "bench",
        "GPU-0",
        &["sd_xl_base_1.0.safetensors".to_string()],
    );
    let rounds = n.min(1000);
    let started = Instant::now();
    for _ in 0..rounds {
        let Some(job) = queue.next_for_worker(&worker)? else {
            break;
        };
        let JobState::Leased { attempt, .. } = job.state else {
            break;
        };
        queue.complete(job.id, attempt, Completion::default())?;
    }
    let cycle = started.elapsed().as_secs_f64();
    println!(
        "lease + complete (2 flushes, {} queued): {rounds} in {cycle:.3} s = {:.2} ms per job",
        queue.counts()?.queued,
        cycle * 1000.0 / rounds as f64
    );
    Ok(())
}
