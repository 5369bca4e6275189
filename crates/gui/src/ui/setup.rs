//! The setup screen of a first launch: the output and models folders (with folder
//! choosers) and the GPUs as a checkbox list; **Save** sends the choice to the app.

use super::app::{App, AppMsg};
use super::widgets::{button, name};
use crate::state::setup::{GpuChoice, SetupChoice};
use gtk::prelude::*;
use relm4::ComponentSender;
use std::cell::RefCell;
use std::path::PathBuf;

pub struct SetupPage {
    pub root: gtk::ScrolledWindow,
    output: gtk::Entry,
    models: gtk::Entry,
    gpu_box: gtk::Box,
    gpus: RefCell<Vec<(GpuChoice, gtk::CheckButton)>>,
    error: gtk::Label,
}

/// The folder a chooser button picks goes into its entry.
fn folder_row(label: &str, window: &gtk::Window) -> (gtk::Box, gtk::Entry) {
    let entry = gtk::Entry::new();
    entry.set_hexpand(true);
    name(&entry, label);
    let choose = button(&format!("Choose {}…", label.to_lowercase()));
    let (e, w) = (entry.clone(), window.clone());
    let title = format!("Choose the {}", label.to_lowercase());
    choose.connect_clicked(move |_| {
        let dialog = gtk::FileChooserNative::new(
            Some(&title),
            Some(&w),
            gtk::FileChooserAction::SelectFolder,
            Some("Select"),
            Some("Cancel"),
        );
        let e = e.clone();
        dialog.connect_response(move |d, response| {
            if response == gtk::ResponseType::Accept {
                if let Some(path) = d.file().and_then(|f| f.path()) {
                    e.set_text(&path.display().to_string());
                }
            }
            d.destroy();
        });
        dialog.show();
    });
    let line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    line.append(&entry);
    line.append(&choose);
    let block = gtk::Box::new(gtk::Orientation::Vertical, 4);
    let caption = gtk::Label::new(Some(label));
    caption.set_xalign(0.0);
    caption.add_css_class("heading");
    block.append(&caption);
    block.append(&line);
    (block, entry)
}

impl SetupPage {
    pub fn new(window: &gtk::Window, sender: &ComponentSender<App>) -> SetupPage {
        let column = gtk::Box::new(gtk::Orientation::Vertical, 14);
        column.set_margin_top(24);
        column.set_margin_bottom(24);
        column.set_margin_start(24);
        column.set_margin_end(24);
        column.set_halign(gtk::Align::Center);
        column.set_width_request(560);
        let title = gtk::Label::new(Some("Welcome to imagelab"));
        title.add_css_class("title-1");
        column.append(&title);
        let intro = gtk::Label::new(Some(
            "Choose where images are saved and where your models are. The models folder gets \
             checkpoints/, vae/ and clip/ subfolders: put Stable Diffusion checkpoints \
             (.safetensors) in checkpoints/.",
        ));
        intro.set_wrap(true);
        intro.set_xalign(0.0);
        column.append(&intro);
        let (output_row, output) = folder_row("Output folder", window);
        let (models_row, models) = folder_row("Models folder", window);
        column.append(&output_row);
        column.append(&models_row);
        let gpu_title = gtk::Label::new(Some("GPUs to use"));
        gpu_title.set_xalign(0.0);
        gpu_title.add_css_class("heading");
        column.append(&gpu_title);
        let gpu_box = gtk::Box::new(gtk::Orientation::Vertical, 4);
        name(&gpu_box, "GPUs");
        column.append(&gpu_box);
        let error = gtk::Label::new(None);
        error.add_css_class("error");
        error.set_wrap(true);
        error.set_xalign(0.0);
        name(&error, "Setup problem");
        column.append(&error);
        let save = button("Save and start");
        save.add_css_class("suggested-action");
        save.add_css_class("pill");
        save.set_halign(gtk::Align::End);
        let s = sender.clone();
        save.connect_clicked(move |_| s.input(AppMsg::SaveSetup));
        column.append(&save);
        let root = gtk::ScrolledWindow::new();
        root.set_child(Some(&column));
        SetupPage {
            root,
            output,
            models,
            gpu_box,
            gpus: RefCell::default(),
            error,
        }
    }

    pub fn show(&self, choice: &SetupChoice, gpu_problem: Option<&str>) {
        self.output
            .set_text(&choice.output_dir.display().to_string());
        self.models
            .set_text(&choice.models_dir.display().to_string());
        while let Some(child) = self.gpu_box.first_child() {
            self.gpu_box.remove(&child);
        }
        let mut checks = Vec::new();
        for gpu in &choice.gpus {
            let check = gtk::CheckButton::with_label(&gpu.label);
            check.set_active(gpu.checked);
            name(&check, &gpu.label);
            self.gpu_box.append(&check);
            checks.push((gpu.clone(), check));
        }
        if choice.gpus.is_empty() {
            let why = gpu_problem.map(|p| format!(" ({p})")).unwrap_or_default();
            let text = format!(
                "No NVIDIA GPU was found{why}. imagelab will make images on the CPU, which \
                 works but is slow: minutes per image at full size."
            );
            let label = gtk::Label::new(Some(&text));
            label.set_wrap(true);
            label.set_xalign(0.0);
            name(&label, "No GPU");
            self.gpu_box.append(&label);
        }
        *self.gpus.borrow_mut() = checks;
    }

    pub fn choice(&self) -> SetupChoice {
        SetupChoice {
            output_dir: PathBuf::from(self.output.text().trim()),
            models_dir: PathBuf::from(self.models.text().trim()),
            gpus: self
                .gpus
                .borrow()
                .iter()
                .map(|(gpu, check)| GpuChoice {
                    checked: check.is_active(),
                    ..gpu.clone()
                })
                .collect(),
        }
    }

    pub fn show_error(&self, message: &str) {
        self.error.set_text(message);
    }
}
