//! The imagelab daemon: the local HTTP API (actix-web) over the durable job queue. It owns
//! the sled database, listens on 127.0.0.1 with a bearer token published in `daemon.json`,
//! and turns every bad request into a 4xx JSON error naming the field.
//!
//! Beside the server runs the supervisor (see [`supervisor`]): actix actors that poll the
//! GPUs, keep the non-sharing policy and run jobs on `imagelab worker` children. The
//! library installs no logger; the binary chooses where logs go.

mod auth;
mod convert;
pub mod error;
pub mod events;
mod favorites;
mod files;
mod info;
mod job_log;
pub mod night;
mod notify;
mod queue_routes;
mod routes;
mod sse;
mod submit;
pub mod supervisor;
mod workers_routes;

pub use auth::new_token;
pub use error::{ApiFailure, DaemonError, Result};
pub use events::EventBus;
pub use info::write_daemon_info;
pub use notify::{status_line, NotifyConfig};
pub use supervisor::{ProbeFactory, SupervisorHandle, SupervisorOptions, WorkerSpec};

use actix_web::{web, App, HttpServer};
use imagelab_core::api::{DaemonInfo, PROTOCOL_VERSION};
use imagelab_core::Folders;
use imagelab_queue::{Queue, Recovery};
pub use imagelab_queue::{QueueOptions, RecoveryPolicy};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the daemon keeps and finds things, and where it listens.
pub struct DaemonConfig {
    /// The queue database and `jobs.log`.
    pub jobs_dir: PathBuf,
    /// Finished images (served by `/v1/outputs`; init images must come from here).
    pub output_dir: PathBuf,
    /// Holds `checkpoints/`, `vae/` and `clip/`.
    pub models_dir: PathBuf,
    /// Themes, style profiles and wildcards (for the prompt generator).
    pub themes_dir: PathBuf,
    /// Where `daemon.json` is written.
    pub settings_dir: PathBuf,
    /// `127.0.0.1:0` picks a free port; the chosen one is in `daemon.json`.
    pub bind: SocketAddr,
    /// What to do with jobs that were running when the last daemon stopped.
    pub recovery: RecoveryPolicy,
    pub queue: QueueOptions,
    /// Let the server stop gracefully on SIGINT/SIGTERM (the binary); tests leave it off.
    pub handle_signals: bool,
    /// The workers to run jobs on, each an `imagelab worker` child of `worker_program`;
    /// none means jobs only queue up.
    pub workers: Vec<WorkerSpec>,
    pub worker_program: Option<PathBuf>,
    /// When a GPU counts as free for our next job (config.yaml's `scheduler:` section).
    pub policy: imagelab_gpu::IdlePolicyConfig,
    /// A preview with every this many steps (0: none).
    pub preview_every: usize,
    /// Names the worker log files; the binary passes its own instance id.
    pub instance_id: Option<String>,
    /// Where the daemon's and its workers' log files are (`<settings>/logs`), read back for
    /// `GET /v1/jobs/{id}/log`.
    pub log_dir: PathBuf,
    /// GPU samples for the policy; `None` uses NVML (tests pass a scripted probe).
    pub probe: Option<ProbeFactory>,
    /// The policy's clock; tests pass the scripted probe's fake clock.
    pub clock: Option<Box<dyn imagelab_gpu::Clock + Send>>,
    /// How long a crashed worker waits before it is started again.
    pub restart_delay: Duration,
    /// Tell systemd (Type=notify) when the daemon is ready, how the queue stands, and that
    /// it is alive; `None` outside a service manager.
    pub notify: Option<NotifyConfig>,
    /// Overnight runs: generation defaults, fallback models, content mode, tick interval.
    pub night: night::NightOptions,
    /// Hand jobs to a Slurm cluster (beside the workers, or alone); attempt folders go
    /// under `<jobs_dir>/slurm`, which the nodes must see at the same path.
    pub slurm: Option<imagelab_core::slurm::SlurmSettings>,
}

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConfig")
            .field("jobs_dir", &self.jobs_dir)
            .field("bind", &self.bind)
            .field("workers", &self.workers)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl DaemonConfig {
    /// The folders under `app_dir` (`jobs/`, `output/`, `models/`) with daemon.json in
    /// `settings_dir`, listening on a free port of 127.0.0.1.
    pub fn in_folder(app_dir: &Path, settings_dir: &Path) -> Self {
        DaemonConfig {
            jobs_dir: app_dir.join("jobs"),
            output_dir: app_dir.join("output"),
            models_dir: app_dir.join("models"),
            themes_dir: app_dir.join("themes"),
            settings_dir: settings_dir.to_path_buf(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            recovery: RecoveryPolicy::default(),
            queue: QueueOptions::default(),
            handle_signals: false,
            workers: Vec::new(),
            worker_program: None,
            policy: imagelab_gpu::IdlePolicyConfig::default(),
            preview_every: 5,
            instance_id: None,
            log_dir: settings_dir.join("logs"),
            probe: None,
            clock: None,
            restart_delay: Duration::from_secs(1),
            notify: None,
            night: night::NightOptions::default(),
            slurm: None,
        }
    }

    /// From the resolved folders of the settings file (what `imagelab daemon` uses).
    pub fn from_folders(folders: &Folders, settings_dir: &Path) -> Self {
        DaemonConfig {
            jobs_dir: folders.jobs.clone(),
            output_dir: folders.output.clone(),
            models_dir: folders.models.clone(),
            themes_dir: folders.themes.clone(),
            ..DaemonConfig::in_folder(Path::new("."), settings_dir)
        }
    }
}

/// Starts daemons.
#[derive(Debug)]
pub struct Daemon;

impl Daemon {
    /// Opens the queue (refused when another daemon holds `jobs_dir`), re-queues jobs a
    /// previous daemon left running, binds the address, writes `daemon.json` and serves on
    /// a thread of its own. Returns once the server accepts connections.
    pub fn start(mut config: DaemonConfig) -> Result<RunningDaemon> {
        let queue = Queue::open(&config.jobs_dir, config.queue.clone()).map_err(|source| {
            DaemonError::Queue {
                jobs_dir: config.jobs_dir.clone(),
                source,
            }
        })?;
        // No worker survives its daemon, so every leased job was interrupted; Slurm's
        // jobs go on, and the Slurm backend follows them again.
        let slurm_on = config.slurm.is_some();
        let keep =
            move |job: &imagelab_queue::Job| slurm_on && supervisor::slurm::is_slurm_job(job);
        let recovery = queue
            .recover_after_restart_keeping(config.recovery, &keep)
            .map_err(DaemonError::Recovery)?;
        log_recovery(&recovery);
        let listener = TcpListener::bind(config.bind).map_err(|source| DaemonError::Bind {
            address: config.bind.to_string(),
            source,
        })?;
        let address = listener.local_addr().map_err(|source| DaemonError::Bind {
            address: config.bind.to_string(),
            source,
        })?;
        let token = new_token();
        let queue = Arc::new(queue);
        let events = EventBus::new();
        let supervisor = start_supervisor(&mut config, &queue, &events);
        let night = night::start_service(
            &config,
            queue.clone(),
            supervisor.as_ref().map(SupervisorHandle::link),
        )?;
        let state = web::Data::new(routes::AppState {
            queue: queue.clone(),
            events: events.clone(),
            supervisor: supervisor.as_ref().map(SupervisorHandle::link),
            folders: Folders {
                models: config.models_dir.clone(),
                output: config.output_dir.clone(),
                jobs: config.jobs_dir.clone(),
                themes: config.themes_dir.clone(),
            },
            night: night.addr(),
            log_dir: config.log_dir.clone(),
        });
        let token_data = routes::token_data(&token);
        let signal_bus = events.clone();
        let (handle_tx, handle_rx) = mpsc::channel();
        let handle_signals = config.handle_signals;
        let thread = std::thread::Builder::new()
            .name("imagelab-http".into())
            .spawn(move || -> std::io::Result<()> {
                actix_rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            // Method, path, status and time: never headers (the token).
                            .wrap(actix_web::middleware::Logger::new("%r %s %Dms"))
                            .app_data(state.clone())
                            .app_data(token_data.clone())
                            .configure(routes::configure)
                    })
                    .workers(2)
                    .shutdown_timeout(10)
                    .listen(listener);
                    let server = match server {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = handle_tx.send(None);
                            return Err(e);
                        }
                    };
                    let server = if handle_signals {
                        actix_rt::spawn(sse::close_on_signals(signal_bus));
                        server.run()
                    } else {
                        server.disable_signals().run()
                    };
                    let _ = handle_tx.send(Some(server.handle()));
                    server.await
                })
            })
            .map_err(|source| DaemonError::Io {
                path: PathBuf::from("<http thread>"),
                source,
            })?;
        let handle = match handle_rx.recv() {
            Ok(Some(handle)) => handle,
            _ => {
                let why = match thread.join() {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the server thread ended before serving".to_string(),
                };
                return Err(DaemonError::Server(why));
            }
        };
        let info = DaemonInfo {
            address: address.to_string(),
            token,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
        };
        let mut running = RunningDaemon {
            info,
            address,
            info_path: None,
            recovery,
            queue: Some(queue),
            handle,
            thread: Some(thread),
            events,
            supervisor,
            notifier: None,
            night: Some(night),
        };
        // On failure `running` is dropped, which stops the server and frees the queue.
        running.info_path = Some(write_daemon_info(&config.settings_dir, &running.info)?);
        if let (Some(notify), Some(queue)) = (&config.notify, &running.queue) {
            running.notifier = notify::Notifier::start(notify, queue, config.workers.len());
        }
        tracing::info!(
            "daemon listening on http://{address}, jobs in {}",
            config.jobs_dir.display()
        );
        Ok(running)
    }
}

/// One line per job the last daemon left running, in the job's span.
fn log_recovery(recovery: &imagelab_queue::Recovery) {
    let outcomes = [
        (&recovery.requeued, "queued again"),
        (&recovery.dead, "dead: interrupted too many times"),
        (&recovery.cancelled, "cancelled, as asked before the stop"),
    ];
    for (ids, outcome) in outcomes {
        for id in ids {
            imagelab_logging::job_span!(id.0)
                .in_scope(|| tracing::info!("interrupted by a daemon stop: {outcome}"));
        }
    }
}

/// Starts the supervisor when there are workers and a program to run them with.
fn start_supervisor(
    config: &mut DaemonConfig,
    queue: &Arc<Queue>,
    events: &EventBus,
) -> Option<SupervisorHandle> {
    let program = config.worker_program.clone()?;
    if config.workers.is_empty() && config.slurm.is_none() {
        return None;
    }
    let mut options = SupervisorOptions::new(
        config.workers.clone(),
        program.clone(),
        config.output_dir.clone(),
    );
    options.policy = config.policy.clone();
    options.preview_every = config.preview_every;
    options.probe = config.probe.take();
    if let Some(clock) = config.clock.take() {
        options.clock = clock;
    }
    if let Some(id) = &config.instance_id {
        options.instance_id = id.clone();
    }
    options.restart_delay = config.restart_delay;
    options.slurm = config
        .slurm
        .clone()
        .map(|settings| supervisor::slurm::SlurmOptions {
            program: settings
                .program
                .clone()
                .map_or_else(|| program.clone(), PathBuf::from),
            settings,
            output_dir: config.output_dir.clone(),
            folders: config.jobs_dir.join("slurm"),
            preview_every: config.preview_every,
        });
    Some(SupervisorHandle::start(
        queue.clone(),
        events.clone(),
        options,
    ))
}

/// What `imagelab daemon` runs: starts with SIGINT/SIGTERM handling and serves until one
/// arrives, then stops gracefully (requests in flight finish, `daemon.json` is removed).
pub fn run_foreground(mut config: DaemonConfig) -> Result<()> {
    config.handle_signals = true;
    if config.notify.is_none() {
        config.notify = NotifyConfig::from_env();
    }
    Daemon::start(config)?.wait()
}

/// A daemon serving on its own thread. Dropping it stops the server (not gracefully);
/// [`RunningDaemon::stop`] lets requests in flight finish and removes `daemon.json`.
pub struct RunningDaemon {
    info: DaemonInfo,
    address: SocketAddr,
    info_path: Option<PathBuf>,
    recovery: Recovery,
    /// Our share of the queue: once the server's workers let go of theirs, it is dropped
    /// here, which closes the database and frees `jobs/` for the next daemon.
    queue: Option<Arc<Queue>>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    supervisor: Option<SupervisorHandle>,
    /// Closed on stop, which ends the event streams.
    events: EventBus,
    notifier: Option<notify::Notifier>,
    /// The overnight runner; stopped before the queue is closed (it holds a share).
    night: Option<night::NightService>,
}

impl std::fmt::Debug for RunningDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output and logs.
        f.debug_struct("RunningDaemon")
            .field("address", &self.address)
            .field("info_path", &self.info_path)
            .finish_non_exhaustive()
    }
}

impl RunningDaemon {
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn token(&self) -> &str {
        &self.info.token
    }

    /// What `daemon.json` holds.
    pub fn info(&self) -> &DaemonInfo {
        &self.info
    }

    /// Where `daemon.json` was written.
    pub fn info_path(&self) -> Option<&Path> {
        self.info_path.as_deref()
    }

    /// The PIDs of the worker child processes now running.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.supervisor
            .as_ref()
            .map(SupervisorHandle::worker_pids)
            .unwrap_or_default()
    }

    /// The GPUs and workers as the supervisor last saw them (empty without workers).
    pub fn gpu_status(&self) -> imagelab_core::events::GpuStatusView {
        self.supervisor
            .as_ref()
            .map(SupervisorHandle::status)
            .unwrap_or_default()
    }

    /// The event bus (tests subscribe to it directly).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// What start-up recovery did with jobs the previous daemon left running.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Blocks until the server stops (on SIGINT/SIGTERM when signals are handled).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    /// Stops gracefully: requests in flight finish, then the queue is closed (so another
    /// daemon may open it) and `daemon.json` is removed.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown(true)
    }

    fn shutdown(&mut self, graceful: bool) -> Result<()> {
        self.notify_stopping();
        // Open event streams would otherwise hold a graceful stop up until its timeout.
        self.events.close();
        // The stop command is sent when `stop` is called; its future only awaits the end,
        // which joining the thread does too.
        drop(self.handle.stop(graceful));
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        let result = match self.thread.take() {
            None => Ok(()),
            Some(thread) => match thread.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(DaemonError::Server(e.to_string())),
                Err(_) => Err(DaemonError::Server("the server thread panicked".into())),
            },
        };
        // After a signal the server has stopped by itself: this is the first we hear of it.
        self.notify_stopping();
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.stop();
        }
        if let Some(night) = self.night.take() {
            night.stop();
        }
        self.close_queue();
        if let Some(path) = self.info_path.take() {
            info::remove_daemon_info(&path, &self.info.token);
        }
        result
    }
}

impl RunningDaemon {
    fn notify_stopping(&mut self) {
        if let Some(mut notifier) = self.notifier.take() {
            notifier.stopping();
        }
    }

    /// Worker threads drop their app (and their share of the queue) just after the server
    /// future ends. Wait until ours is the last share and drop it on this thread, so that
    /// "stopped" means the database is closed and the jobs folder is free again.
    fn close_queue(&mut self) {
        let Some(mut queue) = self.queue.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Arc::try_unwrap(queue) {
                Ok(last) => return drop(last),
                Err(shared) if Instant::now() < deadline => {
                    queue = shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    tracing::warn!("the queue is still in use 10 s after the server stopped");
                    return;
                }
            }
        }
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.shutdown(false);
        }
    }
}
