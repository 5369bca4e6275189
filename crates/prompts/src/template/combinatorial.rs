//! Combinatorial mode: every prompt a template can make, in a stable order, up to a cap.
//!
//! Order: reading order with the leftmost choice varying slowest (like nested loops);
//! variant options and wildcard lines in the order written; for `{N$$…}` the ordered picks of
//! distinct options (as dynamicprompts yields them), counts from low to high. Duplicate
//! results of one variant or wildcard are dropped. Weights do not matter here. Every
//! intermediate list is cut at the cap, which is exact because a prefix of a product in this
//! order only needs the prefixes of its factors.

use super::{Node, Template, Variant, MAX_DEPTH};
use crate::error::TemplateError;
use crate::wildcards::Wildcards;
use std::collections::HashSet;

/// Up to `cap` distinct expansions of `template`, in the documented order.
pub fn expand_all(
    template: &Template,
    wildcards: &Wildcards,
    cap: usize,
) -> Result<Vec<String>, TemplateError> {
    wildcards.check(template)?;
    Enumerator { wildcards, cap }.sequence(&template.nodes, 0)
}

struct Enumerator<'w> {
    wildcards: &'w Wildcards,
    cap: usize,
}

impl Enumerator<'_> {
    fn sequence(&self, nodes: &[Node], depth: usize) -> Result<Vec<String>, TemplateError> {
        let mut acc = vec![String::new()];
        for node in nodes {
            let alternatives = self.node(node, depth)?;
            acc = product(&acc, &alternatives, "", self.cap);
            if acc.is_empty() {
                break;
            }
        }
        Ok(acc)
    }

    fn node(&self, node: &Node, depth: usize) -> Result<Vec<String>, TemplateError> {
        match node {
            Node::Text(text) => Ok(vec![text.clone()]),
            Node::Variant(variant) => self.variant(variant, depth),
            Node::Wildcard(w) => {
                if depth >= MAX_DEPTH {
                    return Err(TemplateError::TooDeep {
                        at: w.at.clone(),
                        limit: MAX_DEPTH,
                    });
                }
                let entries = self.wildcards.entries(w)?;
                if entries.is_empty() {
                    return Ok(vec![String::new()]);
                }
                let mut out = Unique::new(self.cap);
                for entry in entries {
                    for text in self.sequence(&entry.nodes, depth + 1)? {
                        if out.push(text) {
                            return Ok(out.items);
                        }
                    }
                }
                Ok(out.items)
            }
        }
    }

    fn variant(&self, variant: &Variant, depth: usize) -> Result<Vec<String>, TemplateError> {
        let option_lists: Vec<Vec<String>> = match variant.wildcard_source() {
            Some(w) => {
                let mut lists = Vec::new();
                for entry in self.wildcards.entries(w)? {
                    lists.push(self.sequence(&entry.nodes, depth + 1)?);
                }
                lists
            }
            None => variant
                .options
                .iter()
                .filter(|o| o.weight > 0.0)
                .map(|o| self.sequence(&o.body, depth))
                .collect::<Result<_, _>>()?,
        };
        let n = option_lists.len();
        let max = variant.max.unwrap_or(n).min(n);
        let mut out = Unique::new(self.cap);
        for count in variant.min.min(max)..=max {
            let mut chosen = Vec::with_capacity(count);
            if self.picks(&option_lists, count, &variant.joiner, &mut chosen, &mut out) {
                break;
            }
        }
        Ok(out.items)
    }

    /// Ordered picks of `count` distinct options; returns true once the cap is reached.
    fn picks(
        &self,
        lists: &[Vec<String>],
        count: usize,
        joiner: &str,
        chosen: &mut Vec<usize>,
        out: &mut Unique,
    ) -> bool {
        if chosen.len() == count {
            let mut acc = vec![String::new()];
            for (i, index) in chosen.iter().enumerate() {
                let sep = if i == 0 { "" } else { joiner };
                acc = product(&acc, &lists[*index], sep, self.cap);
            }
            return acc.into_iter().any(|text| out.push(text));
        }
        for index in 0..lists.len() {
            if chosen.contains(&index) {
                continue;
            }
            chosen.push(index);
            let full = self.picks(lists, count, joiner, chosen, out);
            chosen.pop();
            if full {
                return true;
            }
        }
        false
    }
}

/// Every `a + sep + b`, `a` varying slowest, cut at `cap`.
fn product(left: &[String], right: &[String], sep: &str, cap: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(cap.min(left.len().saturating_mul(right.len())));
    for a in left {
        for b in right {
            if out.len() >= cap {
                return out;
            }
            out.push(format!("{a}{sep}{b}"));
        }
    }
    out
}

/// A list that keeps the first copy of each string and knows when it is full.
struct Unique {
    items: Vec<String>,
    seen: HashSet<String>,
    cap: usize,
}

impl Unique {
    fn new(cap: usize) -> Unique {
        Unique {
            items: Vec::new(),
            seen: HashSet::new(),
            cap,
        }
    }

    /// Adds `text` unless seen; returns true when the list is full.
    fn push(&mut self, text: String) -> bool {
        if self.items.len() < self.cap && self.seen.insert(text.clone()) {
            self.items.push(text);
        }
        self.items.len() >= self.cap
    }
}
