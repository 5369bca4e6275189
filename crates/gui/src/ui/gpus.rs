//! The GPU history page: for each GPU, utilization, memory and temperature over the last
//! ten minutes as lines, with the stretches our jobs ran shaded and the stretches the idle
//! policy held them back hatched red, and a sentence saying why; below, the Slurm
//! cluster's nodes when the daemon hands jobs to Slurm. Polled while shown.

use crate::state::gpu_history::{gpu_graphs, slurm_node_rows, Band, GpuGraph};
use adw::prelude::*;
use gtk::cairo;
use imagelab_core::events::GpuHistoryView;

const UTIL: (f64, f64, f64) = (0.21, 0.52, 0.89);
const MEMORY: (f64, f64, f64) = (0.18, 0.76, 0.49);
const TEMPERATURE: (f64, f64, f64) = (0.96, 0.47, 0.0);
const BLOCKED: (f64, f64, f64) = (0.88, 0.11, 0.14);

pub struct GpusPage {
    pub root: gtk::Box,
    body: gtk::Box,
    empty: adw::StatusPage,
    /// The Slurm nodes' heading and list (hidden without any).
    cluster: gtk::Box,
    nodes: gtk::ListBox,
}

impl GpusPage {
    pub fn new() -> GpusPage {
        let legend = gtk::Label::new(Some(
            "Blue: utilization · green: memory · orange: temperature (0–100 °C) · shaded: our jobs · red: held back by the idle policy",
        ));
        legend.add_css_class("dim-label");
        legend.add_css_class("caption");
        legend.set_wrap(true);
        legend.set_margin_top(6);
        let body = gtk::Box::new(gtk::Orientation::Vertical, 12);
        body.set_margin_start(18);
        body.set_margin_end(18);
        let empty = adw::StatusPage::new();
        empty.set_icon_name(Some("video-display-symbolic"));
        empty.set_title("No GPU history");
        empty.set_vexpand(true);
        let scroll = gtk::ScrolledWindow::new();
        scroll.set_vexpand(true);
        scroll.set_hscrollbar_policy(gtk::PolicyType::Never);
        scroll.set_child(Some(&body));
        let nodes = gtk::ListBox::new();
        nodes.add_css_class("boxed-list");
        nodes.set_selection_mode(gtk::SelectionMode::None);
        let cluster = gtk::Box::new(gtk::Orientation::Vertical, 6);
        cluster.set_margin_start(18);
        cluster.set_margin_end(18);
        cluster.set_margin_top(6);
        cluster.append(&super::widgets::heading("Slurm cluster"));
        cluster.append(&nodes);
        cluster.set_visible(false);
        let root = gtk::Box::new(gtk::Orientation::Vertical, 6);
        root.append(&legend);
        root.append(&cluster);
        root.append(&empty);
        root.append(&scroll);
        GpusPage {
            root,
            body,
            empty,
            cluster,
            nodes,
        }
    }

    /// The Slurm cluster's nodes, one row each, as `sinfo` reports them. The "no GPU
    /// history" page gives way to them when there is nothing to graph (a login node has
    /// no GPU of its own).
    pub fn show_slurm_nodes(&self, nodes: &[imagelab_core::events::SlurmNodeView]) {
        while let Some(child) = self.nodes.first_child() {
            self.nodes.remove(&child);
        }
        self.cluster.set_visible(!nodes.is_empty());
        if !nodes.is_empty() {
            self.empty.set_visible(false);
        }
        for (name, detail) in slurm_node_rows(nodes) {
            let row = adw::ActionRow::new();
            row.set_title(&name);
            row.set_subtitle(&detail);
            super::widgets::name(&row, &format!("Slurm node {name}: {detail}"));
            self.nodes.append(&row);
        }
    }

    pub fn show(&self, view: &GpuHistoryView, now_ms: u64) {
        let graphs = gpu_graphs(view, now_ms);
        self.empty.set_visible(graphs.is_empty());
        self.empty.set_description(Some(match &view.nvml_error {
            Some(e) => e.as_str(),
            None => "No NVIDIA GPU is sampled: the daemon runs its workers on the CPU, or without the NVML library.",
        }));
        while let Some(child) = self.body.first_child() {
            self.body.remove(&child);
        }
        for graph in graphs {
            self.body.append(&section(graph));
        }
    }
}

fn section(graph: GpuGraph) -> gtk::Box {
    let area = gtk::DrawingArea::new();
    area.set_content_height(140);
    area.set_hexpand(true);
    super::widgets::name(&area, &graph.title);
    let caption = gtk::Label::new(Some(&graph.summary));
    caption.set_wrap(true);
    caption.set_xalign(0.0);
    caption.add_css_class("caption");
    super::widgets::name(&caption, &format!("History of {}", graph.title));
    let title = super::widgets::heading(&graph.title);
    area.set_draw_func(move |_, cr, width, height| draw(cr, &graph, width as f64, height as f64));
    let section = gtk::Box::new(gtk::Orientation::Vertical, 4);
    section.append(&title);
    section.append(&area);
    section.append(&caption);
    section
}

fn fill_bands(cr: &cairo::Context, bands: &[Band], colour: (f64, f64, f64, f64), w: f64, h: f64) {
    cr.set_source_rgba(colour.0, colour.1, colour.2, colour.3);
    for band in bands {
        cr.rectangle(band.from * w, 0.0, ((band.to - band.from) * w).max(1.0), h);
    }
    let _ = cr.fill();
}

fn draw(cr: &cairo::Context, graph: &GpuGraph, w: f64, h: f64) {
    cr.set_source_rgba(0.5, 0.5, 0.5, 0.08);
    cr.rectangle(0.0, 0.0, w, h);
    let _ = cr.fill();
    fill_bands(cr, &graph.ours, (UTIL.0, UTIL.1, UTIL.2, 0.15), w, h);
    fill_bands(
        cr,
        &graph.blocked,
        (BLOCKED.0, BLOCKED.1, BLOCKED.2, 0.18),
        w,
        h,
    );
    for (line, colour) in [
        (&graph.utilization, UTIL),
        (&graph.memory, MEMORY),
        (&graph.temperature, TEMPERATURE),
    ] {
        cr.set_source_rgb(colour.0, colour.1, colour.2);
        cr.set_line_width(2.0);
        for (i, (x, y)) in line.iter().enumerate() {
            let (px, py) = (x * w, h - y * (h - 4.0) - 2.0);
            if i == 0 {
                cr.move_to(px, py);
            } else {
                cr.line_to(px, py);
            }
        }
        let _ = cr.stroke();
    }
}
