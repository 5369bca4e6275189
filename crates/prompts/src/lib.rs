//! Prompts for imagelab: templates in dynamicprompts' syntax, wildcard lists, themes that
//! generate prompts with recorded seeds, and the style profiles (with the safe/mature
//! content modes) that wrap a prompt in a look.
//!
//! Depends on `imagelab-core` (names, parameter validation) and plain data crates only: no
//! tch, no tokio, so the daemon, CLI and GUI can all use it cheaply.

pub mod batch;
pub mod content;
pub mod error;
pub mod import;
mod names_serde;
pub mod profiles;
pub mod rng;
pub mod settings;
pub mod template;
pub mod theme;
pub mod theme_loras;
pub mod wildcards;

pub use batch::{expand_count, is_template};
pub use content::{ContentMode, SAFETY_NEGATIVE};
pub use error::{Location, TemplateError};
pub use import::{import_a1111_csv, import_fooocus_json, profiles_to_yaml, ImportError};
pub use profiles::{ProfileError, ProfileGroup, ProfileLibrary, RecommendedSettings, StyleProfile};
pub use rng::{derive_seed, PromptRng};
pub use settings::{Choice, ParamOverrides, SettingsSpec, Weighted};
pub use template::{expand_all, expand_random, Node, Template};
pub use theme::{find_theme, list_themes, GeneratedPrompt, Theme, ThemeError, ThemeSpec};
pub use wildcards::Wildcards;
