//! The overnight-run page: the status of the current or last run (counts, pace, time left,
//! its latest images, Stop) above the form that starts one: themes with their description
//! and sample prompts, models, style profile, safe or mature, and the end (a clock time or
//! a number of jobs).

use super::app::{App, AppMsg, NightIntent};
use super::favorites::request_thumbnail;
use super::images::{texture, Rgba};
use super::widgets::{button, heading, name};
use crate::state::night::{run_view, NightForm, RunEnd, ThemeInfo};
use gtk::prelude::*;
use imagelab_core::night::NightStatus;
use relm4::ComponentSender;
use std::cell::RefCell;
use std::collections::HashMap;

/// Images the status card shows.
pub const LATEST: usize = 8;

pub struct NightPage {
    pub root: gtk::ScrolledWindow,
    status: gtk::Box,
    title: gtk::Label,
    counts: gtk::Label,
    pace: gtk::Label,
    latest: gtk::Box,
    pub stop: gtk::Button,
    pub start: gtk::Button,
    themes: gtk::ListBox,
    theme_checks: RefCell<Vec<(String, gtk::ToggleButton)>>,
    seed: gtk::Label,
    models: gtk::FlowBox,
    model_checks: RefCell<Vec<(String, gtk::ToggleButton)>>,
    profile: gtk::DropDown,
    profile_list: gtk::StringList,
    profile_ids: RefCell<Vec<String>>,
    pub safe: gtk::CheckButton,
    pub mature: gtk::CheckButton,
    until_choice: gtk::ToggleButton,
    until: gtk::Entry,
    jobs: gtk::Entry,
    pictures: RefCell<HashMap<String, gtk::Picture>>,
}

fn labelled(text: &str, css: &[&str]) -> gtk::Label {
    let l = gtk::Label::new(Some(text));
    l.set_xalign(0.0);
    l.set_wrap(true);
    for c in css {
        l.add_css_class(c);
    }
    l
}

/// A choice that can be picked with others: a toggle button showing a tick when on (a
/// button, unlike a check box, can be pressed through the accessibility bus on GTK 4.8).
fn choice_chip(label: &str) -> gtk::ToggleButton {
    let chip = gtk::ToggleButton::with_label(label);
    chip.set_halign(gtk::Align::Start);
    chip.connect_toggled(|chip| {
        let text = chip
            .label()
            .map(|l| l.trim_start_matches("✓ ").to_string())
            .unwrap_or_default();
        chip.set_label(&if chip.is_active() {
            format!("✓ {text}")
        } else {
            text
        });
    });
    chip
}

fn intent_button(label: &str, sender: &ComponentSender<App>, intent: NightIntent) -> gtk::Button {
    let b = button(label);
    let s = sender.clone();
    b.connect_clicked(move |_| s.input(AppMsg::Night(intent)));
    b
}

impl NightPage {
    pub fn new(sender: &ComponentSender<App>) -> NightPage {
        let title = labelled("No overnight run yet", &["title-4"]);
        name(&title, "Night run");
        let counts = labelled("", &[]);
        name(&counts, "Night run counts");
        let pace = labelled("", &["dim-label"]);
        name(&pace, "Night run pace");
        let latest = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        name(&latest, "Latest night images");
        let stop = intent_button("Stop the run", sender, NightIntent::Stop);
        stop.add_css_class("destructive-action");
        stop.set_halign(gtk::Align::Start);
        let status = gtk::Box::new(gtk::Orientation::Vertical, 6);
        status.add_css_class("card");
        for w in [
            &title.clone().upcast::<gtk::Widget>(),
            &counts.clone().upcast(),
            &pace.clone().upcast(),
            &latest.clone().upcast(),
            &stop.clone().upcast(),
        ] {
            w.set_margin_start(12);
            w.set_margin_end(12);
            status.append(w);
        }
        title.set_margin_top(12);
        stop.set_margin_bottom(12);
        status.set_visible(false);

        let themes = gtk::ListBox::new();
        themes.add_css_class("boxed-list");
        themes.set_selection_mode(gtk::SelectionMode::None);
        name(&themes, "Themes");
        let seed = labelled("", &["dim-label", "caption"]);
        seed.set_wrap(false);
        let redraw = intent_button("Draw other samples", sender, NightIntent::DrawSamples);
        let seed_line = gtk::Box::new(gtk::Orientation::Horizontal, 12);
        seed_line.append(&seed);
        seed_line.append(&redraw);
        let models = gtk::FlowBox::new();
        models.set_selection_mode(gtk::SelectionMode::None);
        models.set_max_children_per_line(4);
        name(&models, "Night models");
        let profile_list = gtk::StringList::new(&["Each theme's own"]);
        let profile = gtk::DropDown::new(Some(profile_list.clone()), gtk::Expression::NONE);
        name(&profile, "Night style profile");
        let safe = gtk::CheckButton::with_label("Safe");
        let mature = gtk::CheckButton::with_label("Mature");
        name(&safe, "Night safe mode");
        name(&mature, "Night mature mode");
        // Exclusive, as on the Create page: checking one clears the other.
        let m = mature.clone();
        safe.connect_toggled(move |b| {
            if b.is_active() {
                m.set_active(false)
            }
        });
        let s = safe.clone();
        mature.connect_toggled(move |b| {
            if b.is_active() {
                s.set_active(false)
            }
        });
        // A segmented choice: toggle buttons in a group act as radio buttons.
        let until_choice = gtk::ToggleButton::with_label("Until");
        let jobs_choice = gtk::ToggleButton::with_label("Number of jobs");
        jobs_choice.set_group(Some(&until_choice));
        until_choice.set_active(true);
        let until = gtk::Entry::new();
        until.set_text("07:00");
        until.set_width_chars(6);
        name(&until, "Night until");
        let jobs = gtk::Entry::new();
        jobs.set_text("100");
        jobs.set_width_chars(6);
        name(&jobs, "Night number of jobs");
        let end = gtk::Box::new(gtk::Orientation::Horizontal, 8);
        for w in [
            &until_choice.clone().upcast::<gtk::Widget>(),
            &until.clone().upcast(),
            &jobs_choice.upcast(),
            &jobs.clone().upcast(),
        ] {
            end.append(w);
        }
        let content = gtk::Box::new(gtk::Orientation::Horizontal, 12);
        content.append(&profile);
        content.append(&safe);
        content.append(&mature);
        let start = intent_button("Start the overnight run", sender, NightIntent::Start);
        start.add_css_class("suggested-action");
        start.set_halign(gtk::Align::Start);

        let body = gtk::Box::new(gtk::Orientation::Vertical, 8);
        body.set_margin_start(18);
        body.set_margin_end(18);
        body.set_margin_top(12);
        body.set_margin_bottom(18);
        body.append(&status);
        body.append(&heading("Themes"));
        body.append(&themes);
        body.append(&seed_line);
        body.append(&heading(
            "Models (none: each theme's own, then night.models)",
        ));
        body.append(&models);
        body.append(&heading("Style and content"));
        body.append(&content);
        body.append(&heading("Ends"));
        body.append(&end);
        body.append(&start);
        let clamp = adw::Clamp::new();
        clamp.set_maximum_size(900);
        clamp.set_child(Some(&body));
        let root = gtk::ScrolledWindow::new();
        root.set_hscrollbar_policy(gtk::PolicyType::Never);
        root.set_child(Some(&clamp));
        NightPage {
            root,
            status,
            title,
            counts,
            pace,
            latest,
            stop,
            start,
            themes,
            theme_checks: RefCell::default(),
            seed,
            models,
            model_checks: RefCell::default(),
            profile,
            profile_list,
            profile_ids: RefCell::default(),
            safe,
            mature,
            until_choice,
            until,
            jobs,
            pictures: RefCell::default(),
        }
    }

    /// The themes with their samples; the ticks survive a redraw.
    pub fn show_themes(&self, infos: &[ThemeInfo], seed: u64) {
        let ticked: Vec<String> = self.chosen(&self.theme_checks);
        while let Some(row) = self.themes.first_child() {
            self.themes.remove(&row);
        }
        let mut checks = Vec::new();
        for info in infos {
            let check = choice_chip(&info.name);
            check.set_active(ticked.contains(&info.name));
            name(&check, &format!("Theme {}", info.name));
            let row = gtk::Box::new(gtk::Orientation::Vertical, 2);
            for side in [6, 6] {
                row.set_margin_top(side);
                row.set_margin_bottom(side);
            }
            row.set_margin_start(8);
            row.append(&check);
            if !info.description.is_empty() {
                row.append(&labelled(&info.description, &[]));
            }
            match &info.samples {
                Ok(samples) => {
                    for sample in samples {
                        row.append(&labelled(&format!("“{sample}”"), &["dim-label", "caption"]));
                    }
                }
                Err(e) => {
                    check.set_sensitive(false);
                    row.append(&labelled(e, &["error", "caption"]));
                }
            }
            self.themes.append(&row);
            checks.push((info.name.clone(), check));
        }
        if infos.is_empty() {
            self.themes.append(&labelled(
                "No theme in the themes folder yet.",
                &["dim-label"],
            ));
        }
        *self.theme_checks.borrow_mut() = checks;
        self.seed
            .set_text(&format!("Samples drawn with seed {seed}"));
    }

    pub fn show_models(&self, checkpoints: &[String]) {
        let ticked = self.chosen(&self.model_checks);
        while let Some(child) = self.models.first_child() {
            self.models.remove(&child);
        }
        let mut checks = Vec::new();
        for model in checkpoints {
            let check = choice_chip(model);
            check.set_active(ticked.contains(model));
            name(&check, &format!("Night model {model}"));
            self.models.insert(&check, -1);
            checks.push((model.clone(), check));
        }
        *self.model_checks.borrow_mut() = checks;
    }

    /// The profiles the run may use: (id, shown name).
    pub fn show_profiles(&self, profiles: &[(String, String)]) {
        let names: Vec<&str> = std::iter::once("Each theme's own")
            .chain(profiles.iter().map(|(_, n)| n.as_str()))
            .collect();
        self.profile_list
            .splice(0, self.profile_list.n_items(), &names);
        *self.profile_ids.borrow_mut() = profiles.iter().map(|(id, _)| id.clone()).collect();
    }

    fn chosen(&self, checks: &RefCell<Vec<(String, gtk::ToggleButton)>>) -> Vec<String> {
        checks
            .borrow()
            .iter()
            .filter(|(_, c)| c.is_active())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn form(&self) -> NightForm {
        let selected = self.profile.selected() as usize;
        NightForm {
            themes: self.chosen(&self.theme_checks),
            models: self.chosen(&self.model_checks),
            profile: selected
                .checked_sub(1)
                .and_then(|i| self.profile_ids.borrow().get(i).cloned()),
            safe: self.safe.is_active(),
            mature: self.mature.is_active(),
            end: if self.until_choice.is_active() {
                RunEnd::Until(self.until.text().to_string())
            } else {
                RunEnd::Jobs(self.jobs.text().to_string())
            },
        }
    }

    /// The widget a form problem is about.
    pub fn mark(&self, field: &str) {
        let widget: gtk::Widget = match field {
            "themes" => self.themes.clone().upcast(),
            "until" => self.until.clone().upcast(),
            "max_jobs" => self.jobs.clone().upcast(),
            "mature" => self.mature.clone().upcast(),
            "profile" => self.profile.clone().upcast(),
            "models" => self.models.clone().upcast(),
            _ => return,
        };
        super::widgets::mark_error(&widget, true);
    }

    pub fn clear_marks(&self) {
        for w in [
            self.themes.clone().upcast::<gtk::Widget>(),
            self.until.clone().upcast(),
            self.jobs.clone().upcast(),
            self.mature.clone().upcast(),
            self.profile.clone().upcast(),
            self.models.clone().upcast(),
        ] {
            super::widgets::mark_error(&w, false);
        }
    }

    /// The current or last run, or none ever.
    pub fn show_status(&self, status: Option<&NightStatus>, now_ms: u64, last_done: Option<u64>) {
        let Some(status) = status else {
            self.status.set_visible(false);
            self.start.set_sensitive(true);
            return;
        };
        let view = run_view(status, now_ms, last_done);
        self.status.set_visible(true);
        self.title.set_text(&view.title);
        self.counts.set_text(&view.counts);
        self.pace.set_text(&view.pace);
        self.stop.set_visible(view.running);
        self.start.set_sensitive(!view.running);
    }

    /// The run's newest images (newest first), thumbnails made off the main thread.
    pub fn show_latest(
        &self,
        names: &[String],
        folder: &std::path::Path,
        sender: &ComponentSender<App>,
    ) {
        let old = std::mem::take(&mut *self.pictures.borrow_mut());
        while let Some(child) = self.latest.first_child() {
            self.latest.remove(&child);
        }
        let mut pictures = HashMap::new();
        for image in names.iter().take(LATEST) {
            let picture = gtk::Picture::new();
            picture.set_size_request(96, 96);
            picture.set_content_fit(gtk::ContentFit::Cover);
            name(&picture, &format!("Night image {image}"));
            match old.get(image).and_then(|p| p.paintable()) {
                Some(paintable) => picture.set_paintable(Some(&paintable)),
                None => request_thumbnail(sender, image, folder.join(image)),
            }
            self.latest.append(&picture);
            pictures.insert(image.clone(), picture);
        }
        *self.pictures.borrow_mut() = pictures;
    }

    pub fn thumbnail_ready(&self, image: &str, pixels: &Rgba) {
        if let Some(picture) = self.pictures.borrow().get(image) {
            picture.set_paintable(Some(&texture(pixels)));
        }
    }
}
