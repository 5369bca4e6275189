//! The widgets: the root component ([`app::App`]) and the pages it shows. Nothing here
//! blocks the main thread: HTTP calls and decodes run in relm4 commands or loader threads.

pub mod actions;
pub mod analytics;
pub mod analytics_actions;
pub mod app;
pub mod center;
pub mod charts;
pub mod connect;
pub mod daemon;
pub mod favorites;
pub mod gallery;
pub mod gpus;
pub mod images;
pub mod left;
pub mod menu;
pub mod night;
pub mod night_actions;
pub mod queue;
pub mod queue_actions;
pub mod setup;
pub mod trace;
pub mod widgets;
pub mod window;
pub mod workers;
