//! The favorites page: the starred images as cards (thumbnail, name, rating), newest
//! first; a card's stars rate it, Unstar removes it, and its picture opens it on the Create
//! page. Thumbnails come from the same disk cache as the gallery's, made off the main thread.

use super::app::{App, AppMsg, Cmd};
use super::images::{texture, thumbnail, thumbnail_cache_dir, Rgba};
use super::widgets::name;
use crate::state::favorites::{rating_text, Favorite, Favorites};
use gtk::prelude::*;
use relm4::ComponentSender;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

pub struct FavoritesPage {
    pub root: gtk::Box,
    flow: gtk::FlowBox,
    count: gtk::Label,
    empty: adw::StatusPage,
    scroll: gtk::ScrolledWindow,
    favorites: RefCell<Favorites>,
    shown: RefCell<Vec<Favorite>>,
    pictures: RefCell<HashMap<String, gtk::Picture>>,
}

impl FavoritesPage {
    pub fn new() -> FavoritesPage {
        let flow = gtk::FlowBox::new();
        flow.set_selection_mode(gtk::SelectionMode::None);
        flow.set_valign(gtk::Align::Start);
        flow.set_max_children_per_line(8);
        flow.set_margin_start(6);
        flow.set_margin_end(6);
        name(&flow, "Favorites");
        let scroll = gtk::ScrolledWindow::new();
        scroll.set_vexpand(true);
        scroll.set_child(Some(&flow));
        let empty = adw::StatusPage::new();
        empty.set_icon_name(Some("starred-symbolic"));
        empty.set_title("No favorites yet");
        empty.set_description(Some(
            "Star an image on the Create page, or with imagelab fav, and it shows here.",
        ));
        empty.set_vexpand(true);
        let count = gtk::Label::new(Some("No favorites"));
        count.set_xalign(1.0);
        count.set_hexpand(true);
        name(&count, "Favorite count");
        let bar = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        bar.add_css_class("toolbar");
        bar.append(&count);
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&bar);
        root.append(&empty);
        root.append(&scroll);
        FavoritesPage {
            root,
            flow,
            count,
            empty,
            scroll,
            favorites: RefCell::default(),
            shown: RefCell::default(),
            pictures: RefCell::default(),
        }
    }

    /// Every favorite, as the daemon listed them.
    pub fn show_all(
        &self,
        ratings: &HashMap<String, Option<u8>>,
        folder: PathBuf,
        sender: &ComponentSender<App>,
    ) {
        *self.favorites.borrow_mut() = Favorites::new(ratings.iter().map(|(n, r)| (n.clone(), *r)));
        self.redraw(folder, sender);
    }

    /// A star, an unstar or a rating made anywhere in the app.
    pub fn set(
        &self,
        image: &str,
        on: bool,
        rating: Option<u8>,
        folder: PathBuf,
        sender: &ComponentSender<App>,
    ) {
        self.favorites.borrow_mut().set(image, on, rating);
        self.redraw(folder, sender);
    }

    pub fn thumbnail_ready(&self, image: &str, pixels: &Rgba) {
        if let Some(picture) = self.pictures.borrow().get(image) {
            picture.set_paintable(Some(&texture(pixels)));
        }
    }

    fn redraw(&self, folder: PathBuf, sender: &ComponentSender<App>) {
        let shown = self.favorites.borrow().shown();
        let total = self.favorites.borrow().len();
        self.count.set_text(&match (shown.len(), total) {
            (_, 1) => "1 favorite".to_string(),
            (s, t) if s < t => format!("the newest {s} of {t} favorites"),
            (_, t) => format!("{t} favorites"),
        });
        self.empty.set_visible(total == 0);
        self.scroll.set_visible(total > 0);
        if *self.shown.borrow() == shown {
            return;
        }
        while let Some(child) = self.flow.first_child() {
            self.flow.remove(&child);
        }
        let mut pictures = HashMap::new();
        let old = std::mem::take(&mut *self.pictures.borrow_mut());
        for favorite in &shown {
            let picture = gtk::Picture::new();
            picture.set_size_request(128, 128);
            picture.set_content_fit(gtk::ContentFit::Cover);
            match old.get(&favorite.name).and_then(|p| p.paintable()) {
                Some(paintable) => picture.set_paintable(Some(&paintable)),
                None => request_thumbnail(sender, &favorite.name, folder.join(&favorite.name)),
            }
            self.flow.insert(&card(favorite, &picture, sender), -1);
            pictures.insert(favorite.name.clone(), picture);
        }
        *self.pictures.borrow_mut() = pictures;
        *self.shown.borrow_mut() = shown;
    }
}

pub fn request_thumbnail(sender: &ComponentSender<App>, image: &str, path: PathBuf) {
    let image = image.to_string();
    App::run(sender, move || {
        Cmd::PageThumbnail(image, thumbnail(&path, &thumbnail_cache_dir()))
    });
}

fn card(favorite: &Favorite, picture: &gtk::Picture, sender: &ComponentSender<App>) -> gtk::Box {
    let open = gtk::Button::new();
    open.set_child(Some(picture));
    open.add_css_class("flat");
    name(&open, &format!("Open {}", favorite.name));
    let (s, image) = (sender.clone(), favorite.name.clone());
    open.connect_clicked(move |_| s.input(AppMsg::OpenFavorite(image.clone())));
    let title = gtk::Label::new(Some(&favorite.name));
    title.set_ellipsize(gtk::pango::EllipsizeMode::Middle);
    title.set_max_width_chars(18);
    title.add_css_class("caption");
    let rating = gtk::Label::new(Some(&rating_text(favorite.rating)));
    name(
        &rating,
        &format!(
            "Rating of {}: {}",
            favorite.name,
            rating_text(favorite.rating)
        ),
    );
    let stars = gtk::Box::new(gtk::Orientation::Horizontal, 0);
    stars.set_halign(gtk::Align::Center);
    for n in 1..=5u8 {
        let icon = if favorite.rating.is_some_and(|r| r >= n) {
            "starred-symbolic"
        } else {
            "non-starred-symbolic"
        };
        let b = gtk::Button::from_icon_name(icon);
        b.add_css_class("flat");
        b.add_css_class("circular");
        name(&b, &format!("Rate {} {n}", favorite.name));
        let (s, image) = (sender.clone(), favorite.name.clone());
        b.connect_clicked(move |_| s.input(AppMsg::RateImage(image.clone(), n)));
        stars.append(&b);
    }
    let unstar = gtk::Button::with_label("Unstar");
    unstar.add_css_class("flat");
    name(&unstar, &format!("Unstar {}", favorite.name));
    let (s, image) = (sender.clone(), favorite.name.clone());
    unstar.connect_clicked(move |_| s.input(AppMsg::StarImage(image.clone(), false)));
    let body = gtk::Box::new(gtk::Orientation::Vertical, 2);
    body.add_css_class("card");
    body.set_margin_top(6);
    body.set_margin_bottom(6);
    for part in [
        &open.upcast::<gtk::Widget>(),
        &title.upcast(),
        &rating.upcast(),
        &stars.upcast(),
        &unstar.upcast(),
    ] {
        body.append(part);
    }
    body
}
