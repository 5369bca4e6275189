//! A theme's `loras:` list: each LoRA with a fixed weight, a weighted list or a range
//! (`{ min: 0.4, max: 0.9 }`), and an optional chance of being used at all, drawn per
//! prompt after everything else (so themes without LoRAs draw exactly as before).

use crate::rng::PromptRng;
use crate::settings::{pick_weighted, values_of, Choice};
use imagelab_core::lora::{LoraRef, MAX_WEIGHT};
use serde::{Deserialize, Serialize};

/// One entry of `loras:`: `detail`, `detail:0.6` (as `--lora` takes it) or the full form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Written")]
pub struct ThemeLora {
    pub name: String,
    #[serde(default = "weight_one")]
    pub weight: Choice<f64>,
    /// The text encoders' strength when it differs from `weight`.
    #[serde(default)]
    pub te_weight: Option<Choice<f64>>,
    /// The share of prompts that use it (0 to 1; every prompt when left out).
    #[serde(default)]
    pub chance: Option<f64>,
}

/// How an entry may be written.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Short(String),
    Full(Full),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Full {
    name: String,
    #[serde(default = "weight_one")]
    weight: Choice<f64>,
    #[serde(default)]
    te_weight: Option<Choice<f64>>,
    #[serde(default)]
    chance: Option<f64>,
}

impl TryFrom<Written> for ThemeLora {
    type Error = String;
    fn try_from(written: Written) -> Result<ThemeLora, String> {
        Ok(match written {
            Written::Short(text) => {
                let lora = LoraRef::parse(&text, "loras").map_err(|e| e.to_string())?;
                ThemeLora {
                    name: lora.name,
                    weight: Choice::Fixed(lora.weight),
                    te_weight: lora.te_weight.map(Choice::Fixed),
                    chance: None,
                }
            }
            Written::Full(f) => ThemeLora {
                name: f.name,
                weight: f.weight,
                te_weight: f.te_weight,
                chance: f.chance,
            },
        })
    }
}

fn weight_one() -> Choice<f64> {
    Choice::Fixed(1.0)
}

/// Ranges without a step move in hundredths, as people write LoRA weights.
const WEIGHT_STEP: f64 = 0.05;

/// Checks every entry at load: a name (no path), weights in range, a chance in [0, 1].
pub fn validate(loras: &[ThemeLora]) -> Result<(), String> {
    for (i, lora) in loras.iter().enumerate() {
        let at = format!("loras[{i}] ({})", lora.name);
        LoraRef::parse(&lora.name, "loras").map_err(|e| format!("{at}: {e}"))?;
        let mut all = values_of(&lora.weight);
        all.extend(lora.te_weight.iter().flat_map(values_of));
        for choice in std::iter::once(&lora.weight).chain(&lora.te_weight) {
            if let Choice::List(list) = choice {
                if !list.iter().any(|w| w.parts().1 > 0.0) {
                    return Err(format!(
                        "{at}: a list of weights needs one with a positive chance"
                    ));
                }
            }
        }
        if let Some(bad) = all.iter().find(|w| !w.is_finite() || w.abs() > MAX_WEIGHT) {
            return Err(format!(
                "{at}: weight {bad} is outside -{MAX_WEIGHT}..{MAX_WEIGHT}"
            ));
        }
        if let Choice::Range { min, max, step } = &lora.weight {
            if min > max || step.is_some_and(|s| s <= 0.0) {
                return Err(format!(
                    "{at}: a range needs min <= max and a positive step"
                ));
            }
        }
        if let Some(chance) = lora.chance {
            if !(0.0..=1.0).contains(&chance) {
                return Err(format!("{at}: chance {chance} is not between 0 and 1"));
            }
        }
    }
    Ok(())
}

fn draw_weight(c: &Choice<f64>, rng: &mut PromptRng) -> f64 {
    let value = match c {
        Choice::Fixed(v) => *v,
        Choice::Range { min, max, step } => {
            let step = step.unwrap_or(WEIGHT_STEP);
            let slots = ((max - min) / step + 1e-9).floor() as usize + 1;
            min + step * rng.below(slots) as f64
        }
        // validate() made sure one entry has a positive chance.
        Choice::List(l) => pick_weighted(l, rng).copied().unwrap_or(1.0),
    };
    // 0.4 + 3 × 0.05 is 0.55000000000000004 in binary: record what a person would write.
    (value * 1e4).round() / 1e4
}

/// The LoRAs of one prompt: each entry drawn in order (its chance, then its weights).
pub fn draw(loras: &[ThemeLora], rng: &mut PromptRng) -> Vec<LoraRef> {
    let mut drawn = Vec::new();
    for lora in loras {
        if let Some(chance) = lora.chance {
            if rng.unit() >= chance {
                continue;
            }
        }
        let weight = draw_weight(&lora.weight, rng);
        let te_weight = lora.te_weight.as_ref().map(|c| draw_weight(c, rng));
        drawn.push(LoraRef {
            name: lora.name.clone(),
            weight,
            te_weight,
        });
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Vec<ThemeLora> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn fixed_ranged_and_chanced_loras_draw_reproducibly() {
        let loras = parse(
            "- detail\n- glow2:0.25\n- { name: ink, weight: { min: 0.4, max: 0.9 }, chance: 0.5 }\n\
             - { name: glow, weight: 0.7, te_weight: [0.2, 0.3] }\n",
        );
        validate(&loras).unwrap();
        let mut seen_ink = 0;
        for seed in 0..200 {
            let drawn = draw(&loras, &mut PromptRng::new(seed));
            assert_eq!(drawn, draw(&loras, &mut PromptRng::new(seed)));
            assert_eq!((drawn[0].name.as_str(), drawn[0].weight), ("detail", 1.0));
            assert_eq!((drawn[1].name.as_str(), drawn[1].weight), ("glow2", 0.25));
            let glow = drawn.last().unwrap();
            assert_eq!(glow.weight, 0.7);
            assert!(matches!(glow.te_weight, Some(w) if w == 0.2 || w == 0.3));
            if let Some(ink) = drawn.iter().find(|l| l.name == "ink") {
                seen_ink += 1;
                assert!((0.4..=0.9).contains(&ink.weight), "{ink:?}");
                assert_eq!((ink.weight * 100.0).round() % 5.0, 0.0, "{ink:?}");
            }
        }
        assert!(
            (60..140).contains(&seen_ink),
            "ink drawn {seen_ink} times of 200"
        );
    }

    #[test]
    fn a_themes_prompts_carry_their_loras_into_the_job() {
        let text = "templates: [a fox]\nloras: [detail:0.6]\n";
        let shared = crate::wildcards::Wildcards::default();
        let theme =
            crate::theme::Theme::from_text(std::path::Path::new("t.yaml"), "t", text, &shared)
                .unwrap();
        let generated = theme.generate(7, 0).unwrap();
        let mut params = imagelab_core::GenerationParams::default();
        generated.params.fill(&mut params);
        assert_eq!(params.loras, [LoraRef::parse("detail:0.6", "x").unwrap()]);
        let bad = "templates: [a fox]\nloras: [{name: ink, weight: 99}]\n";
        let err = crate::theme::Theme::from_text(std::path::Path::new("t.yaml"), "t", bad, &shared)
            .unwrap_err();
        assert!(
            err.to_string().contains("t.yaml") && err.to_string().contains("ink"),
            "{err}"
        );
    }

    #[test]
    fn a_profiles_loras_join_the_jobs_and_replace_one_of_the_same_name() {
        let settings: crate::profiles::RecommendedSettings =
            serde_yaml::from_str("{ steps: 28, loras: [{ name: grain, weight: 0.5 }] }").unwrap();
        settings.validate().unwrap();
        let mut params = imagelab_core::GenerationParams {
            loras: vec![
                LoraRef::parse("grain:1", "x").unwrap(),
                LoraRef::parse("ink", "x").unwrap(),
            ],
            ..Default::default()
        };
        settings.fill(&mut params);
        let got: Vec<(&str, f64)> = params
            .loras
            .iter()
            .map(|l| (l.name.as_str(), l.weight))
            .collect();
        assert_eq!(got, [("ink", 1.0), ("grain", 0.5)]);
    }

    #[test]
    fn bad_entries_name_the_entry() {
        for (yaml, named) in [
            ("- { name: ink, weight: 80 }", "loras[0] (ink)"),
            ("- { name: ../x }", "loras[0]"),
            ("- { name: ink, chance: 2 }", "chance 2"),
            ("- { name: ink, weight: [] }", "positive chance"),
            (
                "- { name: ink, weight: { min: 0.9, max: 0.1 } }",
                "min <= max",
            ),
        ] {
            let err = validate(&parse(yaml)).unwrap_err();
            assert!(err.contains(named), "{yaml}: {err}");
        }
    }
}
