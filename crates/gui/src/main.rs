//! The `imagelab-gui` binary: the desktop app (GTK4, relm4, libadwaita), a client of the
//! daemon. It shows the setup screen on a first launch, then the work screen.

mod state;
mod ui;

fn main() {
    ui::trace::start();
    if std::env::args().any(|a| a == "--version") {
        println!("imagelab-gui {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // GTK must not parse our arguments (there are none yet), and the app may run more
    // than once (one window per process, like the CLI's commands).
    let app = adw::Application::builder()
        .application_id("org.imagelab.Gui")
        .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
        .build();
    relm4::RelmApp::from_app(app)
        .with_args(Vec::new())
        .run::<ui::app::App>(());
}
