//! The analytics page's intents: analyze (the analytics crate on a command thread, on the
//! same jobs.log and output folder `imagelab analyze` reads), export the winners as a theme
//! file in `themes/`, and write the HTML report and open it in the browser.

use super::app::{App, Cmd};
use super::window::Ui;
use crate::state::charts::charts;
use gtk::gio;
use gtk::prelude::*;
use imagelab_analytics::theme_export::{export_theme, to_yaml};
use imagelab_analytics::{analyze, render, write_atomic, AnalyzeOptions, Format, Report};
use relm4::ComponentSender;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl App {
    pub fn analyze(&self, ui: &Ui, sender: &ComponentSender<App>) {
        ui.analytics.analyzing();
        let folders = self.config.folders();
        let mut opts = AnalyzeOptions::new(folders.jobs.join("jobs.log"));
        opts.output_dir = Some(folders.output.clone());
        App::run(sender, move || {
            Cmd::Analyzed(analyze(&opts).map(Arc::new).map_err(|e| e.to_string()))
        });
    }

    pub fn analyzed(&mut self, ui: &Ui, result: Result<Arc<Report>, String>) {
        match result {
            Ok(report) => {
                let started = std::time::Instant::now();
                ui.analytics
                    .show(&charts(&report), !report.top_favorites.is_empty());
                super::trace::delay("analytics-drawn", started.elapsed());
                self.report = Some(report);
            }
            Err(e) => {
                ui.analytics.failed(&format!("The analysis failed: {e}"));
                self.report = None;
            }
        }
    }

    /// The winners as `themes/best-of-favorites.yaml` (or `-2`, `-3`, … when taken).
    pub fn export_theme(&self, sender: &ComponentSender<App>) {
        let Some(report) = self.report.clone() else {
            return;
        };
        let themes = self.config.folders().themes;
        App::run(sender, move || {
            let written = (|| -> Result<String, String> {
                std::fs::create_dir_all(&themes)
                    .map_err(|e| format!("{}: {e}", themes.display()))?;
                let (name, path) = free_theme_name(&themes, "best-of-favorites");
                let theme = export_theme(&report, &name).map_err(|e| e.to_string())?;
                write_atomic(&path, &to_yaml(&theme).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "Wrote the theme {name} ({} prompts, {} models) to {}: pick it for a night run",
                    theme.templates.len(),
                    theme.models.len(),
                    path.display()
                ))
            })();
            match written {
                Ok(text) => Cmd::Toast(text),
                Err(e) => Cmd::Failed(format!("Exporting a theme: {e}"), None),
            }
        });
    }

    /// The HTML report in the cache folder, then the browser.
    pub fn open_report(&self, sender: &ComponentSender<App>) {
        let Some(report) = self.report.clone() else {
            return;
        };
        let path = super::images::thumbnail_cache_dir()
            .parent()
            .map(|p| p.join("report.html"))
            .unwrap_or_else(|| PathBuf::from("report.html"));
        App::run(sender, move || {
            let written = render(&report, Format::Html)
                .map_err(|e| e.to_string())
                .and_then(|html| {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                    }
                    write_atomic(&path, &html).map_err(|e| e.to_string())
                });
            Cmd::ReportWritten(written.map(|()| path))
        });
    }

    pub fn report_written(&self, ui: &Ui, result: Result<PathBuf, String>) {
        match result {
            Ok(path) => {
                let uri = gio::File::for_path(&path).uri();
                match gio::AppInfo::launch_default_for_uri(&uri, gio::AppLaunchContext::NONE) {
                    Ok(()) => ui.toast(&format!("Opened {}", path.display())),
                    Err(e) => ui.toast(&format!(
                        "Wrote {}, but no browser opened it: {e}",
                        path.display()
                    )),
                }
            }
            Err(e) => ui.toast(&format!("The HTML report: {e}")),
        }
    }
}

/// `stem.yaml` in `dir`, or the first of `stem-2.yaml`, `stem-3.yaml`, … that does not exist.
fn free_theme_name(dir: &Path, stem: &str) -> (String, PathBuf) {
    let mut n = 1;
    loop {
        let name = if n == 1 {
            stem.to_string()
        } else {
            format!("{stem}-{n}")
        };
        let path = dir.join(format!("{name}.yaml"));
        if !path.exists() {
            return (name, path);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_theme_never_overwrites_one_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let (name, path) = super::free_theme_name(dir.path(), "best");
        assert_eq!(
            (name.as_str(), path.clone()),
            ("best", dir.path().join("best.yaml"))
        );
        std::fs::write(&path, "x").unwrap();
        std::fs::write(dir.path().join("best-2.yaml"), "x").unwrap();
        assert_eq!(super::free_theme_name(dir.path(), "best").0, "best-3");
    }
}
