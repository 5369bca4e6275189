//! The setup screen's rules: when it shows (no settings folder or no `config.yaml`), what
//! it offers (the app folder's `output` and `models`, the GPUs present) and what saving
//! does (writes `config.yaml` atomically, creates the model folders and the output).

use imagelab_core::config::{app_dir, Config, ConfigError};
use std::path::{Path, PathBuf};

/// The setup screen shows only on a first launch.
/// Whether `CUDA_VISIBLE_DEVICES` hides every GPU (empty, or CUDA's `-1`): the app then
/// treats the machine as GPU-less, as CUDA programs would, though NVML still sees them.
pub fn gpus_hidden(visible: Option<&std::ffi::OsStr>) -> bool {
    visible.is_some_and(|v| {
        let v = v.to_string_lossy();
        v.trim().is_empty() || v.trim() == "-1"
    })
}

pub fn needs_setup(settings_dir: &Path) -> bool {
    !settings_dir.is_dir() || !settings_dir.join("config.yaml").is_file()
}

/// One GPU as the setup screen lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuChoice {
    pub uuid: String,
    pub label: String,
    pub checked: bool,
}

impl GpuChoice {
    /// Every GPU starts ticked: most people want all of theirs used.
    pub fn new(index: u32, uuid: &str, name: &str, memory_total_mib: u64) -> GpuChoice {
        let gib = memory_total_mib as f64 / 1024.0;
        GpuChoice {
            uuid: uuid.to_string(),
            label: format!("GPU {index}: {name} ({gib:.0} GiB)"),
            checked: true,
        }
    }
}

/// What the user filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupChoice {
    pub output_dir: PathBuf,
    pub models_dir: PathBuf,
    pub gpus: Vec<GpuChoice>,
}

impl SetupChoice {
    /// The seed's defaults: `./output` and `./models` relative to the app folder.
    pub fn defaults(gpus: Vec<GpuChoice>) -> SetupChoice {
        SetupChoice {
            output_dir: app_dir().join("output"),
            models_dir: app_dir().join("models"),
            gpus,
        }
    }

    /// The ticked GPUs' UUIDs, as `config.yaml` keeps them.
    pub fn chosen_gpus(&self) -> Vec<String> {
        self.gpus
            .iter()
            .filter(|g| g.checked)
            .map(|g| g.uuid.clone())
            .collect()
    }
}

/// Why saving failed, naming the folder or file.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("GPUs: tick at least one, or the daemon would have nothing to run on")]
    NoGpuChosen,
    #[error("cannot create the folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Creates the folders, then writes `config.yaml` in `settings_dir` (last, so a failure
/// leaves the setup screen to show again next time). Returns the config written.
pub fn save(settings_dir: &Path, choice: &SetupChoice) -> Result<Config, SetupError> {
    if !choice.gpus.is_empty() && choice.chosen_gpus().is_empty() {
        return Err(SetupError::NoGpuChosen);
    }
    let mut folders = vec![choice.output_dir.clone()];
    for sub in ["checkpoints", "vae", "clip"] {
        folders.push(choice.models_dir.join(sub));
    }
    for path in folders {
        std::fs::create_dir_all(&path).map_err(|source| SetupError::Folder { path, source })?;
    }
    let config_path = settings_dir.join("config.yaml");
    let mut config = Config::load_from(&config_path)?;
    config.output_dir = choice.output_dir.clone();
    config.models_dir = choice.models_dir.clone();
    config.gpus = choice.chosen_gpus();
    config.save_to(&config_path)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_cuda_visible_devices_hides_the_gpus() {
        use std::ffi::OsStr;
        assert!(gpus_hidden(Some(OsStr::new(""))));
        assert!(gpus_hidden(Some(OsStr::new("-1"))));
        assert!(!gpus_hidden(Some(OsStr::new("0,1"))));
        assert!(!gpus_hidden(None));
    }

    #[test]
    fn setup_shows_until_config_yaml_exists() {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join(".aiimagegen");
        assert!(needs_setup(&settings));
        std::fs::create_dir_all(&settings).unwrap();
        assert!(needs_setup(&settings));
        std::fs::write(settings.join("config.yaml"), "").unwrap();
        assert!(!needs_setup(&settings));
    }

    #[test]
    fn saving_writes_the_config_and_creates_every_folder() {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join(".aiimagegen");
        let mut gpus = vec![
            GpuChoice::new(0, "GPU-a", "RTX 4090", 24564),
            GpuChoice::new(1, "GPU-b", "RTX 3090", 24576),
        ];
        assert_eq!(gpus[0].label, "GPU 0: RTX 4090 (24 GiB)");
        gpus[1].checked = false;
        let choice = SetupChoice {
            output_dir: dir.path().join("out"),
            models_dir: dir.path().join("m"),
            gpus,
        };
        let config = save(&settings, &choice).unwrap();
        for sub in ["out", "m/checkpoints", "m/vae", "m/clip"] {
            assert!(dir.path().join(sub).is_dir(), "{sub}");
        }
        let read = Config::load_from(&settings.join("config.yaml")).unwrap();
        assert_eq!(read, config);
        assert_eq!(read.gpus, ["GPU-a"]);
        assert_eq!(read.output_dir, dir.path().join("out"));
        assert!(!needs_setup(&settings));
    }

    #[test]
    fn no_gpu_ticked_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join(".aiimagegen");
        let mut gpu = GpuChoice::new(0, "GPU-a", "A", 8192);
        gpu.checked = false;
        let choice = SetupChoice {
            output_dir: dir.path().join("out"),
            models_dir: dir.path().join("m"),
            gpus: vec![gpu],
        };
        assert!(matches!(
            save(&settings, &choice),
            Err(SetupError::NoGpuChosen)
        ));
        assert!(needs_setup(&settings));
        // Without any GPU the machine uses the CPU: that is not an error.
        let cpu = SetupChoice {
            gpus: vec![],
            ..choice
        };
        assert!(save(&settings, &cpu).unwrap().gpus.is_empty());
    }
}
