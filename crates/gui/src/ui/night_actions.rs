//! The overnight-run page's intents: the run's status (polled while the page shows),
//! start from the form, stop, and the themes with sample prompts drawn off the main thread.

use super::app::{App, Cmd, NightIntent};
use super::window::Ui;
use crate::state::night::theme_infos;
use imagelab_client::ClientError;
use relm4::ComponentSender;

/// Now, in ms since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The local zone's offset east of UTC, from GLib (which reads the zone the desktop uses).
fn local_offset_secs() -> i64 {
    gtk::glib::DateTime::now_local().map_or(0, |t| t.utc_offset().as_seconds())
}

impl App {
    pub fn night_intent(&mut self, ui: &Ui, sender: &ComponentSender<App>, intent: NightIntent) {
        match intent {
            NightIntent::Refresh => self.night_refresh(sender),
            NightIntent::DrawSamples => self.load_themes(sender, rand::random::<u32>() as u64),
            NightIntent::Start => self.night_start(ui, sender),
            NightIntent::Stop => {
                let Some(client) = self.client.clone() else {
                    return;
                };
                App::run(sender, move || match client.night_stop() {
                    Ok(status) => Cmd::NightChanged(status, "The overnight run stopped".into()),
                    Err(e) => Cmd::Failed(format!("Stopping the run: {e}"), None),
                });
            }
        }
    }

    pub fn night_refresh(&self, sender: &ComponentSender<App>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || match client.night_status() {
            Ok(status) => Cmd::Night(Ok(Some(status))),
            Err(ClientError::Api { status: 404, .. }) => Cmd::Night(Ok(None)),
            Err(e) => Cmd::Night(Err(e.to_string())),
        });
    }

    /// The themes folder, each theme with sample prompts drawn from `seed`.
    pub fn load_themes(&self, sender: &ComponentSender<App>, seed: u64) {
        let folders = self.config.folders();
        App::run(sender, move || {
            let wildcards =
                imagelab_prompts::Wildcards::load_dir(&folders.wildcards()).unwrap_or_default();
            Cmd::Themes(theme_infos(&folders.themes, &wildcards, seed), seed)
        });
    }

    fn night_start(&self, ui: &Ui, sender: &ComponentSender<App>) {
        ui.night.clear_marks();
        let Some(client) = self.client.clone() else {
            return;
        };
        let form = ui.night.form();
        let request = match form.request(now_ms(), local_offset_secs(), self.config.night.mature) {
            Ok(request) => request,
            Err(problem) => {
                ui.night.mark(problem.field);
                ui.toast(&format!("The overnight run: {}", problem.message));
                return;
            }
        };
        App::run(sender, move || match client.night_start(&request) {
            Ok(status) => Cmd::NightChanged(status, "The overnight run started".into()),
            Err(ClientError::Api { message, field, .. }) => Cmd::Failed(
                format!("The overnight run: {message}"),
                field.map(|f| format!("night:{f}")),
            ),
            Err(e) => Cmd::Failed(format!("The overnight run: {e}"), None),
        });
    }

    /// A status from the daemon, with the run's latest images from the queue page's rows.
    pub fn night_shown(
        &self,
        ui: &Ui,
        sender: &ComponentSender<App>,
        status: Option<&imagelab_core::night::NightStatus>,
    ) {
        let (names, last_done) = status
            .map(|s| ui.queue.night_outputs(&s.run_id))
            .unwrap_or_default();
        ui.night.show_status(status, now_ms(), last_done);
        if status.is_some() {
            ui.night
                .show_latest(&names, &self.config.folders().output, sender);
        }
    }
}
