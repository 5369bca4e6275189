//! The app's state and rules as plain structs and functions, tested without a display;
//! the widgets in `ui` only show this state and turn clicks into intents.

pub mod charts;
pub mod favorites;
pub mod form;
pub mod gallery;
pub mod gpu_history;
pub mod launch;
pub mod metadata;
pub mod night;
pub mod progress;
pub mod queue;
pub mod settings;
pub mod setup;
pub mod submit;
pub mod vram;
pub mod workers;
