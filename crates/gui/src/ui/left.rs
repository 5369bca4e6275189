//! The work screen's left panel: checkpoint, VAE and text-encoder choice, the VRAM display, the
//! generation parameters, the style and safety choice and the init image. It shows a
//! [`FormState`] and reads one back; its buttons send intents to the app.

use super::app::{App, AppMsg};
use super::widgets::{button, dropdown, heading, icon_button, name, row, set_items, spin};
use crate::state::form::{preset_label, Field, FormState, SIZE_PRESETS};
use crate::state::vram::{human_bytes, DeviceGroup};
use gtk::prelude::*;
use imagelab_core::names::{SamplerName, SchedulerName};
use relm4::ComponentSender;
use std::cell::RefCell;

/// What the dropdowns show for "use the checkpoint's own".
pub const EMBEDDED: &str = "Embedded";

pub struct LeftPanel {
    pub root: gtk::ScrolledWindow,
    checkpoint: gtk::DropDown,
    checkpoints: gtk::StringList,
    vae: gtk::DropDown,
    vaes: gtk::StringList,
    clip: gtk::DropDown,
    clips: gtk::StringList,
    pub split: gtk::CheckButton,
    vram: gtk::Box,
    width: gtk::SpinButton,
    height: gtk::SpinButton,
    sampler: gtk::DropDown,
    scheduler: gtk::DropDown,
    steps: gtk::SpinButton,
    cfg: gtk::SpinButton,
    seed: gtk::Entry,
    count: gtk::SpinButton,
    style: gtk::DropDown,
    styles: gtk::StringList,
    style_ids: RefCell<Vec<Option<String>>>,
    /// The style a shown form asked for before the profiles were listed (taken by the next
    /// [`LeftPanel::show_styles`], as the launch's saved form comes before the profiles).
    pending_style: RefCell<Option<Option<String>>>,
    safe: gtk::CheckButton,
    mature: gtk::CheckButton,
    init_label: gtk::Label,
    init_image: RefCell<Option<String>>,
    strength: gtk::Scale,
    /// Set while the app itself fills the widgets: selection changes then are not picks.
    filling: std::rc::Rc<std::cell::Cell<bool>>,
    /// The models the form asks for, kept while the lists lack them (see [`WantedModels`]).
    wanted: std::rc::Rc<RefCell<WantedModels>>,
}

/// The checkpoint, VAE and text encoder asked for by the form shown last or by the user's
/// own picks since. On a launch the saved form is shown before the daemon's model lists
/// arrive; the lists then select these, not whatever the empty drop-downs held.
#[derive(Debug, Clone, Default, PartialEq)]
struct WantedModels {
    model: Option<String>,
    vae: Option<String>,
    clip: Option<String>,
}

impl WantedModels {
    fn of(form: &FormState) -> WantedModels {
        WantedModels {
            model: form.model.clone(),
            vae: form.vae.clone(),
            clip: form.clip.clone(),
        }
    }
}

/// The drop-down's selected entry, `None` for [`EMBEDDED`] or an empty list.
fn picked(drop: &gtk::DropDown) -> Option<String> {
    drop.selected_item()
        .and_downcast::<gtk::StringObject>()
        .map(|s| s.string().to_string())
        .filter(|s| s != EMBEDDED)
}

fn names(items: &[String]) -> Vec<String> {
    let mut all = vec![EMBEDDED.to_string()];
    all.extend(items.iter().cloned());
    all
}

impl LeftPanel {
    pub fn new(sender: &ComponentSender<App>) -> LeftPanel {
        let column = gtk::Box::new(gtk::Orientation::Vertical, 6);
        column.set_margin_start(12);
        column.set_margin_end(12);
        column.set_margin_top(6);
        column.set_margin_bottom(12);

        column.append(&heading("Model"));
        let (checkpoint, checkpoints) = dropdown(&[], "Checkpoint");
        checkpoint.set_hexpand(true);
        let refresh = icon_button("view-refresh-symbolic", "Refresh the model lists");
        let line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        line.append(&checkpoint);
        line.append(&refresh);
        column.append(&line);
        let (vae, vaes) = dropdown(&[EMBEDDED], "VAE");
        column.append(&row("VAE", &vae));
        // ComfyUI's models/clip holds CLIP and T5 files alike (PixArt-Σ's T5 goes there).
        let (clip, clips) = dropdown(&[EMBEDDED], "Text encoder (CLIP or T5)");
        column.append(&row("Text encoder", &clip));
        let split =
            gtk::CheckButton::with_label("Split over GPUs 0 and 1 (UNet | text encoders + VAE)");
        name(&split, "Split the model over two GPUs");
        split.set_visible(false);
        column.append(&split);

        column.append(&heading("Memory"));
        let vram = gtk::Box::new(gtk::Orientation::Vertical, 4);
        name(&vram, "VRAM");
        column.append(&vram);

        column.append(&heading("Parameters"));
        let mut preset_names: Vec<String> = vec!["Custom size".into()];
        preset_names.extend(SIZE_PRESETS.iter().map(|(w, h, n)| preset_label(*w, *h, n)));
        let (preset, preset_list) = dropdown(&[], "Size preset");
        set_items(&preset_list, &preset_names);
        column.append(&preset);
        let width = spin(64.0, 4096.0, 8.0, 0, "Width");
        let height = spin(64.0, 4096.0, 8.0, 0, "Height");
        let swap = icon_button("object-flip-horizontal-symbolic", "Swap width and height");
        let size = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        size.append(&width);
        size.append(&gtk::Label::new(Some("×")));
        size.append(&height);
        size.append(&swap);
        column.append(&size);
        let samplers: Vec<&str> = SamplerName::ALL.iter().map(|s| s.as_str()).collect();
        let (sampler, _) = dropdown(&samplers, "Sampler");
        column.append(&row("Sampler", &sampler));
        let schedulers: Vec<&str> = SchedulerName::ALL.iter().map(|s| s.as_str()).collect();
        let (scheduler, _) = dropdown(&schedulers, "Scheduler");
        column.append(&row("Scheduler", &scheduler));
        let steps = spin(1.0, 150.0, 1.0, 0, "Steps");
        column.append(&row("Steps", &steps));
        let cfg = spin(0.0, 30.0, 0.5, 1, "CFG scale");
        column.append(&row("CFG scale", &cfg));
        let seed = gtk::Entry::new();
        name(&seed, "Seed");
        seed.set_width_chars(12);
        seed.set_tooltip_text(Some("-1 draws a random seed for each image"));
        let dice = icon_button("media-playlist-shuffle-symbolic", "Random seed");
        let reuse = icon_button("edit-undo-symbolic", "Reuse the last seed");
        let seed_line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        seed_line.append(&gtk::Label::new(Some("Seed")));
        seed.set_hexpand(true);
        seed_line.append(&seed);
        seed_line.append(&dice);
        seed_line.append(&reuse);
        column.append(&seed_line);
        let count = spin(1.0, 100.0, 1.0, 0, "Images per click");
        column.append(&row("Images", &count));
        let save_defaults = button("Save as defaults");
        save_defaults.set_tooltip_text(Some(
            "Size, sampler, scheduler, steps, CFG and negative prompt become the defaults in config.yaml",
        ));
        column.append(&save_defaults);

        column.append(&heading("Style"));
        let (style, styles) = dropdown(&["None"], "Style profile");
        column.append(&style);
        let safe = gtk::CheckButton::with_label("Safe");
        name(&safe, "Safe");
        let mature = gtk::CheckButton::with_label("Mature");
        name(&mature, "Mature");
        let modes = gtk::Box::new(gtk::Orientation::Horizontal, 12);
        modes.append(&safe);
        modes.append(&mature);
        column.append(&modes);

        column.append(&heading("Start from an image"));
        let init_label = gtk::Label::new(Some("None (text to image)"));
        init_label.set_xalign(0.0);
        init_label.set_ellipsize(gtk::pango::EllipsizeMode::Middle);
        name(&init_label, "Init image");
        column.append(&init_label);
        let init_open = button("Open image…");
        let init_clear = button("Clear image");
        let init_line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        init_line.append(&init_open);
        init_line.append(&init_clear);
        column.append(&init_line);
        let strength = gtk::Scale::with_range(gtk::Orientation::Horizontal, 0.0, 1.0, 0.05);
        strength.set_digits(2);
        strength.set_draw_value(true);
        name(&strength, "Strength");
        column.append(&row("Strength", &strength));

        let root = gtk::ScrolledWindow::new();
        root.set_hscrollbar_policy(gtk::PolicyType::Never);
        root.set_min_content_width(340);
        root.set_child(Some(&column));

        let send = |msg: fn() -> AppMsg| {
            let sender = sender.clone();
            move |_: &gtk::Button| sender.input(msg())
        };
        refresh.connect_clicked(send(|| AppMsg::RefreshModels));
        swap.connect_clicked(send(|| AppMsg::SwapSize));
        dice.connect_clicked(send(|| AppMsg::DiceSeed));
        reuse.connect_clicked(send(|| AppMsg::ReuseSeed));
        save_defaults.connect_clicked(send(|| AppMsg::SaveDefaults));
        init_open.connect_clicked(send(|| AppMsg::OpenInitImage));
        init_clear.connect_clicked(send(|| AppMsg::ClearInitImage));
        // The checkpoint selected last, by the user or by the app.
        let selected_model = std::rc::Rc::new(RefCell::new(None));
        let filling = std::rc::Rc::new(std::cell::Cell::new(false));
        let wanted = std::rc::Rc::new(RefCell::new(WantedModels::default()));
        let follow_pick =
            |drop: &gtk::DropDown, field: fn(&mut WantedModels) -> &mut Option<String>| {
                let (busy, wanted) = (filling.clone(), wanted.clone());
                drop.connect_selected_notify(move |d| {
                    if !busy.get() {
                        *field(&mut wanted.borrow_mut()) = picked(d);
                    }
                });
            };
        follow_pick(&checkpoint, |w| &mut w.model);
        follow_pick(&vae, |w| &mut w.vae);
        follow_pick(&clip, |w| &mut w.clip);
        let (s, last, busy, list) = (
            sender.clone(),
            selected_model.clone(),
            filling.clone(),
            checkpoints.clone(),
        );
        checkpoint.connect_selected_notify(move |d| {
            let now = list.string(d.selected()).map(|s| s.to_string());
            let before = last.replace(now);
            // Only the user's picks bring a family's settings: a recalled image or the
            // saved form keeps the steps and CFG it was shown with.
            if !busy.get() {
                s.input(AppMsg::ModelPicked(before));
            }
        });
        let s = sender.clone();
        preset.connect_selected_notify(move |d| {
            if let Some(&(w, h, _)) = (d.selected() as usize)
                .checked_sub(1)
                .and_then(|i| SIZE_PRESETS.get(i))
            {
                s.input(AppMsg::Preset(w, h));
            }
        });
        let s = sender.clone();
        safe.connect_toggled(move |c| s.input(AppMsg::Safe(c.is_active())));
        let s = sender.clone();
        mature.connect_toggled(move |c| s.input(AppMsg::Mature(c.is_active())));
        let s = sender.clone();
        split.connect_toggled(move |c| s.input(AppMsg::Split(c.is_active())));

        LeftPanel {
            root,
            checkpoint,
            checkpoints,
            vae,
            vaes,
            clip,
            clips,
            split,
            vram,
            width,
            height,
            sampler,
            scheduler,
            steps,
            cfg,
            seed,
            count,
            style,
            styles,
            style_ids: RefCell::new(vec![None]),
            pending_style: RefCell::new(None),
            safe,
            mature,
            init_label,
            init_image: RefCell::new(None),
            strength,
            filling,
            wanted,
        }
    }

    /// Runs `fill` with selection changes not taken as the user's picks.
    fn filling(&self, fill: impl FnOnce()) {
        let was = self.filling.replace(true);
        fill();
        self.filling.set(was);
    }

    /// The model lists from the daemon, selecting the models the form asks for where the
    /// lists have them.
    pub fn show_models(&self, checkpoints: &[String], vaes: &[String], clips: &[String]) {
        let wanted = self.wanted.borrow().clone();
        let form = FormState {
            model: wanted.model,
            vae: wanted.vae,
            clip: wanted.clip,
            ..self.form()
        };
        self.filling(|| {
            set_items(&self.checkpoints, checkpoints);
            set_items(&self.vaes, &names(vaes));
            set_items(&self.clips, &names(clips));
            self.select_models(&form);
        });
    }

    fn select_models(&self, form: &FormState) {
        let select = |drop: &gtk::DropDown, list: &gtk::StringList, wanted: Option<&str>| {
            let index = (0..list.n_items())
                .find(|&i| list.string(i).as_deref() == wanted)
                .unwrap_or(0);
            drop.set_selected(index);
        };
        select(&self.checkpoint, &self.checkpoints, form.model.as_deref());
        select(
            &self.vae,
            &self.vaes,
            Some(form.vae.as_deref().unwrap_or(EMBEDDED)),
        );
        select(
            &self.clip,
            &self.clips,
            Some(form.clip.as_deref().unwrap_or(EMBEDDED)),
        );
    }

    /// The style profiles the current safety mode lets the user see: (id, name).
    pub fn show_styles(&self, profiles: &[(String, String)]) {
        let current = self
            .pending_style
            .take()
            .unwrap_or_else(|| self.selected_style());
        let mut labels = vec!["None".to_string()];
        let mut ids = vec![None];
        for (id, label) in profiles {
            labels.push(label.clone());
            ids.push(Some(id.clone()));
        }
        set_items(&self.styles, &labels);
        let index = ids.iter().position(|i| *i == current).unwrap_or(0);
        *self.style_ids.borrow_mut() = ids;
        self.style.set_selected(index as u32);
    }

    fn selected_style(&self) -> Option<String> {
        self.style_ids
            .borrow()
            .get(self.style.selected() as usize)
            .cloned()
            .flatten()
    }

    /// The VRAM display, one group per GPU (or the CPU).
    pub fn show_vram(&self, groups: &[DeviceGroup], split_possible: bool) {
        while let Some(child) = self.vram.first_child() {
            self.vram.remove(&child);
        }
        self.split.set_visible(split_possible);
        if groups.is_empty() {
            self.vram.append(&gtk::Label::new(Some("No worker yet")));
        }
        for group in groups {
            let title = gtk::Label::new(Some(&group.title));
            title.set_xalign(0.0);
            title.add_css_class("caption-heading");
            self.vram.append(&title);
            if let (Some(total), Some(used)) = (group.total, group.used) {
                let bar = gtk::LevelBar::for_interval(0.0, 1.0);
                bar.set_value(group.fraction_used());
                name(&bar, &format!("{} memory used", group.title));
                self.vram.append(&bar);
                let free = group.free().map(human_bytes).unwrap_or_default();
                let line = format!(
                    "{} used of {} · {free} free",
                    human_bytes(used),
                    human_bytes(total)
                );
                self.vram.append(&small_label(&line));
            }
            for part in &group.parts {
                let line = format!(
                    "{} · {}: {}",
                    part.model,
                    part.label,
                    human_bytes(part.bytes)
                );
                self.vram.append(&small_label(&line));
            }
            if group.parts.is_empty() {
                self.vram.append(&small_label("Nothing loaded"));
            } else if group.parts.len() > 1 {
                self.vram.append(&small_label(&format!(
                    "imagelab holds {}",
                    human_bytes(group.ours())
                )));
            }
        }
    }

    /// The form as the widgets hold it now.
    pub fn form(&self) -> FormState {
        FormState {
            model: picked(&self.checkpoint),
            vae: picked(&self.vae),
            clip: picked(&self.clip),
            width: self.width.value_as_int() as u32,
            height: self.height.value_as_int() as u32,
            sampler: SamplerName::ALL[self.sampler.selected() as usize % SamplerName::ALL.len()],
            scheduler: SchedulerName::ALL
                [self.scheduler.selected() as usize % SchedulerName::ALL.len()],
            steps: self.steps.value_as_int() as u32,
            cfg: self.cfg.value(),
            seed: self.seed.text().to_string(),
            count: self.count.value_as_int() as u32,
            prompt: String::new(),
            negative: String::new(),
            style: self.selected_style(),
            safe: self.safe.is_active(),
            mature: self.mature.is_active(),
            init_image: self.init_image.borrow().clone(),
            strength: self.strength.value(),
        }
    }

    /// Shows `form` (the prompts are the center's).
    pub fn show_form(&self, form: &FormState) {
        *self.wanted.borrow_mut() = WantedModels::of(form);
        self.filling(|| self.select_models(form));
        self.width.set_value(form.width.into());
        self.height.set_value(form.height.into());
        let index =
            |all: &[&str], name: &str| all.iter().position(|s| *s == name).unwrap_or(0) as u32;
        let samplers: Vec<&str> = SamplerName::ALL.iter().map(|s| s.as_str()).collect();
        self.sampler
            .set_selected(index(&samplers, form.sampler.as_str()));
        let schedulers: Vec<&str> = SchedulerName::ALL.iter().map(|s| s.as_str()).collect();
        self.scheduler
            .set_selected(index(&schedulers, form.scheduler.as_str()));
        self.steps.set_value(form.steps.into());
        self.cfg.set_value(form.cfg);
        self.seed.set_text(&form.seed);
        self.count.set_value(form.count.into());
        if self.safe.is_active() != form.safe {
            self.safe.set_active(form.safe);
        }
        if self.mature.is_active() != form.mature {
            self.mature.set_active(form.mature);
        }
        self.show_init_image(form.init_image.as_deref());
        self.strength.set_value(form.strength);
        let ids = self.style_ids.borrow().clone();
        let style = ids.iter().position(|i| *i == form.style);
        *self.pending_style.borrow_mut() = style.is_none().then(|| form.style.clone());
        self.style.set_selected(style.unwrap_or(0) as u32);
    }

    pub fn show_init_image(&self, image: Option<&str>) {
        *self.init_image.borrow_mut() = image.map(str::to_string);
        self.init_label
            .set_text(image.unwrap_or("None (text to image)"));
    }

    /// The widget a field error is shown on.
    pub fn widget_of(&self, field: Field) -> Option<gtk::Widget> {
        Some(match field {
            Field::Model => self.checkpoint.clone().upcast(),
            Field::Vae => self.vae.clone().upcast(),
            Field::Clip => self.clip.clone().upcast(),
            Field::Width => self.width.clone().upcast(),
            Field::Height => self.height.clone().upcast(),
            Field::Sampler => self.sampler.clone().upcast(),
            Field::Scheduler => self.scheduler.clone().upcast(),
            Field::Steps => self.steps.clone().upcast(),
            Field::Cfg => self.cfg.clone().upcast(),
            Field::Seed => self.seed.clone().upcast(),
            Field::Count => self.count.clone().upcast(),
            Field::Style => self.style.clone().upcast(),
            Field::InitImage => self.init_label.clone().upcast(),
            Field::Strength => self.strength.clone().upcast(),
            Field::Prompt | Field::Negative => return None,
        })
    }

    pub fn set_seed(&self, seed: &str) {
        self.seed.set_text(seed);
    }
}

fn small_label(text: &str) -> gtk::Label {
    let label = gtk::Label::new(Some(text));
    label.set_xalign(0.0);
    label.set_wrap(true);
    label.add_css_class("caption");
    label
}
