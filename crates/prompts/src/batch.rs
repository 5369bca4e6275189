//! A fresh prompt for each image of a count: a submission whose prompt holds template
//! syntax (`{a|b}`, `__colors__`) becomes one job per image, each drawn anew, as the
//! dynamicprompts extension does for A1111's batch count. The GUI's "count" and
//! `imagelab submit --count` share this, so both draw the same prompts for the same seed.

use crate::error::TemplateError;
use crate::rng::{derive_seed, PromptRng};
use crate::template::{expand_random, Node, Template};
use crate::wildcards::Wildcards;
use imagelab_core::api::SubmitRequest;

/// Whether `prompt` holds any template syntax (after escapes, only text is plain).
pub fn is_template(prompt: &str) -> Result<bool, TemplateError> {
    let template = Template::parse(prompt, "prompt", 1)?;
    Ok(template.nodes.iter().any(|n| !matches!(n, Node::Text(_))))
}

/// The submissions for `request`: itself when its prompt is plain text (escapes resolved),
/// else `count` requests of one job each. Job `k` gets the prompt drawn with
/// `derive_seed(draw_seed, k)` and the seed `S + k` (or −1, a random one, when `S` is −1),
/// so a count of templated jobs gets the same seeds as a plain one.
pub fn expand_count(
    request: &SubmitRequest,
    wildcards: &Wildcards,
    draw_seed: u64,
) -> Result<Vec<SubmitRequest>, TemplateError> {
    let template = Template::parse(&request.spec.prompt, "prompt", 1)?;
    if template.nodes.iter().all(|n| matches!(n, Node::Text(_))) {
        return Ok(vec![request.clone()]);
    }
    (0..request.count)
        .map(|k| {
            let mut rng = PromptRng::new(derive_seed(draw_seed, u64::from(k)));
            let mut one = request.clone();
            one.spec.prompt = expand_random(&template, wildcards, &mut rng)?;
            if one.spec.seed >= 0 {
                one.spec.seed = one.spec.seed.saturating_add(i64::from(k));
            }
            one.count = 1;
            Ok(one)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelab_core::GenerationParams;

    fn request(prompt: &str, seed: i64, count: u32) -> SubmitRequest {
        SubmitRequest {
            count,
            ..SubmitRequest::new(GenerationParams {
                prompt: prompt.into(),
                model: "m".into(),
                seed,
                ..GenerationParams::default()
            })
        }
    }

    #[test]
    fn plain_prompts_stay_one_submission() {
        let req = request("a (red:1.2) fox, by night", 5, 4);
        let out = expand_count(&req, &Wildcards::new(), 1).unwrap();
        assert_eq!(out, vec![req]);
        assert!(!is_template("a (red:1.2) fox").unwrap());
        assert!(is_template("a {red|blue} fox").unwrap());
    }

    #[test]
    fn templates_draw_a_prompt_per_job_with_consecutive_seeds() {
        let mut wildcards = Wildcards::new();
        wildcards
            .add_text("animal", "wildcards/animal.txt", "fox\nowl\ncat\nhare\n")
            .unwrap();
        let req = request("a {red|blue|green|gold} __animal__", 10, 8);
        let out = expand_count(&req, &wildcards, 42).unwrap();
        assert_eq!(out.len(), 8);
        let seeds: Vec<i64> = out.iter().map(|r| r.spec.seed).collect();
        assert_eq!(seeds, (10..18).collect::<Vec<_>>());
        assert!(out.iter().all(|r| r.count == 1));
        for r in &out {
            let words: Vec<&str> = r.spec.prompt.split(' ').collect();
            assert_eq!(words.len(), 3, "{}", r.spec.prompt);
            assert!(["red", "blue", "green", "gold"].contains(&words[1]));
            assert!(["fox", "owl", "cat", "hare"].contains(&words[2]));
        }
        let distinct: std::collections::BTreeSet<&str> =
            out.iter().map(|r| r.spec.prompt.as_str()).collect();
        assert!(distinct.len() > 1, "every draw was the same: {distinct:?}");
        // The same draw seed draws the same prompts; another one does not.
        assert_eq!(expand_count(&req, &wildcards, 42).unwrap(), out);
        assert_ne!(expand_count(&req, &wildcards, 43).unwrap(), out);
    }

    #[test]
    fn random_seeds_stay_random_and_bad_templates_name_the_place() {
        let out = expand_count(&request("{a|b}", -1, 3), &Wildcards::new(), 0).unwrap();
        assert!(out.iter().all(|r| r.spec.seed == -1));
        let err = expand_count(&request("a {b|c", 1, 2), &Wildcards::new(), 0).unwrap_err();
        assert!(err.to_string().contains("prompt"), "{err}");
        let err = expand_count(&request("__nope__", 1, 2), &Wildcards::new(), 0).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
