//! The queue page: every job the daemon holds, newest first and live from the event
//! stream, with a state filter, a Cancel button on each waiting or running job, pause /
//! resume and clear finished. The list recycles its rows (a `ListView` over the ids), and
//! an event redraws only its own row, so 10,000 jobs cost 10,000 strings, not widgets.

use super::app::{App, AppMsg};
use super::widgets::{button, name};
use crate::state::queue::{cancellable, row_text, shown_by, JobRows, RowChange, FILTERS};
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
    rows: Rc<RefCell<JobRows>>,
}

impl QueuePage {
    pub fn new(sender: &ComponentSender<App>) -> QueuePage {
        let rows = Rc::new(RefCell::new(JobRows::default()));
        let list = gtk::StringList::new(&[]);
        let filter = gtk::DropDown::from_strings(&FILTERS);
        name(&filter, "Job filter");
        let s = sender.clone();
        filter.connect_selected_notify(move |_| s.input(AppMsg::QueueFilter));
        let pause = gtk::ToggleButton::with_label("Pause the queue");
        name(&pause, "Pause the queue");
        let s = sender.clone();
        // `clicked` comes from the user only; showing the daemon's state uses `set_active`.
        pause.connect_clicked(move |b| s.input(AppMsg::PauseQueue(b.is_active())));
        let clear = button("Clear finished jobs");
        let s = sender.clone();
        clear.connect_clicked(move |_| s.input(AppMsg::ClearFinished));
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
        scroll.set_vexpand(true);
        scroll.set_child(Some(&view));
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&bar);
        root.append(&scroll);
        QueuePage {
            root,
            list,
            filter,
            pause,
            count,
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
    }

    /// A job's state changed; `Unknown` asks the caller to fetch it.
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
        if let RowChange::Updated(id) = change {
            if shown_by(self.filter.selected() as usize, state) == self.position(id).is_some() {
                self.redraw(id);
            } else {
                self.refilter();
            }
        }
        change
    }

    pub fn progressed(&self, id: u64, done: usize, total: usize) {
        if self.rows.borrow_mut().progressed(id, done, total).is_some() {
            self.redraw(id);
        }
    }

    /// A fetched job: a new row, or a fresher copy of one.
    pub fn upsert(&self, view: JobView) {
        let id = view.id;
        if self.rows.borrow_mut().upsert(view) {
            self.refilter();
        } else {
            self.redraw(id);
        }
    }

    fn position(&self, id: u64) -> Option<u32> {
        let key = id.to_string();
        // Newest first: a live job is almost always near the top.
        (0..self.list.n_items()).find(|&i| self.list.string(i).as_deref() == Some(key.as_str()))
    }

    fn redraw(&self, id: u64) {
        if let Some(position) = self.position(id) {
            self.list.items_changed(position, 1, 1);
        }
    }
}

fn row_widget(sender: &ComponentSender<App>) -> gtk::Box {
    let text = gtk::Label::new(None);
    text.set_xalign(0.0);
    text.set_hexpand(true);
    text.set_ellipsize(gtk::pango::EllipsizeMode::End);
    let cancel = gtk::Button::from_icon_name("process-stop-symbolic");
    cancel.set_tooltip_text(Some("Cancel this job"));
    let line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    line.set_margin_start(6);
    line.set_margin_end(6);
    line.append(&text);
    line.append(&cancel);
    let s = sender.clone();
    let l = line.clone();
    cancel.connect_clicked(move |_| {
        if let Some(id) = l
            .widget_name()
            .strip_prefix("job:")
            .and_then(|i| i.parse().ok())
        {
            s.input(AppMsg::CancelJob(id));
        }
    });
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
    let text = row_text(row);
    if let Some(label) = line.first_child().and_downcast::<gtk::Label>() {
        label.set_text(&text);
    }
    if let Some(cancel) = line.last_child() {
        cancel.set_visible(cancellable(&row.view.state));
        name(&cancel, &format!("Cancel job {id}"));
    }
}
