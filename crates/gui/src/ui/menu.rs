//! The menubar, the window's actions and their keyboard shortcuts, and the shortcuts
//! window that lists them (Ctrl+?).

use super::app::{App, AppMsg, Intent};
use gtk::gio;
use gtk::prelude::*;
use relm4::ComponentSender;

/// Every action: its name, the shortcut, what the shortcuts window says, and the intent.
const ACTIONS: &[(&str, &str, &str, Intent)] = &[
    ("generate", "<Control>Return", "Generate", || {
        AppMsg::Generate
    }),
    ("cancel", "Escape", "Cancel the running image", || {
        AppMsg::Cancel
    }),
    (
        "load-model",
        "<Control>l",
        "Load the selected model",
        || AppMsg::LoadModel,
    ),
    (
        "clear-model",
        "<Control><Shift>l",
        "Clear (unload) the model",
        || AppMsg::ClearModel,
    ),
    ("random-seed", "<Control>r", "Random seed", || {
        AppMsg::DiceSeed
    }),
    (
        "open-image",
        "<Control>o",
        "Open an image's settings",
        || AppMsg::OpenImageSettings,
    ),
    (
        "reconnect",
        "<Control><Shift>r",
        "Reconnect to the daemon",
        || AppMsg::Reconnect,
    ),
    ("about", "", "About imagelab", || AppMsg::About),
];

/// Adds the actions to `window` and their shortcuts to the application.
pub fn install(window: &adw::ApplicationWindow, sender: &ComponentSender<App>) {
    for (name, _, _, msg) in ACTIONS {
        let action = gio::SimpleAction::new(name, None);
        let s = sender.clone();
        let msg = *msg;
        action.connect_activate(move |_, _| s.input(msg()));
        window.add_action(&action);
    }
    let app = relm4::main_application();
    for (name, accel, _, _) in ACTIONS {
        if !accel.is_empty() {
            app.set_accels_for_action(&format!("win.{name}"), &[accel]);
        }
    }
    app.set_accels_for_action("win.show-help-overlay", &["<Control>question"]);
    app.set_accels_for_action("window.close", &["<Control>q", "<Control>w"]);
    window.set_help_overlay(Some(&shortcuts_window()));
}

/// The menubar above the toolbar.
pub fn menubar() -> gtk::PopoverMenuBar {
    let file = gio::Menu::new();
    file.append(Some("Open image settings…"), Some("win.open-image"));
    file.append(Some("Quit"), Some("window.close"));
    let image = gio::Menu::new();
    image.append(Some("Generate"), Some("win.generate"));
    image.append(Some("Cancel"), Some("win.cancel"));
    image.append(Some("Random seed"), Some("win.random-seed"));
    let model = gio::Menu::new();
    model.append(Some("Load model"), Some("win.load-model"));
    model.append(Some("Clear model"), Some("win.clear-model"));
    model.append(Some("Reconnect to the daemon"), Some("win.reconnect"));
    let help = gio::Menu::new();
    help.append(Some("Keyboard shortcuts"), Some("win.show-help-overlay"));
    help.append(Some("About imagelab"), Some("win.about"));
    let bar = gio::Menu::new();
    bar.append_submenu(Some("_File"), &file);
    bar.append_submenu(Some("_Image"), &image);
    bar.append_submenu(Some("_Model"), &model);
    bar.append_submenu(Some("_Help"), &help);
    gtk::PopoverMenuBar::from_model(Some(&bar))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn shortcuts_window() -> gtk::ShortcutsWindow {
    let mut rows = String::new();
    let mut add = |accel: &str, title: &str| {
        rows.push_str(&format!(
            r#"<child><object class="GtkShortcutsShortcut"><property name="accelerator">{}</property><property name="title">{}</property></object></child>"#,
            escape(accel),
            escape(title)
        ));
    };
    for (_, accel, title, _) in ACTIONS {
        if !accel.is_empty() {
            add(accel, title);
        }
    }
    add("<Control>question", "Keyboard shortcuts");
    add("<Control>q", "Quit");
    let xml = format!(
        r#"<interface><object class="GtkShortcutsWindow" id="shortcuts"><property name="modal">1</property><child><object class="GtkShortcutsSection"><property name="section-name">main</property><child><object class="GtkShortcutsGroup"><property name="title">imagelab</property>{rows}</object></child></object></child></object></interface>"#
    );
    gtk::Builder::from_string(&xml)
        .object("shortcuts")
        .expect("the shortcuts window's XML is ours and valid")
}

/// The green and red prompt borders (seed 001), and the compact VRAM lines.
pub const CSS: &str = "
.prompt-positive { border: 2px solid #2ec27e; border-radius: 6px; }
.prompt-negative { border: 2px solid #e01b24; border-radius: 6px; }
.prompt-positive.error, .prompt-negative.error { border-style: dashed; }
";
