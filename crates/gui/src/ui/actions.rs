//! The intents: Generate and Cancel, model loads, the form's buttons, images shown and
//! starred, and the results the commands bring back.

use super::app::{App, AppMsg, Cmd, JobChange, Shown};
use super::widgets::mark_error;
use super::window::Ui;
use crate::state::form::{random_seed, Field};
use crate::state::progress::JobProgress;
use crate::state::submit::build_submission;
use crate::state::vram::model_settled;
use gtk::prelude::*;
use imagelab_client::ClientError;
use imagelab_core::api::FavoriteRequest;
use imagelab_core::events::ModelRequest;
use relm4::ComponentSender;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn api_failure(e: ClientError) -> (String, Option<String>) {
    match e {
        ClientError::Api { message, field, .. } => (message, field),
        other => (other.to_string(), None),
    }
}

/// Job events kept while a submit answer is awaited (a batch is at most a few hundred).
const MAX_EARLY_EVENTS: usize = 1024;

/// How long the worker list is watched for a Load or Clear to show.
const MODEL_CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How often the worker list is asked for while the daemon shows none.
const WORKER_POLL: std::time::Duration = std::time::Duration::from_secs(1);
impl App {
    pub fn handle(&mut self, ui: &Ui, message: AppMsg, sender: &ComponentSender<App>) {
        match message {
            AppMsg::SaveSetup => self.save_setup(ui, sender),
            AppMsg::Reconnect => self.reconnect(ui, sender),
            AppMsg::Generate => self.generate(ui, sender),
            AppMsg::Cancel => self.cancel(ui, sender),
            AppMsg::LoadModel => self.model_command(ui, sender, true),
            AppMsg::ClearModel => self.model_command(ui, sender, false),
            AppMsg::RefreshModels => {
                self.refresh(sender);
                self.refresh_gpus(sender);
            }
            AppMsg::RefreshGpus => self.refresh_gpus(sender),
            AppMsg::SwapSize => {
                let mut form = ui.left.form();
                form.swap_size();
                ui.left.show_form(&form);
            }
            AppMsg::ModelPicked(before) => self.model_picked(ui, before.as_deref()),
            AppMsg::Preset(w, h) => {
                let mut form = ui.left.form();
                (form.width, form.height) = (w, h);
                ui.left.show_form(&form);
            }
            AppMsg::DiceSeed => ui.left.set_seed(&random_seed().to_string()),
            AppMsg::ReuseSeed => match self.last_seed {
                Some(seed) => ui.left.set_seed(&seed.to_string()),
                None => ui.toast("No image made yet: there is no last seed to reuse"),
            },
            AppMsg::SaveDefaults => self.save_defaults(ui),
            AppMsg::Safe(on) | AppMsg::Mature(on) if !on => self.show_styles(ui),
            AppMsg::Safe(_) => {
                let mut form = ui.left.form();
                form.set_safe(true);
                ui.left.show_form(&form);
                self.show_styles(ui);
            }
            AppMsg::Mature(_) => {
                let mut form = ui.left.form();
                form.set_mature(true);
                ui.left.show_form(&form);
                self.show_styles(ui);
            }
            AppMsg::Split(on) => self.split(ui, on),
            AppMsg::OpenInitImage => {
                self.choose_file(ui, sender, "Open an init image", AppMsg::InitImageChosen)
            }
            AppMsg::OpenImageSettings => {
                self.choose_file(ui, sender, "Open an image's settings", AppMsg::DroppedImage)
            }
            AppMsg::ClearInitImage => ui.left.show_init_image(None),
            AppMsg::InitImageChosen(path) => self.copy_init_image(sender, path),
            AppMsg::DroppedImage(path) => self.view(sender, path, None),
            AppMsg::ShowImage(name) => {
                let path = self.config.folders().output.join(&name);
                self.view(sender, path, Some(name));
            }
            AppMsg::UseSettings => self.use_settings(ui),
            AppMsg::Star(on) => {
                if let Some(name) = self.shown.as_ref().and_then(|s| s.in_output.clone()) {
                    self.star(ui, sender, name, on, None);
                }
            }
            AppMsg::Rate(stars) => {
                if let Some(name) = self.shown.as_ref().and_then(|s| s.in_output.clone()) {
                    let rating = (stars > 0).then_some(stars);
                    self.star(ui, sender, name, true, rating);
                }
            }
            AppMsg::StarImage(name, on) => self.star(ui, sender, name, on, None),
            AppMsg::RateImage(name, stars) => self.star(ui, sender, name, true, Some(stars)),
            AppMsg::OpenFavorite(name) => {
                ui.pages.set_visible_child_name("create");
                self.handle(ui, AppMsg::ShowImage(name), sender);
            }
            AppMsg::NewImage(name) => {
                ui.gallery.add(&name);
            }
            AppMsg::Thumbnail(name, pixels) => ui.gallery.thumbnail_ready(name, pixels),
            AppMsg::About => about(ui),
            AppMsg::Queue(intent) => self.queue_intent(ui, sender, intent),
            AppMsg::Analyze => self.analyze(ui, sender),
            AppMsg::ExportTheme => self.export_theme(sender),
            AppMsg::OpenReport => self.open_report(sender),
            AppMsg::Night(intent) => self.night_intent(ui, sender, intent),
            AppMsg::RefreshFavorites => self.refresh_favorites(sender),
            AppMsg::FetchJobs => self.fetch_jobs(sender),
            AppMsg::GpuHistory => {
                if let Some(client) = self.client.clone() {
                    App::run(sender, move || {
                        let nodes = client.gpus().map(|s| s.slurm_nodes).unwrap_or_default();
                        Cmd::GpuHistory(client.gpu_history().map_err(|e| e.to_string()), nodes)
                    });
                }
            }
        }
    }

    /// A family's recommended steps and CFG when its checkpoint is picked (and the
    /// defaults back when it is left), unless the user typed their own.
    fn model_picked(&mut self, ui: &Ui, before: Option<&str>) {
        let mut form = ui.left.form();
        let family =
            |model: Option<&str>| model.and_then(|m| self.families.get(m).cloned().flatten());
        let after = family(form.model.as_deref());
        let before = family(before);
        let defaults = &self.config.defaults;
        if let Some(note) = form.follow_family(before.as_deref(), after.as_deref(), defaults) {
            ui.left.show_form(&form);
            ui.toast(&note);
        }
    }

    pub fn handle_cmd(&mut self, ui: &Ui, message: Cmd, sender: &ComponentSender<App>) {
        match message {
            Cmd::GpusProbed(samples) => self.gpus_probed(ui, sender, samples),
            Cmd::Found(client) => self.found(ui, sender, client),
            Cmd::Up(result) => self.up(ui, sender, result),
            Cmd::Models(Ok(list)) => {
                self.checkpoints = list.checkpoints.iter().map(|c| c.name.clone()).collect();
                self.families = list
                    .checkpoints
                    .iter()
                    .map(|c| (c.name.clone(), c.family.clone()))
                    .collect();
                ui.night.show_models(&self.checkpoints);
                ui.left
                    .show_models(&self.checkpoints, &list.vae, &list.clip);
                if self.checkpoints.is_empty() {
                    let dir = self.config.folders().checkpoints();
                    ui.toast(&format!(
                        "No checkpoint yet: put a .safetensors file in {}",
                        dir.display()
                    ));
                }
            }
            Cmd::Models(Err(e)) => ui.toast(&format!("The model lists: {e}")),
            Cmd::Gpus(status) => {
                // After a Load or Clear, ask again until the list shows it, should its
                // worker event be missed.
                if let Some((model, load, since)) = &self.model_change {
                    if model_settled(&status.workers, model, *load)
                        || since.elapsed() > MODEL_CHANGE_WAIT
                    {
                        self.model_change = None;
                    }
                }
                if self.model_change.is_some() && self.client.is_some() {
                    let s = sender.clone();
                    gtk::glib::timeout_add_local_once(WORKER_POLL, move || {
                        s.input(AppMsg::RefreshGpus)
                    });
                }
                self.status = status;
                self.show_vram(ui);
            }
            Cmd::Library(library, problems) => {
                self.library = library;
                self.show_styles(ui);
                self.show_night_profiles(ui);
                for problem in problems {
                    ui.toast(&problem);
                }
            }
            Cmd::Favorites(names, ratings) => {
                ui.favorites
                    .show_all(&ratings, self.config.folders().output, sender);
                self.ratings = ratings;
                ui.gallery.show_favorites(names);
            }
            Cmd::PageThumbnail(name, Ok(pixels)) => {
                ui.favorites.thumbnail_ready(&name, &pixels);
                ui.night.thumbnail_ready(&name, &pixels);
            }
            Cmd::PageThumbnail(name, Err(e)) => {
                eprintln!("imagelab-gui: no thumbnail for {name}: {e}")
            }
            Cmd::Listed(folder, names) => {
                ui.gallery.show_folder(&folder, &names, sender);
                super::trace::mark(&format!("gallery-listed {}", names.len()));
            }
            Cmd::Event(event) => self.event(ui, sender, event),
            Cmd::Preview(job, rgba, at) => {
                ui.queue.workers.preview(job, &rgba);
                if self.mine.contains(&job) {
                    ui.center
                        .picture
                        .set_paintable(Some(&super::images::texture(&rgba)));
                    self.preview_set.set(Some(at));
                }
            }
            Cmd::StreamOpen => {
                self.refresh_gpus(sender);
                self.list_jobs(sender);
                // A run the daemon resumed after a restart shows at once.
                self.night_refresh(sender);
                self.load_themes(sender, rand::random::<u32>() as u64);
            }
            Cmd::StreamEnded(reason) => self.lost(ui, &reason),
            Cmd::Submitted(result, clicked) => self.submitted(ui, sender, result, clicked),
            Cmd::Failed(message, field) => self.show_error(ui, &message, field.as_deref()),
            Cmd::Done(text) => ui.status.set_text(&text),
            Cmd::Toast(text) => ui.toast(&text),
            Cmd::Analyzed(result) => self.analyzed(ui, result),
            Cmd::ReportWritten(result) => self.report_written(ui, result),
            Cmd::Night(Ok(status)) => self.night_shown(ui, sender, status.as_ref()),
            // Polled every few seconds: a passing failure is logged, not toasted each time.
            Cmd::Night(Err(e)) => eprintln!("imagelab-gui: the overnight run's status: {e}"),
            Cmd::NightChanged(status, text) => {
                ui.toast(&text);
                self.night_shown(ui, sender, Some(&status));
            }
            Cmd::Themes(infos, seed) => ui.night.show_themes(&infos, seed),
            Cmd::GpuHistory(Ok(view), nodes) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                ui.gpus.show(&view, now);
                ui.gpus.show_slurm_nodes(&nodes);
            }
            Cmd::GpuHistory(Err(e), _) => eprintln!("imagelab-gui: the GPU history: {e}"),
            Cmd::JobFinished(job) => self.job_finished(ui, sender, *job),
            Cmd::Viewed {
                path,
                in_output,
                pixels,
                record,
            } => self.viewed(ui, path, in_output, pixels, record),
            Cmd::InitImageCopied(Ok(name)) => ui.left.show_init_image(Some(&name)),
            Cmd::InitImageCopied(Err(e)) => self.show_error(ui, &e, Some("init_image")),
            Cmd::Jobs(Ok(jobs)) => {
                let (count, shown) = (jobs.len(), Instant::now());
                ui.queue.show_all(jobs);
                super::trace::delay(&format!("queue-listed {count}"), shown.elapsed());
            }
            Cmd::Jobs(Err(e)) => ui.toast(&format!("The queue cannot be listed: {e}")),
            Cmd::JobsFetched(jobs) => {
                let (count, started) = (jobs.len(), Instant::now());
                ui.queue.upsert(jobs);
                super::trace::delay(&format!("queue-upserted {count}"), started.elapsed());
            }
            Cmd::QueuePaused(paused) => ui.queue.pause.set_active(paused),
        }
    }

    /// A message as a toast, and the widget it is about marked until the next try.
    pub fn show_error(&self, ui: &Ui, message: &str, field: Option<&str>) {
        ui.toast(message);
        if let Some(night) = field.and_then(|f| f.strip_prefix("night:")) {
            ui.night.mark(night.split('[').next().unwrap_or(night));
            return;
        }
        let Some(field) = field.and_then(Field::from_api) else {
            return;
        };
        match field {
            Field::Prompt => ui.center.prompt.parent().inspect(|p| mark_error(p, true)),
            Field::Negative => ui.center.negative.parent().inspect(|p| mark_error(p, true)),
            other => ui.left.widget_of(other).inspect(|w| mark_error(w, true)),
        };
    }

    fn clear_errors(&self, ui: &Ui) {
        for field in [
            Field::Model,
            Field::Vae,
            Field::Clip,
            Field::Width,
            Field::Height,
            Field::Sampler,
            Field::Scheduler,
            Field::Steps,
            Field::Cfg,
            Field::Seed,
            Field::Count,
            Field::Style,
            Field::InitImage,
            Field::Strength,
        ] {
            if let Some(widget) = ui.left.widget_of(field) {
                mark_error(&widget, false);
            }
        }
        for view in [&ui.center.prompt, &ui.center.negative] {
            if let Some(parent) = view.parent() {
                mark_error(&parent, false);
            }
        }
    }

    fn generate(&mut self, ui: &Ui, sender: &ComponentSender<App>) {
        let clicked = Instant::now();
        self.clear_errors(ui);
        let Some(client) = self.client.clone() else {
            ui.toast("Not connected to the daemon: press Reconnect");
            return;
        };
        let form = self.form(ui);
        let family = form
            .model
            .as_ref()
            .and_then(|m| self.families.get(m).cloned().flatten());
        let batch = match form
            .check_parts(family.as_deref())
            .and_then(|()| build_submission(&form, &self.library, rand::random()))
        {
            Ok(batch) => batch,
            Err(e) => {
                let field = e.field.map(field_name);
                self.show_error(ui, &e.message, field);
                return;
            }
        };
        if let Ok(seed) = form.seed_value() {
            if seed >= 0 {
                self.last_seed = Some(seed);
            }
        }
        ui.status.set_text("Sending…");
        self.awaiting_submit += 1;
        App::run(sender, move || {
            super::trace::delay("generate-click-to-sent", clicked.elapsed());
            let result = client.submit_batch(&batch).map_err(api_failure);
            Cmd::Submitted(result, clicked)
        });
    }

    fn submitted(
        &mut self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        result: Result<imagelab_core::api::SubmitResponse, (String, Option<String>)>,
        clicked: Instant,
    ) {
        super::trace::delay("generate-click-to-accepted", clicked.elapsed());
        self.awaiting_submit = self.awaiting_submit.saturating_sub(1);
        match result {
            Ok(answer) => {
                for warning in &answer.warnings {
                    ui.toast(warning);
                }
                let n = answer.ids.len();
                self.mine.extend(answer.ids.iter().copied());
                ui.cancel.set_sensitive(true);
                ui.status.set_text(&format!(
                    "Queued {n} image{}",
                    if n == 1 { "" } else { "s" }
                ));
                ui.center.progress.set_fraction(0.0);
                ui.center.progress.set_text(Some("Waiting for a worker…"));
                let early: Vec<(u64, JobChange)> = answer
                    .ids
                    .iter()
                    .filter_map(|id| Some((*id, self.early_events.remove(id)?)))
                    .collect();
                for (id, change) in early {
                    self.job_event(ui, sender, id, change);
                }
            }
            Err((message, field)) => {
                ui.status.set_text("Not sent");
                self.show_error(ui, &message, field.as_deref());
            }
        }
        if self.awaiting_submit == 0 {
            self.early_events.clear();
        }
    }

    fn cancel(&mut self, ui: &Ui, sender: &ComponentSender<App>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let jobs: Vec<u64> = self.mine.iter().copied().collect();
        if jobs.is_empty() {
            return;
        }
        ui.status.set_text("Cancelling…");
        App::run(sender, move || {
            for id in &jobs {
                // A job that finished meanwhile answers 409: nothing to stop.
                let _ = client.cancel(*id);
            }
            Cmd::Done(format!("Cancelled {} job(s)", jobs.len()))
        });
    }

    pub fn job_event(
        &mut self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        id: u64,
        change: JobChange,
    ) {
        if !self.mine.contains(&id) {
            // Perhaps ours, before its submit answer: kept until that answer comes.
            if self.awaiting_submit > 0 && self.early_events.len() < MAX_EARLY_EVENTS {
                self.early_events.insert(id, change);
            }
            return;
        }
        let JobChange {
            state,
            worker,
            error,
        } = change;
        let state = state.as_str();
        match state {
            "leased" => {
                ui.status.set_text(&format!(
                    "Image {id} started on {}",
                    worker.unwrap_or_default()
                ));
            }
            "done" => {
                self.mine.remove(&id);
                if let Some(client) = self.client.clone() {
                    App::run(sender, move || match client.get(id) {
                        Ok(job) => Cmd::JobFinished(Box::new(job)),
                        Err(e) => Cmd::Failed(format!("job {id}: {e}"), None),
                    });
                }
            }
            "failed" | "dead" | "cancelled" => {
                self.mine.remove(&id);
                let text = match (state, error) {
                    ("cancelled", _) => format!("Image {id} cancelled"),
                    (_, Some(e)) => format!("Image {id} failed: {e}"),
                    _ => format!("Image {id} failed"),
                };
                if state == "cancelled" {
                    ui.status.set_text(&text);
                } else {
                    self.show_error(ui, &text, None);
                }
            }
            _ => {}
        }
        if self.mine.is_empty() {
            self.progress = None;
            ui.cancel.set_sensitive(false);
            ui.center
                .progress
                .set_fraction(if state == "done" { 1.0 } else { 0.0 });
            ui.center
                .progress
                .set_text(Some(if state == "done" { "Done" } else { "Ready" }));
        }
    }

    pub fn progress_event(&mut self, ui: &Ui, job: u64, done: usize, total: usize) {
        if !self.mine.contains(&job) {
            return;
        }
        let now = Instant::now();
        match &mut self.progress {
            Some((p, first)) if p.job == job => p.step(done, total, now - *first),
            _ => self.progress = Some((JobProgress::start(job, done, total), now)),
        }
        if let Some((p, _)) = &self.progress {
            ui.center.progress.set_fraction(p.fraction());
            ui.center
                .progress
                .set_text(Some(&p.text(self.mine.len().saturating_sub(1))));
        }
    }

    fn job_finished(
        &mut self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        job: imagelab_core::api::JobView,
    ) {
        if let Some(seed) = job.seeds.first() {
            self.last_seed = Some(*seed);
        }
        ui.status.set_text(&match job.interruptions {
            0 => format!("Image {} done", job.id),
            n => format!(
                "Image {} done (restarted after {n} daemon interruption{})",
                job.id,
                if n == 1 { "" } else { "s" }
            ),
        });
        if let Some(name) = job.outputs.first() {
            let name = Path::new(name)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| name.clone());
            ui.gallery.add(&name);
            let path = self.config.folders().output.join(&name);
            self.view(sender, path, Some(name));
        }
    }

    fn model_command(&mut self, ui: &Ui, sender: &ComponentSender<App>, load: bool) {
        self.clear_errors(ui);
        let Some(client) = self.client.clone() else {
            return;
        };
        let form = ui.left.form();
        let Some(model) = form.model.clone() else {
            self.show_error(ui, "Choose a checkpoint first", Some("model"));
            return;
        };
        let request = ModelRequest {
            worker: None,
            model: Some(model.clone()),
            vae: if load { form.vae } else { None },
            clip: if load { form.clip } else { None },
        };
        ui.status.set_text(&format!(
            "{} {model}…",
            if load { "Loading" } else { "Unloading" }
        ));
        self.model_change = Some((model.clone(), load, Instant::now()));
        let s = sender.clone();
        gtk::glib::timeout_add_local_once(WORKER_POLL, move || s.input(AppMsg::RefreshGpus));
        App::run(sender, move || {
            let sent = if load {
                client.load_model(&request)
            } else {
                client.unload_model(&request)
            };
            match sent {
                Ok(_) => Cmd::Done(format!(
                    "{} {model} asked",
                    if load { "Loading" } else { "Unloading" }
                )),
                Err(e) => {
                    let (message, field) = api_failure(e);
                    Cmd::Failed(message, field)
                }
            }
        });
    }

    fn save_defaults(&mut self, ui: &Ui) {
        let form = self.form(ui);
        let path = imagelab_core::config::Config::path();
        let saved = imagelab_core::config::Config::load_from(&path).and_then(|mut config| {
            config.defaults = form.defaults(&form.negative);
            config.save_to(&path)?;
            Ok(config)
        });
        match saved {
            Ok(config) => {
                self.config = config;
                ui.toast("Saved as defaults in config.yaml");
            }
            Err(e) => ui.toast(&e.to_string()),
        }
    }

    /// The profiles an overnight run may use, under the settings file's night mode.
    fn show_night_profiles(&self, ui: &Ui) {
        let night = &self.config.night;
        let mode = imagelab_prompts::ContentMode::from_flags(night.safe, night.mature)
            .unwrap_or(imagelab_prompts::ContentMode::Safe);
        let profiles: Vec<(String, String)> = self
            .library
            .profiles
            .visible(mode)
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        ui.night.show_profiles(&profiles);
        ui.night.mature.set_sensitive(night.mature);
        ui.night.mature.set_tooltip_text(Some(if night.mature {
            "Mature profiles for this run"
        } else {
            "Mature overnight runs are turned on in config.yaml: night: {mature: true}"
        }));
    }

    fn show_styles(&self, ui: &Ui) {
        let form = ui.left.form();
        let Ok(mode) = imagelab_prompts::ContentMode::from_flags(form.safe, form.mature) else {
            return;
        };
        let visible: Vec<(String, String)> = self
            .library
            .profiles
            .visible(mode)
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        ui.left.show_styles(&visible);
    }

    fn split(&mut self, ui: &Ui, on: bool) {
        let path = imagelab_core::config::Config::path();
        let saved = imagelab_core::config::Config::load_from(&path).and_then(|mut config| {
            config.workers = if on {
                vec!["cuda:0+1".into()]
            } else {
                Vec::new()
            };
            config.save_to(&path)?;
            Ok(config)
        });
        match saved {
            Ok(config) => {
                self.config = config;
                ui.toast(if on {
                    "Saved workers: [cuda:0+1] — the daemon splits the model after it restarts (Model → Reconnect restarts one the app started)"
                } else {
                    "One worker per GPU again after the daemon restarts"
                });
            }
            Err(e) => ui.toast(&e.to_string()),
        }
    }

    fn choose_file(
        &self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        title: &str,
        then: fn(PathBuf) -> AppMsg,
    ) {
        let dialog = gtk::FileChooserNative::new(
            Some(title),
            Some(&ui.window),
            gtk::FileChooserAction::Open,
            Some("Open"),
            Some("Cancel"),
        );
        let filter = gtk::FileFilter::new();
        filter.set_name(Some("Images"));
        for mime in ["image/png", "image/jpeg", "image/webp"] {
            filter.add_mime_type(mime);
        }
        dialog.add_filter(&filter);
        let s = sender.clone();
        dialog.connect_response(move |d, response| {
            if response == gtk::ResponseType::Accept {
                if let Some(path) = d.file().and_then(|f| f.path()) {
                    s.input(then(path));
                }
            }
            d.destroy();
        });
        dialog.show();
    }

    /// The daemon takes init images only inside `output/`: copy it to `output/inputs/`.
    fn copy_init_image(&self, sender: &ComponentSender<App>, path: PathBuf) {
        let output = self.config.folders().output;
        App::run(sender, move || {
            Cmd::InitImageCopied(copy_into_inputs(&output, &path))
        })
    }

    fn view(&self, sender: &ComponentSender<App>, path: PathBuf, in_output: Option<String>) {
        App::run(sender, move || Cmd::Viewed {
            pixels: super::images::decode_for_view(&path),
            record: crate::state::metadata::read_record(&path),
            path,
            in_output,
        });
    }

    fn viewed(
        &mut self,
        ui: &Ui,
        path: PathBuf,
        in_output: Option<String>,
        pixels: Result<super::images::Rgba, String>,
        record: Result<imagelab_analytics::ImageRecord, String>,
    ) {
        match pixels {
            Ok(rgba) => ui
                .center
                .picture
                .set_paintable(Some(&super::images::texture(&rgba))),
            Err(e) => {
                ui.toast(&e);
                return;
            }
        }
        let title = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let lines = record
            .as_ref()
            .ok()
            .map(crate::state::metadata::detail_lines);
        ui.center.show_details(lines.as_deref(), &title);
        if let Err(e) = &record {
            ui.toast(e);
        }
        let starred = in_output
            .as_ref()
            .is_some_and(|n| ui.gallery.is_favorite(n));
        let rating = in_output
            .as_ref()
            .and_then(|n| self.ratings.get(n).copied().flatten());
        ui.center
            .show_favorite(in_output.is_some(), starred, rating);
        self.shown = Some(Shown {
            in_output,
            record: record.ok(),
        });
    }

    fn use_settings(&self, ui: &Ui) {
        let Some(record) = self.shown.as_ref().and_then(|s| s.record.clone()) else {
            return;
        };
        let mut form = self.form(ui);
        let unmatched = form.apply_record(&record, &self.checkpoints);
        ui.left.show_form(&form);
        ui.center.set_prompts(&form.prompt, &form.negative);
        if !unmatched.is_empty() {
            ui.toast(&format!(
                "Kept the current {}: not available here",
                unmatched.join(", ")
            ));
        }
    }

    fn star(
        &mut self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        name: String,
        on: bool,
        rating: Option<u8>,
    ) {
        let Some(client) = self.client.clone() else {
            return;
        };
        ui.gallery.set_favorite(&name, on);
        ui.favorites
            .set(&name, on, rating, self.config.folders().output, sender);
        self.ratings.insert(name.clone(), rating);
        if self.shown.as_ref().and_then(|s| s.in_output.as_deref()) == Some(name.as_str()) {
            ui.center.show_favorite(true, on, rating);
        }
        let request = FavoriteRequest {
            job: None,
            image: Some(name.clone()),
            rating,
        };
        let client: Arc<_> = client;
        App::run(sender, move || {
            let result = if on {
                client.favorite(&request).map(drop)
            } else {
                client.unfavorite(&request).map(drop)
            };
            match result {
                Ok(()) => Cmd::Done(format!(
                    "{} {name}",
                    if on { "Starred" } else { "Unstarred" }
                )),
                Err(e) => Cmd::Failed(format!("star {name}: {e}"), None),
            }
        });
    }
}

/// The daemon's word for a field (what [`Field::from_api`] reads back).
fn field_name(field: Field) -> &'static str {
    match field {
        Field::Model => "model",
        Field::Vae => "vae",
        Field::Clip => "clip",
        Field::Width => "width",
        Field::Height => "height",
        Field::Sampler => "sampler",
        Field::Scheduler => "scheduler",
        Field::Steps => "steps",
        Field::Cfg => "cfg",
        Field::Seed => "seed",
        Field::Count => "count",
        Field::Prompt => "prompt",
        Field::Negative => "negative",
        Field::Style => "style",
        Field::InitImage => "init_image",
        Field::Strength => "strength",
    }
}

/// Copies `source` into `output/inputs/` under a name not taken yet; returns the name the
/// daemon wants (`inputs/<file>`).
pub fn copy_into_inputs(output: &Path, source: &Path) -> Result<String, String> {
    let inputs = output.join("inputs");
    std::fs::create_dir_all(&inputs).map_err(|e| format!("{}: {e}", inputs.display()))?;
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into());
    let ext = source
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "png".into());
    if source.starts_with(&inputs) {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        return Ok(format!("inputs/{name}"));
    }
    for n in 0..10_000 {
        let file = if n == 0 {
            format!("{stem}.{ext}")
        } else {
            format!("{stem}-{n}.{ext}")
        };
        let target = inputs.join(&file);
        if target.exists() {
            continue;
        }
        let tmp = inputs.join(format!(".{file}.tmp"));
        std::fs::copy(source, &tmp).map_err(|e| format!("{}: {e}", source.display()))?;
        std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
        return Ok(format!("inputs/{file}"));
    }
    Err(format!(
        "{}: too many copies named {stem}",
        inputs.display()
    ))
}

fn about(ui: &Ui) {
    let about = adw::AboutWindow::builder()
        .application_name("imagelab")
        .version(env!("CARGO_PKG_VERSION"))
        .comments("Stable Diffusion on your own GPUs, with no cloud.")
        .license_type(gtk::License::MitX11)
        .transient_for(&ui.window)
        .modal(true)
        .build();
    about.present();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_images_are_copied_into_output_inputs_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("output");
        let source = dir.path().join("photo.PNG");
        std::fs::write(&source, b"one").unwrap();
        assert_eq!(
            copy_into_inputs(&output, &source).unwrap(),
            "inputs/photo.png"
        );
        std::fs::write(&source, b"two").unwrap();
        assert_eq!(
            copy_into_inputs(&output, &source).unwrap(),
            "inputs/photo-1.png"
        );
        assert_eq!(
            std::fs::read(output.join("inputs/photo.png")).unwrap(),
            b"one"
        );
        let inside = output.join("inputs/photo-1.png");
        assert_eq!(
            copy_into_inputs(&output, &inside).unwrap(),
            "inputs/photo-1.png"
        );
        let missing = copy_into_inputs(&output, &dir.path().join("nope.png")).unwrap_err();
        assert!(missing.contains("nope.png"), "{missing}");
    }
}
