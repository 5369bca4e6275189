//! Settings: `~/.aiimagegen/config.yaml` (moved by `AIIMAGEGEN_HOME`), the folder layout,
//! and the defaults new generations start from. Environment variables override the file.

use crate::names::{SamplerName, SchedulerName};
use crate::params::{DType, DeviceSpec, GenerationParams};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A settings file that cannot be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write settings file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {name}={value:?} is not valid: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
}

/// Defaults for new generations, saved from the GUI or edited by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationDefaults {
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub cfg: f64,
    pub sampler: SamplerName,
    pub scheduler: SchedulerName,
    pub negative: String,
}

impl Default for GenerationDefaults {
    fn default() -> Self {
        let p = GenerationParams::default();
        GenerationDefaults {
            width: p.width,
            height: p.height,
            steps: p.steps,
            cfg: p.cfg,
            sampler: p.sampler,
            scheduler: p.scheduler,
            negative: String::new(),
        }
    }
}

/// The settings file's contents. Relative folders resolve against the app folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub output_dir: PathBuf,
    pub models_dir: PathBuf,
    pub jobs_dir: PathBuf,
    /// Theme files, style profiles (`profiles/`) and wildcard lists (`wildcards/`).
    pub themes_dir: PathBuf,
    /// Device for `generate` when `--device` is not given; `None` picks CUDA when present.
    pub device: Option<DeviceSpec>,
    /// Precision when `--dtype` is not given; `None` is fp16 on CUDA and fp32 on the CPU.
    pub dtype: Option<DType>,
    /// GPUs (UUIDs or indices) the user selected; empty means all of them.
    pub gpus: Vec<String>,
    /// The daemon's workers when it is started without `--worker`, in the same words
    /// (`cpu`, `cuda:N`, a split pair `cuda:N+M`); empty means one worker per selected
    /// GPU. The app writes `[cuda:0+1]` here when the user splits a model over two GPUs.
    pub workers: Vec<String>,
    /// How many loaded pipelines stay cached.
    pub pipeline_cache_size: usize,
    /// Memory modes for small cards (attention, offload, CFG batching, VAE tiling); the
    /// defaults are the fastest. `generate` flags override them per run.
    pub memory: crate::memory::MemorySettings,
    /// With no memory mode chosen anywhere, let `generate` pick one from the GPU's free
    /// memory (false: always the `memory:` section as written).
    pub automatic_memory: bool,
    pub defaults: GenerationDefaults,
    /// The daemon's GPU policy, retries and recovery.
    pub scheduler: crate::scheduler::SchedulerSettings,
    /// Overnight runs: what `imagelab night start` uses when given no themes or window, and
    /// the daemon's fallback models and content mode for them.
    pub night: NightDefaults,
    /// Handing jobs to a Slurm cluster instead of (or beside) local workers.
    pub slurm: crate::slurm::SlurmSettings,
}

/// The `night:` section of the settings file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NightDefaults {
    /// Themes for `imagelab night start` without `--theme` (what the systemd timer runs).
    pub themes: Vec<String>,
    /// Checkpoints for themes that name none and runs that give no `--models` (the
    /// daemon reads this).
    pub models: Vec<String>,
    /// Stop at this local time (`07:00`) when the command gives no window.
    pub until: Option<String>,
    /// Or run this long (`8h`, `1h30m`) when the command gives no window.
    pub duration: Option<String>,
    pub max_jobs: Option<u64>,
    /// Safe mode for overnight runs: the safety negative on every prompt (the daemon reads
    /// this; a request cannot change it).
    pub safe: bool,
    /// Mature mode for overnight runs: themes may use mature style profiles (the daemon
    /// reads this; a request cannot turn it on).
    pub mature: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            output_dir: PathBuf::from("output"),
            models_dir: PathBuf::from("models"),
            jobs_dir: PathBuf::from("jobs"),
            themes_dir: PathBuf::from("themes"),
            device: None,
            dtype: None,
            gpus: Vec::new(),
            workers: Vec::new(),
            pipeline_cache_size: 2,
            memory: crate::memory::MemorySettings::default(),
            automatic_memory: true,
            defaults: GenerationDefaults::default(),
            scheduler: crate::scheduler::SchedulerSettings::default(),
            night: NightDefaults::default(),
            slurm: crate::slurm::SlurmSettings::default(),
        }
    }
}

/// The resolved, absolute folders a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub models: PathBuf,
    pub output: PathBuf,
    pub jobs: PathBuf,
    pub themes: PathBuf,
}

impl Folders {
    pub fn checkpoints(&self) -> PathBuf {
        self.models.join("checkpoints")
    }
    pub fn vae(&self) -> PathBuf {
        self.models.join("vae")
    }
    pub fn clip(&self) -> PathBuf {
        self.models.join("clip")
    }
    pub fn loras(&self) -> PathBuf {
        self.models.join("loras")
    }
    pub fn embeddings(&self) -> PathBuf {
        self.models.join("embeddings")
    }
    pub fn profiles(&self) -> PathBuf {
        self.themes.join("profiles")
    }
    pub fn wildcards(&self) -> PathBuf {
        self.themes.join("wildcards")
    }
}

/// The settings folder: `$AIIMAGEGEN_HOME`, else `~/.aiimagegen`.
pub fn settings_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIIMAGEGEN_HOME") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".aiimagegen")
}

/// The app folder relative folders hang off: `$IMAGELAB_APP_DIR`, else the working directory.
pub fn app_dir() -> PathBuf {
    std::env::var_os("IMAGELAB_APP_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Config {
    /// The settings file path inside [`settings_dir`].
    pub fn path() -> PathBuf {
        settings_dir().join("config.yaml")
    }

    /// Reads the settings file; a missing file gives the defaults.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(&Config::path())
    }

    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Config::default()),
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the settings atomically (temporary file, then rename).
    pub fn save_to(&self, path: &Path) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let text = serde_yaml::to_string(self).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// The folders after `IMAGELAB_MODELS_DIR`, `IMAGELAB_OUTPUT_DIR`, `IMAGELAB_JOBS_DIR` and
    /// `IMAGELAB_THEMES_DIR`,
    /// made absolute against the app folder.
    pub fn folders(&self) -> Folders {
        let base = app_dir();
        let pick = |var: &str, configured: &Path| -> PathBuf {
            let chosen = std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| configured.to_path_buf());
            if chosen.is_absolute() {
                chosen
            } else {
                base.join(chosen)
            }
        };
        Folders {
            models: pick("IMAGELAB_MODELS_DIR", &self.models_dir),
            output: pick("IMAGELAB_OUTPUT_DIR", &self.output_dir),
            jobs: pick("IMAGELAB_JOBS_DIR", &self.jobs_dir),
            themes: pick("IMAGELAB_THEMES_DIR", &self.themes_dir),
        }
    }

    /// New generation parameters filled from the saved defaults.
    pub fn default_params(&self) -> GenerationParams {
        let d = &self.defaults;
        GenerationParams {
            width: d.width,
            height: d.height,
            steps: d.steps,
            cfg: d.cfg,
            sampler: d.sampler,
            scheduler: d.scheduler,
            negative: d.negative.clone(),
            ..GenerationParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let cfg = Config::load_from(&path).unwrap();
        assert_eq!(cfg, Config::default());
        let mut changed = cfg.clone();
        changed.defaults.steps = 30;
        changed.pipeline_cache_size = 3;
        changed.themes_dir = PathBuf::from("/srv/themes");
        changed.save_to(&path).unwrap();
        assert_eq!(Config::load_from(&path).unwrap(), changed);
        assert_eq!(changed.default_params().steps, 30);
        assert_eq!(cfg.themes_dir, PathBuf::from("themes"));
        let text = "themes_dir: my-themes\n";
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            Config::load_from(&path).unwrap().themes_dir,
            PathBuf::from("my-themes")
        );
    }

    #[test]
    fn the_night_section_reads_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let text =
            "night:\n  themes: [dark_fantasy, archviz]\n  until: \"07:00\"\n  max_jobs: 200\n";
        std::fs::write(&path, text).unwrap();
        let night = Config::load_from(&path).unwrap().night;
        assert_eq!(night.themes, vec!["dark_fantasy", "archviz"]);
        assert_eq!(night.until.as_deref(), Some("07:00"));
        assert_eq!((night.max_jobs, night.mature), (Some(200), false));
        std::fs::write(&path, "night:\n  theme: [a]\n").unwrap();
        let err = Config::load_from(&path).unwrap_err().to_string();
        assert!(
            err.contains("theme") && err.contains("config.yaml"),
            "{err}"
        );
    }

    #[test]
    fn bad_settings_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "defaults:\n  sampler: eulerr\n").unwrap();
        let err = Config::load_from(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.yaml") && err.contains("eulerr"),
            "{err}"
        );
        std::fs::write(&path, "output_dirr: x\n").unwrap();
        let err = Config::load_from(&path).unwrap_err().to_string();
        assert!(err.contains("output_dirr"), "{err}");
    }
}
