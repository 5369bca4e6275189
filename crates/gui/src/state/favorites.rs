//! The favorites page as data: the starred images, newest first (our file names start with
//! the job id), each with its rating, capped so the page stays light.

use std::collections::HashMap;

/// The most favorites the page shows at once (the newest); the rest are counted.
pub const SHOWN_FAVORITES: usize = 300;

/// One starred image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Favorite {
    pub name: String,
    /// 1 to 5 stars, or none.
    pub rating: Option<u8>,
}

/// Every starred image with its rating.
#[derive(Debug, Default)]
pub struct Favorites {
    by_name: HashMap<String, Option<u8>>,
}

impl Favorites {
    pub fn new(ratings: impl IntoIterator<Item = (String, Option<u8>)>) -> Favorites {
        Favorites {
            by_name: ratings.into_iter().collect(),
        }
    }

    /// A star, an unstar (`on` false) or a new rating.
    pub fn set(&mut self, name: &str, on: bool, rating: Option<u8>) {
        if on {
            self.by_name.insert(name.to_string(), rating);
        } else {
            self.by_name.remove(name);
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The newest [`SHOWN_FAVORITES`], newest (highest name) first.
    pub fn shown(&self) -> Vec<Favorite> {
        let mut all: Vec<Favorite> = self
            .by_name
            .iter()
            .map(|(name, rating)| Favorite {
                name: name.clone(),
                rating: *rating,
            })
            .collect();
        all.sort_unstable_by(|a, b| b.name.cmp(&a.name));
        all.truncate(SHOWN_FAVORITES);
        all
    }
}

/// The rating as a screen reader and the card say it: "★★★☆☆" or "not rated".
pub fn rating_text(rating: Option<u8>) -> String {
    match rating {
        Some(n) if (1..=5).contains(&n) => {
            let n = n as usize;
            format!("{}{}", "★".repeat(n), "☆".repeat(5 - n))
        }
        _ => "not rated".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_with_ratings_and_unstars() {
        let mut favs = Favorites::new([
            ("job0000000002_000.png".to_string(), Some(4)),
            ("job0000000010_000.png".to_string(), None),
        ]);
        favs.set("job0000000007_001.png", true, Some(2));
        favs.set("job0000000002_000.png", false, None);
        favs.set("job0000000010_000.png", true, Some(5));
        let names: Vec<_> = favs
            .shown()
            .into_iter()
            .map(|f| (f.name, f.rating))
            .collect();
        assert_eq!(
            names,
            [
                ("job0000000010_000.png".to_string(), Some(5)),
                ("job0000000007_001.png".to_string(), Some(2)),
            ]
        );
        assert_eq!(favs.len(), 2);
    }

    #[test]
    fn the_page_is_capped_and_ratings_read_as_stars() {
        let favs =
            Favorites::new((0..SHOWN_FAVORITES + 5).map(|i| (format!("job{i:010}_000.png"), None)));
        let shown = favs.shown();
        assert_eq!(
            (shown.len(), favs.len()),
            (SHOWN_FAVORITES, SHOWN_FAVORITES + 5)
        );
        assert_eq!(
            shown[0].name,
            format!("job{:010}_000.png", SHOWN_FAVORITES + 4)
        );
        assert_eq!(rating_text(Some(3)), "★★★☆☆");
        assert_eq!(rating_text(None), "not rated");
        assert_eq!(rating_text(Some(9)), "not rated");
    }
}
