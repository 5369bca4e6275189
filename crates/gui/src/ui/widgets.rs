//! Small widget helpers: accessible names (screen readers and the AT-SPI tests find every
//! control by them), labelled rows, dropdowns over string lists, and error marks.

use gtk::prelude::*;

// gtk4-rs binds GtkAccessible only from 4.10, though GTK has had it since 4.0: declare the
// one call this app needs against the GTK 4.8 that Debian 12 ships.
extern "C" {
    fn gtk_accessible_update_property(accessible: *mut std::ffi::c_void, first: i32, ...);
}
/// `GTK_ACCESSIBLE_PROPERTY_LABEL` in `gtkenums.h`.
const ACCESSIBLE_PROPERTY_LABEL: i32 = 4;

/// Gives `widget` the name a screen reader says.
pub fn name(widget: &impl IsA<gtk::Widget>, label: &str) {
    use gtk::glib::translate::ToGlibPtr;
    let Ok(text) = std::ffi::CString::new(label) else {
        return;
    };
    let pointer: *mut gtk::ffi::GtkWidget = widget.as_ref().to_glib_none().0;
    // SAFETY: every GtkWidget implements GtkAccessible; the property list is
    // (LABEL, const char*) and ends with -1, as the C API requires; GTK copies the text.
    unsafe {
        gtk_accessible_update_property(
            pointer.cast(),
            ACCESSIBLE_PROPERTY_LABEL,
            text.as_ptr(),
            -1i32,
        );
    }
}

/// A left-aligned label and its control on one line.
pub fn row(label: &str, child: &impl IsA<gtk::Widget>) -> gtk::Box {
    let line = gtk::Box::new(gtk::Orientation::Horizontal, 8);
    let text = gtk::Label::new(Some(label));
    text.set_xalign(0.0);
    text.set_hexpand(true);
    line.append(&text);
    line.append(child);
    line
}

/// A bold section title.
pub fn heading(text: &str) -> gtk::Label {
    let label = gtk::Label::new(Some(text));
    label.set_xalign(0.0);
    label.add_css_class("heading");
    label.set_margin_top(6);
    label
}

/// A dropdown over a string list it keeps, named for screen readers.
pub fn dropdown(items: &[&str], accessible: &str) -> (gtk::DropDown, gtk::StringList) {
    let list = gtk::StringList::new(items);
    let drop = gtk::DropDown::new(Some(list.clone()), gtk::Expression::NONE);
    name(&drop, accessible);
    (drop, list)
}

/// Replaces every item of `list`.
pub fn set_items(list: &gtk::StringList, items: &[String]) {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    list.splice(0, list.n_items(), &refs);
}

/// A number field, named for screen readers.
pub fn spin(min: f64, max: f64, step: f64, digits: u32, accessible: &str) -> gtk::SpinButton {
    let spin = gtk::SpinButton::with_range(min, max, step);
    spin.set_digits(digits);
    name(&spin, accessible);
    spin
}

/// A button with a label, named for screen readers by that label.
pub fn button(label: &str) -> gtk::Button {
    let button = gtk::Button::with_label(label);
    name(&button, label);
    button
}

/// An icon button, named for screen readers and with the same words as its tooltip.
pub fn icon_button(icon: &str, accessible: &str) -> gtk::Button {
    let button = gtk::Button::from_icon_name(icon);
    button.set_tooltip_text(Some(accessible));
    name(&button, accessible);
    button
}

/// Marks a control as holding a bad value (red, as GNOME apps do), or clears the mark.
pub fn mark_error(widget: &impl IsA<gtk::Widget>, bad: bool) {
    if bad {
        widget.add_css_class("error");
    } else {
        widget.remove_css_class("error");
    }
}

/// The buffer's whole text.
pub fn text_of(view: &gtk::TextView) -> String {
    let buffer = view.buffer();
    buffer
        .text(&buffer.start_iter(), &buffer.end_iter(), false)
        .to_string()
}
