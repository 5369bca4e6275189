//! Serde for optional sampler and scheduler names in hand-written profile and theme files,
//! through core's `FromStr`/`as_str`: the ComfyUI spelling (`dpmpp_2m`) as core's serde
//! uses, but forgiving of case and surrounding spaces the way the CLI flags are, and with
//! the list of valid names in the error.

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
