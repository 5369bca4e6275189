//! The right panel: every image in `output/`, newest first, as thumbnails in a recycling
//! grid (only the visible cells exist, so 10,000 images cost 10,000 strings, not widgets).
//! Thumbnails are made by loader threads, newest request first, and kept in a bounded
//! in-memory cache over the disk cache; a folder monitor adds new images as they appear.

use super::app::{App, AppMsg};
use super::images::{thumbnail, thumbnail_cache_dir, Rgba};
use super::widgets::name;
use crate::state::gallery::is_gallery_image;
use gtk::prelude::*;
use gtk::{gdk, gio, glib};
use relm4::ComponentSender;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};

/// Thumbnails kept as textures (256 px RGBA: about 256 KiB each).
const MEMORY_CACHE: usize = 400;
/// Threads making thumbnails: enough to fill a screen quickly, few enough to leave the
/// machine (and its daemon) responsive.
const LOADERS: usize = 2;
/// The side of a cell's picture.
const CELL: i32 = 128;

/// Pending thumbnail requests, served newest first (what the user scrolled to last).
#[derive(Default)]
struct Requests {
    stack: Mutex<Vec<(String, PathBuf)>>,
    ready: Condvar,
}

#[derive(Default)]
struct Textures {
    by_name: HashMap<String, gdk::Texture>,
    order: VecDeque<String>,
}

impl Textures {
    fn insert(&mut self, name: String, texture: gdk::Texture) {
        if self.by_name.insert(name.clone(), texture).is_none() {
            self.order.push_back(name);
        }
        while self.order.len() > MEMORY_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.by_name.remove(&old);
            }
        }
    }
}

/// State the grid's cells read while binding.
#[derive(Default)]
struct Shared {
    folder: RefCell<PathBuf>,
    textures: RefCell<Textures>,
    /// The pictures showing each name now (cells are recycled, so this changes).
    bound: RefCell<HashMap<String, Vec<glib::WeakRef<gtk::Picture>>>>,
    requested: RefCell<HashSet<String>>,
    favorites: RefCell<HashSet<String>>,
}

pub struct Gallery {
    pub root: gtk::ScrolledWindow,
    list: gtk::StringList,
    names: RefCell<HashSet<String>>,
    shared: Rc<Shared>,
    monitor: RefCell<Option<gio::FileMonitor>>,
}

impl Gallery {
    pub fn new(sender: &ComponentSender<App>) -> Gallery {
        let list = gtk::StringList::new(&[]);
        let shared = Rc::new(Shared::default());
        let requests = Arc::new(Requests::default());
        for _ in 0..LOADERS {
            spawn_loader(Arc::clone(&requests), sender.clone());
        }
        let factory = gtk::SignalListItemFactory::new();
        let s = sender.clone();
        factory.connect_setup(move |_, item| {
            let item = item.downcast_ref::<gtk::ListItem>().expect("a list item");
            item.set_child(Some(&cell(&s)));
        });
        let (sh, rq) = (Rc::clone(&shared), Arc::clone(&requests));
        factory.connect_bind(move |_, item| {
            let item = item.downcast_ref::<gtk::ListItem>().expect("a list item");
            bind(&sh, &rq, item);
        });
        let sh = Rc::clone(&shared);
        factory.connect_unbind(move |_, item| {
            let item = item.downcast_ref::<gtk::ListItem>().expect("a list item");
            if let Some(name) = item_name(item) {
                if let Some(views) = sh.bound.borrow_mut().get_mut(&name) {
                    views.retain(|w| {
                        w.upgrade()
                            .is_some_and(|p| Some(&p) != picture_of(item).as_ref())
                    });
                }
            }
        });
        let selection = gtk::SingleSelection::new(Some(list.clone()));
        selection.set_autoselect(false);
        selection.set_can_unselect(true);
        let grid = gtk::GridView::new(Some(selection), Some(factory));
        grid.set_min_columns(1);
        grid.set_max_columns(3);
        grid.set_single_click_activate(true);
        name(&grid, "Generated images");
        let s = sender.clone();
        let l = list.clone();
        grid.connect_activate(move |_, position| {
            if let Some(name) = l.string(position) {
                s.input(AppMsg::ShowImage(name.to_string()));
            }
        });
        let root = gtk::ScrolledWindow::new();
        root.set_hscrollbar_policy(gtk::PolicyType::Never);
        root.set_min_content_width(2 * CELL + 40);
        root.set_child(Some(&grid));
        Gallery {
            root,
            list,
            names: RefCell::default(),
            shared,
            monitor: RefCell::default(),
        }
    }

    /// Shows `names` (newest first) from `folder`, and watches it for new images.
    pub fn show_folder(&self, folder: &Path, names: &[String], sender: &ComponentSender<App>) {
        *self.shared.folder.borrow_mut() = folder.to_path_buf();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.list.splice(0, self.list.n_items(), &refs);
        *self.names.borrow_mut() = names.iter().cloned().collect();
        let file = gio::File::for_path(folder);
        match file.monitor_directory(gio::FileMonitorFlags::WATCH_MOVES, gio::Cancellable::NONE) {
            Ok(monitor) => {
                let s = sender.clone();
                monitor.connect_changed(move |_, file, other, event| {
                    let arrived = match event {
                        gio::FileMonitorEvent::Created
                        | gio::FileMonitorEvent::MovedIn
                        | gio::FileMonitorEvent::ChangesDoneHint => Some(file.clone()),
                        gio::FileMonitorEvent::Renamed => other.cloned(),
                        _ => None,
                    };
                    if let Some(name) = arrived.and_then(|f| f.basename()) {
                        if let Some(name) = name.to_str().filter(|n| is_gallery_image(n)) {
                            s.input(AppMsg::NewImage(name.to_string()));
                        }
                    }
                });
                *self.monitor.borrow_mut() = Some(monitor);
            }
            Err(e) => eprintln!("imagelab-gui: not watching {}: {e}", folder.display()),
        }
    }

    /// Puts a new image first (once).
    pub fn add(&self, name: &str) -> bool {
        if !self.names.borrow_mut().insert(name.to_string()) {
            return false;
        }
        self.list.splice(0, 0, &[name]);
        true
    }

    /// A finished thumbnail: cached, and shown on the cells bound to it.
    pub fn thumbnail_ready(&self, name: String, pixels: Result<Rgba, String>) {
        self.shared.requested.borrow_mut().remove(&name);
        let rgba = match pixels {
            Ok(rgba) => rgba,
            Err(e) => {
                eprintln!("imagelab-gui: no thumbnail: {e}");
                return;
            }
        };
        let texture: gdk::Texture = super::images::texture(&rgba).upcast();
        if let Some(views) = self.shared.bound.borrow().get(&name) {
            for picture in views.iter().filter_map(|w| w.upgrade()) {
                picture.set_paintable(Some(&texture));
            }
        }
        self.shared.textures.borrow_mut().insert(name, texture);
    }

    /// The starred image names, for the stars on the cells.
    pub fn show_favorites(&self, favorites: HashSet<String>) {
        *self.shared.favorites.borrow_mut() = favorites;
        self.list
            .items_changed(0, self.list.n_items(), self.list.n_items());
    }

    pub fn is_favorite(&self, name: &str) -> bool {
        self.shared.favorites.borrow().contains(name)
    }

    pub fn set_favorite(&self, name: &str, on: bool) {
        if on {
            self.shared.favorites.borrow_mut().insert(name.to_string());
        } else {
            self.shared.favorites.borrow_mut().remove(name);
        }
        if let Some(position) =
            (0..self.list.n_items()).find(|&i| self.list.string(i).as_deref() == Some(name))
        {
            self.list.items_changed(position, 1, 1);
        }
    }
}

fn cell(sender: &ComponentSender<App>) -> gtk::Overlay {
    let picture = gtk::Picture::new();
    picture.set_size_request(CELL, CELL);
    picture.set_content_fit(gtk::ContentFit::Cover);
    let star = gtk::ToggleButton::new();
    star.set_icon_name("non-starred-symbolic");
    star.set_halign(gtk::Align::End);
    star.set_valign(gtk::Align::Start);
    star.add_css_class("osd");
    star.add_css_class("circular");
    star.set_tooltip_text(Some("Star"));
    let overlay = gtk::Overlay::new();
    overlay.set_child(Some(&picture));
    overlay.add_overlay(&star);
    let s = sender.clone();
    let o = overlay.clone();
    // `clicked` comes from the user only; binding sets the state with `set_active`.
    star.connect_clicked(move |star| {
        if let Some(name) = o.widget_name().strip_prefix("thumb:") {
            s.input(AppMsg::StarImage(name.to_string(), star.is_active()));
        }
    });
    star.connect_toggled(|star| {
        star.set_icon_name(if star.is_active() {
            "starred-symbolic"
        } else {
            "non-starred-symbolic"
        });
    });
    overlay
}

fn item_name(item: &gtk::ListItem) -> Option<String> {
    item.item()
        .and_downcast::<gtk::StringObject>()
        .map(|s| s.string().to_string())
}

fn picture_of(item: &gtk::ListItem) -> Option<gtk::Picture> {
    item.child()
        .and_downcast::<gtk::Overlay>()?
        .child()
        .and_downcast::<gtk::Picture>()
}

fn bind(shared: &Shared, requests: &Requests, item: &gtk::ListItem) {
    let (Some(name), Some(overlay)) =
        (item_name(item), item.child().and_downcast::<gtk::Overlay>())
    else {
        return;
    };
    let Some(picture) = picture_of(item) else {
        return;
    };
    overlay.set_widget_name(&format!("thumb:{name}"));
    super::widgets::name(&overlay, &name);
    if let Some(star) = overlay.last_child().and_downcast::<gtk::ToggleButton>() {
        star.set_active(shared.favorites.borrow().contains(&name));
    }
    shared
        .bound
        .borrow_mut()
        .entry(name.clone())
        .or_default()
        .push(picture.downgrade());
    let cached = shared.textures.borrow().by_name.get(&name).cloned();
    match cached {
        Some(texture) => picture.set_paintable(Some(&texture)),
        None => {
            picture.set_paintable(gdk::Paintable::NONE);
            if shared.requested.borrow_mut().insert(name.clone()) {
                let path = shared.folder.borrow().join(&name);
                if let Ok(mut stack) = requests.stack.lock() {
                    stack.push((name, path));
                    requests.ready.notify_one();
                }
            }
        }
    }
}

fn spawn_loader(requests: Arc<Requests>, sender: ComponentSender<App>) {
    let cache_dir = thumbnail_cache_dir();
    std::thread::spawn(move || loop {
        let next = {
            let Ok(mut stack) = requests.stack.lock() else {
                return;
            };
            loop {
                if let Some(next) = stack.pop() {
                    break next;
                }
                stack = match requests.ready.wait(stack) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
        };
        let (name, path) = next;
        let pixels = thumbnail(&path, &cache_dir);
        // The app is gone when this fails: the thread ends with it.
        if sender
            .input_sender()
            .send(AppMsg::Thumbnail(name, pixels))
            .is_err()
        {
            return;
        }
    });
}
