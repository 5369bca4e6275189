//! The `PromptGenerator` actor: owns the [`Runner`], ticks it on an interval, and answers
//! start / status / stop messages from the HTTP handlers.
//!
//! Where it runs: an actix `System` of its own on one dedicated thread ([`NightService`]).
//! Every queue call flushes to disk and a start reads theme files, i.e. brief blocking
//! work. On its own single-threaded system that blocking stalls only this actor, never
//! an HTTP worker (handlers just await the mailbox), and it needs no `web::block` round
//! trips. A `SyncArbiter` would also keep it off the HTTP workers, but sync contexts have
//! no `run_interval`, so the tick would need a second actor to drive it. A system of its
//! own also keeps the generator independent of how the rest of the daemon is arranged.

use super::runner::Runner;
use super::NightError;
use actix::prelude::*;
use imagelab_core::night::{NightRequest, NightStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Keeps the queue topped up with the running night's jobs.
pub struct PromptGenerator {
    runner: Runner,
    interval: Duration,
}

impl PromptGenerator {
    pub fn new(runner: Runner, interval: Duration) -> PromptGenerator {
        PromptGenerator { runner, interval }
    }
}

impl Actor for PromptGenerator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, _| {
            if let Err(e) = act.runner.tick() {
                // The queue or night.json failed: try again next tick rather than give up
                // a night's run over a transient disk error.
                tracing::warn!("overnight run: top-up failed: {e}");
            }
        });
    }
}

/// Start a run.
#[derive(Debug)]
pub struct Start(pub NightRequest);

impl Message for Start {
    type Result = Result<NightStatus, NightError>;
}

/// The current or last run.
#[derive(Debug)]
pub struct Status;

impl Message for Status {
    type Result = Result<NightStatus, NightError>;
}

/// Stop the running run.
#[derive(Debug)]
pub struct Stop;

impl Message for Stop {
    type Result = Result<NightStatus, NightError>;
}

/// One top-up now (tests, and anything that knows a worker just became free).
#[derive(Debug)]
pub struct Tick;

impl Message for Tick {
    type Result = Result<(), NightError>;
}

impl Handler<Start> for PromptGenerator {
    type Result = Result<NightStatus, NightError>;
    fn handle(&mut self, msg: Start, _: &mut Self::Context) -> Self::Result {
        self.runner.start(msg.0)
    }
}

impl Handler<Status> for PromptGenerator {
    type Result = Result<NightStatus, NightError>;
    fn handle(&mut self, _: Status, _: &mut Self::Context) -> Self::Result {
        self.runner.status()
    }
}

impl Handler<Stop> for PromptGenerator {
    type Result = Result<NightStatus, NightError>;
    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.runner.stop()
    }
}

impl Handler<Tick> for PromptGenerator {
    type Result = Result<(), NightError>;
    fn handle(&mut self, _: Tick, _: &mut Self::Context) -> Self::Result {
        self.runner.tick()
    }
}

/// The generator's thread and system. Dropping it (or [`NightService::stop`]) stops the
/// actor and joins the thread, which releases the runner's share of the queue.
pub struct NightService {
    addr: Addr<PromptGenerator>,
    system: System,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NightService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NightService").finish_non_exhaustive()
    }
}

impl NightService {
    /// Starts the generator on a thread named `imagelab-night`.
    pub fn start(runner: Runner, interval: Duration) -> std::io::Result<NightService> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("imagelab-night".into())
            .spawn(move || {
                let system = System::new();
                system.block_on(async move {
                    let addr = PromptGenerator::new(runner, interval).start();
                    let _ = tx.send((addr, System::current()));
                });
                if let Err(e) = system.run() {
                    tracing::error!("the overnight runner's thread stopped: {e}");
                }
            })?;
        let (addr, system) = rx
            .recv()
            .map_err(|_| std::io::Error::other("the overnight runner did not start"))?;
        Ok(NightService {
            addr,
            system,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> Addr<PromptGenerator> {
        self.addr.clone()
    }

    /// Stops the actor (a tick in progress finishes first) and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.system.stop();
            if thread.join().is_err() {
                tracing::error!("the overnight runner's thread panicked");
            }
        }
    }
}

impl Drop for NightService {
    fn drop(&mut self) {
        self.shutdown();
    }
}
