//! Sampler and scheduler names as ComfyUI spells them, plus the A1111 labels users type
//! ("DPM++ 2M Karras", "Euler a"), which map onto a sampler and sometimes a scheduler.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A name the user gave that we do not know; the message lists what we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of: {expected}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        // Serialized under the ComfyUI name itself (`dpmpp_2m`), never a derived spelling.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in ComfyUI's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The ComfyUI name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                let wanted = s.trim().to_ascii_lowercase();
                $(if wanted == $text { return Ok($name::$variant); })+
                Err(UnknownName {
                    kind: $kind,
                    value: s.to_string(),
                    expected: [$($text),+].join(", "),
                })
            }
        }
    };
}

named_enum!(
    /// A sampler, by its ComfyUI name.
    SamplerName, "sampler", {
        Euler => "euler",
        EulerAncestral => "euler_ancestral",
        Heun => "heun",
        Dpm2 => "dpm_2",
        Dpm2Ancestral => "dpm_2_ancestral",
        Lms => "lms",
        Dpmpp2sAncestral => "dpmpp_2s_ancestral",
        DpmppSde => "dpmpp_sde",
        Dpmpp2m => "dpmpp_2m",
        Dpmpp2mSde => "dpmpp_2m_sde",
        Dpmpp3mSde => "dpmpp_3m_sde",
        Ddim => "ddim",
        UniPc => "uni_pc",
        Lcm => "lcm",
    }
);

named_enum!(
    /// A noise schedule, by its ComfyUI name.
    SchedulerName, "scheduler", {
        Normal => "normal",
        Karras => "karras",
        Exponential => "exponential",
        SgmUniform => "sgm_uniform",
        Simple => "simple",
        DdimUniform => "ddim_uniform",
        Beta => "beta",
    }
);

impl SamplerName {
    /// Samplers whose ComfyUI schedule drops the second-to-last sigma (they would
    /// otherwise spend a whole second-order step on a tiny interval).
    pub fn discards_penultimate_sigma(self) -> bool {
        matches!(
            self,
            SamplerName::Dpm2 | SamplerName::Dpm2Ancestral | SamplerName::UniPc
        )
    }

    /// Samplers that draw fresh noise at every step (so the seed matters past the start).
    pub fn is_stochastic(self) -> bool {
        matches!(
            self,
            SamplerName::EulerAncestral
                | SamplerName::Dpm2Ancestral
                | SamplerName::Dpmpp2sAncestral
                | SamplerName::DpmppSde
                | SamplerName::Dpmpp2mSde
                | SamplerName::Dpmpp3mSde
                | SamplerName::Lcm
        )
    }

    /// The label A1111 shows for this sampler (used in the `parameters` PNG chunk).
    pub fn a1111_label(self) -> &'static str {
        match self {
            SamplerName::Euler => "Euler",
            SamplerName::EulerAncestral => "Euler a",
            SamplerName::Heun => "Heun",
            SamplerName::Dpm2 => "DPM2",
            SamplerName::Dpm2Ancestral => "DPM2 a",
            SamplerName::Lms => "LMS",
            SamplerName::Dpmpp2sAncestral => "DPM++ 2S a",
            SamplerName::DpmppSde => "DPM++ SDE",
            SamplerName::Dpmpp2m => "DPM++ 2M",
            SamplerName::Dpmpp2mSde => "DPM++ 2M SDE",
            SamplerName::Dpmpp3mSde => "DPM++ 3M SDE",
            SamplerName::Ddim => "DDIM",
            SamplerName::UniPc => "UniPC",
            SamplerName::Lcm => "LCM",
        }
    }
}

impl SchedulerName {
    /// The label A1111 shows in "Schedule type".
    pub fn a1111_label(self) -> &'static str {
        match self {
            SchedulerName::Normal => "Normal",
            SchedulerName::Karras => "Karras",
            SchedulerName::Exponential => "Exponential",
            SchedulerName::SgmUniform => "SGM Uniform",
            SchedulerName::Simple => "Simple",
            SchedulerName::DdimUniform => "DDIM",
            SchedulerName::Beta => "Beta",
        }
    }
}

/// Parses a sampler given either as a ComfyUI name (`dpmpp_2m`) or an A1111 label
/// (`DPM++ 2M Karras`, `Euler a`). A label that names a schedule returns it too.
pub fn parse_sampler_label(
    text: &str,
) -> Result<(SamplerName, Option<SchedulerName>), UnknownName> {
    if let Ok(name) = text.parse::<SamplerName>() {
        return Ok((name, None));
    }
    let mut label = text.trim().to_string();
    let mut scheduler = None;
    for (suffix, sched) in [
        (" karras", SchedulerName::Karras),
        (" exponential", SchedulerName::Exponential),
        (" sgm uniform", SchedulerName::SgmUniform),
    ] {
        if label.to_ascii_lowercase().ends_with(suffix) {
            label.truncate(label.len() - suffix.len());
            scheduler = Some(sched);
            break;
        }
    }
    let wanted = label.trim().to_ascii_lowercase();
    SamplerName::ALL
        .iter()
        .copied()
        .find(|s| s.a1111_label().eq_ignore_ascii_case(&wanted))
        .map(|s| (s, scheduler))
        .ok_or_else(|| UnknownName {
            kind: "sampler",
            value: text.to_string(),
            expected: SamplerName::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
                + " (or an A1111 label such as \"DPM++ 2M Karras\")",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfy_names_round_trip() {
        for s in SamplerName::ALL {
            assert_eq!(s.as_str().parse::<SamplerName>().ok(), Some(*s));
        }
        for s in SchedulerName::ALL {
            assert_eq!(s.as_str().parse::<SchedulerName>().ok(), Some(*s));
        }
    }

    #[test]
    fn serde_uses_the_comfyui_names() {
        for s in SamplerName::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<SamplerName>(&json).unwrap(), *s);
        }
        for s in SchedulerName::ALL {
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        let yaml: SamplerName = serde_yaml::from_str("dpmpp_2m_sde").unwrap();
        assert_eq!(yaml, SamplerName::Dpmpp2mSde);
    }

    #[test]
    fn a1111_labels_map_to_sampler_and_schedule() {
        assert_eq!(
            parse_sampler_label("DPM++ 2M Karras"),
            Ok((SamplerName::Dpmpp2m, Some(SchedulerName::Karras)))
        );
        assert_eq!(
            parse_sampler_label("Euler a"),
            Ok((SamplerName::EulerAncestral, None))
        );
        assert_eq!(
            parse_sampler_label("DPM++ 2M SDE"),
            Ok((SamplerName::Dpmpp2mSde, None))
        );
        assert_eq!(parse_sampler_label("DDIM"), Ok((SamplerName::Ddim, None)));
        assert_eq!(parse_sampler_label("UniPC"), Ok((SamplerName::UniPc, None)));
        assert_eq!(parse_sampler_label("euler"), Ok((SamplerName::Euler, None)));
    }

    #[test]
    fn unknown_sampler_names_the_value_and_the_choices() {
        let err = parse_sampler_label("eulerr").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"eulerr\""), "{msg}");
        assert!(msg.contains("dpmpp_2m"), "{msg}");
        let err = "fast".parse::<SchedulerName>().unwrap_err().to_string();
        assert!(err.contains("scheduler") && err.contains("karras"), "{err}");
    }
}
