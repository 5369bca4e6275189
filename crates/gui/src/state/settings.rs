//! `gui.yaml` in the settings folder: the window's size and the last-used form, written
//! atomically when the window closes and read when it opens.

use super::form::FormState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the app remembers between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuiSettings {
    pub width: i32,
    pub height: i32,
    pub maximized: bool,
    /// The form as it was when the window closed.
    pub form: Option<FormState>,
}

impl Default for GuiSettings {
    fn default() -> Self {
        GuiSettings {
            width: 1400,
            height: 900,
            maximized: false,
            form: None,
        }
    }
}

impl GuiSettings {
    pub fn path(settings_dir: &Path) -> PathBuf {
        settings_dir.join("gui.yaml")
    }

    /// The saved settings; a missing or unreadable file gives the defaults (a broken
    /// `gui.yaml` must never keep the app from opening) and says why in the log.
    pub fn load(settings_dir: &Path) -> GuiSettings {
        let path = GuiSettings::path(settings_dir);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return GuiSettings::default();
        };
        serde_yaml::from_str(&text).unwrap_or_else(|e| {
            eprintln!("imagelab-gui: ignoring {}: {e}", path.display());
            GuiSettings::default()
        })
    }

    /// Writes to a temporary file, then renames it over `gui.yaml`.
    pub fn save(&self, settings_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(settings_dir)?;
        let path = GuiSettings::path(settings_dir);
        let text = serde_yaml::to_string(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }

    /// A size the window can open at: a saved size too small to use is ignored.
    pub fn window_size(&self) -> (i32, i32) {
        let d = GuiSettings::default();
        if self.width < 640 || self.height < 480 {
            (d.width, d.height)
        } else {
            (self.width, self.height)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_with_the_form() {
        let dir = tempfile::tempdir().unwrap();
        let form = FormState {
            prompt: "a lighthouse".into(),
            width: 832,
            ..FormState::default()
        };
        let settings = GuiSettings {
            width: 1000,
            height: 700,
            maximized: true,
            form: Some(form),
        };
        settings.save(dir.path()).unwrap();
        assert_eq!(GuiSettings::load(dir.path()), settings);
        assert!(!dir.path().join("gui.yaml.tmp").exists());
    }

    #[test]
    fn a_broken_or_tiny_file_falls_back_to_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gui.yaml"), "width: [oops").unwrap();
        assert_eq!(GuiSettings::load(dir.path()), GuiSettings::default());
        let tiny = GuiSettings {
            width: 10,
            height: 10,
            ..GuiSettings::default()
        };
        assert_eq!(tiny.window_size(), (1400, 900));
    }
}
