//! The queue page's worker cards: one per worker, with its device, its state (and why the
//! idle policy blocks it), the models it holds with their sizes, and the latest preview of
//! the job it runs. There are few workers, so a change redraws the cards.

use super::images::{texture, Rgba};
use super::widgets::name;
use crate::state::workers::{worker_cards, WorkerCard};
use gtk::prelude::*;
use imagelab_core::events::GpuStatusView;
use std::cell::RefCell;

pub struct WorkerCards {
    pub root: gtk::FlowBox,
    /// The shown cards, and each card's preview picture by worker name.
    shown: RefCell<Vec<(WorkerCard, gtk::Picture)>>,
}

impl WorkerCards {
    pub fn new() -> WorkerCards {
        let root = gtk::FlowBox::new();
        root.set_selection_mode(gtk::SelectionMode::None);
        root.set_homogeneous(true);
        root.set_max_children_per_line(4);
        root.set_margin_start(6);
        root.set_margin_end(6);
        root.set_margin_top(6);
        name(&root, "Workers");
        WorkerCards {
            root,
            shown: RefCell::new(Vec::new()),
        }
    }

    /// Draws the cards again when what they say changed.
    pub fn show(&self, status: &GpuStatusView) {
        let cards = worker_cards(status);
        let same = {
            let shown = self.shown.borrow();
            shown.len() == cards.len() && shown.iter().zip(&cards).all(|((c, _), n)| c == n)
        };
        if same {
            return;
        }
        while let Some(child) = self.root.first_child() {
            self.root.remove(&child);
        }
        let mut shown = Vec::new();
        for card in cards {
            let picture = gtk::Picture::new();
            picture.set_size_request(96, 96);
            picture.set_visible(card.job.is_some());
            name(&picture, &format!("Preview on {}", card.name));
            self.root.insert(&card_widget(&card, &picture), -1);
            shown.push((card, picture));
        }
        *self.shown.borrow_mut() = shown;
    }

    /// A running job's preview, on the card of the worker that runs it.
    pub fn preview(&self, job: u64, rgba: &Rgba) {
        for (card, picture) in self.shown.borrow().iter() {
            if card.job == Some(job) {
                picture.set_paintable(Some(&texture(rgba)));
            }
        }
    }
}

fn card_widget(card: &WorkerCard, picture: &gtk::Picture) -> gtk::Box {
    let title = gtk::Label::new(Some(&card.title));
    title.add_css_class("heading");
    title.set_xalign(0.0);
    let state = gtk::Label::new(Some(&card.state));
    state.set_xalign(0.0);
    state.set_wrap(true);
    name(&state, &format!("State of {}", card.name));
    if matches!(card.kind, "blocked" | "down") {
        state.add_css_class("warning");
    }
    let text = gtk::Box::new(gtk::Orientation::Vertical, 4);
    text.set_hexpand(true);
    text.append(&title);
    text.append(&state);
    for model in &card.models {
        let line = gtk::Label::new(Some(model));
        line.set_xalign(0.0);
        line.set_wrap(true);
        line.add_css_class("dim-label");
        line.add_css_class("caption");
        text.append(&line);
    }
    if card.models.is_empty() {
        let none = gtk::Label::new(Some("no model loaded"));
        none.set_xalign(0.0);
        none.add_css_class("dim-label");
        none.add_css_class("caption");
        text.append(&none);
    }
    let body = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    body.add_css_class("card");
    body.set_margin_start(6);
    body.set_margin_end(6);
    body.set_margin_top(6);
    body.set_margin_bottom(6);
    for side in [
        &text.clone().upcast::<gtk::Widget>(),
        &picture.clone().upcast(),
    ] {
        side.set_margin_top(12);
        side.set_margin_bottom(12);
    }
    text.set_margin_start(12);
    picture.set_margin_end(12);
    body.append(&text);
    body.append(picture);
    name(&body, &format!("Worker {}", card.name));
    body
}
