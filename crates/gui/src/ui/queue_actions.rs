//! The queue page's intents: filter, pause, clear, and the row actions (cancel, priority,
//! retry, open), each a daemon call off the main thread whose change comes back on the
//! event stream; and the job list the page starts from.

use super::app::{App, AppMsg, Cmd, QueueIntent};
use super::window::Ui;
use crate::state::queue::{first_output, retry_request};
use imagelab_client::ClientError;
use relm4::ComponentSender;

/// How long job ids from events are collected before they are fetched.
const FETCH_DELAY: std::time::Duration = std::time::Duration::from_millis(150);
/// Up to this many are fetched one by one; more take one list call.
const FETCH_ONE_BY_ONE: usize = 16;

impl App {
    pub fn queue_intent(&mut self, ui: &Ui, sender: &ComponentSender<App>, intent: QueueIntent) {
        match intent {
            QueueIntent::Filter => ui.queue.refilter(),
            QueueIntent::Pause(pause) => self.queue_command(sender, move |c| {
                if pause { c.pause() } else { c.resume() }.map(|_| {
                    if pause {
                        "Queue paused"
                    } else {
                        "Queue running"
                    }
                    .to_string()
                })
            }),
            QueueIntent::ClearFinished => self.queue_command(sender, |c| {
                c.clear_finished()
                    .map(|r| format!("Cleared {} finished jobs", r.removed))
            }),
            QueueIntent::Cancel(id) => self.queue_command(sender, move |c| {
                c.cancel(id).map(|j| format!("Job {id}: {}", j.state))
            }),
            QueueIntent::Priority(id, priority) => self.reprioritise(sender, id, priority),
            QueueIntent::Retry(id) => self.retry(ui, sender, id),
            QueueIntent::Open(id) => {
                let output = ui.queue.job(id).and_then(|view| {
                    let row = crate::state::queue::JobRow { view, steps: None };
                    first_output(&row).map(str::to_string)
                });
                match output {
                    Some(name) => {
                        ui.pages.set_visible_child_name("create");
                        self.handle(ui, AppMsg::ShowImage(name), sender);
                    }
                    None => ui.toast(&format!("Job {id} has no image to show")),
                }
            }
        }
    }

    /// A new priority; the daemon's answer (the job as it is now) redraws the row, since
    /// the event stream carries state changes only.
    fn reprioritise(
        &self,
        sender: &ComponentSender<App>,
        id: u64,
        priority: imagelab_core::api::JobPriority,
    ) {
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || match client.set_priority(id, priority) {
            Ok(job) => Cmd::JobsFetched(vec![job]),
            Err(e) => Cmd::Failed(format!("job {id}: {e}"), None),
        });
    }

    /// Asks for job `id` soon, with whatever else events name meanwhile.
    pub fn fetch_job_soon(&mut self, sender: &ComponentSender<App>, id: u64) {
        if self.to_fetch.is_empty() {
            let s = sender.clone();
            gtk::glib::timeout_add_local_once(FETCH_DELAY, move || s.input(AppMsg::FetchJobs));
        }
        self.to_fetch.insert(id);
    }

    /// The jobs collected by [`App::fetch_job_soon`]: one by one when few, else one list.
    pub fn fetch_jobs(&mut self, sender: &ComponentSender<App>) {
        let ids = std::mem::take(&mut self.to_fetch);
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || {
            if ids.len() <= FETCH_ONE_BY_ONE {
                let jobs = ids.iter().filter_map(|id| client.get(*id).ok()).collect();
                return Cmd::JobsFetched(jobs);
            }
            let query = imagelab_core::api::ListQuery {
                state: None,
                limit: Some(imagelab_core::api::MAX_LIST_LIMIT),
            };
            match client.list(&query) {
                Ok(all) => {
                    Cmd::JobsFetched(all.into_iter().filter(|j| ids.contains(&j.id)).collect())
                }
                Err(e) => Cmd::Failed(format!("the queue: {e}"), None),
            }
        });
    }

    /// The job's spec submitted again, as a new job.
    fn retry(&self, ui: &Ui, sender: &ComponentSender<App>, id: u64) {
        let (Some(client), Some(view)) = (self.client.clone(), ui.queue.job(id)) else {
            return;
        };
        let request = retry_request(&view);
        App::run(sender, move || match client.submit(&request) {
            Ok(answer) => Cmd::Toast(match answer.ids.first() {
                Some(new) => format!("Job {id} submitted again as job {new}"),
                None => format!("Job {id} submitted again"),
            }),
            Err(e) => Cmd::Failed(format!("retrying job {id}: {e}"), None),
        });
    }

    /// A queue action on the daemon (off the main thread); its answer is a toast and the
    /// change itself comes back on the event stream.
    fn queue_command(
        &self,
        sender: &ComponentSender<App>,
        action: impl FnOnce(&imagelab_client::Client) -> Result<String, ClientError> + Send + 'static,
    ) {
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || match action(&client) {
            Ok(done) => Cmd::Toast(done),
            Err(e) => Cmd::Failed(e.to_string(), None),
        });
    }

    /// The queue page's jobs, newest first.
    pub fn list_jobs(&self, sender: &ComponentSender<App>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || {
            let query = imagelab_core::api::ListQuery {
                state: None,
                // As many as the API gives: its newest 10,000.
                limit: Some(imagelab_core::api::MAX_LIST_LIMIT),
            };
            Cmd::Jobs(client.list(&query).map_err(|e| e.to_string()))
        });
        let Some(client) = self.client.clone() else {
            return;
        };
        App::run(sender, move || match client.status() {
            Ok(status) => Cmd::QueuePaused(status.paused),
            Err(e) => Cmd::Failed(format!("queue status: {e}"), None),
        });
    }
}
