//! A theme's generation settings: each is a fixed value, a weighted list of choices or
//! (for numbers) a range. Written loosely in YAML, checked into typed values with messages
//! that name the field and the value.

use crate::profiles::RecommendedSettings;
use crate::rng::PromptRng;
use imagelab_core::{GenerationParams, SamplerName, SchedulerName};
use serde::{Deserialize, Serialize};

/// One choice with an optional weight: `euler` or `{ value: euler, weight: 3 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Weighted<T> {
    Plain(T),
    Weighted { value: T, weight: f64 },
}

impl<T> Weighted<T> {
    /// The value and its weight (1 when none is written).
    pub(crate) fn parts(&self) -> (&T, f64) {
        match self {
            Weighted::Plain(v) => (v, 1.0),
            Weighted::Weighted { value, weight } => (value, *weight),
        }
    }
}

/// A setting as written: `7`, `[20, 30]`, `[{value: 30, weight: 2}, 20]` or
/// `{ min: 5, max: 8, step: 0.5 }` (numbers only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice<T> {
    Fixed(T),
    Range {
        min: f64,
        max: f64,
        #[serde(default)]
        step: Option<f64>,
    },
    List(Vec<Weighted<T>>),
}

/// The `settings:` block of a theme, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsSpec {
    pub sampler: Option<Choice<String>>,
    pub scheduler: Option<Choice<String>>,
    pub steps: Option<Choice<f64>>,
    pub cfg: Option<Choice<f64>>,
    /// `"1024x1024"` strings.
    pub size: Option<Choice<String>>,
}

/// Values a generated prompt sets; anything `None` is left to the profile or the defaults.
/// The model, plus the same settings a profile can recommend (serialized flat).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(flatten)]
    pub settings: RecommendedSettings,
}

impl ParamOverrides {
    /// Writes every value that is set into `params`.
    pub fn fill(&self, params: &mut GenerationParams) {
        if let Some(v) = &self.model {
            params.model = v.clone();
        }
        self.settings.fill(params);
    }
}

impl SettingsSpec {
    /// Checks every value that could be drawn, so a bad one fails at load, not at 3 am.
    pub fn validate(&self) -> Result<(), String> {
        for_each_value(&self.sampler, "sampler", |s| parse_sampler(s).map(|_| ()))?;
        for_each_value(&self.scheduler, "scheduler", |s| {
            s.parse::<SchedulerName>()
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        // Core's validation judges the values it owns (sizes, steps, cfg), each one alone.
        let check = |fill: &dyn Fn(&mut GenerationParams)| -> Result<(), String> {
            let mut params = GenerationParams {
                model: "any".to_string(),
                ..GenerationParams::default()
            };
            fill(&mut params);
            params.validate().map_err(|e| e.to_string())
        };
        for_each_value(&self.size, "size", |s| {
            let (w, h) = parse_size(s)?;
            check(&|p| {
                p.width = w;
                p.height = h;
            })
        })?;
        check_numbers(&self.steps, "steps")?;
        check_numbers(&self.cfg, "cfg")?;
        for value in numbers(&self.steps) {
            if value.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&value) {
                return Err(format!(
                    "settings.steps: {value} is not a whole number of steps"
                ));
            }
            check(&|p| p.steps = value as u32).map_err(|e| format!("settings.steps: {e}"))?;
        }
        for value in numbers(&self.cfg) {
            check(&|p| p.cfg = value).map_err(|e| format!("settings.cfg: {e}"))?;
        }
        Ok(())
    }

    /// Draws one value of each setting. Draw order (fixed): sampler, scheduler, steps, cfg,
    /// size; a fixed value draws nothing.
    pub fn draw(&self, rng: &mut PromptRng) -> Result<ParamOverrides, String> {
        let mut o = RecommendedSettings::default();
        if let Some(c) = &self.sampler {
            let (sampler, scheduler) = parse_sampler(draw_value(c, rng)?)?;
            o.sampler = Some(sampler);
            o.scheduler = scheduler;
        }
        if let Some(c) = &self.scheduler {
            o.scheduler = Some(
                draw_value(c, rng)?
                    .parse()
                    .map_err(|e: imagelab_core::UnknownName| e.to_string())?,
            );
        }
        if let Some(c) = &self.steps {
            o.steps = Some(draw_number(c, rng, 1.0)?.round() as u32);
        }
        if let Some(c) = &self.cfg {
            o.cfg = Some(draw_number(c, rng, 0.5)?);
        }
        if let Some(c) = &self.size {
            let (w, h) = parse_size(draw_value(c, rng)?)?;
            o.width = Some(w);
            o.height = Some(h);
        }
        Ok(ParamOverrides {
            model: None,
            settings: o,
        })
    }
}

/// Every value a numeric setting can take that validation must see: fixed values, every
/// listed value, and both ends of a range.
fn numbers(c: &Option<Choice<f64>>) -> Vec<f64> {
    c.as_ref().map(values_of).unwrap_or_default()
}

/// The numbers a choice names (a range by its ends), for validation.
pub(crate) fn values_of(c: &Choice<f64>) -> Vec<f64> {
    match c {
        Choice::Fixed(v) => vec![*v],
        Choice::Range { min, max, .. } => vec![*min, *max],
        Choice::List(l) => l.iter().map(|w| *w.parts().0).collect(),
    }
}

fn for_each_value(
    c: &Option<Choice<String>>,
    field: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let values: Vec<&String> = match c {
        None => return Ok(()),
        Some(Choice::Fixed(v)) => vec![v],
        Some(Choice::List(l)) => l.iter().map(|w| w.parts().0).collect(),
        Some(Choice::Range { .. }) => {
            return Err(format!("settings.{field}: a range needs numbers"))
        }
    };
    if values.is_empty() {
        return Err(format!("settings.{field}: the list of choices is empty"));
    }
    values
        .into_iter()
        .try_for_each(|v| check(v).map_err(|e| format!("settings.{field}: {e}")))
}

fn check_numbers(c: &Option<Choice<f64>>, field: &str) -> Result<(), String> {
    match c {
        Some(Choice::Range { min, max, step })
            if !(min.is_finite() && max.is_finite() && min <= max)
                || step.is_some_and(|s| s.is_nan() || s <= 0.0) =>
        {
            return Err(format!(
                "settings.{field}: range needs min <= max and a positive step"
            ));
        }
        Some(Choice::List(l)) if l.is_empty() => {
            return Err(format!("settings.{field}: the list of choices is empty"));
        }
        Some(Choice::List(l)) if l.iter().all(|w| w.parts().1 <= 0.0) => {
            return Err(format!("settings.{field}: every weight is 0"));
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn pick_weighted<'c, T>(
    list: &'c [Weighted<T>],
    rng: &mut PromptRng,
) -> Result<&'c T, String> {
    let weights: Vec<f64> = list.iter().map(|w| w.parts().1).collect();
    rng.weighted(&weights)
        .map(|i| list[i].parts().0)
        .ok_or_else(|| "no choice has a positive weight".to_string())
}

fn draw_value<'c>(c: &'c Choice<String>, rng: &mut PromptRng) -> Result<&'c str, String> {
    match c {
        Choice::Fixed(v) => Ok(v),
        Choice::List(l) => pick_weighted(l, rng).map(String::as_str),
        Choice::Range { .. } => Err("a range needs numbers".to_string()),
    }
}

/// A number; a range without a step uses `default_step` (1 for steps, 0.5 for CFG) so the
/// values stay ones a person would type.
fn draw_number(c: &Choice<f64>, rng: &mut PromptRng, default_step: f64) -> Result<f64, String> {
    match c {
        Choice::Fixed(v) => Ok(*v),
        Choice::List(l) => pick_weighted(l, rng).copied(),
        Choice::Range { min, max, step } => {
            let step = step.unwrap_or(default_step);
            let slots = ((max - min) / step).floor() as usize + 1;
            Ok(min + step * rng.below(slots) as f64)
        }
    }
}

/// A sampler name or an A1111 label ("DPM++ 2M Karras" also sets the scheduler).
fn parse_sampler(text: &str) -> Result<(SamplerName, Option<SchedulerName>), String> {
    imagelab_core::parse_sampler_label(text).map_err(|e| e.to_string())
}

/// `"1024x1024"` → (1024, 1024).
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("size {text:?} is not WIDTHxHEIGHT (for example 1024x1024)");
    let (w, h) = text.trim().split_once(['x', 'X', '×']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}
