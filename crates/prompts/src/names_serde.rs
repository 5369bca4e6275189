//! Serde for optional sampler and scheduler names by their ComfyUI spelling
//! (`dpmpp_2m`, `dpm_2`), through core's `FromStr`/`as_str`. Core's derived serde uses
//! `rename_all = "snake_case"`, which spells some names differently (`dpmpp2m`), so profile
//! files go through here to accept exactly the names users type everywhere else.

use serde::{Deserialize, Deserializer, Serializer};
use std::fmt::Display;
use std::str::FromStr;

pub fn serialize<T: Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: FromStr,
    T::Err: Display,
    D: Deserializer<'de>,
{
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| t.parse::<T>().map_err(serde::de::Error::custom))
        .transpose()
}
