//! The work screen's center: the large image (the shown image, or the live preview while
//! sampling), the progress bar, the shown image's settings with **Use these settings**, a
//! star and a rating, and the prompt boxes (green border positive, red border negative).

use super::app::{App, AppMsg};
use super::widgets::{button, name, text_of};
use gtk::prelude::*;
use relm4::ComponentSender;

pub struct Center {
    pub root: gtk::Paned,
    pub picture: gtk::Picture,
    pub progress: gtk::ProgressBar,
    details: gtk::Label,
    pub use_settings: gtk::Button,
    pub star: gtk::ToggleButton,
    pub rating: gtk::DropDown,
    pub prompt: gtk::TextView,
    pub negative: gtk::TextView,
    /// While the app itself sets the star, its toggle must not send a new favorite.
    pub quiet: std::cell::Cell<bool>,
}

fn prompt_box(
    css: &str,
    accessible: &str,
    placeholder: &str,
) -> (gtk::TextView, gtk::ScrolledWindow) {
    let view = gtk::TextView::new();
    view.set_wrap_mode(gtk::WrapMode::WordChar);
    view.set_top_margin(6);
    view.set_bottom_margin(6);
    view.set_left_margin(8);
    view.set_right_margin(8);
    view.set_tooltip_text(Some(placeholder));
    name(&view, accessible);
    let scroller = gtk::ScrolledWindow::new();
    scroller.set_child(Some(&view));
    scroller.set_min_content_height(70);
    scroller.add_css_class(css);
    (view, scroller)
}

impl Center {
    pub fn new(sender: &ComponentSender<App>) -> Center {
        let picture = gtk::Picture::new();
        picture.set_content_fit(gtk::ContentFit::Contain);
        picture.set_hexpand(true);
        picture.set_vexpand(true);
        picture.set_size_request(384, 384);
        name(&picture, "Image");
        let frame = gtk::Frame::new(None);
        frame.set_child(Some(&picture));
        frame.add_css_class("view");

        let progress = gtk::ProgressBar::new();
        progress.set_show_text(true);
        progress.set_text(Some("Ready"));
        name(&progress, "Progress");

        let details = gtk::Label::new(Some("Click a thumbnail to see its settings."));
        details.set_xalign(0.0);
        details.set_wrap(true);
        details.set_selectable(true);
        details.add_css_class("caption");
        name(&details, "Image details");
        let use_settings = button("Use these settings");
        use_settings.set_sensitive(false);
        let star = gtk::ToggleButton::new();
        star.set_icon_name("non-starred-symbolic");
        star.set_tooltip_text(Some("Star this image (the favorites the analytics read)"));
        name(&star, "Star");
        star.set_sensitive(false);
        let rating = gtk::DropDown::from_strings(&["No rating", "★", "★★", "★★★", "★★★★", "★★★★★"]);
        name(&rating, "Rating");
        rating.set_sensitive(false);
        let actions = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        actions.append(&use_settings);
        actions.append(&star);
        actions.append(&rating);
        let info = gtk::Box::new(gtk::Orientation::Vertical, 4);
        info.append(&details);
        info.append(&actions);
        let info_scroller = gtk::ScrolledWindow::new();
        info_scroller.set_child(Some(&info));
        info_scroller.set_max_content_height(120);
        info_scroller.set_propagate_natural_height(true);

        let (prompt, prompt_scroller) = prompt_box(
            "prompt-positive",
            "Prompt",
            "Describe the image ({a|b} and __wildcards__ draw a variant per image)",
        );
        let (negative, negative_scroller) = prompt_box(
            "prompt-negative",
            "Negative prompt",
            "What the image should not have",
        );

        let top = gtk::Box::new(gtk::Orientation::Vertical, 6);
        top.append(&frame);
        top.append(&progress);
        top.append(&info_scroller);
        let prompts = gtk::Box::new(gtk::Orientation::Vertical, 6);
        let label = |t: &str| {
            let l = gtk::Label::new(Some(t));
            l.set_xalign(0.0);
            l.add_css_class("caption-heading");
            l
        };
        prompts.append(&label("Prompt"));
        prompts.append(&prompt_scroller);
        prompts.append(&label("Negative prompt"));
        prompts.append(&negative_scroller);
        let root = gtk::Paned::new(gtk::Orientation::Vertical);
        root.set_start_child(Some(&top));
        root.set_end_child(Some(&prompts));
        root.set_resize_end_child(false);
        root.set_shrink_end_child(false);
        for side in [&top, &prompts] {
            side.set_margin_start(6);
            side.set_margin_end(6);
            side.set_margin_top(6);
            side.set_margin_bottom(6);
        }

        let s = sender.clone();
        use_settings.connect_clicked(move |_| s.input(AppMsg::UseSettings));
        Center {
            root,
            picture,
            progress,
            details,
            use_settings,
            star,
            rating,
            prompt,
            negative,
            quiet: std::cell::Cell::new(false),
        }
    }

    /// Wires the star and rating (after construction, so the closures can check `quiet`).
    pub fn connect(&self, sender: &ComponentSender<App>, this: std::rc::Rc<Center>) {
        let s = sender.clone();
        let me = this.clone();
        self.star.connect_toggled(move |star| {
            star.set_icon_name(if star.is_active() {
                "starred-symbolic"
            } else {
                "non-starred-symbolic"
            });
            if !me.quiet.get() {
                s.input(AppMsg::Star(star.is_active()));
            }
        });
        let s = sender.clone();
        self.rating.connect_selected_notify(move |r| {
            if !this.quiet.get() {
                s.input(AppMsg::Rate(r.selected() as u8));
            }
        });
    }

    pub fn prompts(&self) -> (String, String) {
        (text_of(&self.prompt), text_of(&self.negative))
    }

    pub fn set_prompts(&self, prompt: &str, negative: &str) {
        self.prompt.buffer().set_text(prompt);
        self.negative.buffer().set_text(negative);
    }

    /// The shown image's settings; `None` clears them.
    pub fn show_details(&self, lines: Option<&[(String, String)]>, name: &str) {
        let Some(lines) = lines else {
            self.details.set_text(name);
            self.use_settings.set_sensitive(false);
            return;
        };
        let mut text = format!("{name}\n");
        for (label, value) in lines {
            text.push_str(&format!("{label}: {value}\n"));
        }
        self.details.set_text(text.trim_end());
        self.use_settings.set_sensitive(true);
    }

    /// The star and rating of the shown image, without sending them back.
    pub fn show_favorite(&self, enabled: bool, starred: bool, rating: Option<u8>) {
        self.quiet.set(true);
        self.star.set_sensitive(enabled);
        self.rating.set_sensitive(enabled);
        self.star.set_active(starred);
        self.rating.set_selected(rating.unwrap_or(0).min(5).into());
        self.quiet.set(false);
    }
}
