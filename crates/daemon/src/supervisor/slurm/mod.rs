//! The Slurm backend: an actor that hands queued jobs to a Slurm cluster, one Slurm job
//! per queue job (`sbatch` of `imagelab worker --one-job` with the job's GPU from GRES),
//! and follows them to their end through `squeue` / `scontrol` and the event lines the
//! worker writes into the attempt's folder on the shared filesystem.
//!
//! Durability: an attempt's record is written before `sbatch` runs and again with the
//! Slurm id after it answers, and jobs leased to Slurm are left leased by the restart
//! recovery, so a daemon killed at any point finds its Slurm jobs again (by id, or by job
//! name when it died before the id was written) and submits nothing twice.

pub mod commands;
mod folder;

use super::actor::Supervisor;
use crate::events::EventBus;
use actix::prelude::*;
use commands::{SlurmState, Submission};
use folder::{job_name, queue_token, JobFolder, Record};
use imagelab_core::events::{DaemonEvent, SlurmJobView, SlurmNodeView, WorkerState, WorkerStatus};
use imagelab_core::slurm::SlurmSettings;
use imagelab_core::worker::{WorkRequest, WorkerEvent};
use imagelab_queue::{output_stem, Completion, Job, JobId, JobState, Queue, WorkerView};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The lease holder's name for every job Slurm runs, and its row's name.
pub const SLURM_WORKER: &str = "slurm";
/// The `device` the backend's rows show: the cluster, and one job on it.
pub const SLURM_DEVICE: &str = "Slurm cluster";
pub const SLURM_JOB_DEVICE: &str = "Slurm job";

/// What the backend needs from the daemon.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub settings: SlurmSettings,
    /// `imagelab` as the nodes run it.
    pub program: PathBuf,
    pub output_dir: PathBuf,
    /// Where attempt folders go (`<jobs>/slurm`): on the filesystem the nodes share.
    pub folders: PathBuf,
    pub preview_every: usize,
}

/// Whether a job is one the Slurm backend runs (so a restart must not take it back).
pub fn is_slurm_job(job: &Job) -> bool {
    matches!(&job.state, JobState::Leased { worker, .. } if worker == SLURM_WORKER)
}

/// Look now (new work, or a cancel to carry out) rather than at the next poll.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Poll;

/// The user cancelled this job.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct CancelSlurm(pub u64);

/// Stop following (the Slurm jobs go on; the next daemon follows them).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StopSlurm(pub mpsc::Sender<()>);

/// What the backend shows in `GET /v1/gpus`: its rows (itself, then one per Slurm job),
/// the cluster's nodes, and our jobs' Slurm states (which job views show).
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[rtype(result = "()")]
pub(super) struct SlurmChanged {
    pub rows: Vec<WorkerStatus>,
    pub nodes: Vec<SlurmNodeView>,
    pub jobs: BTreeMap<u64, SlurmJobView>,
}

/// `sinfo` is asked once every this many polls.
const NODES_EVERY: u32 = 10;

struct Tracked {
    job: Job,
    attempt: u32,
    folder: JobFolder,
    slurm_id: Option<u64>,
    /// Bytes of `events.jsonl` already handled.
    offset: u64,
    cancel: bool,
    cancel_sent: bool,
    slurm: Option<SlurmState>,
    span: tracing::Span,
}

pub(super) struct SlurmBackend {
    options: SlurmOptions,
    queue: Arc<Queue>,
    events: EventBus,
    supervisor: Addr<Supervisor>,
    tracked: BTreeMap<u64, Tracked>,
    /// Slurm ids of attempts whose result is in but that Slurm still lists as not
    /// finished (the worker is exiting): they count toward `max_submitted` until gone.
    draining: std::collections::BTreeSet<u64>,
    /// Why Slurm cannot be used now (down, refusing jobs); jobs wait in our queue.
    error: Option<String>,
    /// Names this queue's Slurm jobs (see [`queue_token`]).
    token: String,
    nodes: Vec<SlurmNodeView>,
    polls: u32,
    shown: SlurmChanged,
}

impl Actor for SlurmBackend {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match queue_token(&self.options.folders) {
            Ok(token) => self.token = token,
            Err(e) => {
                // Without it nothing can be submitted safely; say so and keep trying.
                self.error = Some(format!(
                    "cannot write {}: {e}",
                    self.options.folders.display()
                ));
            }
        }
        self.adopt();
        self.poll();
        let every = Duration::from_millis(self.options.settings.poll_ms.max(50));
        ctx.run_interval(every, |act, _| act.poll());
    }
}

impl SlurmBackend {
    pub(super) fn new(
        options: SlurmOptions,
        queue: Arc<Queue>,
        events: EventBus,
        supervisor: Addr<Supervisor>,
    ) -> SlurmBackend {
        SlurmBackend {
            options,
            queue,
            events,
            supervisor,
            tracked: BTreeMap::new(),
            draining: Default::default(),
            error: None,
            token: String::new(),
            nodes: Vec::new(),
            polls: 0,
            shown: SlurmChanged::default(),
        }
    }

    /// Takes up the jobs a previous daemon left with Slurm.
    fn adopt(&mut self) {
        let jobs = match self.queue.list() {
            Ok(jobs) => jobs,
            Err(e) => return tracing::error!("slurm: cannot list the queue: {e}"),
        };
        for job in jobs.into_iter().filter(is_slurm_job) {
            let JobState::Leased { attempt, .. } = job.state else {
                continue;
            };
            let folder = JobFolder::new(&self.options.folders, job.id.0, attempt);
            let slurm_id = folder.read_record().and_then(|r| r.slurm_id);
            let span = imagelab_logging::job_span!(job.id.0, attempt);
            span.in_scope(|| tracing::info!(?slurm_id, "following the Slurm job again"));
            self.track(job, attempt, folder, slurm_id, span);
        }
    }

    fn track(
        &mut self,
        job: Job,
        attempt: u32,
        folder: JobFolder,
        slurm_id: Option<u64>,
        span: tracing::Span,
    ) {
        self.tracked.insert(
            job.id.0,
            Tracked {
                job,
                attempt,
                folder,
                slurm_id,
                offset: 0,
                cancel: false,
                cancel_sent: false,
                slurm: None,
                span,
            },
        );
    }

    fn poll(&mut self) {
        let listed = commands::our_jobs();
        if let Ok(listed) = &listed {
            let running: std::collections::BTreeSet<u64> = listed
                .values()
                .filter(|(_, state)| !state.is_finished())
                .map(|(id, _)| *id)
                .collect();
            self.draining.retain(|id| running.contains(id));
        }
        let ids: Vec<u64> = self.tracked.keys().copied().collect();
        for id in ids {
            self.follow(id, listed.as_ref().ok());
        }
        match listed {
            Ok(_) if self.token.is_empty() => {}
            Ok(_) => {
                self.error = None;
                self.submit();
            }
            Err(e) => {
                if self.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("slurm: {e}; jobs wait in the queue");
                }
                self.error = Some(e);
            }
        }
        if self.polls.is_multiple_of(NODES_EVERY) {
            self.read_nodes();
        }
        self.polls = self.polls.wrapping_add(1);
        self.report();
    }

    fn read_nodes(&mut self) {
        match commands::nodes() {
            Ok(nodes) => {
                self.nodes = nodes
                    .into_iter()
                    .map(|n| SlurmNodeView {
                        name: n.name,
                        state: n.state,
                        gres: n.gres,
                        gres_used: n.gres_used,
                    })
                    .collect()
            }
            Err(e) => tracing::debug!("slurm: cannot list the nodes: {e}"),
        }
    }

    /// Reads the attempt's new events, learns its Slurm state, and settles it when over.
    fn follow(&mut self, id: u64, listed: Option<&BTreeMap<String, (u64, SlurmState)>>) {
        if self.read_events(id) {
            return;
        }
        let Some(t) = self.tracked.get_mut(&id) else {
            return;
        };
        let name = job_name(&self.token, id, t.attempt);
        let by_name = listed.and_then(|l| l.get(&name)).cloned();
        if t.slurm_id.is_none() {
            if let Some((slurm_id, _)) = &by_name {
                // The previous daemon died before it wrote the id down.
                t.slurm_id = Some(*slurm_id);
                let record = Record {
                    job: id,
                    attempt: t.attempt,
                    slurm_id: Some(*slurm_id),
                };
                if let Err(e) = t.folder.write_record(&record) {
                    tracing::warn!("slurm: job {id}: cannot write its record: {e}");
                }
            } else if listed.is_some() {
                // Never submitted (sbatch did not get to answer): it goes back unrun.
                t.span
                    .in_scope(|| tracing::info!("Slurm has no such job; back to the queue"));
                self.settle(id, |q, job, attempt| q.release(job, attempt));
                return;
            } else {
                return;
            }
        }
        let Some(slurm_id) = t.slurm_id else { return };
        if t.cancel && !t.cancel_sent {
            match commands::scancel(slurm_id) {
                Ok(()) => t.cancel_sent = true,
                Err(e) => tracing::warn!("slurm: job {id}: {e}"),
            }
        }
        let state = match by_name {
            Some((listed_id, state)) if listed_id == slurm_id => Some(state),
            _ if listed.is_none() => return,
            _ => match commands::job_state(slurm_id) {
                Ok(state) => state,
                Err(e) => return tracing::warn!("slurm: job {id}: {e}"),
            },
        };
        t.slurm = state.clone();
        let over = state.as_ref().is_none_or(SlurmState::is_finished);
        if !over || self.read_events(id) {
            return;
        }
        let Some(t) = self.tracked.get(&id) else {
            return;
        };
        if t.cancel {
            t.span
                .in_scope(|| tracing::info!(slurm_id, "Slurm ended the job as asked"));
            self.settle(id, |q, job, attempt| q.release(job, attempt));
            return;
        }
        let how = state.map_or("unknown to Slurm".to_string(), |s| {
            format!("ended {}", s.state)
        });
        let error = format!(
            "Slurm job {slurm_id} {how} without a result (its log: {})",
            t.folder.log().display()
        );
        t.span.in_scope(|| tracing::warn!(%error));
        self.settle(id, |q, job, attempt| q.fail(job, attempt, &error, true));
    }

    /// Handles the attempt's new event lines; whether they ended it.
    fn read_events(&mut self, id: u64) -> bool {
        let Some(t) = self.tracked.get_mut(&id) else {
            return true;
        };
        let (events, offset) = t.folder.read_events(t.offset);
        t.offset = offset;
        for event in events {
            match event {
                WorkerEvent::Progress {
                    done,
                    total,
                    preview,
                    ..
                } => self.events.publish(DaemonEvent::Progress {
                    job: id,
                    worker: SLURM_WORKER.into(),
                    done,
                    total,
                    preview,
                }),
                WorkerEvent::Done {
                    outputs,
                    seeds,
                    model_hash,
                    step_time_ms,
                    ..
                } => {
                    let completion = Completion {
                        outputs,
                        seeds,
                        model_hash,
                        step_time_ms,
                    };
                    self.settle(id, |q, job, attempt| q.complete(job, attempt, completion));
                    return true;
                }
                WorkerEvent::Failed {
                    error, retryable, ..
                } => {
                    self.settle(id, |q, job, attempt| {
                        q.fail(job, attempt, &error, retryable)
                    });
                    return true;
                }
                WorkerEvent::Cancelled { .. } => {
                    self.settle(id, |q, job, attempt| q.release(job, attempt));
                    return true;
                }
                WorkerEvent::Ready { .. } | WorkerEvent::Models { .. } => {}
            }
        }
        false
    }

    /// Applies the attempt's end to the queue, publishes it and stops following it.
    fn settle(
        &mut self,
        id: u64,
        outcome: impl FnOnce(&Queue, JobId, u32) -> imagelab_queue::Result<Job>,
    ) {
        let Some(t) = self.tracked.remove(&id) else {
            return;
        };
        if let Some(slurm_id) = t.slurm_id {
            self.draining.insert(slurm_id);
        }
        let _in_job = t.span.enter();
        match outcome(&self.queue, t.job.id, t.attempt) {
            Ok(job) => {
                tracing::info!(state = job.state.name(), "the Slurm attempt ended");
                publish_job(&self.events, &job);
            }
            Err(e) => tracing::warn!("cannot record its end: {e}"),
        }
    }

    /// Hands queued jobs to Slurm while fewer than `max_submitted` are there.
    fn submit(&mut self) {
        let view = WorkerView {
            id: SLURM_WORKER.into(),
            gpus: vec![SLURM_WORKER.into()],
            models_loaded: Vec::new(),
        };
        while self.tracked.len() + self.draining.len() < self.options.settings.max_submitted {
            let job = match self.queue.next_for_worker(&view) {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => return tracing::warn!("slurm: cannot lease a job: {e}"),
            };
            let JobState::Leased { attempt, .. } = job.state else {
                return;
            };
            let span = imagelab_logging::job_span!(job.id.0, attempt);
            match self.hand_over(&job, attempt, &span) {
                Ok((folder, slurm_id)) => {
                    span.in_scope(|| tracing::info!(slurm_id, "submitted to Slurm"));
                    publish_job(&self.events, &job);
                    self.track(job, attempt, folder, Some(slurm_id), span);
                }
                Err(e) => {
                    span.in_scope(|| tracing::warn!("cannot submit to Slurm: {e}"));
                    match self.queue.release(job.id, attempt) {
                        Ok(job) => publish_job(&self.events, &job),
                        Err(e) => tracing::warn!("cannot give it back: {e}"),
                    }
                    self.error = Some(e);
                    return;
                }
            }
        }
    }

    /// Writes the attempt's folder and runs `sbatch`; the Slurm id, recorded.
    fn hand_over(
        &self,
        job: &Job,
        attempt: u32,
        span: &tracing::Span,
    ) -> Result<(JobFolder, u64), String> {
        let folder = JobFolder::new(&self.options.folders, job.id.0, attempt);
        let request = WorkRequest {
            job: job.id.0,
            attempt,
            params: job.spec.params.clone(),
            output_dir: self.options.output_dir.clone(),
            stems: (0..job.spec.params.batch)
                .map(|i| output_stem(job.id, i))
                .collect(),
            preview_every: self.options.preview_every,
        };
        let settings = &self.options.settings;
        folder
            .prepare(&request, &self.options.program, &settings.device)
            .map_err(|e| format!("cannot write {}: {e}", folder.dir.display()))?;
        let name = job_name(&self.token, job.id.0, attempt);
        let slurm_id = span.in_scope(|| {
            commands::sbatch(&Submission {
                name: &name,
                script: &folder.script(),
                log: &folder.log(),
                workdir: &folder.dir,
                gres: &settings.gres,
                partition: settings.partition.as_deref(),
                extra: &settings.sbatch_args,
            })
        })?;
        let record = Record {
            job: job.id.0,
            attempt,
            slurm_id: Some(slurm_id),
        };
        if let Err(e) = folder.write_record(&record) {
            // The job runs; a restart before this is written finds it by name.
            tracing::warn!(
                "slurm: job {}: cannot record Slurm id {slurm_id}: {e}",
                job.id
            );
        }
        Ok((folder, slurm_id))
    }

    /// Tells the supervisor what to show: the backend, then each Slurm job.
    fn report(&mut self) {
        // `slurm` stands for the cluster's GPUs: any job not pinned to a local GPU fits.
        let row = |name: String, device: &str, state: WorkerState| WorkerStatus {
            name,
            device: device.into(),
            gpus: vec![SLURM_WORKER.into()],
            state,
            models_loaded: Vec::new(),
            vram: Vec::new(),
            pid: None,
        };
        let mut rows = vec![row(
            SLURM_WORKER.into(),
            SLURM_DEVICE,
            match &self.error {
                Some(e) => WorkerState::Blocked {
                    reason: format!("Slurm: {e}"),
                },
                None => WorkerState::Idle,
            },
        )];
        let mut jobs = BTreeMap::new();
        for (id, t) in &self.tracked {
            let (state, reason) = match &t.slurm {
                Some(s) => (s.state.clone(), s.reason.clone()),
                None => ("SUBMITTING".to_string(), String::new()),
            };
            jobs.insert(
                *id,
                SlurmJobView {
                    slurm_id: t.slurm_id,
                    state,
                    reason,
                },
            );
            let name = match t.slurm_id {
                Some(slurm_id) => format!("slurm:{slurm_id}"),
                None => "slurm:?".into(),
            };
            let state = match &t.slurm {
                Some(s) if s.is_pending() => WorkerState::Blocked {
                    reason: format!("job {id} pending in Slurm ({})", s.reason),
                },
                _ => WorkerState::Busy { job: *id },
            };
            rows.push(row(name, SLURM_JOB_DEVICE, state));
        }
        let report = SlurmChanged {
            rows,
            nodes: self.nodes.clone(),
            jobs,
        };
        if report != self.shown {
            self.shown = report.clone();
            self.supervisor.do_send(report);
        }
    }
}

fn publish_job(events: &EventBus, job: &Job) {
    super::publish_job(events, job, SLURM_WORKER);
}

impl Handler<Poll> for SlurmBackend {
    type Result = ();
    fn handle(&mut self, _: Poll, _: &mut Context<Self>) {
        self.poll();
    }
}

impl Handler<CancelSlurm> for SlurmBackend {
    type Result = ();
    fn handle(&mut self, CancelSlurm(job): CancelSlurm, _: &mut Context<Self>) {
        if let Some(t) = self.tracked.get_mut(&job) {
            t.cancel = true;
            t.span
                .in_scope(|| tracing::info!("cancelling the Slurm job"));
            self.poll();
        }
    }
}

impl Handler<StopSlurm> for SlurmBackend {
    type Result = ();
    fn handle(&mut self, StopSlurm(done): StopSlurm, ctx: &mut Context<Self>) {
        let _ = done.send(());
        ctx.stop();
        Arbiter::current().stop();
    }
}
