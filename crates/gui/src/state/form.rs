//! The work screen's form as plain data: what the left panel and the prompt boxes hold,
//! turned into generation parameters with errors that name the widget, filled back from
//! an image's metadata, and the small rules between its fields (sizes, seeds, safe and
//! mature).

use imagelab_analytics::ImageRecord;
use imagelab_core::config::GenerationDefaults;
use imagelab_core::names::{SamplerName, SchedulerName};
use imagelab_core::GenerationParams;
use serde::{Deserialize, Serialize};

/// The widgets a problem can be pinned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Model,
    Vae,
    Clip,
    Width,
    Height,
    Sampler,
    Scheduler,
    Steps,
    Cfg,
    Seed,
    Count,
    Prompt,
    Negative,
    Style,
    InitImage,
    Strength,
}

impl Field {
    /// The widget a daemon's `field` names: `spec.width`, `jobs[2].spec.seed`, `model`, …
    pub fn from_api(field: &str) -> Option<Field> {
        let last = field.rsplit('.').next().unwrap_or(field);
        Some(match last {
            "model" => Field::Model,
            "vae" => Field::Vae,
            "clip" => Field::Clip,
            "width" => Field::Width,
            "height" => Field::Height,
            "sampler" => Field::Sampler,
            "scheduler" => Field::Scheduler,
            "steps" => Field::Steps,
            "cfg" => Field::Cfg,
            "seed" => Field::Seed,
            "count" | "batch" => Field::Count,
            "prompt" => Field::Prompt,
            "negative" => Field::Negative,
            "style" => Field::Style,
            "init_image" => Field::InitImage,
            "strength" => Field::Strength,
            _ => return None,
        })
    }

    /// From a validation error's field name (`GenerationParams::validate`).
    pub fn from_validation(field: &str) -> Option<Field> {
        Field::from_api(field)
    }
}

/// A problem with the form, pinned on the widget it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: Option<Field>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: Field, message: impl Into<String>) -> FieldError {
        FieldError {
            field: Some(field),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The usual sizes of SDXL (about one megapixel) and SD 1.5 (512 on the short side).
pub const SIZE_PRESETS: &[(u32, u32, &str)] = &[
    (1024, 1024, "SDXL square"),
    (1152, 896, "SDXL 9:7"),
    (1216, 832, "SDXL 3:2"),
    (1344, 768, "SDXL 16:9"),
    (1536, 640, "SDXL 21:9"),
    (896, 1152, "SDXL 7:9"),
    (832, 1216, "SDXL 2:3"),
    (768, 1344, "SDXL 9:16"),
    (512, 512, "SD 1.5 square"),
    (768, 512, "SD 1.5 3:2"),
    (512, 768, "SD 1.5 2:3"),
    (768, 768, "SD 2.x square"),
];

/// The label of a size preset as the dropdown shows it.
pub fn preset_label(width: u32, height: u32, name: &str) -> String {
    format!("{width} × {height} ({name})")
}

/// Everything the form holds. Serialized as the app's "last used" settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FormState {
    pub model: Option<String>,
    /// `None` is the checkpoint's own ("Embedded").
    pub vae: Option<String>,
    pub clip: Option<String>,
    pub width: u32,
    pub height: u32,
    pub sampler: SamplerName,
    pub scheduler: SchedulerName,
    pub steps: u32,
    pub cfg: f64,
    /// As typed: `-1` (random) or a seed ≥ 0.
    pub seed: String,
    /// Images per click (jobs, each with its own seed and template draw).
    pub count: u32,
    pub prompt: String,
    pub negative: String,
    /// A style profile id; `None` is "None / raw".
    pub style: Option<String>,
    pub safe: bool,
    pub mature: bool,
    /// An image inside `output/` (usually `inputs/…`) to start from.
    pub init_image: Option<String>,
    pub strength: f64,
}

impl Default for FormState {
    fn default() -> Self {
        FormState::from_defaults(&GenerationDefaults::default())
    }
}

/// Moves `value` from `from` to `to` when it still holds `from`; says whether it moved.
fn follow<T: PartialEq + Copy>(value: &mut T, from: T, to: T) -> bool {
    let moves = *value == from && from != to;
    if moves {
        *value = to;
    }
    moves
}

/// "a and b", "a" or "b" for the fields that moved; `None` when neither did.
fn moved_fields(first: bool, second: bool, a: String, b: String) -> Option<String> {
    match (first, second) {
        (true, true) => Some(format!("{a} and {b}")),
        (true, false) => Some(a),
        (false, true) => Some(b),
        (false, false) => None,
    }
}

impl FormState {
    /// Follows a change of checkpoint from family `before` to `after` (the daemon's
    /// labels, `sdxl`, `pixart-sigma`, …): a family with recommended settings (PixArt-Σ:
    /// 20 steps, CFG 4.5) gets them in each of steps and CFG that still holds the saved
    /// default, and leaving it puts the defaults back where its recommendation still stands.
    /// Values the user typed are never changed. Returns the note to show, if anything changed.
    pub fn follow_family(
        &mut self,
        before: Option<&str>,
        after: Option<&str>,
        defaults: &GenerationDefaults,
    ) -> Option<String> {
        let recommended = |label: Option<&str>| {
            label
                .and_then(imagelab_core::family::Family::from_label)
                .and_then(|f| f.recommended().map(|r| (f, r)))
        };
        // Each field on its own, as `imagelab generate` treats them; the note names only
        // what moved.
        let (d_steps, d_cfg) = (defaults.steps, defaults.cfg);
        if let Some((family, r)) = recommended(after) {
            let steps = follow(&mut self.steps, d_steps, r.steps);
            let cfg = follow(&mut self.cfg, d_cfg, r.cfg);
            let what = moved_fields(
                steps,
                cfg,
                format!("{} steps", r.steps),
                format!("CFG {}", r.cfg),
            )?;
            return Some(format!("{}: its recommended {what}", family.display_name()));
        }
        let (_, r) = recommended(before)?;
        let steps = follow(&mut self.steps, r.steps, d_steps);
        let cfg = follow(&mut self.cfg, r.cfg, d_cfg);
        let what = moved_fields(
            steps,
            cfg,
            format!("steps ({d_steps})"),
            format!("CFG ({d_cfg})"),
        )?;
        Some(format!("Back to your default {what}"))
    }

    /// A fresh form from the saved defaults.
    pub fn from_defaults(d: &GenerationDefaults) -> FormState {
        FormState {
            model: None,
            vae: None,
            clip: None,
            width: d.width,
            height: d.height,
            sampler: d.sampler,
            scheduler: d.scheduler,
            steps: d.steps,
            cfg: d.cfg,
            seed: "-1".into(),
            count: 1,
            prompt: String::new(),
            negative: d.negative.clone(),
            style: None,
            safe: false,
            mature: false,
            init_image: None,
            strength: 0.75,
        }
    }

    /// What "Save as defaults" writes into `config.yaml`.
    pub fn defaults(&self, negative: &str) -> GenerationDefaults {
        GenerationDefaults {
            width: self.width,
            height: self.height,
            steps: self.steps,
            cfg: self.cfg,
            sampler: self.sampler,
            scheduler: self.scheduler,
            negative: negative.to_string(),
        }
    }

    /// The seed as a number: −1 or ≥ 0.
    pub fn seed_value(&self) -> Result<i64, FieldError> {
        let text = self.seed.trim();
        let bad = || {
            FieldError::new(
                Field::Seed,
                format!("seed {text:?}: expected -1 (random) or a whole number ≥ 0"),
            )
        };
        let seed: i64 = if text.is_empty() {
            -1
        } else {
            text.parse().map_err(|_| bad())?
        };
        if seed < -1 {
            return Err(bad());
        }
        Ok(seed)
    }

    /// The parts a checkpoint of `family` (the daemon's label) cannot run without. A
    /// PixArt-Σ file in ComfyUI's layout is the transformer alone: "Embedded" would fail
    /// the job, so the form names the drop-down to fill instead. A diffusers folder (no
    /// `.safetensors` name) brings its own T5 and VAE.
    pub fn check_parts(&self, family: Option<&str>) -> Result<(), FieldError> {
        let lone_file = self
            .model
            .as_deref()
            .is_some_and(|m| m.ends_with(".safetensors"));
        if family != Some("pixart-sigma") || !lone_file {
            return Ok(());
        }
        if self.clip.is_none() {
            return Err(FieldError::new(
                Field::Clip,
                "PixArt-Σ needs its T5 text encoder: choose it under Text encoder \
                 (a T5 file in models/clip, with spiece.model beside it)",
            ));
        }
        if self.vae.is_none() {
            return Err(FieldError::new(
                Field::Vae,
                "PixArt-Σ needs the SDXL VAE: choose it under VAE (a file in models/vae)",
            ));
        }
        Ok(())
    }

    /// The generation parameters of one job, checked as the daemon checks them.
    pub fn params(&self) -> Result<GenerationParams, FieldError> {
        let model = self
            .model
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                FieldError::new(
                    Field::Model,
                    "choose a checkpoint first (models/checkpoints is empty?)",
                )
            })?;
        if self.prompt.trim().is_empty() {
            return Err(FieldError::new(
                Field::Prompt,
                "the prompt is empty: describe the image to make",
            ));
        }
        if self.count == 0 || self.count > imagelab_core::api::MAX_JOBS_PER_SUBMIT {
            return Err(FieldError::new(
                Field::Count,
                format!(
                    "count {}: expected 1 to {}",
                    self.count,
                    imagelab_core::api::MAX_JOBS_PER_SUBMIT
                ),
            ));
        }
        let params = GenerationParams {
            prompt: self.prompt.clone(),
            negative: self.negative.clone(),
            model,
            vae: self.vae.clone(),
            clip: self.clip.clone(),
            width: self.width,
            height: self.height,
            steps: self.steps,
            cfg: self.cfg,
            sampler: self.sampler,
            scheduler: self.scheduler,
            seed: self.seed_value()?,
            batch: 1,
            clip_skip: None,
            init_image: self.init_image.clone(),
            strength: self.strength,
            // LoRAs come from the prompt's <lora:name:weight> tags (no picker yet).
            loras: Vec::new(),
        };
        params.validate().map_err(|e| FieldError {
            field: Field::from_validation(e.field),
            message: e.to_string(),
        })?;
        Ok(params)
    }

    /// Width and height trade places (portrait ↔ landscape).
    pub fn swap_size(&mut self) {
        std::mem::swap(&mut self.width, &mut self.height);
    }

    /// Ticking safe clears mature and the other way round: never both.
    pub fn set_safe(&mut self, on: bool) {
        self.safe = on;
        if on {
            self.mature = false;
        }
    }

    pub fn set_mature(&mut self, on: bool) {
        self.mature = on;
        if on {
            self.safe = false;
        }
    }

    /// Fills the form from an image's settings ("Use these settings"). Only what the
    /// image records changes; a model is taken when one of `checkpoints` matches its name
    /// (with or without the `.safetensors` ending). Returns what could not be matched.
    pub fn apply_record(&mut self, record: &ImageRecord, checkpoints: &[String]) -> Vec<String> {
        let mut unmatched = Vec::new();
        self.prompt = record.prompt.clone();
        self.negative = record.negative.clone();
        if let Some(seed) = record.seed {
            self.seed = seed.to_string();
        }
        if let (Some(w), Some(h)) = (record.width, record.height) {
            (self.width, self.height) = (w, h);
        }
        if let Some(steps) = record.steps {
            self.steps = steps;
        }
        if let Some(cfg) = record.cfg {
            self.cfg = cfg;
        }
        if let Some(sampler) = &record.sampler {
            match sampler.parse() {
                Ok(s) => self.sampler = s,
                Err(_) => unmatched.push(format!("sampler {sampler}")),
            }
        }
        if let Some(scheduler) = &record.scheduler {
            match scheduler.parse() {
                Ok(s) => self.scheduler = s,
                Err(_) => unmatched.push(format!("scheduler {scheduler}")),
            }
        }
        if let Some(model) = &record.model {
            match match_checkpoint(model, checkpoints) {
                Some(name) => self.model = Some(name),
                None => unmatched.push(format!("model {model}")),
            }
        }
        unmatched
    }
}

/// The checkpoint in `checkpoints` a recorded model name means: the same file name, or
/// the same name without its `.safetensors` ending (A1111 records the stem).
pub fn match_checkpoint(recorded: &str, checkpoints: &[String]) -> Option<String> {
    let stem = |s: &str| -> String {
        let name = s.rsplit(['/', '\\']).next().unwrap_or(s);
        name.strip_suffix(".safetensors")
            .unwrap_or(name)
            .to_ascii_lowercase()
    };
    let wanted = stem(recorded);
    checkpoints.iter().find(|c| stem(c) == wanted).cloned()
}

/// A random seed for the dice button: 53 bits, exact in every JSON reader (as the daemon
/// draws them).
pub fn random_seed() -> i64 {
    use rand::Rng;
    rand::rng().random_range(0..(1i64 << 53))
}

#[cfg(test)]
mod tests {
    #[test]
    fn picking_pixart_takes_its_recommended_settings_and_leaving_it_restores_the_defaults() {
        // The shipped defaults already have 20 steps: only CFG moves, and the note says so.
        let shipped = GenerationDefaults::default();
        let mut form = FormState::from_defaults(&shipped);
        assert_eq!(
            form.follow_family(None, Some("pixart-sigma"), &shipped)
                .as_deref(),
            Some("PixArt-Σ: its recommended CFG 4.5")
        );
        assert_eq!((form.steps, form.cfg), (shipped.steps, 4.5));
        let defaults = GenerationDefaults {
            steps: 30,
            ..shipped
        };
        let mut form = FormState {
            steps: defaults.steps,
            cfg: defaults.cfg,
            ..FormState::default()
        };
        let note = form.follow_family(Some("sdxl"), Some("pixart-sigma"), &defaults);
        assert_eq!((form.steps, form.cfg), (20, 4.5));
        assert_eq!(
            note.as_deref(),
            Some("PixArt-Σ: its recommended 20 steps and CFG 4.5")
        );
        // Between two PixArt models nothing changes; back to SDXL the defaults return.
        assert_eq!(
            form.follow_family(Some("pixart-sigma"), Some("pixart-sigma"), &defaults),
            None
        );
        assert_eq!(
            form.follow_family(Some("pixart-sigma"), Some("sdxl"), &defaults),
            Some(format!(
                "Back to your default steps ({}) and CFG ({})",
                defaults.steps, defaults.cfg
            ))
        );
        assert_eq!((form.steps, form.cfg), (defaults.steps, defaults.cfg));
        // Values the user typed stay, in both directions, each field on its own, and the
        // note names only what moved.
        form.steps = 33;
        assert_eq!(
            form.follow_family(Some("sdxl"), Some("pixart-sigma"), &defaults)
                .as_deref(),
            Some("PixArt-Σ: its recommended CFG 4.5")
        );
        assert_eq!((form.steps, form.cfg), (33, 4.5));
        assert_eq!(
            form.follow_family(Some("pixart-sigma"), Some("sdxl"), &defaults),
            Some(format!("Back to your default CFG ({})", defaults.cfg))
        );
        form.cfg = 6.0;
        assert_eq!(
            form.follow_family(Some("sdxl"), Some("pixart-sigma"), &defaults),
            None
        );
        assert_eq!((form.steps, form.cfg), (33, 6.0));
        form.steps = 20;
        form.cfg = 4.5;
        form.follow_family(Some("pixart-sigma"), None, &defaults);
        assert_eq!((form.steps, form.cfg), (defaults.steps, defaults.cfg));
    }

    use super::*;

    #[test]
    fn a_pixart_transformer_file_needs_t5_and_a_vae_chosen() {
        let mut form = FormState {
            model: Some("pixart-sigma-1024.safetensors".into()),
            ..ready()
        };
        let field = |f: &FormState, family| f.check_parts(family).err().and_then(|e| e.field);
        assert_eq!(field(&form, Some("pixart-sigma")), Some(Field::Clip));
        assert_eq!(field(&form, Some("sdxl")), None, "an SDXL file has its own");
        form.clip = Some("t5xxl_fp16.safetensors".into());
        assert_eq!(field(&form, Some("pixart-sigma")), Some(Field::Vae));
        form.vae = Some("sdxl_vae.safetensors".into());
        assert!(form.check_parts(Some("pixart-sigma")).is_ok());
        let folder = FormState {
            model: Some("PixArt-Sigma-XL-2-1024-MS".into()),
            ..ready()
        };
        assert!(
            folder.check_parts(Some("pixart-sigma")).is_ok(),
            "a diffusers folder has both"
        );
    }

    fn ready() -> FormState {
        FormState {
            model: Some("sdxl.safetensors".into()),
            prompt: "a lighthouse".into(),
            ..FormState::default()
        }
    }

    #[test]
    fn the_defaults_are_the_design_cards() {
        let form = FormState::default();
        assert_eq!(
            (form.width, form.height, form.steps, form.cfg),
            (1024, 1024, 20, 7.0)
        );
        assert_eq!(
            (form.sampler, form.scheduler),
            (SamplerName::Euler, SchedulerName::Normal)
        );
        assert_eq!(form.seed_value(), Ok(-1));
        let params = ready().params().unwrap();
        assert_eq!(params.seed, -1);
        assert_eq!(params.vae, None, "Embedded unless overridden");
    }

    #[test]
    fn bad_values_name_their_widget() {
        let cases: Vec<(FormState, Field, &str)> = vec![
            (
                FormState {
                    seed: "12x".into(),
                    ..ready()
                },
                Field::Seed,
                "12x",
            ),
            (
                FormState {
                    seed: "-7".into(),
                    ..ready()
                },
                Field::Seed,
                "",
            ),
            (
                FormState {
                    width: 1001,
                    ..ready()
                },
                Field::Width,
                "multiple of 8",
            ),
            (
                FormState {
                    model: None,
                    ..ready()
                },
                Field::Model,
                "",
            ),
            (
                FormState {
                    prompt: "  ".into(),
                    ..ready()
                },
                Field::Prompt,
                "",
            ),
            (
                FormState {
                    count: 0,
                    ..ready()
                },
                Field::Count,
                "",
            ),
        ];
        for (form, field, says) in cases {
            let err = form.params().unwrap_err();
            assert_eq!(err.field, Some(field), "{}", err.message);
            assert!(err.message.contains(says), "{}", err.message);
        }
    }

    #[test]
    fn daemon_fields_map_onto_widgets() {
        assert_eq!(Field::from_api("spec.width"), Some(Field::Width));
        assert_eq!(Field::from_api("jobs[3].spec.seed"), Some(Field::Seed));
        assert_eq!(Field::from_api("vae"), Some(Field::Vae));
        assert_eq!(Field::from_api("spec.init_image"), Some(Field::InitImage));
        assert_eq!(Field::from_api("gpu"), None);
    }

    #[test]
    fn safe_and_mature_are_never_both_on() {
        let mut form = FormState::default();
        form.set_safe(true);
        form.set_mature(true);
        assert!((form.mature, form.safe) == (true, false));
        form.set_safe(true);
        assert!((form.safe, form.mature) == (true, false));
        form.set_safe(false);
        assert!(!form.safe && !form.mature);
    }

    #[test]
    fn swap_and_presets() {
        let mut form = FormState {
            width: 1216,
            height: 832,
            ..FormState::default()
        };
        form.swap_size();
        assert_eq!((form.width, form.height), (832, 1216));
        assert!(SIZE_PRESETS
            .iter()
            .all(|(w, h, _)| w % 64 == 0 && h % 64 == 0));
        assert_eq!(
            preset_label(1024, 1024, "SDXL square"),
            "1024 × 1024 (SDXL square)"
        );
    }

    #[test]
    fn an_images_settings_fill_the_form() {
        let record = ImageRecord {
            prompt: "a fox".into(),
            negative: "blurry".into(),
            model: Some("juggernautXL".into()),
            sampler: Some("dpmpp_2m".into()),
            scheduler: Some("karras".into()),
            cfg: Some(5.5),
            steps: Some(30),
            width: Some(832),
            height: Some(1216),
            seed: Some(1234),
            ..ImageRecord::default()
        };
        let mut form = FormState::default();
        let checkpoints = vec![
            "sd15.safetensors".to_string(),
            "JuggernautXL.safetensors".to_string(),
        ];
        let unmatched = form.apply_record(&record, &checkpoints);
        assert!(unmatched.is_empty(), "{unmatched:?}");
        assert_eq!(form.model.as_deref(), Some("JuggernautXL.safetensors"));
        assert_eq!(
            (form.prompt.as_str(), form.negative.as_str()),
            ("a fox", "blurry")
        );
        assert_eq!(
            (form.sampler, form.scheduler),
            (SamplerName::Dpmpp2m, SchedulerName::Karras)
        );
        assert_eq!(
            (form.width, form.height, form.steps, form.cfg),
            (832, 1216, 30, 5.5)
        );
        assert_eq!(form.seed, "1234");
        let other = ImageRecord {
            model: Some("unknown".into()),
            sampler: Some("weird".into()),
            ..record
        };
        let unmatched = form.apply_record(&other, &checkpoints);
        assert_eq!(
            unmatched,
            vec!["sampler weird".to_string(), "model unknown".to_string()]
        );
        assert_eq!(
            form.model.as_deref(),
            Some("JuggernautXL.safetensors"),
            "kept"
        );
    }
}
