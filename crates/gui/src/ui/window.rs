//! The window's widgets: menubar, toolbar, the banner for daemon trouble, and the pages
//! (connecting, setup, work) in a stack under a toast overlay. Built once; the app
//! shows its state on them.

use super::analytics::AnalyticsPage;
use super::app::{App, AppMsg, Intent, NightIntent};
use super::center::Center;
use super::favorites::FavoritesPage;
use super::gallery::Gallery;
use super::gpus::GpusPage;
use super::left::LeftPanel;
use super::night::NightPage;
use super::queue::QueuePage;
use super::setup::SetupPage;
use super::widgets::{button, name};
use adw::prelude::*;
use gtk::{gdk, gio};
use relm4::ComponentSender;
use std::rc::Rc;

pub struct Ui {
    pub window: adw::ApplicationWindow,
    pub toasts: adw::ToastOverlay,
    pub stack: gtk::Stack,
    pub connecting: adw::StatusPage,
    pub setup: SetupPage,
    pub left: LeftPanel,
    pub center: Rc<Center>,
    pub gallery: Gallery,
    pub queue: QueuePage,
    pub favorites: FavoritesPage,
    pub analytics: AnalyticsPage,
    pub night: NightPage,
    pub gpus: GpusPage,
    /// The work screen's pages: "create" and "queue".
    pub pages: adw::ViewStack,
    pub toolbar: gtk::Box,
    pub cancel: gtk::Button,
    pub status: gtk::Label,
    pub spinner: gtk::Spinner,
    pub notice: gtk::Label,
    pub banner: gtk::Revealer,
    pub banner_text: gtk::Label,
}

fn toolbar(sender: &ComponentSender<App>) -> (gtk::Box, gtk::Button, gtk::Label, gtk::Spinner) {
    let bar = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    bar.add_css_class("toolbar");
    let load = button("Load model");
    load.set_tooltip_text(Some(
        "Load the checkpoint, VAE and CLIP chosen on the left (Ctrl+L)",
    ));
    let clear = button("Clear model");
    clear.set_tooltip_text(Some("Unload the chosen checkpoint (Ctrl+Shift+L)"));
    let generate = button("Generate");
    generate.add_css_class("suggested-action");
    generate.set_tooltip_text(Some("Generate (Ctrl+Enter)"));
    let cancel = button("Cancel");
    cancel.set_tooltip_text(Some("Cancel at the next step (Escape)"));
    cancel.set_sensitive(false);
    let buttons: [(&gtk::Button, Intent); 4] = [
        (&load, || AppMsg::LoadModel),
        (&clear, || AppMsg::ClearModel),
        (&generate, || AppMsg::Generate),
        (&cancel, || AppMsg::Cancel),
    ];
    for (b, msg) in buttons {
        let s = sender.clone();
        b.connect_clicked(move |_| s.input(msg()));
        bar.append(b);
    }
    let spinner = gtk::Spinner::new();
    let status = gtk::Label::new(Some("Starting…"));
    status.set_hexpand(true);
    status.set_xalign(1.0);
    status.set_ellipsize(gtk::pango::EllipsizeMode::End);
    name(&status, "Status");
    bar.append(&status);
    bar.append(&spinner);
    (bar, cancel, status, spinner)
}

/// A dropped or pasted file becomes an intent.
fn drop_target(
    widget: &impl IsA<gtk::Widget>,
    sender: &ComponentSender<App>,
    msg: fn(std::path::PathBuf) -> AppMsg,
) {
    let target = gtk::DropTarget::new(gio::File::static_type(), gdk::DragAction::COPY);
    let s = sender.clone();
    target.connect_drop(move |_, value, _, _| {
        match value.get::<gio::File>().ok().and_then(|f| f.path()) {
            Some(path) => {
                s.input(msg(path));
                true
            }
            None => false,
        }
    });
    widget.add_controller(target);
}

impl Ui {
    pub fn new(window: adw::ApplicationWindow, sender: &ComponentSender<App>) -> Ui {
        let gtk_window: gtk::Window = window.clone().upcast();
        let setup = SetupPage::new(&gtk_window, sender);
        let left = LeftPanel::new(sender);
        let center = Rc::new(Center::new(sender));
        center.connect(sender, Rc::clone(&center));
        let gallery = Gallery::new(sender);

        let right = gtk::Paned::new(gtk::Orientation::Horizontal);
        right.set_start_child(Some(&center.root));
        right.set_end_child(Some(&gallery.root));
        right.set_resize_end_child(false);
        right.set_shrink_end_child(false);
        let work = gtk::Paned::new(gtk::Orientation::Horizontal);
        work.set_start_child(Some(&left.root));
        work.set_end_child(Some(&right));
        work.set_resize_start_child(false);
        work.set_shrink_start_child(false);
        drop_target(&center.root, sender, AppMsg::DroppedImage);
        drop_target(&left.root, sender, AppMsg::InitImageChosen);

        let connecting = adw::StatusPage::new();
        connecting.set_title("Connecting to the daemon…");
        connecting.set_icon_name(Some("network-server-symbolic"));
        let stack = gtk::Stack::new();
        stack.add_named(&connecting, Some("connecting"));
        stack.add_named(&setup.root, Some("setup"));
        let queue = QueuePage::new(sender);
        let pages = adw::ViewStack::new();
        pages
            .add_titled(&work, Some("create"), "Create")
            .set_icon_name(Some("applications-graphics-symbolic"));
        pages
            .add_titled(&queue.root, Some("queue"), "Queue")
            .set_icon_name(Some("view-list-symbolic"));
        let night = NightPage::new(sender);
        pages
            .add_titled(&night.root, Some("night"), "Night")
            .set_icon_name(Some("weather-clear-night-symbolic"));
        let favorites = FavoritesPage::new();
        pages
            .add_titled(&favorites.root, Some("favorites"), "Favorites")
            .set_icon_name(Some("starred-symbolic"));
        let analytics = AnalyticsPage::new(sender);
        pages
            .add_titled(&analytics.root, Some("analytics"), "Analytics")
            .set_icon_name(Some("view-paged-symbolic"));
        let gpus = GpusPage::new();
        pages
            .add_titled(&gpus.root, Some("gpus"), "GPUs")
            .set_icon_name(Some("video-display-symbolic"));
        let s = sender.clone();
        // The report is made when the page is shown: the log may have grown since.
        pages.connect_visible_child_name_notify(move |pages| {
            match pages.visible_child_name().as_deref() {
                Some("analytics") => s.input(AppMsg::Analyze),
                Some("night") => s.input(AppMsg::Night(NightIntent::Refresh)),
                Some("gpus") => s.input(AppMsg::GpuHistory),
                Some("favorites") => s.input(AppMsg::RefreshFavorites),
                _ => {}
            }
        });
        // The run's counts and the GPU graphs move: ask again every few seconds while shown.
        let (s, p) = (sender.clone(), pages.clone());
        gtk::glib::timeout_add_seconds_local(3, move || {
            match p.visible_child_name().as_deref() {
                Some("night") => s.input(AppMsg::Night(NightIntent::Refresh)),
                Some("gpus") => s.input(AppMsg::GpuHistory),
                _ => {}
            }
            gtk::glib::ControlFlow::Continue
        });
        stack.add_named(&pages, Some("work"));
        stack.set_vexpand(true);
        let toasts = adw::ToastOverlay::new();
        toasts.set_child(Some(&stack));

        let (toolbar, cancel, status, spinner) = toolbar(sender);
        // The model and generate buttons belong to the Create page: the setup screen comes
        // before any daemon, and the other pages have bars of their own.
        let show_bar = {
            let (bar, stack, pages) = (toolbar.clone(), stack.clone(), pages.clone());
            move || {
                let setup = stack.visible_child_name().as_deref() == Some("setup");
                let create = pages.visible_child_name().as_deref() == Some("create");
                bar.set_visible(!setup && create);
            }
        };
        let show = show_bar.clone();
        stack.connect_visible_child_name_notify(move |_| show());
        pages.connect_visible_child_name_notify(move |_| show_bar());
        let notice = gtk::Label::new(None);
        notice.add_css_class("warning");
        notice.set_wrap(true);
        notice.set_visible(false);
        name(&notice, "Notice");
        let banner_text = gtk::Label::new(None);
        banner_text.set_hexpand(true);
        banner_text.set_wrap(true);
        banner_text.set_xalign(0.0);
        name(&banner_text, "Daemon problem");
        let reconnect = button("Reconnect");
        let s = sender.clone();
        reconnect.connect_clicked(move |_| s.input(AppMsg::Reconnect));
        let banner_box = gtk::Box::new(gtk::Orientation::Horizontal, 12);
        banner_box.add_css_class("toolbar");
        banner_box.add_css_class("error");
        banner_box.append(&banner_text);
        banner_box.append(&reconnect);
        let banner = gtk::Revealer::new();
        banner.set_child(Some(&banner_box));

        let header = adw::HeaderBar::new();
        let title = adw::ViewSwitcherTitle::new();
        title.set_title("imagelab");
        title.set_stack(Some(&pages));
        header.set_title_widget(Some(&title));
        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        content.append(&header);
        content.append(&super::menu::menubar());
        content.append(&toolbar);
        content.append(&notice);
        content.append(&banner);
        content.append(&toasts);
        window.set_content(Some(&content));
        super::menu::install(&window, sender);
        Ui {
            window,
            toasts,
            stack,
            connecting,
            setup,
            left,
            center,
            gallery,
            queue,
            favorites,
            analytics,
            night,
            gpus,
            pages,
            toolbar,
            cancel,
            status,
            spinner,
            notice,
            banner,
            banner_text,
        }
    }

    pub fn toast(&self, text: &str) {
        let toast = adw::Toast::new(&text.replace('&', "&amp;").replace('<', "&lt;"));
        toast.set_timeout(6);
        self.toasts.add_toast(toast);
    }

    /// The toolbar's model and generate buttons work only on the work screen with a daemon.
    pub fn set_connected(&self, connected: bool) {
        let mut child = self.toolbar.first_child();
        while let Some(widget) = child {
            if widget.is::<gtk::Button>() && widget != self.cancel.clone().upcast::<gtk::Widget>() {
                widget.set_sensitive(connected);
            }
            child = widget.next_sibling();
        }
    }

    /// Daemon trouble in plain words with a Reconnect button; `None` hides it.
    pub fn show_banner(&self, text: Option<&str>) {
        self.banner_text.set_text(text.unwrap_or(""));
        self.banner.set_reveal_child(text.is_some());
    }
}
