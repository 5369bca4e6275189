//! `imagelab daemon` under `kill -9`: a real daemon with one CPU worker takes bursts of
//! submissions over HTTP while the test SIGKILLs it at random moments (a seeded ChaCha RNG;
//! `IMAGELAB_CRASH_SEED` replays a run) and restarts it. In the end every acknowledged job
//! exists exactly once and is done, with its image in `output/` exactly once, and no
//! interruption used an attempt. A second test kills the daemon under one running job more
//! times than it has attempts: it is still done, once, with one image.
#![allow(clippy::unwrap_used)]

mod common;

use common::procs::{children_of, kill_all, tagged};
use common::{tiny_sandbox, Sandbox};
use imagelab_client::{read_daemon_info, Client, ClientError};
use imagelab_core::api::{DaemonInfo, JobView, ListQuery, SubmitRequest};
use imagelab_core::events::DaemonEvent;
use imagelab_core::GenerationParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// More rounds than a job has attempts (3): without the kill gate below, the job running
/// at each kill is often the same one, interrupted again and again.
const ROUNDS: u32 = 10;
/// Submissions per round at most (1 or 2 jobs each), spread so that a burst lasts about as
/// long as a round and the kill often lands in the middle of it, while the queue still
/// drains within a minute on 2 busy cores.
const MAX_REQUESTS: u32 = 10;
/// Marks the processes of this test run (daemons and their workers inherit it), so orphans
/// are found even when a worker was forked just as the kill landed.
const TAG_VAR: &str = "IMAGELAB_CRASH_TEST_TAG";

/// A daemon child; dropping it (a failed assertion) kills it and its workers.
struct Running {
    child: Child,
    client: Client,
    info: DaemonInfo,
}

impl Drop for Running {
    fn drop(&mut self) {
        let workers = children_of(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_all(&workers);
    }
}

/// Starts the daemon and waits for its `daemon.json`. A start refused because the killed
/// daemon's database lock is not yet free is retried for a while.
fn start(sb: &Sandbox, tag: &str, round: u32) -> Running {
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        let log = sb.path(&format!("daemon-{round}-{attempt}.err"));
        let mut child = sb
            .imagelab()
            .args(["daemon", "--worker", "cpu"])
            .env(TAG_VAR, tag)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        loop {
            let info = read_daemon_info(&sb.path("home")).ok();
            if let Some(info) = info.filter(|i| i.pid == child.id()) {
                let client = Client::from_info(&info);
                if client.health().is_ok() {
                    return Running {
                        child,
                        client,
                        info,
                    };
                }
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let why = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("round {round}: the daemon did not start in 20 s: {why}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if Instant::now() > deadline {
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("round {round}: the daemon kept exiting: {why}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

/// A job as the test knows it before the daemon names it: its prompt and seed.
type Key = (String, i64);

#[derive(Default)]
struct Ledger {
    /// id → key of every job whose submission was answered with its id.
    acked: BTreeMap<u64, Key>,
    /// Keys of submissions that got no answer: they may or may not exist.
    unacked: BTreeSet<Key>,
}

/// Submits small jobs with random pauses until `stop` or the daemon stops answering; says
/// on `sending` as each request goes out.
fn submit_burst(
    client: Client,
    round: u32,
    seed: u64,
    stop: Arc<AtomicBool>,
    sending: mpsc::Sender<()>,
) -> Ledger {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    for n in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let prompt = format!("a lighthouse, round {round} request {n}");
        let first_seed = i64::from(n) * 10;
        let mut request = SubmitRequest::new(GenerationParams {
            model: "tiny.safetensors".into(),
            prompt: prompt.clone(),
            width: 64,
            height: 64,
            // Many jobs run long enough (up to half a second here) that a kill often lands
            // under one, and the next round's kill under it again.
            steps: rng.random_range(1..=150),
            seed: first_seed,
            ..GenerationParams::default()
        });
        request.count = rng.random_range(1..=2);
        let _ = sending.send(());
        match client.submit(&request) {
            Ok(answer) => {
                assert_eq!(answer.ids.len(), request.count as usize);
                for (id, seed) in answer.ids.into_iter().zip(answer.seeds) {
                    ledger.acked.insert(id, (prompt.clone(), seed));
                }
            }
            Err(e @ ClientError::Api { .. }) => panic!("round {round}: refused: {e}"),
            Err(_) => {
                // Killed before answering: the jobs may have been committed or not.
                for i in 0..i64::from(request.count) {
                    ledger.unacked.insert((prompt.clone(), first_seed + i));
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(100..500)));
    }
    ledger
}
/// How many jobs are done. A failed call is retried, never read as 0: that would open the
/// kill gate below before the round finished a job.
fn done_count(client: &Client) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.status() {
            Ok(status) => return status.counts.get("done").copied().unwrap_or(0),
            Err(e) => {
                assert!(Instant::now() < deadline, "queue status: {e}");
                eprintln!("queue status failed, retrying: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn acknowledged_jobs_survive_kill_9_of_the_daemon() {
    let started = Instant::now();
    let seed = std::env::var("IMAGELAB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("daemon crash test: seed {seed} (IMAGELAB_CRASH_SEED={seed} replays it)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tag = format!("{}-{seed}", std::process::id());

    let sb = tiny_sandbox();
    eprintln!("fixtures ready after {:.1?}", started.elapsed());

    let mut ledger = Ledger::default();
    for round in 0..ROUNDS {
        let mut daemon = start(&sb, &tag, round);
        let up = Instant::now();
        let before = done_count(&daemon.client);
        let stop = Arc::new(AtomicBool::new(false));
        let (sending, sent) = mpsc::channel();
        let burst = {
            let (client, stop, seed) =
                (Client::from_info(&daemon.info), stop.clone(), rng.random());
            std::thread::spawn(move || submit_burst(client, round, seed, stop, sending))
        };
        let delay = Duration::from_millis(rng.random_range(200..3000));
        std::thread::sleep(delay);
        // Every third round waits for a job to finish first, so the queue makes progress
        // whatever the draws; the others kill whenever the delay ends, often under the same
        // running job as the round before.
        if round % 3 == 2 {
            let deadline = Instant::now() + Duration::from_secs(60);
            while done_count(&daemon.client) == before {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: no job finished in 60 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Every other round aims at a request in flight (an HTTP exchange and a flushed
        // sled batch take milliseconds): its jobs may be committed with no answer sent.
        let aimed = rng.random_bool(0.5);
        if aimed {
            while sent.try_recv().is_ok() {}
            if sent.recv_timeout(Duration::from_secs(2)).is_ok() {
                std::thread::sleep(Duration::from_micros(rng.random_range(0..4000)));
            }
        }
        let workers = children_of(daemon.child.id());
        daemon.child.kill().unwrap(); // SIGKILL
        daemon.child.wait().unwrap();
        let alive_for = up.elapsed();
        stop.store(true, Ordering::SeqCst);
        let got = burst.join().unwrap();
        // The workers outlive a SIGKILLed daemon (nothing tells them), and one busy with a
        // job would finish it: they go too, with any forked as the kill landed.
        kill_all(&workers);
        let strays = tagged(TAG_VAR, &tag);
        kill_all(&strays);
        let left = tagged(TAG_VAR, &tag);
        assert!(
            left.is_empty(),
            "round {round}: processes survive SIGKILL: {left:?}"
        );
        eprintln!(
            "round {round}: killed after {alive_for:.1?} (delay {delay:.1?}{}); {} acknowledged, \
             {} unanswered; killed {} worker(s) and {} stray process(es)",
            if aimed { ", aimed at a request" } else { "" },
            got.acked.len(),
            got.unacked.len(),
            workers.len(),
            strays.len()
        );
        ledger.acked.extend(got.acked);
        ledger.unacked.extend(got.unacked);
        drop(daemon);
    }

    let last = start(&sb, &tag, ROUNDS);
    let drain = Instant::now();
    let deadline = drain + Duration::from_secs(240);
    loop {
        let status = last.client.status().unwrap();
        let pending = status.counts["queued"] + status.counts["leased"];
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs still pending after 240 s: {:?}",
            status.counts
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("drained in {:.1?}", drain.elapsed());
    let jobs = last
        .client
        .list(&ListQuery {
            state: None,
            limit: Some(10_000),
        })
        .unwrap();
    check(&sb, &ledger, &jobs);
    let run_ms: Vec<u64> = jobs
        .iter()
        .filter_map(|j| Some(j.timings.finished_at_ms? - j.timings.started_at_ms?))
        .collect();
    eprintln!(
        "a job ran {} ms on average (start of its last attempt to done)",
        run_ms.iter().sum::<u64>() / run_ms.len().max(1) as u64
    );
    let most = jobs.iter().map(|j| j.interruptions).max().unwrap_or(0);
    let interrupted = jobs.iter().filter(|j| j.interruptions > 0).count();
    eprintln!(
        "{} jobs acknowledged, {} unanswered submissions, {} jobs in all; {interrupted} \
         interrupted, one of them {most} time(s); {:.1?} in total",
        ledger.acked.len(),
        ledger.unacked.len(),
        jobs.len(),
        started.elapsed()
    );
}

/// Waits until the worker reports a sampling step of job `id` (so it truly runs).
fn wait_until_sampling(client: &Client, id: u64, round: u32) {
    let (tx, rx) = mpsc::channel();
    let events = client.events().unwrap();
    std::thread::spawn(move || {
        for event in events.flatten() {
            if matches!(event, DaemonEvent::Progress { job, done, .. } if job == id && done >= 1) {
                let _ = tx.send(());
                return;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("round {round}: job {id} never started sampling"));
}

#[test]
fn a_running_job_outlives_more_daemon_kills_than_it_has_attempts() {
    const KILLS: u32 = 4;
    let tag = format!("{}-one-job", std::process::id());
    let sb = tiny_sandbox();
    let mut id = None;
    for round in 0..KILLS {
        let mut daemon = start(&sb, &tag, 100 + round);
        let job = *id.get_or_insert_with(|| {
            let mut request = SubmitRequest::new(GenerationParams {
                model: "tiny.safetensors".into(),
                prompt: "a lighthouse that will not die".into(),
                width: 64,
                height: 64,
                steps: 40,
                seed: 5,
                ..GenerationParams::default()
            });
            request.count = 1;
            let answer = daemon.client.submit(&request).unwrap();
            assert_eq!(answer.ids.len(), 1);
            answer.ids[0]
        });
        wait_until_sampling(&daemon.client, job, round);
        let workers = children_of(daemon.child.id());
        daemon.child.kill().unwrap(); // SIGKILL, mid-job
        daemon.child.wait().unwrap();
        kill_all(&workers);
        kill_all(&tagged(TAG_VAR, &tag));
        drop(daemon);
    }
    let job = id.unwrap();
    let last = start(&sb, &tag, 100 + KILLS);
    let deadline = Instant::now() + Duration::from_secs(120);
    let view = loop {
        let view = last.client.get(job).unwrap();
        if view.state != "queued" && view.state != "leased" {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} not finished: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(view.state, "done", "{view:?}");
    assert_eq!((view.attempts, view.interruptions), (0, KILLS), "{view:?}");
    assert!(
        view.max_attempts < KILLS,
        "the test must kill more often than {view:?} allows"
    );
    let name = format!("job{job:010}_000.png");
    assert_eq!(view.outputs, vec![name.clone()]);
    let pngs: Vec<String> = std::fs::read_dir(sb.path("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    assert_eq!(pngs, vec![name], "exactly one image");
    let shown = common::daemon::imagelab(&sb, &["job", &job.to_string()]);
    let text = common::daemon::stdout(&shown);
    assert!(
        text.contains(&format!("interrupted {KILLS} times")),
        "{text}"
    );
    assert!(text.contains("attempts 0/3"), "{text}");
}

fn check(sb: &Sandbox, ledger: &Ledger, jobs: &[JobView]) {
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    let mut by_key: HashMap<Key, usize> = HashMap::new();
    for job in jobs {
        *by_id.entry(job.id).or_default() += 1;
        *by_key
            .entry((job.spec.prompt.clone(), job.spec.seed))
            .or_default() += 1;
    }
    for (id, key) in &ledger.acked {
        assert_eq!(by_id.get(id), Some(&1), "acknowledged job {id} ({key:?})");
        assert_eq!(
            by_key.get(key),
            Some(&1),
            "job {key:?} exists more than once"
        );
    }
    let mut expected_images = BTreeSet::new();
    for job in jobs {
        let key = (job.spec.prompt.clone(), job.spec.seed);
        match ledger.acked.get(&job.id) {
            Some(acked) => assert_eq!(acked, &key, "job {} is not what was submitted", job.id),
            None => {
                assert!(
                    ledger.unacked.contains(&key),
                    "job {} ({key:?}) was never submitted",
                    job.id
                );
                assert_eq!(by_key[&key], 1, "unanswered {key:?} exists more than once");
            }
        }
        assert_eq!(job.state, "done", "job {}: {job:?}", job.id);
        // Only a job's own failure uses an attempt, and nothing here fails: a kill of the
        // daemon is an interruption, at most one per round.
        assert_eq!(job.attempts, 0, "job {} used attempts: {job:?}", job.id);
        assert!(
            job.interruptions <= ROUNDS,
            "job {} was interrupted {} times in {ROUNDS} rounds",
            job.id,
            job.interruptions
        );
        let name = format!("job{:010}_000.png", job.id);
        assert_eq!(job.outputs, vec![name.clone()], "job {} outputs", job.id);
        assert!(expected_images.insert(name), "two jobs name one image");
    }
    let mut pngs = BTreeSet::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(sb.path("output")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".png") {
            pngs.insert(name);
        } else {
            others.push(name);
        }
    }
    assert_eq!(
        pngs, expected_images,
        "output/ holds exactly one image per done job"
    );
    if !others.is_empty() {
        eprintln!("output/ also holds (temporary files of killed writes?): {others:?}");
    }
}
