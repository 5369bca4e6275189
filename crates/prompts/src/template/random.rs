//! Random mode: one prompt drawn from a template with a [`PromptRng`]. The draw order is
//! part of the format (changing it changes recorded prompts), so it is spelled out here:
//! nodes left to right; for a variant, first the count (when it has a range), then the
//! picks one by one, weighted and without replacement; for a wildcard, one entry.

use super::{Node, Template, Variant, MAX_DEPTH};
use crate::error::TemplateError;
use crate::rng::PromptRng;
use crate::wildcards::Wildcards;

/// Expands `template` once. Wildcards are checked first, so an unknown or cyclic wildcard
/// is an error even when this draw would not have reached it.
pub fn expand_random(
    template: &Template,
    wildcards: &Wildcards,
    rng: &mut PromptRng,
) -> Result<String, TemplateError> {
    wildcards.check(template)?;
    let mut out = String::new();
    Expander { wildcards, rng }.nodes(&template.nodes, &mut out, 0)?;
    Ok(out)
}

struct Expander<'w, 'r> {
    wildcards: &'w Wildcards,
    rng: &'r mut PromptRng,
}

impl Expander<'_, '_> {
    fn nodes(
        &mut self,
        nodes: &[Node],
        out: &mut String,
        depth: usize,
    ) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Variant(variant) => self.variant(variant, out, depth)?,
                Node::Wildcard(w) => {
                    if depth >= MAX_DEPTH {
                        return Err(TemplateError::TooDeep {
                            at: w.at.clone(),
                            limit: MAX_DEPTH,
                        });
                    }
                    let entries = self.wildcards.entries(w)?;
                    // A list whose lines are all comments has no entries: it adds nothing.
                    if entries.is_empty() {
                        continue;
                    }
                    let pick = self.rng.below(entries.len());
                    self.nodes(&entries[pick].nodes, out, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn variant(
        &mut self,
        variant: &Variant,
        out: &mut String,
        depth: usize,
    ) -> Result<(), TemplateError> {
        // `{2$$__colors__}`: the list's lines are the options, each weight 1.
        let from_list;
        let (bodies, weights): (Vec<&[Node]>, Vec<f64>) = match variant.wildcard_source() {
            Some(w) => {
                from_list = self.wildcards.entries(w)?;
                (
                    from_list.iter().map(|t| t.nodes.as_slice()).collect(),
                    vec![1.0; from_list.len()],
                )
            }
            None => (
                variant.options.iter().map(|o| o.body.as_slice()).collect(),
                variant.options.iter().map(|o| o.weight).collect(),
            ),
        };
        // Only wildcard expansions count towards the depth limit, not brace nesting.
        let body_depth = depth + usize::from(variant.wildcard_source().is_some());
        let available = weights.iter().filter(|w| **w > 0.0).count();
        let max = variant.max.unwrap_or(available).min(available);
        let min = variant.min.min(max);
        let count = if max > min {
            min + self.rng.below(max - min + 1)
        } else {
            min
        };
        let mut remaining = weights;
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            let Some(index) = self.rng.weighted(&remaining) else {
                break;
            };
            remaining[index] = 0.0;
            let mut part = String::new();
            self.nodes(bodies[index], &mut part, body_depth)?;
            parts.push(part);
        }
        out.push_str(&parts.join(&variant.joiner));
        Ok(())
    }
}
