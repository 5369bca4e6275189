//! Durability under `kill -9`: a child process (this test binary re-run with an env var)
//! enqueues, leases and completes jobs in a loop, printing each acknowledged change; the
//! parent SIGKILLs it at random moments, reopens the database each time and checks that
//! every acknowledged job exists exactly once, in at least its acknowledged state, with
//! consistent indexes. At the end every job is drained to done.
#![allow(clippy::unwrap_used)]

use imagelab_core::GenerationParams;
use imagelab_queue::{
    Completion, JobId, JobState, NewJob, Queue, QueueOptions, RecoveryPolicy, WorkerView,
};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DIR_VAR: &str = "IMAGELAB_QUEUE_CRASH_DIR";
const ROUND_VAR: &str = "IMAGELAB_QUEUE_CRASH_ROUND";
const ROUNDS: u32 = 6;

fn options() -> QueueOptions {
    QueueOptions {
        // Keep every finished job so the parent can check them all.
        history_limit: None,
        ..QueueOptions::default()
    }
}

fn worker() -> WorkerView {
    WorkerView::new("crash-worker", "GPU-0", &["m".to_string()])
}

/// The child's body; a no-op when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let round = std::env::var(ROUND_VAR).unwrap_or_default();
    let q = Queue::open(Path::new(&dir), options()).unwrap();
    q.recover_after_restart(RecoveryPolicy::Requeue).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let prompt = format!("r{round}-n{n}");
        let job = q
            .enqueue(NewJob::new(GenerationParams {
                model: "m".into(),
                prompt: prompt.clone(),
                ..Default::default()
            }))
            .unwrap();
        // Printed only after enqueue returned: this is the acknowledgement to the client.
        writeln!(out, "ACK {} {prompt} END", job.id).unwrap();
        out.flush().unwrap();
        if n % 3 == 0 {
            if let Some(leased) = q.next_for_worker(&worker()).unwrap() {
                let JobState::Leased { attempt, .. } = leased.state else {
                    panic!("lease returned {:?}", leased.state)
                };
                q.complete(leased.id, attempt, Completion::default())
                    .unwrap();
                writeln!(out, "DONE {} END", leased.id).unwrap();
                out.flush().unwrap();
            }
        }
    }
}

/// A small xorshift so the test needs no random-number crate; the seed is printed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs the child until it has acknowledged something, lets it run a random while longer,
/// kills it with SIGKILL, and returns the lines it printed.
fn run_and_kill(dir: &Path, round: u32, delay: Duration) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(ROUND_VAR, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    // Wait for the first acknowledgement (the database is open), then kill at random.
    let first = rx.recv_timeout(Duration::from_secs(30));
    assert!(
        first.is_ok(),
        "round {round}: the child acknowledged nothing"
    );
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn acknowledged_jobs_survive_kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let started = Instant::now();
    let mut acked: HashMap<JobId, String> = HashMap::new();
    let mut done: HashSet<JobId> = HashSet::new();
    for round in 0..ROUNDS {
        // Half the kills land within a few milliseconds of an acknowledgement: without the
        // flush, sled would still hold those writes in memory then (it writes buffers out
        // on its own soon after, so late kills alone would not catch a missing flush).
        let delay = if round % 2 == 0 {
            Duration::from_micros(next_random(&mut seed) % 3000)
        } else {
            Duration::from_millis(5 + next_random(&mut seed) % 250)
        };
        let lines = run_and_kill(dir.path(), round, delay);
        for line in lines {
            // A line cut by the kill has no END and acknowledged nothing.
            let Some(body) = line.strip_suffix(" END") else {
                continue;
            };
            let mut words = body.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("ACK"), Some(id), Some(prompt)) => {
                    acked.insert(id.parse().unwrap(), prompt.to_string());
                }
                (Some("DONE"), Some(id), None) => {
                    done.insert(id.parse().unwrap());
                }
                _ => {}
            }
        }
        let q = Queue::open(dir.path(), options()).unwrap();
        assert_eq!(q.verify().unwrap(), Vec::<String>::new(), "round {round}");
        let jobs = q.list().unwrap();
        let mut by_prompt: HashMap<&str, usize> = HashMap::new();
        for job in &jobs {
            *by_prompt
                .entry(job.spec.params.prompt.as_str())
                .or_default() += 1;
        }
        for (id, prompt) in &acked {
            let job = q
                .get(*id)
                .unwrap_or_else(|e| panic!("round {round}: acked {e}"));
            assert_eq!(&job.spec.params.prompt, prompt, "round {round}: job {id}");
            assert_eq!(
                by_prompt.get(prompt.as_str()),
                Some(&1),
                "{prompt} not unique"
            );
        }
        for id in &done {
            assert!(
                matches!(q.get(*id).unwrap().state, JobState::Done { .. }),
                "round {round}: job {id} was acknowledged done"
            );
        }
    }
    assert!(
        acked.len() > ROUNDS as usize,
        "too few jobs to mean anything"
    );

    // Restart once more and drain: every acknowledged job finishes.
    let q = Queue::open(dir.path(), options()).unwrap();
    q.recover_after_restart(RecoveryPolicy::Requeue).unwrap();
    while let Some(job) = q.next_for_worker(&worker()).unwrap() {
        let JobState::Leased { attempt, .. } = job.state else {
            panic!("lease returned {:?}", job.state)
        };
        q.complete(job.id, attempt, Completion::default()).unwrap();
    }
    for id in acked.keys() {
        assert_eq!(q.get(*id).unwrap().state.name(), "done", "job {id}");
    }
    eprintln!(
        "{} acknowledged jobs ({} completed before a kill) across {ROUNDS} kills in {:?}",
        acked.len(),
        done.len(),
        started.elapsed()
    );
}
