//! Prompt templates in the syntax of dynamicprompts' core: `{a|b}`, `{2::a|b}`,
//! `{1-3$$ and $$a|b|c}`, `__wildcard__`, escapes `\{ \} \| \$ \_`. A template parses into an
//! AST whose nodes remember where they came from, then expands in random or combinatorial
//! mode against a set of [`Wildcards`](crate::Wildcards).

mod combinatorial;
mod parse;
mod random;

pub use combinatorial::expand_all;
pub use random::expand_random;

use crate::error::{Location, TemplateError};

/// One parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The text as written.
    pub text: String,
    pub nodes: Vec<Node>,
}

impl Template {
    /// Parses `text`; `source` names it in error messages (a file name, or "template").
    /// `first_line` is the line the text starts on in that source (1 for a whole string).
    pub fn parse(text: &str, source: &str, first_line: usize) -> Result<Template, TemplateError> {
        let nodes = parse::Parser::new(text, source, first_line).parse_all()?;
        Ok(Template {
            text: text.to_string(),
            nodes,
        })
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Literal text, escapes already resolved.
    Text(String),
    /// `{…}`: pick one or several of the options.
    Variant(Variant),
    /// `__name__`: a line from a wildcard list (`name` may be a glob).
    Wildcard(WildcardRef),
}

/// `{…}`. Without a `$$` count exactly one option is picked (`min == max == Some(1)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub at: Location,
    pub options: Vec<VariantOption>,
    /// Fewest options to pick.
    pub min: usize,
    /// Most options to pick; `None` means all of them (`{2-$$…}`).
    pub max: Option<usize>,
    /// Text between picks; "," unless given as `{2$$ and $$…}` (dynamicprompts' default).
    pub joiner: String,
}

/// One option of a variant, with its weight (1 unless written `2::…`).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantOption {
    pub at: Location,
    pub weight: f64,
    pub body: Vec<Node>,
}

/// `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct WildcardRef {
    pub at: Location,
    pub name: String,
}

impl WildcardRef {
    /// Whether the name is a glob (`__colors/*__`, `__*__`) that may match several lists.
    pub fn is_glob(&self) -> bool {
        self.name.contains(['*', '?'])
    }
}

impl Variant {
    /// The single wildcard of `{2$$__colors__}`, whose lines then act as the options
    /// (dynamicprompts does the same).
    pub fn wildcard_source(&self) -> Option<&WildcardRef> {
        match self.options.as_slice() {
            [only] if self.max != Some(1) || self.min != 1 => match only.body.as_slice() {
                [Node::Wildcard(w)] => Some(w),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Deepest wildcard nesting followed before giving up (cycles are caught earlier; this only
/// bounds absurdly deep but acyclic chains).
pub const MAX_DEPTH: usize = 64;
