//! The `Supervisor` actor: polls the GPUs, feeds the idle policy, keeps the lease ledger,
//! and dispatches jobs to free workers whose GPUs nobody else is using. It also publishes
//! every worker change on the event bus and keeps the status `GET /v1/gpus` serves.

use super::slurm::{CancelSlurm, Poll, SlurmBackend, SlurmChanged, StopSlurm};
use super::worker::{CancelRunning, GpuWorker, ModelOp, RunJob, StopWorker, WorkerSetup};
use super::SupervisorOptions;
use crate::events::EventBus;
use actix::prelude::*;
use imagelab_core::events::{DaemonEvent, GpuStatusView, GpuView, WorkerState, WorkerStatus};
use imagelab_core::worker::WorkerCommand;
use imagelab_gpu::{Clock, GpuProbe, GpuSample, GpuVerdict, IdlePolicy, NotIdle, NvmlProbe};
use imagelab_queue::{JobState, Queue, WorkerView};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

/// New work may be waiting (a submission, a resume): dispatch now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick;

/// The user cancelled this job; stop it if a worker runs it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelJob(pub u64);

/// Load (`load`) or unload a model on one worker, or on all of them when `worker` is
/// `None` (load: the first free worker). Answers the workers' status, or what is wrong.
#[derive(Message)]
#[rtype(result = "Result<Vec<WorkerStatus>, String>")]
pub struct ModelCommand {
    pub load: bool,
    pub worker: Option<String>,
    pub model: Option<String>,
    /// Load only: the VAE and text encoders replacing the checkpoint's own.
    pub vae: Option<String>,
    pub clip: Option<String>,
}

/// A worker's state, models or VRAM changed.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WorkerChanged {
    pub status: WorkerStatus,
    /// How many jobs the worker had been sent when it reported (see [`Slot::jobs_sent`]).
    pub jobs_handled: u64,
}

/// Stop every worker, then the supervisor's system.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Stop(pub mpsc::Sender<()>);

struct Slot {
    addr: Addr<GpuWorker>,
    /// What the worker last reported.
    reported: WorkerStatus,
    /// What was last published (the report, possibly shown as blocked).
    shown: Option<WorkerStatus>,
    on_gpus: bool,
    /// Jobs sent to the worker. A report made before it handled the last of them shows a
    /// state the dispatch already replaced, so its state is ignored.
    jobs_sent: u64,
}

pub struct Supervisor {
    queue: Arc<Queue>,
    events: EventBus,
    shared: Arc<RwLock<GpuStatusView>>,
    history: Arc<RwLock<super::history::GpuHistoryStore>>,
    options: Option<SupervisorOptions>,
    policy: IdlePolicy,
    clock: Box<dyn Clock + Send>,
    probe: Option<Box<dyn GpuProbe + Send>>,
    nvml_error: Option<String>,
    samples: Vec<GpuSample>,
    verdicts: BTreeMap<String, GpuVerdict>,
    slots: Vec<Slot>,
    arbiters: Vec<Arbiter>,
    /// The Slurm backend, when on, and the rows it last reported.
    slurm: Option<Addr<SlurmBackend>>,
    slurm_report: SlurmChanged,
}

impl Supervisor {
    pub(super) fn new(
        queue: Arc<Queue>,
        events: EventBus,
        shared: Arc<RwLock<GpuStatusView>>,
        history: Arc<RwLock<super::history::GpuHistoryStore>>,
        mut options: SupervisorOptions,
    ) -> Supervisor {
        let policy = IdlePolicy::new(options.policy.clone()).unwrap_or_else(|e| {
            tracing::error!("GPU policy settings are not valid ({e}); using the defaults");
            IdlePolicy::new(Default::default()).expect("the default policy is valid")
        });
        let clock = std::mem::replace(
            &mut options.clock,
            Box::new(imagelab_gpu::SystemClock::new()),
        );
        Supervisor {
            queue,
            events,
            shared,
            history,
            options: Some(options),
            policy,
            clock,
            probe: None,
            nvml_error: None,
            samples: Vec::new(),
            verdicts: BTreeMap::new(),
            slots: Vec::new(),
            arbiters: Vec::new(),
            slurm: None,
            slurm_report: SlurmChanged::default(),
        }
    }

    /// Takes one GPU sample and judges it; without a probe every GPU counts as free.
    fn sample(&mut self) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        match probe.snapshot() {
            Ok(samples) => {
                let own: BTreeSet<u32> = self.slots.iter().filter_map(|s| s.reported.pid).collect();
                let verdicts = self.policy.observe(self.clock.now(), &samples, &own);
                self.verdicts = verdicts.into_iter().map(|v| (v.uuid.clone(), v)).collect();
                self.record_history(&samples);
                self.samples = samples;
                self.nvml_error = None;
            }
            Err(e) => {
                // Keep the last verdicts: a failed read says nothing about who is there.
                if self.nvml_error.is_none() {
                    tracing::warn!("cannot sample the GPUs: {e}");
                }
                self.nvml_error = Some(e.to_string());
                if let Ok(mut history) = self.history.write() {
                    history.failed(e.to_string());
                }
            }
        }
    }

    /// Adds the sample to the history, with the jobs our workers run on each GPU.
    fn record_history(&self, samples: &[GpuSample]) {
        let mut jobs_on: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for slot in &self.slots {
            if let WorkerState::Busy { job } = slot.reported.state {
                for gpu in &slot.reported.gpus {
                    jobs_on.entry(gpu.clone()).or_default().push(job);
                }
            }
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Ok(mut history) = self.history.write() {
            history.record(now_ms, samples, &self.verdicts, &jobs_on);
        }
    }

    /// Why a worker may not start a job on its GPUs now, if it may not.
    fn blocked_reason(&self, slot: &Slot) -> Option<String> {
        if !slot.on_gpus || self.probe.is_none() {
            return None;
        }
        for gpu in &slot.reported.gpus {
            let Some(verdict) = self.verdicts.get(gpu) else {
                return Some(format!("GPU {gpu} was not found by NVML"));
            };
            // Our own lease ends as the worker reports idle; the verdict was taken before.
            let reasons: Vec<String> = verdict
                .reasons
                .iter()
                .filter(|r| **r != NotIdle::Leased)
                .map(|r| r.to_string())
                .collect();
            if !reasons.is_empty() {
                return Some(format!("GPU {}: {}", verdict.index, reasons.join("; ")));
            }
        }
        None
    }

    /// The status to show for a slot: a free worker on a GPU someone else uses is blocked.
    fn shown_status(&self, slot: &Slot) -> WorkerStatus {
        let mut status = slot.reported.clone();
        if status.state == WorkerState::Idle {
            if let Some(reason) = self.blocked_reason(slot) {
                status.state = WorkerState::Blocked { reason };
            }
        }
        status
    }

    /// Publishes changed worker states and refreshes the status `GET /v1/gpus` serves.
    fn refresh(&mut self) {
        let shown: Vec<WorkerStatus> = self.slots.iter().map(|s| self.shown_status(s)).collect();
        for (slot, status) in self.slots.iter_mut().zip(&shown) {
            if slot.shown.as_ref() != Some(status) {
                self.events.publish(DaemonEvent::Worker(status.clone()));
                slot.shown = Some(status.clone());
            }
        }
        let gpus = self
            .samples
            .iter()
            .map(|g| {
                let verdict = self.verdicts.get(&g.uuid);
                GpuView {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    name: g.name.clone(),
                    memory_total_mib: g.memory_total_mib,
                    memory_used_mib: g.memory_used_mib,
                    utilization_pct: g.utilization_pct.unwrap_or(0),
                    idle: verdict.is_some_and(|v| v.idle),
                    reason: verdict.filter(|v| !v.idle).map(|v| {
                        let reasons: Vec<String> =
                            v.reasons.iter().map(|r| r.to_string()).collect();
                        reasons.join("; ")
                    }),
                }
            })
            .collect();
        let mut workers = shown;
        workers.extend(self.slurm_report.rows.iter().cloned());
        if let Ok(mut view) = self.shared.write() {
            *view = GpuStatusView {
                nvml_error: self.nvml_error.clone(),
                gpus,
                workers,
                slurm_nodes: self.slurm_report.nodes.clone(),
                slurm_jobs: self.slurm_report.jobs.clone(),
            };
        }
    }

    /// Gives every free, unblocked worker its next job.
    fn dispatch(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.reported.state != WorkerState::Idle || self.blocked_reason(slot).is_some() {
                continue;
            }
            let view = WorkerView {
                id: slot.reported.name.clone(),
                gpus: slot.reported.gpus.clone(),
                models_loaded: slot.reported.models_loaded.clone(),
            };
            let job = match self.queue.next_for_worker(&view) {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("worker {}: cannot lease a job: {e}", view.id);
                    continue;
                }
            };
            let attempt = match job.state {
                JobState::Leased { attempt, .. } => attempt,
                _ => 0,
            };
            // The attempt's span: the worker actor logs in it until the attempt ends.
            let span = imagelab_logging::job_span!(job.id.0, attempt);
            span.in_scope(|| tracing::info!(worker = %view.id, "leased"));
            let now = self.clock.now();
            if self.slots[i].on_gpus {
                for gpu in &view.gpus {
                    self.policy.lease(gpu, now);
                }
            }
            self.events.publish(DaemonEvent::Job {
                id: job.id.0,
                state: job.state.name().to_string(),
                worker: Some(view.id.clone()),
                error: None,
            });
            // Busy until the worker says otherwise, so the next loop skips it.
            self.slots[i].reported.state = WorkerState::Busy { job: job.id.0 };
            self.slots[i].jobs_sent += 1;
            self.slots[i].addr.do_send(RunJob { job, span });
        }
        self.refresh();
    }

    /// `yield_immediately`: stop our job on a GPU a stranger just started using.
    fn yield_where_asked(&self) {
        for slot in &self.slots {
            let WorkerState::Busy { job } = slot.reported.state else {
                continue;
            };
            let must_yield = slot
                .reported
                .gpus
                .iter()
                .any(|g| self.verdicts.get(g).is_some_and(|v| v.should_yield));
            if must_yield && slot.on_gpus {
                imagelab_logging::job_span!(job).in_scope(|| {
                    tracing::info!("another process started on its GPU; yielding");
                });
                slot.addr.do_send(CancelRunning {
                    job,
                    yielding: true,
                });
            }
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut options) = self.options.take() else {
            return;
        };
        if options.workers.iter().any(|w| w.on_gpus()) {
            let probe = match options.probe.take() {
                Some(factory) => factory(),
                None => NvmlProbe::new().map(|p| Box::new(p) as Box<dyn GpuProbe + Send>),
            };
            match probe {
                Ok(probe) => self.probe = Some(probe),
                Err(e) => {
                    tracing::warn!("no GPU samples ({e}): workers run without the idle policy");
                    self.nvml_error = Some(e.to_string());
                }
            }
        }
        for spec in &options.workers {
            let arbiter = Arbiter::new();
            let on_gpus = spec.on_gpus();
            let setup = WorkerSetup {
                spec: spec.clone(),
                program: options.program.clone(),
                output_dir: options.output_dir.clone(),
                queue: self.queue.clone(),
                events: self.events.clone(),
                supervisor: ctx.address(),
                preview_every: options.preview_every,
                instance_id: options.instance_id.clone(),
                restart_delay: options.restart_delay,
            };
            let reported = WorkerStatus {
                name: spec.name.clone(),
                device: spec.device.clone(),
                gpus: spec.gpus.clone(),
                state: WorkerState::Starting,
                models_loaded: Vec::new(),
                vram: Vec::new(),
                pid: None,
            };
            let addr =
                GpuWorker::start_in_arbiter(&arbiter.handle(), move |_| GpuWorker::new(setup));
            self.slots.push(Slot {
                addr,
                reported,
                shown: None,
                on_gpus,
                jobs_sent: 0,
            });
            self.arbiters.push(arbiter);
        }
        if let Some(slurm) = options.slurm.take() {
            let arbiter = Arbiter::new();
            let (queue, events, me) = (self.queue.clone(), self.events.clone(), ctx.address());
            self.slurm = Some(SlurmBackend::start_in_arbiter(
                &arbiter.handle(),
                move |_| SlurmBackend::new(slurm, queue, events, me),
            ));
            self.arbiters.push(arbiter);
        }
        self.sample();
        self.refresh();
        let interval = self
            .policy
            .config()
            .sample_interval()
            .max(Duration::from_millis(10));
        ctx.run_interval(interval, |act, _ctx| {
            act.sample();
            act.yield_where_asked();
            act.dispatch();
        });
    }
}

impl Handler<Kick> for Supervisor {
    type Result = ();
    fn handle(&mut self, _: Kick, _: &mut Context<Self>) {
        self.dispatch();
        if let Some(slurm) = &self.slurm {
            slurm.do_send(Poll);
        }
    }
}

impl Handler<SlurmChanged> for Supervisor {
    type Result = ();
    fn handle(&mut self, report: SlurmChanged, _: &mut Context<Self>) {
        for row in &report.rows {
            if !self.slurm_report.rows.contains(row) {
                self.events.publish(DaemonEvent::Worker(row.clone()));
            }
        }
        self.slurm_report = report;
        self.refresh();
    }
}

impl Handler<WorkerChanged> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: WorkerChanged, _: &mut Context<Self>) {
        let WorkerChanged {
            mut status,
            jobs_handled,
        } = msg;
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.reported.name == status.name)
        else {
            return;
        };
        if jobs_handled < slot.jobs_sent {
            // Made before the worker saw our last job: only its models and memory are news.
            status.state = slot.reported.state.clone();
        }
        let was_busy = matches!(slot.reported.state, WorkerState::Busy { .. });
        let now_busy = matches!(status.state, WorkerState::Busy { .. });
        if was_busy && !now_busy && slot.on_gpus {
            for gpu in &status.gpus {
                self.policy.release(gpu);
            }
        }
        slot.reported = status;
        self.dispatch();
    }
}

impl Handler<CancelJob> for Supervisor {
    type Result = ();
    fn handle(&mut self, CancelJob(job): CancelJob, _: &mut Context<Self>) {
        if let Some(slurm) = &self.slurm {
            slurm.do_send(CancelSlurm(job));
        }
        for slot in &self.slots {
            if slot.reported.state == (WorkerState::Busy { job }) {
                slot.addr.do_send(CancelRunning {
                    job,
                    yielding: false,
                });
            }
        }
    }
}

impl Handler<ModelCommand> for Supervisor {
    type Result = Result<Vec<WorkerStatus>, String>;

    fn handle(&mut self, msg: ModelCommand, _: &mut Context<Self>) -> Self::Result {
        if self.slots.is_empty() {
            return Err(
                "the daemon runs no local workers (Slurm jobs load their own models)".into(),
            );
        }
        let targets: Vec<usize> = match &msg.worker {
            Some(name) => match self.slots.iter().position(|s| s.reported.name == *name) {
                Some(i) => vec![i],
                None => {
                    let names: Vec<String> = self
                        .slots
                        .iter()
                        .map(|s| format!("{:?}", s.reported.name))
                        .collect();
                    return Err(format!(
                        "unknown worker {name:?}: the workers are {}",
                        names.join(", ")
                    ));
                }
            },
            // Loading goes to one worker: a free one without the model, else the first.
            None if msg.load => {
                let free = self.slots.iter().position(|s| {
                    s.reported.state == WorkerState::Idle
                        && !msg
                            .model
                            .as_ref()
                            .is_some_and(|m| s.reported.models_loaded.contains(m))
                });
                vec![free.unwrap_or(0)]
            }
            None => (0..self.slots.len()).collect(),
        };
        let command = match (msg.load, msg.model) {
            (true, Some(model)) => WorkerCommand::Load {
                model,
                vae: msg.vae,
                clip: msg.clip,
            },
            (true, None) => return Err("which model to load? `model` is required".into()),
            (false, model) => WorkerCommand::Unload { model },
        };
        for i in targets {
            self.slots[i].addr.do_send(ModelOp(command.clone()));
        }
        Ok(self.slots.iter().map(|s| self.shown_status(s)).collect())
    }
}

impl Handler<Stop> for Supervisor {
    type Result = ();
    fn handle(&mut self, Stop(done): Stop, _: &mut Context<Self>) {
        let mut waits = Vec::new();
        if let Some(slurm) = self.slurm.take() {
            let (tx, rx) = mpsc::channel();
            slurm.do_send(StopSlurm(tx));
            waits.push(rx);
        }
        for slot in &self.slots {
            let (tx, rx) = mpsc::channel();
            slot.addr.do_send(StopWorker(tx));
            waits.push(rx);
        }
        // The workers run on their own threads, so waiting here cannot deadlock.
        for rx in waits {
            let _ = rx.recv_timeout(Duration::from_secs(20));
        }
        for arbiter in self.arbiters.drain(..) {
            arbiter.stop();
            let _ = arbiter.join();
        }
        let _ = done.send(());
        System::current().stop();
    }
}
