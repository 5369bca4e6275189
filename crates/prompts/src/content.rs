//! The content mode: safe, standard or mature. One enum, so "safe" and "mature" can never
//! both be on; [`ContentMode::from_flags`] refuses the two checkboxes set together.

use crate::profiles::{merge_terms, ProfileError, StyleProfile};
use serde::{Deserialize, Serialize};

/// What safe mode adds to every negative prompt.
pub const SAFETY_NEGATIVE: &str =
    "nsfw, nudity, naked, explicit, sexual content, gore, graphic violence, blood, disturbing";

/// Which profiles are usable and whether a safety negative is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentMode {
    /// Mature profiles hidden and refused; the safety negative is added to every prompt.
    Safe,
    /// Mature profiles hidden and refused; nothing added.
    #[default]
    Standard,
    /// Mature profiles listed and usable.
    Mature,
}

impl ContentMode {
    /// From the two settings the GUI and CLI show as checkboxes; both on is an error.
    pub fn from_flags(safe: bool, mature: bool) -> Result<ContentMode, ProfileError> {
        match (safe, mature) {
            (true, true) => Err(ProfileError::SafeAndMature),
            (true, false) => Ok(ContentMode::Safe),
            (false, true) => Ok(ContentMode::Mature),
            (false, false) => Ok(ContentMode::Standard),
        }
    }

    /// Whether a profile may be listed and used in this mode.
    pub fn allows(self, profile: &StyleProfile) -> bool {
        !profile.mature || self == ContentMode::Mature
    }

    /// The negative prompt as this mode sends it: safe mode appends [`SAFETY_NEGATIVE`].
    pub fn finish_negative(self, negative: &str) -> String {
        match self {
            ContentMode::Safe => merge_terms(&[negative, SAFETY_NEGATIVE]),
            _ => negative.trim().to_string(),
        }
    }

    /// Applies `profile` under this mode: refuses a mature profile outside mature mode,
    /// then adds the safety negative in safe mode.
    pub fn apply(
        self,
        profile: &StyleProfile,
        prompt: &str,
        negative: &str,
    ) -> Result<(String, String), ProfileError> {
        if !self.allows(profile) {
            return Err(ProfileError::MatureRefused {
                name: profile.name.clone(),
            });
        }
        let (prompt, negative) = profile.apply(prompt, negative);
        Ok((prompt, self.finish_negative(&negative)))
    }
}
