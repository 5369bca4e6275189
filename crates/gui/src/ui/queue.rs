//! The queue page: the worker cards, then every job the daemon holds, newest first and live
//! from the event stream, with a state filter, pause / resume and clear finished, and on
//! each row the actions its state allows (priority, retry, open, cancel). The list
//! recycles its rows (a `ListView` over the ids), and an event redraws only its own row,
//! so 10,000 jobs cost 10,000 strings, not widgets.

use super::app::{App, AppMsg, QueueIntent};
use super::widgets::{button, name};
use super::workers::WorkerCards;
use crate::state::queue::{
    cancellable, first_output, reprioritisable, retryable, row_text, shown_by, slot_for, JobRows,
    RowChange, FILTERS, PRIORITIES,
};
use gtk::prelude::*;
use imagelab_core::api::JobView;
use relm4::ComponentSender;
use std::cell::RefCell;
use std::rc::Rc;

pub struct QueuePage {
    pub root: gtk::Box,
    list: gtk::StringList,
    filter: gtk::DropDown,
    pub pause: gtk::ToggleButton,
    count: gtk::Label,
    /// The list, or the empty-state page when the filter shows no job.
    jobs: gtk::Stack,
    pub workers: WorkerCards,
    rows: Rc<RefCell<JobRows>>,
}

impl QueuePage {
    pub fn new(sender: &ComponentSender<App>) -> QueuePage {
        let rows = Rc::new(RefCell::new(JobRows::default()));
        let list = gtk::StringList::new(&[]);
        let filter = gtk::DropDown::from_strings(&FILTERS);
        name(&filter, "Job filter");
        let s = sender.clone();
        filter.connect_selected_notify(move |_| s.input(AppMsg::Queue(QueueIntent::Filter)));
        let pause = gtk::ToggleButton::with_label("Pause the queue");
        name(&pause, "Pause the queue");
        let s = sender.clone();
        // `clicked` comes from the user only; showing the daemon's state uses `set_active`.
        pause.connect_clicked(move |b| s.input(AppMsg::Queue(QueueIntent::Pause(b.is_active()))));
        let clear = button("Clear finished jobs");
        let s = sender.clone();
        clear.connect_clicked(move |_| s.input(AppMsg::Queue(QueueIntent::ClearFinished)));
        let count = gtk::Label::new(Some("No jobs"));
        count.set_hexpand(true);
        count.set_xalign(1.0);
        name(&count, "Job count");
        let bar = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        bar.add_css_class("toolbar");
        bar.append(&filter);
        bar.append(&pause);
        bar.append(&clear);
        bar.append(&count);

        let factory = gtk::SignalListItemFactory::new();
        let s = sender.clone();
        factory.connect_setup(move |_, item| {
            let item = item.downcast_ref::<gtk::ListItem>().expect("a list item");
            item.set_child(Some(&row_widget(&s)));
        });
        let r = Rc::clone(&rows);
        factory.connect_bind(move |_, item| {
            let item = item.downcast_ref::<gtk::ListItem>().expect("a list item");
            bind(&r.borrow(), item);
        });
        let view = gtk::ListView::new(
            Some(gtk::NoSelection::new(Some(list.clone()))),
            Some(factory),
        );
        name(&view, "Jobs");
        view.set_show_separators(true);
        view.add_css_class("rich-list");
        let scroll = gtk::ScrolledWindow::new();
        scroll.set_child(Some(&view));
        let empty = adw::StatusPage::new();
        empty.set_icon_name(Some("view-list-symbolic"));
        empty.set_title("No jobs");
        empty.set_description(Some(
            "Images made on the Create page, with imagelab submit or by a night run are listed here.",
        ));
        let jobs = gtk::Stack::new();
        jobs.set_vexpand(true);
        jobs.add_named(&empty, Some("empty"));
        jobs.add_named(&scroll, Some("list"));
        let workers = WorkerCards::new();
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&workers.root);
        root.append(&bar);
        root.append(&jobs);
        QueuePage {
            root,
            list,
            filter,
            pause,
            count,
            jobs,
            workers,
            rows,
        }
    }

    /// Every job, as `GET /v1/jobs` answered.
    pub fn show_all(&self, views: Vec<JobView>) {
        *self.rows.borrow_mut() = JobRows::from_views(views);
        self.refilter();
    }

    /// Lists again what the filter shows (after a filter change or a new job).
    pub fn refilter(&self) {
        let ids: Vec<String> = self
            .rows
            .borrow()
            .visible(self.filter.selected() as usize)
            .iter()
            .map(u64::to_string)
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.list.splice(0, self.list.n_items(), &refs);
        let total = self.rows.borrow().len();
        self.count
            .set_text(&format!("{} of {total} jobs", ids.len()));
        self.jobs
            .set_visible_child_name(if ids.is_empty() { "empty" } else { "list" });
    }

    /// The first image of each done job of overnight run `run`, newest first, and when the
    /// newest finished.
    pub fn night_outputs(&self, run: &str) -> (Vec<String>, Option<u64>) {
        let mut done = self.rows.borrow().done_of_run(run);
        done.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        let last = done.iter().filter_map(|d| d.2).max();
        (done.into_iter().map(|(_, name, _)| name).collect(), last)
    }

    /// The job as the page holds it (for Retry).
    pub fn job(&self, id: u64) -> Option<imagelab_core::api::JobView> {
        self.rows.borrow().get(id).map(|r| r.view.clone())
    }

    /// A job's state changed; `Unknown` and `Ended` ask the caller to fetch it.
    pub fn state_changed(
        &self,
        id: u64,
        state: &str,
        worker: Option<String>,
        error: Option<String>,
    ) -> RowChange {
        let change = self
            .rows
            .borrow_mut()
            .state_changed(id, state, worker, error);
        if let RowChange::Updated(id) | RowChange::Ended(id) = change {
            self.place(id, shown_by(self.filter.selected() as usize, state));
        }
        change
    }

    /// Shows, hides or redraws one row, leaving the others alone.
    fn place(&self, id: u64, shown: bool) {
        match (self.slot(id), shown) {
            (Ok(at), true) => self.list.items_changed(at, 1, 1),
            (Ok(at), false) => self.list.remove(at),
            (Err(at), true) => self.list.splice(at, 0, &[&id.to_string()]),
            (Err(_), false) => return,
        }
        self.show_count();
    }

    fn show_count(&self) {
        let (shown, total) = (self.list.n_items(), self.rows.borrow().len());
        self.count.set_text(&format!("{shown} of {total} jobs"));
        self.jobs
            .set_visible_child_name(if shown == 0 { "empty" } else { "list" });
    }

    pub fn progressed(&self, id: u64, done: usize, total: usize) {
        if self.rows.borrow_mut().progressed(id, done, total).is_some() {
            self.redraw(id);
        }
    }

    /// Fetched jobs: new rows, or fresher copies. New jobs newer than every listed row (a
    /// burst of submissions) go in at the top in one splice; others are placed one by one
    /// (a binary search each). Only a large batch of older rows lists everything again.
    pub fn upsert(&self, views: Vec<JobView>) {
        let filter = self.filter.selected() as usize;
        let newest_listed = self.list.string(0).and_then(|s| s.parse::<u64>().ok());
        let mut on_top = Vec::new();
        let mut placed = Vec::new();
        for view in views {
            let (id, shown) = (view.id, shown_by(filter, &view.state));
            let known = self.rows.borrow().get(id).is_some();
            self.rows.borrow_mut().upsert(view);
            if !known && shown && newest_listed.is_none_or(|top| id > top) {
                on_top.push(id);
            } else {
                placed.push((id, shown));
            }
        }
        if placed.len() > 64 {
            self.refilter();
            return;
        }
        on_top.sort_unstable_by(|a, b| b.cmp(a));
        let ids: Vec<String> = on_top.iter().map(u64::to_string).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.list.splice(0, 0, &refs);
        for (id, shown) in placed {
            self.place(id, shown);
        }
        self.show_count();
    }

    /// The row's place in the list (sorted newest first), or where it would go.
    fn slot(&self, id: u64) -> Result<u32, u32> {
        slot_for(self.list.n_items(), id, |i| {
            self.list.string(i).and_then(|s| s.parse().ok())
        })
    }

    fn redraw(&self, id: u64) {
        if let Ok(position) = self.slot(id) {
            self.list.items_changed(position, 1, 1);
        }
    }
}

/// The job id a row's widget shows (its name is `job:<id>`).
fn row_id(line: &gtk::Box) -> Option<u64> {
    line.widget_name().strip_prefix("job:")?.parse().ok()
}

/// A row's child by the role it plays (its CSS class).
fn part(line: &gtk::Box, role: &str) -> Option<gtk::Widget> {
    let mut child = line.first_child();
    while let Some(widget) = child {
        if widget.has_css_class(role) {
            return Some(widget);
        }
        child = widget.next_sibling();
    }
    None
}

/// A row button: its icon, its role (CSS class), its tooltip and what it asks for.
type RowAction = (
    &'static str,
    &'static str,
    &'static str,
    fn(u64) -> QueueIntent,
);

/// A row button that sends `intent` with the row's job id.
fn row_button(
    line: &gtk::Box,
    sender: &ComponentSender<App>,
    icon: &str,
    role: &str,
    tooltip: &str,
    intent: fn(u64) -> QueueIntent,
) {
    let b = gtk::Button::from_icon_name(icon);
    b.set_tooltip_text(Some(tooltip));
    b.add_css_class(role);
    b.add_css_class("flat");
    let s = sender.clone();
    let l = line.clone();
    b.connect_clicked(move |_| {
        if let Some(id) = row_id(&l) {
            s.input(AppMsg::Queue(intent(id)));
        }
    });
    line.append(&b);
}

/// The priority menu: a popover with the three priorities.
fn priority_menu(line: &gtk::Box, sender: &ComponentSender<App>) {
    let choices = gtk::Box::new(gtk::Orientation::Vertical, 2);
    let popover = gtk::Popover::new();
    for (priority, label) in PRIORITIES {
        let b = gtk::Button::with_label(label);
        b.add_css_class("flat");
        let (s, l, p) = (sender.clone(), line.clone(), popover.clone());
        b.connect_clicked(move |_| {
            p.popdown();
            if let Some(id) = row_id(&l) {
                s.input(AppMsg::Queue(QueueIntent::Priority(id, priority)));
            }
        });
        choices.append(&b);
    }
    popover.set_child(Some(&choices));
    let menu = gtk::MenuButton::new();
    menu.set_icon_name("view-sort-descending-symbolic");
    menu.set_tooltip_text(Some("Change the priority"));
    menu.add_css_class("priority");
    menu.add_css_class("flat");
    menu.set_popover(Some(&popover));
    line.append(&menu);
}

fn row_widget(sender: &ComponentSender<App>) -> gtk::Box {
    let text = gtk::Label::new(None);
    text.set_xalign(0.0);
    text.set_hexpand(true);
    text.set_ellipsize(gtk::pango::EllipsizeMode::End);
    text.add_css_class("text");
    let line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    line.set_margin_start(6);
    line.set_margin_end(6);
    line.append(&text);
    priority_menu(&line, sender);
    let buttons: [RowAction; 3] = [
        (
            "view-refresh-symbolic",
            "retry",
            "Submit this job again",
            QueueIntent::Retry,
        ),
        (
            "image-x-generic-symbolic",
            "open",
            "Show its image",
            QueueIntent::Open,
        ),
        (
            "process-stop-symbolic",
            "cancel",
            "Cancel this job",
            QueueIntent::Cancel,
        ),
    ];
    for (icon, role, tooltip, intent) in buttons {
        row_button(&line, sender, icon, role, tooltip, intent);
    }
    line
}

fn bind(rows: &JobRows, item: &gtk::ListItem) {
    let Some(line) = item.child().and_downcast::<gtk::Box>() else {
        return;
    };
    let Some(id) = item
        .item()
        .and_downcast::<gtk::StringObject>()
        .and_then(|s| s.string().parse::<u64>().ok())
    else {
        return;
    };
    let Some(row) = rows.get(id) else {
        return;
    };
    line.set_widget_name(&format!("job:{id}"));
    if let Some(label) = part(&line, "text").and_downcast::<gtk::Label>() {
        label.set_text(&row_text(row));
    }
    let state = row.view.state.as_str();
    let actions = [
        ("priority", reprioritisable(state), "Priority of job"),
        ("retry", retryable(state), "Retry job"),
        ("open", first_output(row).is_some(), "Open job"),
        ("cancel", cancellable(state), "Cancel job"),
    ];
    for (role, shown, label) in actions {
        if let Some(widget) = part(&line, role) {
            widget.set_visible(shown);
            name(&widget, &format!("{label} {id}"));
        }
    }
}
