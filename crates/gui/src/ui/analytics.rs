//! The analytics page: the report `imagelab analyze` makes, drawn natively (bar charts with
//! Wilson intervals, the heat map, favorites per day, the best configurations), made on a
//! command thread when the page is shown or refreshed; and its two buttons: export the
//! winners as a theme, open the HTML report in the browser.

use super::app::{App, AppMsg, Intent};
use super::charts::{bar_chart, days_chart, heat_map};
use super::widgets::{button, heading, name};
use crate::state::charts::Charts;
use gtk::prelude::*;
use relm4::ComponentSender;

pub struct AnalyticsPage {
    pub root: gtk::Box,
    summary: gtk::Label,
    body: gtk::Box,
    pub export: gtk::Button,
    pub html: gtk::Button,
}

impl AnalyticsPage {
    pub fn new(sender: &ComponentSender<App>) -> AnalyticsPage {
        let refresh = button("Refresh");
        let export = button("Export the winners as a theme");
        export.set_tooltip_text(Some(
            "Write the best configurations and favorite prompts as a theme in themes/, to start a night run with",
        ));
        let html = button("Open the HTML report");
        let intents: [(&gtk::Button, Intent); 3] = [
            (&refresh, || AppMsg::Analyze),
            (&export, || AppMsg::ExportTheme),
            (&html, || AppMsg::OpenReport),
        ];
        for (b, intent) in intents {
            let s = sender.clone();
            b.connect_clicked(move |_| s.input(intent()));
        }
        export.set_sensitive(false);
        html.set_sensitive(false);
        let summary = gtk::Label::new(Some("Not analyzed yet"));
        summary.set_hexpand(true);
        summary.set_xalign(1.0);
        name(&summary, "Analytics summary");
        let bar = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        bar.add_css_class("toolbar");
        for b in [&refresh, &export, &html] {
            bar.append(b);
        }
        bar.append(&summary);
        let body = gtk::Box::new(gtk::Orientation::Vertical, 6);
        body.set_margin_start(12);
        body.set_margin_end(12);
        body.set_margin_top(6);
        let scroll = gtk::ScrolledWindow::new();
        scroll.set_vexpand(true);
        scroll.set_hscrollbar_policy(gtk::PolicyType::Never);
        scroll.set_child(Some(&body));
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&bar);
        root.append(&scroll);
        AnalyticsPage {
            root,
            summary,
            body,
            export,
            html,
        }
    }

    pub fn analyzing(&self) {
        self.summary.set_text("Analyzing…");
    }

    pub fn failed(&self, message: &str) {
        self.summary.set_text(message);
        self.export.set_sensitive(false);
        self.html.set_sensitive(false);
    }

    pub fn show(&self, charts: &Charts, has_favorites: bool) {
        self.summary.set_text(&charts.summary);
        self.export.set_sensitive(has_favorites);
        self.html.set_sensitive(true);
        while let Some(child) = self.body.first_child() {
            self.body.remove(&child);
        }
        if charts.bars.iter().all(|c| c.bars.is_empty()) {
            let empty = adw::StatusPage::new();
            empty.set_icon_name(Some("view-paged-symbolic"));
            empty.set_title("Nothing to analyze yet");
            empty.set_description(Some(
                "Once images are made and some starred, this page shows which models, profiles and settings make the ones you keep.",
            ));
            self.body.append(&empty);
            return;
        }
        for chart in &charts.bars {
            self.body.append(&bar_chart(chart));
        }
        if let Some(map) = &charts.heat {
            self.body.append(&heat_map(map));
        }
        self.body.append(&days_chart(&charts.days));
        self.body.append(&best_table(charts));
    }
}

/// The best configurations as a grid of labels, the header row in bold.
fn best_table(charts: &Charts) -> gtk::Box {
    let grid = gtk::Grid::new();
    grid.set_column_spacing(18);
    grid.set_row_spacing(4);
    for (j, column) in charts.best_columns.iter().enumerate() {
        let l = gtk::Label::new(Some(column));
        l.add_css_class("heading");
        l.set_xalign(0.0);
        grid.attach(&l, j as i32, 0, 1, 1);
    }
    for (i, row) in charts.best.iter().enumerate() {
        for (j, cell) in row.iter().enumerate() {
            let l = gtk::Label::new(Some(cell));
            l.set_xalign(0.0);
            l.set_selectable(true);
            grid.attach(&l, j as i32, i as i32 + 1, 1, 1);
        }
    }
    name(&grid, "Best configurations");
    let section = gtk::Box::new(gtk::Orientation::Vertical, 6);
    section.append(&heading("Best configurations"));
    if charts.best.is_empty() {
        let none = gtk::Label::new(Some("No configuration has enough images to rank yet."));
        none.set_xalign(0.0);
        none.add_css_class("dim-label");
        section.append(&none);
    } else {
        section.append(&grid);
    }
    section
}
