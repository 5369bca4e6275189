//! Errors for templates and wildcards. Every error made from user text carries a
//! [`Location`] (source, line, column) so the message points at the character at fault.

use std::fmt;
use std::path::PathBuf;

/// Where in the user's text something is: the source (a file, or "template" for text given
/// on the command line), a 1-based line and a 1-based column counted in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// A template or wildcard problem; the message starts with `source:line:column`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "{at}: unbalanced '{{': it is never closed with '}}' (write \\{{ for a literal brace)"
    )]
    UnclosedBrace { at: Location },
    #[error("{at}: unbalanced '}}': no '{{' is open here (write \\}} for a literal brace)")]
    UnopenedBrace { at: Location },
    #[error("{at}: empty choice: every option between '{{', '|' and '}}' needs text (for an optional word write {{0-1$$word}})")]
    EmptyChoice { at: Location },
    #[error("{at}: bad weight {text:?} before '::'; expected a number such as 2 or 0.5")]
    BadWeight { at: Location, text: String },
    #[error("{at}: all options have weight 0, so none can be picked")]
    ZeroWeights { at: Location },
    #[error(
        "{at}: bad count {text:?} before '$$'; expected N, N-M, -M or N- (for example 2 or 1-3)"
    )]
    BadRange { at: Location, text: String },
    #[error("{at}: unknown wildcard __{name}__; {hint}")]
    UnknownWildcard {
        at: Location,
        name: String,
        hint: String,
    },
    #[error("{at}: cyclic wildcard: {chain}")]
    CyclicWildcard { at: Location, chain: String },
    #[error("{at}: nested deeper than {limit} levels")]
    TooDeep { at: Location, limit: usize },
    #[error("cannot read wildcard file {path}: {message}")]
    Read { path: PathBuf, message: String },
}

impl TemplateError {
    /// The location the error points at, when it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            TemplateError::UnclosedBrace { at }
            | TemplateError::UnopenedBrace { at }
            | TemplateError::EmptyChoice { at }
            | TemplateError::BadWeight { at, .. }
            | TemplateError::ZeroWeights { at }
            | TemplateError::BadRange { at, .. }
            | TemplateError::UnknownWildcard { at, .. }
            | TemplateError::CyclicWildcard { at, .. }
            | TemplateError::TooDeep { at, .. } => Some(at),
            TemplateError::Read { .. } => None,
        }
    }
}
