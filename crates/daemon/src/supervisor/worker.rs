//! The `GpuWorker` actor: owns one `imagelab worker` child, sends it jobs and model
//! commands, and turns its reports — or its death — into queue transitions and events. A
//! crashed, killed or out-of-memory child costs the job one attempt and is started again;
//! the daemon stays up.

use super::actor::{Supervisor, WorkerChanged};
use super::child::{ChildProcess, ChildReport};
use super::WorkerSpec;
use crate::events::EventBus;
use actix::prelude::*;
use imagelab_core::events::{DaemonEvent, WorkerState, WorkerStatus};
use imagelab_core::worker::{WorkRequest, WorkerCommand, WorkerEvent};
use imagelab_queue::{output_stem, Completion, Job, JobId, JobState, Queue};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long a child gets to stop a job it was told to cancel before it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Run this job, already leased to this worker; `span` is its attempt's, which every line
/// about the attempt is written in.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RunJob {
    pub job: Job,
    pub span: tracing::Span,
}

/// Stop the running job: the user cancelled it, or (`yielding`) a stranger appeared on
/// the GPU and the user asked us to yield at once (the job goes back to the queue).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct CancelRunning {
    pub job: u64,
    pub yielding: bool,
}

/// Load or unload a model when the worker is next free.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ModelOp(pub WorkerCommand);

/// Kill the child, give the running job back, and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StopWorker(pub mpsc::Sender<()>);

/// A line (or the end) from the child started `start`-th.
#[derive(Message)]
#[rtype(result = "()")]
struct ChildLine {
    start: u64,
    report: ChildReport,
}

struct Running {
    job: Job,
    attempt: u32,
    span: tracing::Span,
    cancel_sent: bool,
    yielding: bool,
}

/// What a worker actor needs from the daemon.
pub(super) struct WorkerSetup {
    pub spec: WorkerSpec,
    pub program: PathBuf,
    pub output_dir: PathBuf,
    pub queue: Arc<Queue>,
    pub events: EventBus,
    pub supervisor: Addr<Supervisor>,
    pub preview_every: usize,
    pub instance_id: String,
    pub restart_delay: Duration,
}

pub(super) struct GpuWorker {
    setup: WorkerSetup,
    status: WorkerStatus,
    child: Option<ChildProcess>,
    /// Counts child starts, so lines from a dead child are told apart from its successor's.
    start: u64,
    running: Option<Running>,
    pending: VecDeque<WorkerCommand>,
    stopping: bool,
    /// How many `RunJob`s this worker has handled; the supervisor compares it with how
    /// many it sent, to tell a report that predates its last dispatch.
    jobs_handled: u64,
}

impl Actor for GpuWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.spawn_child(ctx);
    }
}

impl GpuWorker {
    pub(super) fn new(setup: WorkerSetup) -> GpuWorker {
        let status = WorkerStatus {
            name: setup.spec.name.clone(),
            device: setup.spec.device.clone(),
            gpus: setup.spec.gpus.clone(),
            state: WorkerState::Starting,
            models_loaded: Vec::new(),
            vram: Vec::new(),
            pid: None,
        };
        GpuWorker {
            setup,
            status,
            child: None,
            start: 0,
            running: None,
            pending: VecDeque::new(),
            stopping: false,
            jobs_handled: 0,
        }
    }

    fn spawn_child(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.start += 1;
        let start = self.start;
        let addr = ctx.address();
        let instance = format!(
            "{}-{}-{start}",
            self.setup.instance_id, self.setup.spec.name
        );
        let spawned = ChildProcess::spawn(
            &self.setup.program,
            &self.setup.spec,
            &instance,
            move |report| addr.do_send(ChildLine { start, report }),
        );
        match spawned {
            Ok(child) => {
                self.status.pid = Some(child.pid());
                self.child = Some(child);
                self.set_state(WorkerState::Starting);
            }
            Err(e) => {
                tracing::error!(
                    "worker {}: cannot start {}: {e}",
                    self.setup.spec.name,
                    self.setup.program.display()
                );
                self.status.pid = None;
                self.set_state(WorkerState::Down {
                    error: e.to_string(),
                });
                ctx.run_later(self.setup.restart_delay, |act, ctx| act.spawn_child(ctx));
            }
        }
    }

    /// Records a new state and tells the supervisor (which publishes it and dispatches).
    fn set_state(&mut self, state: WorkerState) {
        self.status.state = state;
        self.setup.supervisor.do_send(WorkerChanged {
            status: self.status.clone(),
            jobs_handled: self.jobs_handled,
        });
    }

    fn publish_progress(
        &self,
        job: u64,
        done: usize,
        total: usize,
        preview: Option<imagelab_core::events::Preview>,
    ) {
        self.setup.events.publish(DaemonEvent::Progress {
            job,
            worker: self.setup.spec.name.clone(),
            done,
            total,
            preview,
        });
    }

    fn publish_job(&self, job: &Job) {
        super::publish_job(&self.setup.events, job, &self.setup.spec.name);
    }

    /// Applies a queue transition for the running job and publishes the result.
    fn finish(&mut self, outcome: impl FnOnce(&Queue, JobId, u32) -> imagelab_queue::Result<Job>) {
        let Some(running) = self.running.take() else {
            return;
        };
        let _in_job = running.span.enter();
        match outcome(&self.setup.queue, running.job.id, running.attempt) {
            Ok(job) => {
                log_outcome(&job);
                self.publish_job(&job);
            }
            Err(e) => tracing::warn!("cannot record its end: {e}"),
        }
    }

    fn send(&mut self, command: &WorkerCommand) -> bool {
        match self.child.as_mut() {
            Some(child) => child.send(command).is_ok(),
            None => false,
        }
    }

    /// Sends the next queued model command when the child is free.
    fn run_pending(&mut self) {
        if self.status.state != WorkerState::Idle || self.running.is_some() {
            return;
        }
        let Some(command) = self.pending.pop_front() else {
            return;
        };
        let model = match &command {
            WorkerCommand::Load { model, .. } => model.clone(),
            WorkerCommand::Unload { model } => model.clone().unwrap_or_else(|| "all".into()),
            _ => String::new(),
        };
        if self.send(&command) {
            self.set_state(WorkerState::Loading { model });
        }
    }

    fn on_event(&mut self, event: WorkerEvent, ctx: &mut Context<Self>) {
        match event {
            WorkerEvent::Ready { pid } => {
                self.status.pid = Some(pid);
                self.status.models_loaded.clear();
                self.status.vram.clear();
                self.set_state(WorkerState::Idle);
                self.run_pending();
            }
            WorkerEvent::Progress {
                job,
                done,
                total,
                preview,
            } => {
                if let Some(running) = &self.running {
                    running
                        .span
                        .in_scope(|| tracing::debug!(done, total, "progress"));
                }
                self.publish_progress(job, done, total, preview)
            }
            WorkerEvent::Done {
                outputs,
                seeds,
                model_hash,
                step_time_ms,
                ..
            } => {
                let model = self
                    .running
                    .as_ref()
                    .map(|r| r.job.spec.params.model.clone());
                self.finish(|queue, id, attempt| {
                    queue.complete(
                        id,
                        attempt,
                        Completion {
                            outputs,
                            seeds,
                            model_hash,
                            step_time_ms,
                        },
                    )
                });
                // Until the child's own report arrives, assume the job's model stayed
                // loaded, so affinity works for the very next dispatch.
                if let Some(model) = model {
                    let loaded = &mut self.status.models_loaded;
                    loaded.retain(|m| *m != model);
                    loaded.push(model);
                }
                self.set_state(WorkerState::Idle);
                self.run_pending();
            }
            WorkerEvent::Failed { job: 0, error, .. } => {
                tracing::warn!("worker {}: {error}", self.setup.spec.name);
                if let WorkerState::Loading { model } = &self.status.state {
                    // The user pressed "load model" and waits for an answer: say why not.
                    self.setup.events.publish(DaemonEvent::LoadFailed {
                        worker: self.setup.spec.name.clone(),
                        model: model.clone(),
                        error,
                    });
                    self.set_state(WorkerState::Idle);
                    self.run_pending();
                }
            }
            WorkerEvent::Failed {
                error, retryable, ..
            } => {
                if let Some(running) = &self.running {
                    running.span.in_scope(|| {
                        tracing::warn!(%error, retryable, "the worker reports a failure");
                    });
                }
                let out_of_memory = error.to_ascii_lowercase().contains("out of memory");
                self.finish(|queue, id, attempt| queue.fail(id, attempt, &error, retryable));
                if out_of_memory {
                    // A CUDA OOM can leave the allocator fragmented: start afresh.
                    tracing::warn!(
                        "worker {}: out of memory; restarting it",
                        self.setup.spec.name
                    );
                    self.restart(ctx);
                } else {
                    self.set_state(WorkerState::Idle);
                    self.run_pending();
                }
            }
            WorkerEvent::Cancelled { .. } => {
                // A user's cancel marked the job, so the release ends it as cancelled; a
                // yield leaves it unmarked, so it goes back to the queue.
                self.finish(|queue, id, attempt| queue.release(id, attempt));
                self.set_state(WorkerState::Idle);
                self.run_pending();
            }
            WorkerEvent::Models { loaded, vram } => {
                self.status.models_loaded = loaded;
                self.status.vram = vram;
                if matches!(self.status.state, WorkerState::Loading { .. }) {
                    self.set_state(WorkerState::Idle);
                    self.run_pending();
                } else {
                    self.set_state(self.status.state.clone());
                }
            }
        }
    }

    /// Kills the child; its end (`Gone`) settles the running job and starts a new one.
    fn restart(&mut self, ctx: &mut Context<Self>) {
        if let Some(child) = self.child.take() {
            child.kill();
        }
        self.on_gone(ctx);
    }

    fn on_gone(&mut self, ctx: &mut Context<Self>) {
        // Whatever the dead child still has in flight (its reader's `Gone`, say) is stale.
        self.start += 1;
        if let Some(child) = self.child.take() {
            child.kill();
        }
        self.status.pid = None;
        if let Some(running) = &self.running {
            let (yielding, cancel) = (running.yielding, running.cancel_sent);
            if self.stopping || yielding {
                // Not the job's fault: give it back unrun.
                self.finish(|queue, id, attempt| queue.release(id, attempt));
            } else {
                let why = if cancel {
                    "the worker did not stop in time and was killed"
                } else {
                    "the worker process died during the job"
                };
                running.span.in_scope(|| {
                    tracing::warn!(worker = %self.setup.spec.name, "{why}");
                });
                self.finish(|queue, id, attempt| queue.fail(id, attempt, why, true));
            }
        }
        if self.stopping {
            return;
        }
        self.set_state(WorkerState::Starting);
        ctx.run_later(self.setup.restart_delay, |act, ctx| act.spawn_child(ctx));
    }
}

impl Handler<ChildLine> for GpuWorker {
    type Result = ();

    fn handle(&mut self, msg: ChildLine, ctx: &mut Context<Self>) {
        if msg.start != self.start {
            return;
        }
        match msg.report {
            ChildReport::Event(event) => self.on_event(event, ctx),
            ChildReport::Garbage(line) => {
                tracing::warn!(
                    "worker {}: unexpected output {line:?}",
                    self.setup.spec.name
                )
            }
            ChildReport::Gone => self.on_gone(ctx),
        }
    }
}

impl Handler<RunJob> for GpuWorker {
    type Result = ();

    fn handle(&mut self, RunJob { job, span }: RunJob, ctx: &mut Context<Self>) {
        self.jobs_handled += 1;
        let JobState::Leased { attempt, .. } = job.state else {
            return;
        };
        let id = job.id;
        let entered = span.enter();
        let request = WorkRequest {
            job: id.0,
            attempt,
            params: job.spec.params.clone(),
            output_dir: self.setup.output_dir.clone(),
            stems: (0..job.spec.params.batch)
                .map(|i| output_stem(id, i))
                .collect(),
            preview_every: self.setup.preview_every,
        };
        let ready = self.status.state == WorkerState::Idle && self.running.is_none();
        if !ready || !self.send(&WorkerCommand::Generate(request)) {
            // The supervisor raced a crash or a model command: the job goes back unrun.
            tracing::warn!(worker = %self.setup.spec.name, "the worker is not ready; given back");
            match self.setup.queue.release(id, attempt) {
                Ok(job) => self.publish_job(&job),
                Err(e) => tracing::warn!("cannot give it back: {e}"),
            }
            drop(entered);
            if ready && self.child.is_some() {
                // Writing to the child failed: it is dying; make sure it is replaced.
                self.restart(ctx);
            } else {
                self.set_state(self.status.state.clone());
            }
            return;
        }
        tracing::info!(
            worker = %self.setup.spec.name,
            pid = self.status.pid,
            "sent to the worker process"
        );
        drop(entered);
        self.running = Some(Running {
            job,
            attempt,
            span,
            cancel_sent: false,
            yielding: false,
        });
        self.set_state(WorkerState::Busy { job: id.0 });
    }
}

impl Handler<CancelRunning> for GpuWorker {
    type Result = ();

    fn handle(&mut self, msg: CancelRunning, ctx: &mut Context<Self>) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        if running.job.id.0 != msg.job || running.cancel_sent {
            return;
        }
        running.cancel_sent = true;
        running.yielding = msg.yielding;
        running.span.in_scope(|| {
            let why = if msg.yielding {
                "to yield the GPU"
            } else {
                "as the user asked"
            };
            tracing::info!("telling the worker to stop the job {why}");
        });
        let start = self.start;
        if !self.send(&WorkerCommand::Cancel { job: msg.job }) {
            return;
        }
        // A child stuck in a long CUDA call may not reach a step boundary soon.
        ctx.run_later(CANCEL_GRACE, move |act, ctx| {
            let same =
                act.start == start && act.running.as_ref().is_some_and(|r| r.job.id.0 == msg.job);
            if same {
                act.restart(ctx);
            }
        });
    }
}

impl Handler<ModelOp> for GpuWorker {
    type Result = ();

    fn handle(&mut self, ModelOp(command): ModelOp, _ctx: &mut Context<Self>) {
        self.pending.push_back(command);
        self.run_pending();
    }
}

impl Handler<StopWorker> for GpuWorker {
    type Result = ();

    fn handle(&mut self, StopWorker(done): StopWorker, ctx: &mut Context<Self>) {
        self.stopping = true;
        if let Some(child) = self.child.take() {
            child.kill();
        }
        if self.running.is_some() {
            self.finish(|queue, id, attempt| queue.release(id, attempt));
        }
        self.status.pid = None;
        let _ = done.send(());
        ctx.stop();
        Arbiter::current().stop();
    }
}

/// The line that ends an attempt: what became of the job.
fn log_outcome(job: &Job) {
    match &job.state {
        JobState::Done { outputs, .. } => tracing::info!(images = outputs.len(), "done"),
        JobState::Failed { error, .. } => tracing::warn!(%error, "failed; retrying cannot help"),
        JobState::Dead { error, .. } => tracing::error!(%error, "dead: no attempts left"),
        JobState::Queued => tracing::info!("back in the queue for another attempt"),
        JobState::Cancelled { .. } => tracing::info!("cancelled"),
        JobState::Leased { .. } => tracing::warn!("still leased after its end"),
    }
}
