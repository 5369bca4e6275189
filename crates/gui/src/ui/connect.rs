//! Getting to a daemon and keeping up with it: the GPU probe, the setup screen's save,
//! finding or starting the daemon, the first fetches, the event stream and what each
//! event changes on screen.

use super::app::{App, Cmd, JobChange};
use super::daemon::{self, Connection, DaemonChild};
use super::window::Ui;
use crate::state::launch::DaemonOrigin;
use crate::state::queue::RowChange;
use crate::state::setup::{needs_setup, GpuChoice, SetupChoice};
use crate::state::submit::PromptLibrary;
use crate::state::vram::{cpu_only, device_groups};
use gtk::prelude::*;
use imagelab_client::{Client, ClientError};
use imagelab_core::config::Config;
use imagelab_core::events::DaemonEvent;
use imagelab_gpu::GpuProbe;
use relm4::ComponentSender;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

impl App {
    /// First steps: probe the GPUs (off the main thread), then the setup screen or a
    /// connection.
    pub fn start(&mut self, ui: &Ui, sender: &ComponentSender<App>) {
        App::run(sender, || {
            if crate::state::setup::gpus_hidden(std::env::var_os("CUDA_VISIBLE_DEVICES").as_deref())
            {
                return Cmd::GpusProbed(Ok(Vec::new()));
            }
            let samples = imagelab_gpu::NvmlProbe::new()
                .and_then(|mut probe| probe.snapshot())
                .map_err(|e| e.to_string());
            Cmd::GpusProbed(samples)
        });
        if needs_setup(&self.settings_dir) {
            ui.stack.set_visible_child_name("setup");
            ui.set_connected(false);
            ui.status
                .set_text("First launch: choose your folders and GPUs");
        } else {
            self.connect_when_probed = true;
            ui.stack.set_visible_child_name("connecting");
            ui.set_connected(false);
            // The gallery needs no daemon: list it while the GPUs are probed and the
            // daemon starts, so the work screen opens with its thumbnails.
            if let Ok(config) = Config::load() {
                self.config = config;
                self.list_gallery(sender);
                self.gallery_listed = true;
            }
        }
    }

    pub fn gpus_probed(
        &mut self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        samples: Result<Vec<imagelab_gpu::GpuSample>, String>,
    ) {
        let samples = samples.unwrap_or_else(|e| {
            self.gpu_problem = Some(e);
            Vec::new()
        });
        self.gpu_count = Some(samples.len());
        let choices = samples
            .iter()
            .map(|g| GpuChoice::new(g.index, &g.uuid, &g.name, g.memory_total_mib))
            .collect();
        self.gpu_samples = samples;
        ui.setup
            .show(&SetupChoice::defaults(choices), self.gpu_problem.as_deref());
        if std::mem::take(&mut self.connect_when_probed) {
            self.connect(ui, sender);
        }
    }

    pub fn save_setup(&mut self, ui: &Ui, sender: &ComponentSender<App>) {
        let choice = ui.setup.choice();
        match crate::state::setup::save(&self.settings_dir, &choice) {
            Ok(_) => {
                ui.setup.show_error("");
                self.connect(ui, sender);
            }
            Err(e) => ui.setup.show_error(&e.to_string()),
        }
    }

    /// Reads `config.yaml`, then finds a daemon (or starts one).
    pub fn connect(&mut self, ui: &Ui, sender: &ComponentSender<App>) {
        match Config::load() {
            Ok(config) => self.config = config,
            Err(e) => {
                ui.stack.set_visible_child_name("connecting");
                ui.connecting.set_title("The settings cannot be read");
                ui.connecting.set_description(Some(&e.to_string()));
                return;
            }
        }
        ui.stack.set_visible_child_name(if self.client.is_some() {
            "work"
        } else {
            "connecting"
        });
        ui.status.set_text("Connecting to the daemon…");
        ui.spinner.start();
        let dir = self.settings_dir.clone();
        App::run(sender, move || Cmd::Found(daemon::find(&dir)));
    }

    /// No daemon answered: start one (on the main thread, see [`DaemonChild::spawn`]).
    pub fn found(&mut self, ui: &Ui, sender: &ComponentSender<App>, client: Option<Client>) {
        if let Some(client) = client {
            self.connected(
                ui,
                sender,
                Connection {
                    client: Arc::new(client),
                    origin: DaemonOrigin::Found,
                },
            );
            return;
        }
        let gpus = self.gpu_count.unwrap_or(0);
        match DaemonChild::spawn(gpus) {
            Ok(child) => {
                ui.status.set_text("Starting the daemon…");
                let exited = child.exit_check();
                self.daemon = Some(child);
                let dir = self.settings_dir.clone();
                App::run(sender, move || Cmd::Up(daemon::wait_until_up(dir, exited)));
            }
            Err(e) => self.lost(ui, &e),
        }
    }

    pub fn up(&mut self, ui: &Ui, sender: &ComponentSender<App>, result: Result<Client, String>) {
        match result {
            Ok(client) => {
                let cpu_only = self.gpu_count.unwrap_or(0) == 0;
                let origin = DaemonOrigin::Started { cpu_only };
                self.connected(
                    ui,
                    sender,
                    Connection {
                        client: Arc::new(client),
                        origin,
                    },
                );
            }
            Err(e) => {
                self.daemon = None;
                self.lost(ui, &e);
            }
        }
    }

    fn connected(&mut self, ui: &Ui, sender: &ComponentSender<App>, connection: Connection) {
        let client = connection.client;
        ui.notice.set_text(connection.origin.notice().unwrap_or(""));
        ui.notice.set_visible(connection.origin.notice().is_some());
        self.origin = Some(connection.origin);
        self.client = Some(Arc::clone(&client));
        ui.show_banner(None);
        ui.spinner.stop();
        ui.status.set_text("Ready");
        ui.set_connected(true);
        let first_time = ui.stack.visible_child_name().as_deref() != Some("work");
        ui.stack.set_visible_child_name("work");
        if first_time {
            let form = self.gui.form.clone().unwrap_or_else(|| {
                crate::state::form::FormState::from_defaults(&self.config.defaults)
            });
            ui.left.show_form(&form);
            ui.center.set_prompts(&form.prompt, &form.negative);
            if !std::mem::replace(&mut self.gallery_listed, true) {
                self.list_gallery(sender);
            }
        }
        self.refresh(sender);
        self.stream(sender, client);
    }

    /// The model lists, favorites and style profiles (the workers come when the stream opens).
    pub fn refresh(&self, sender: &ComponentSender<App>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let c = Arc::clone(&client);
        App::run(sender, move || {
            Cmd::Models(c.models().map_err(|e| e.to_string()))
        });
        self.refresh_favorites(sender);
        let folders = self.config.folders();
        App::run(sender, move || {
            let profiles = imagelab_prompts::ProfileLibrary::load_dir(&folders.profiles());
            let wildcards = imagelab_prompts::Wildcards::load_dir(&folders.wildcards());
            let mut problems = Vec::new();
            let library = PromptLibrary {
                profiles: profiles.unwrap_or_else(|e| {
                    problems.push(e.to_string());
                    Default::default()
                }),
                wildcards: wildcards.unwrap_or_else(|e| {
                    problems.push(e.to_string());
                    Default::default()
                }),
            };
            Cmd::Library(library, problems)
        });
    }

    /// The daemon's favorites (they may also be starred from the CLI or another app).
    pub fn refresh_favorites(&self, sender: &ComponentSender<App>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || match client.favorites() {
            Ok(list) => {
                // A job's star (`imagelab fav 12`) covers each of its images.
                let ratings: HashMap<String, Option<u8>> = list
                    .into_iter()
                    .flat_map(|f| match (f.image, f.job) {
                        (Some(image), _) => vec![(image, f.rating)],
                        (None, Some(job)) => client
                            .get(job)
                            .map(|j| j.outputs.into_iter().map(|o| (o, f.rating)).collect())
                            .unwrap_or_default(),
                        (None, None) => Vec::new(),
                    })
                    .collect();
                let names = ratings.keys().cloned().collect();
                Cmd::Favorites(names, ratings)
            }
            Err(e) => Cmd::Failed(format!("favorites: {e}"), None),
        });
    }

    pub fn refresh_gpus(&self, sender: &ComponentSender<App>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || match client.gpus() {
            Ok(status) => Cmd::Gpus(status),
            Err(e) => Cmd::Failed(format!("GPU status: {e}"), None),
        });
    }

    pub fn list_gallery(&self, sender: &ComponentSender<App>) {
        let folder = self.config.folders().output;
        App::run(sender, move || {
            let names = crate::state::gallery::list_images(&folder);
            Cmd::Listed(folder, names)
        });
    }

    /// The event stream, read on a command thread; previews are decoded there too.
    fn stream(&self, sender: &ComponentSender<App>, client: Arc<Client>) {
        sender.spawn_command(move |out| {
            let events = match client.events() {
                Ok(events) => events,
                Err(e) => {
                    let _ = out.send(Cmd::StreamEnded(e.to_string()));
                    return;
                }
            };
            // Only now can no change slip between a snapshot and the events after it.
            if out.send(Cmd::StreamOpen).is_err() {
                return;
            }
            for event in events {
                let event = match event {
                    Ok(event) => event,
                    Err(ClientError::Lagged { .. }) => continue,
                    Err(e) => {
                        let _ = out.send(Cmd::StreamEnded(e.to_string()));
                        return;
                    }
                };
                if let DaemonEvent::Progress {
                    job,
                    preview: Some(preview),
                    ..
                } = &event
                {
                    let at = Instant::now();
                    if let Some(rgba) = super::images::decode_preview(preview) {
                        if out.send(Cmd::Preview(*job, rgba, at)).is_err() {
                            return;
                        }
                    }
                }
                if out.send(Cmd::Event(event)).is_err() {
                    return;
                }
            }
            let _ = out.send(Cmd::StreamEnded("the event stream ended".into()));
        });
    }

    /// The daemon cannot be reached: say so, keep the window usable, offer Reconnect.
    pub fn lost(&mut self, ui: &Ui, reason: &str) {
        self.client = None;
        self.progress = None;
        ui.spinner.stop();
        ui.set_connected(false);
        ui.cancel.set_sensitive(false);
        ui.status.set_text("Not connected");
        if ui.stack.visible_child_name().as_deref() == Some("connecting") {
            ui.connecting.set_title("The daemon cannot be reached");
            ui.connecting.set_description(Some(reason));
        }
        ui.show_banner(Some(&format!("The daemon went away: {reason}")));
    }

    pub fn reconnect(&mut self, ui: &Ui, sender: &ComponentSender<App>) {
        if ui.stack.visible_child_name().as_deref() == Some("setup") {
            return;
        }
        if let Some(mut child) = self.daemon.take() {
            child.stop();
        }
        self.client = None;
        self.connect(ui, sender);
    }

    /// What one event changes.
    pub fn event(&mut self, ui: &Ui, sender: &ComponentSender<App>, event: DaemonEvent) {
        match event {
            DaemonEvent::Job {
                id,
                state,
                worker,
                error,
            } => {
                let change = ui
                    .queue
                    .state_changed(id, &state, worker.clone(), error.clone());
                if let RowChange::Unknown(id) | RowChange::Ended(id) = change {
                    self.fetch_job_soon(sender, id);
                }
                self.job_event(
                    ui,
                    sender,
                    id,
                    JobChange {
                        state,
                        worker,
                        error,
                    },
                )
            }
            DaemonEvent::Progress {
                job, done, total, ..
            } => {
                let updating = Instant::now();
                ui.queue.progressed(job, done, total);
                super::trace::delay("queue-row-update", updating.elapsed());
                self.progress_event(ui, job, done, total)
            }
            DaemonEvent::Worker(status) => {
                match self
                    .status
                    .workers
                    .iter_mut()
                    .find(|w| w.name == status.name)
                {
                    Some(known) => *known = status,
                    None => self.status.workers.push(status),
                }
                self.show_vram(ui);
                self.refresh_gpus(sender);
            }
            DaemonEvent::LoadFailed {
                worker,
                model,
                error,
            } => {
                self.model_change = None;
                let field = if error.to_lowercase().contains("vae") {
                    Some("vae")
                } else if error.to_lowercase().contains("clip") || error.contains("text encoder") {
                    Some("clip")
                } else {
                    None
                };
                self.show_error(
                    ui,
                    &format!("Loading {model} on {worker} failed: {error}"),
                    field,
                );
                ui.status.set_text("Load failed");
            }
            DaemonEvent::Queue { paused } => {
                ui.queue.pause.set_active(paused);
                ui.status.set_text(if paused {
                    "The queue is paused"
                } else {
                    "The queue runs"
                });
            }
        }
    }

    /// The worker status on the Create page's VRAM panel and the Queue page's cards.
    pub fn show_vram(&self, ui: &Ui) {
        ui.queue.workers.show(&self.status);
        let groups = device_groups(&self.status);
        let split_possible = !cpu_only(&self.status) && self.gpu_samples.len() >= 2;
        ui.left
            .show_vram(&groups, split_possible || !self.config.workers.is_empty());
    }
}
