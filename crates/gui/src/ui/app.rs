//! The root component: it owns the one daemon client (and the daemon child it started),
//! receives the pages' intents and the commands' results, and shows state on the pages.
//! Every HTTP call and file decode runs in a relm4 command, never on the GTK main thread.

use super::daemon::DaemonChild;
use super::images::Rgba;
use super::window::Ui;
use crate::state::launch::DaemonOrigin;
use crate::state::progress::JobProgress;
use crate::state::settings::GuiSettings;
use crate::state::submit::PromptLibrary;
use gtk::prelude::*;
use imagelab_analytics::ImageRecord;
use imagelab_client::Client;
use imagelab_core::api::{JobView, ModelList, SubmitResponse};
use imagelab_core::config::Config;
use imagelab_core::events::{DaemonEvent, GpuStatusView};
use relm4::{Component, ComponentParts, ComponentSender};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A button's or an action's intent, made fresh on each press.
pub type Intent = fn() -> AppMsg;

/// What the pages ask for.
#[derive(Debug)]
pub enum AppMsg {
    SaveSetup,
    Reconnect,
    Generate,
    Cancel,
    LoadModel,
    ClearModel,
    RefreshModels,
    /// The GPU and worker status again (while a new daemon has no worker yet).
    RefreshGpus,
    SwapSize,
    /// The user selected another checkpoint (its family may bring recommended settings);
    /// the one selected before.
    ModelPicked(Option<String>),
    Preset(u32, u32),
    DiceSeed,
    ReuseSeed,
    SaveDefaults,
    Safe(bool),
    Mature(bool),
    Split(bool),
    OpenInitImage,
    ClearInitImage,
    InitImageChosen(PathBuf),
    DroppedImage(PathBuf),
    OpenImageSettings,
    ShowImage(String),
    UseSettings,
    Star(bool),
    Rate(u8),
    StarImage(String, bool),
    /// The favorites page's intents: rate a starred image, show it on the Create page.
    RateImage(String, u8),
    OpenFavorite(String),
    NewImage(String),
    Thumbnail(String, Result<Rgba, String>),
    About,
    /// The queue page's intents.
    Queue(QueueIntent),
    /// The analytics page's: make the report again, export its winners, open it as HTML.
    Analyze,
    ExportTheme,
    OpenReport,
    Night(NightIntent),
    /// The GPU history again (polled while its page shows).
    GpuHistory,
    /// The favorites again (when their page is shown).
    RefreshFavorites,
    /// Fetch the jobs events named since the last fetch (collected for a moment, so a
    /// burst of 10,000 submissions costs one list call, not 10,000).
    FetchJobs,
}

/// What the overnight-run page asks for.
#[derive(Debug, Clone, Copy)]
pub enum NightIntent {
    /// The run's status again (the page polls while shown).
    Refresh,
    Start,
    Stop,
    /// New sample prompts for the themes, with a new seed.
    DrawSamples,
}

/// What the queue page asks for.
#[derive(Debug, Clone, Copy)]
pub enum QueueIntent {
    Filter,
    Pause(bool),
    ClearFinished,
    Cancel(u64),
    Priority(u64, imagelab_core::api::JobPriority),
    /// Submit a failed, dead or cancelled job's spec again.
    Retry(u64),
    /// Show a done job's first image on the Create page.
    Open(u64),
}

/// What the commands bring back.
#[derive(Debug)]
pub enum Cmd {
    GpusProbed(Result<Vec<imagelab_gpu::GpuSample>, String>),
    Found(Option<Client>),
    Up(Result<Client, String>),
    Models(Result<ModelList, String>),
    Gpus(GpuStatusView),
    Library(PromptLibrary, Vec<String>),
    Favorites(HashSet<String>, HashMap<String, Option<u8>>),
    Listed(PathBuf, Vec<String>),
    Event(DaemonEvent),
    Preview(u64, Rgba, Instant),
    /// The event stream is subscribed: snapshots taken now miss nothing.
    StreamOpen,
    StreamEnded(String),
    /// The job ids and the daemon's warnings, or the refusal and the field it names.
    Submitted(Result<SubmitResponse, (String, Option<String>)>, Instant),
    Failed(String, Option<String>),
    Done(String),
    /// A thumbnail for the favorites or night page (each takes the names it shows).
    PageThumbnail(String, Result<Rgba, String>),
    Analyzed(Result<Arc<imagelab_analytics::Report>, String>),
    ReportWritten(Result<PathBuf, String>),
    /// The current or last overnight run (`None`: never one), or why it cannot be read.
    Night(Result<Option<imagelab_core::night::NightStatus>, String>),
    /// A start or stop answered: the run as it is now, and what to tell.
    NightChanged(imagelab_core::night::NightStatus, String),
    Themes(Vec<crate::state::night::ThemeInfo>, u64),
    /// The GPU history, and the Slurm nodes (empty without the Slurm backend).
    GpuHistory(
        Result<imagelab_core::events::GpuHistoryView, String>,
        Vec<imagelab_core::events::SlurmNodeView>,
    ),
    /// A result to tell wherever the user is (the status line is on the Create page only).
    Toast(String),
    JobFinished(Box<JobView>),
    Viewed {
        path: PathBuf,
        in_output: Option<String>,
        pixels: Result<Rgba, String>,
        record: Result<ImageRecord, String>,
    },
    InitImageCopied(Result<String, String>),
    /// The queue page's jobs, and one job fetched after an event named it.
    Jobs(Result<Vec<JobView>, String>),
    /// Jobs fetched after events named them (new ones, or ones that ended).
    JobsFetched(Vec<JobView>),
    QueuePaused(bool),
}

/// A job's state change from the event stream.
#[derive(Debug, Clone)]
pub struct JobChange {
    pub state: String,
    pub worker: Option<String>,
    pub error: Option<String>,
}

/// The image in the viewer.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Its name in `output/`, when it is a gallery image (only those can be starred).
    pub in_output: Option<String>,
    pub record: Option<ImageRecord>,
}

pub struct App {
    pub settings_dir: PathBuf,
    pub config: Config,
    pub gui: GuiSettings,
    pub client: Option<Arc<Client>>,
    pub origin: Option<DaemonOrigin>,
    pub daemon: Option<DaemonChild>,
    pub gpu_count: Option<usize>,
    pub gpu_problem: Option<String>,
    pub gpu_samples: Vec<imagelab_gpu::GpuSample>,
    pub checkpoints: Vec<String>,
    /// Each checkpoint's family as the daemon labels it (`sdxl`, `pixart-sigma`, …).
    pub families: std::collections::HashMap<String, Option<String>>,
    pub library: PromptLibrary,
    pub status: GpuStatusView,
    pub mine: HashSet<u64>,
    /// Submissions sent and not yet answered, and the job events that came meanwhile:
    /// an idle worker can lease (or even finish) a job before its submit answer arrives.
    pub awaiting_submit: usize,
    /// A Load (true) or Clear of a model asked for and not yet seen in the worker list:
    /// the list is asked for again until it is (in case its event was missed).
    pub model_change: Option<(String, bool, Instant)>,
    pub early_events: HashMap<u64, JobChange>,
    pub progress: Option<(JobProgress, Instant)>,
    pub last_seed: Option<i64>,
    pub shown: Option<Shown>,
    pub ratings: HashMap<String, Option<u8>>,
    /// When the latest preview was put on the picture, for the benchmark's trace.
    pub preview_set: std::rc::Rc<std::cell::Cell<Option<Instant>>>,
    pub connect_when_probed: bool,
    /// Whether the gallery has been listed (once per run; a folder monitor adds the rest).
    pub gallery_listed: bool,
    /// Jobs events named that the queue page must fetch (a fetch is due while non-empty).
    pub to_fetch: std::collections::BTreeSet<u64>,
    /// The latest analytics report, for the theme export and the HTML report.
    pub report: Option<Arc<imagelab_analytics::Report>>,
}

impl Component for App {
    type CommandOutput = Cmd;
    type Input = AppMsg;
    type Output = ();
    type Init = ();
    type Root = adw::ApplicationWindow;
    type Widgets = Ui;

    fn init_root() -> Self::Root {
        let window = adw::ApplicationWindow::builder().title("imagelab").build();
        window.connect_map(|_| super::trace::mark("window-mapped"));
        window
    }

    fn init(_: (), window: Self::Root, sender: ComponentSender<Self>) -> ComponentParts<Self> {
        relm4::set_global_css(super::menu::CSS);
        let settings_dir = imagelab_core::config::settings_dir();
        let gui = GuiSettings::load(&settings_dir);
        let (width, height) = gui.window_size();
        window.set_default_size(width, height);
        if gui.maximized {
            window.maximize();
        }
        let ui = Ui::new(window.clone(), &sender);
        let mut model = App {
            settings_dir,
            config: Config::default(),
            gui,
            client: None,
            origin: None,
            daemon: None,
            gpu_count: None,
            gpu_problem: None,
            gpu_samples: Vec::new(),
            checkpoints: Vec::new(),
            families: Default::default(),
            library: PromptLibrary::default(),
            status: GpuStatusView {
                nvml_error: None,
                gpus: Vec::new(),
                workers: Vec::new(),
                ..Default::default()
            },
            mine: HashSet::new(),
            awaiting_submit: 0,
            model_change: None,
            early_events: HashMap::new(),
            progress: None,
            last_seed: None,
            shown: None,
            ratings: HashMap::new(),
            preview_set: Default::default(),
            connect_when_probed: false,
            gallery_listed: false,
            report: None,
            to_fetch: Default::default(),
        };
        model.start(&ui, &sender);
        model.watch_paint(&ui);
        window.present();
        super::trace::mark("window-presented");
        ComponentParts { model, widgets: ui }
    }

    fn update_with_view(
        &mut self,
        ui: &mut Ui,
        message: AppMsg,
        sender: ComponentSender<Self>,
        _root: &Self::Root,
    ) {
        self.handle(ui, message, &sender);
    }

    fn update_cmd_with_view(
        &mut self,
        ui: &mut Ui,
        message: Cmd,
        sender: ComponentSender<Self>,
        _root: &Self::Root,
    ) {
        self.handle_cmd(ui, message, &sender);
    }

    fn shutdown(&mut self, ui: &mut Ui, _output: relm4::Sender<()>) {
        self.gui.maximized = ui.window.is_maximized();
        if !self.gui.maximized {
            let (w, h) = ui.window.default_size();
            (self.gui.width, self.gui.height) = (w, h);
        }
        if ui.stack.visible_child_name().as_deref() == Some("work") {
            self.gui.form = Some(self.form(ui));
        }
        if let Err(e) = self.gui.save(&self.settings_dir) {
            eprintln!("imagelab-gui: cannot save the window settings: {e}");
        }
        // The daemon this app started stops with it; one it found keeps running.
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
    }
}

impl App {
    /// Sends a command result back, unless the app is gone.
    pub fn run<F>(sender: &ComponentSender<App>, work: F)
    where
        F: FnOnce() -> Cmd + Send + 'static,
    {
        sender.spawn_oneshot_command(work);
    }

    /// The whole form: the left panel's fields and the center's prompts.
    pub fn form(&self, ui: &Ui) -> crate::state::form::FormState {
        let mut form = ui.left.form();
        (form.prompt, form.negative) = ui.center.prompts();
        form
    }

    /// Records how long a preview took from its event to a painted frame.
    fn watch_paint(&self, ui: &Ui) {
        if !super::trace::enabled() {
            return;
        }
        let pending = std::rc::Rc::clone(&self.preview_set);
        ui.window.connect_realize(move |window| {
            let pending = std::rc::Rc::clone(&pending);
            if let Some(clock) = window.frame_clock() {
                clock.connect_after_paint(move |_| {
                    if let Some(at) = pending.take() {
                        super::trace::delay("preview-event-to-paint", at.elapsed());
                    }
                });
            }
        });
    }
}
