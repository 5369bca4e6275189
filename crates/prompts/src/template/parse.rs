//! The template parser: a hand-written recursive descent over characters that tracks line
//! and column, so every syntax error can say exactly where it is.

use super::{Node, Variant, VariantOption, WildcardRef};
use crate::error::{Location, TemplateError};

/// Characters a backslash turns into plain text. Any other backslash is kept as written,
/// because A1111 prompt weighting uses `\(` and `\)` and the engine must still see them.
const ESCAPABLE: [char; 5] = ['{', '}', '|', '$', '_'];

pub(super) struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    source: &'a str,
    /// Open braces around the cursor; bounded so hostile input cannot overflow the stack.
    depth: usize,
}

/// Deepest `{…}` nesting accepted.
pub(super) const MAX_NESTING: usize = 100;

impl<'a> Parser<'a> {
    pub(super) fn new(text: &str, source: &'a str, first_line: usize) -> Parser<'a> {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            line: first_line.max(1),
            column: 1,
            source,
            depth: 0,
        }
    }

    pub(super) fn parse_all(mut self) -> Result<Vec<Node>, TemplateError> {
        let nodes = self.sequence(false)?;
        match self.peek() {
            Some('}') => Err(TemplateError::UnopenedBrace { at: self.here() }),
            _ => Ok(nodes),
        }
    }

    fn here(&self) -> Location {
        Location {
            source: self.source.to_string(),
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    /// Text and nodes up to the end, or (inside braces) up to an unescaped `|` or `}`,
    /// which is left for the caller.
    fn sequence(&mut self, inside: bool) -> Result<Vec<Node>, TemplateError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.bump();
                    match self.peek() {
                        Some(next) if ESCAPABLE.contains(&next) => {
                            self.bump();
                            text.push(next);
                        }
                        _ => text.push('\\'),
                    }
                }
                '{' => {
                    flush(&mut text, &mut nodes);
                    nodes.push(Node::Variant(self.variant()?));
                }
                '}' | '|' if inside => break,
                '}' => return Err(TemplateError::UnopenedBrace { at: self.here() }),
                '_' if self.peek_at(1) == Some('_') => match self.wildcard_name_len() {
                    Some(len) => {
                        flush(&mut text, &mut nodes);
                        let at = self.here();
                        self.bump_n(2);
                        let name: String = self.chars[self.pos..self.pos + len].iter().collect();
                        self.bump_n(len + 2);
                        nodes.push(Node::Wildcard(WildcardRef { at, name }));
                    }
                    None => {
                        self.bump_n(2);
                        text.push_str("__");
                    }
                },
                _ => {
                    self.bump();
                    text.push(c);
                }
            }
        }
        flush(&mut text, &mut nodes);
        Ok(nodes)
    }

    /// At `__`: the length of a valid wildcard name followed by the closing `__`, if any.
    /// Anything else (`snake__case`, a lone `__`) stays plain text, as in dynamicprompts.
    fn wildcard_name_len(&self) -> Option<usize> {
        let start = self.pos + 2;
        let mut end = start;
        while end + 1 < self.chars.len() {
            if self.chars[end] == '_' && self.chars[end + 1] == '_' {
                return (end > start).then_some(end - start);
            }
            let c = self.chars[end];
            if !(c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '*' | '?' | '.')) {
                return None;
            }
            end += 1;
        }
        None
    }

    /// `{` … `}`, the cursor on the `{`.
    fn variant(&mut self) -> Result<Variant, TemplateError> {
        let at = self.here();
        if self.depth >= MAX_NESTING {
            return Err(TemplateError::TooDeep {
                at,
                limit: MAX_NESTING,
            });
        }
        self.bump();
        self.depth += 1;
        let (min, max, joiner) = self.count_prefix()?;
        let mut options = Vec::new();
        loop {
            let option_at = self.here();
            let weight = self.weight_prefix()?;
            let body = self.sequence(true)?;
            if self.peek().is_none() {
                return Err(TemplateError::UnclosedBrace { at });
            }
            if body.is_empty() {
                return Err(TemplateError::EmptyChoice { at: option_at });
            }
            options.push(VariantOption {
                at: option_at,
                weight,
                body,
            });
            match self.bump() {
                Some('|') => continue,
                Some('}') => break,
                _ => return Err(TemplateError::UnclosedBrace { at }),
            }
        }
        self.depth -= 1;
        if options.iter().all(|o| o.weight <= 0.0) {
            return Err(TemplateError::ZeroWeights { at });
        }
        Ok(Variant {
            at,
            options,
            min,
            max,
            joiner,
        })
    }

    /// The optional `N$$`, `N-M$$`, `-M$$` or `N-$$`, then an optional `joiner$$`.
    fn count_prefix(&mut self) -> Result<(usize, Option<usize>, String), TemplateError> {
        let Some(len) = self.scan_to_dollars(&['{', '}', '|', '\\']) else {
            return Ok((1, Some(1), ",".to_string()));
        };
        let at = self.here();
        let text: String = self.chars[self.pos..self.pos + len].iter().collect();
        let (min, max) = parse_count(&text).ok_or_else(|| TemplateError::BadRange {
            at: at.clone(),
            text: text.clone(),
        })?;
        self.bump_n(len + 2);
        let mut joiner = ",".to_string();
        if let Some(len) = self.scan_to_dollars(&['{', '}', '\\']) {
            joiner = self.chars[self.pos..self.pos + len].iter().collect();
            self.bump_n(len + 2);
        }
        Ok((min, max, joiner))
    }

    /// The number of characters before the next `$$`, when one comes before any `stops`.
    fn scan_to_dollars(&self, stops: &[char]) -> Option<usize> {
        let mut i = self.pos;
        while let Some(&c) = self.chars.get(i) {
            if c == '$' && self.chars.get(i + 1) == Some(&'$') {
                return Some(i - self.pos);
            }
            if stops.contains(&c) {
                return None;
            }
            i += 1;
        }
        None
    }

    /// An option's optional `weight::`.
    fn weight_prefix(&mut self) -> Result<f64, TemplateError> {
        let mut i = self.pos;
        while let Some(&c) = self.chars.get(i) {
            if c == ':' && self.chars.get(i + 1) == Some(&':') {
                let at = self.here();
                let text: String = self.chars[self.pos..i].iter().collect();
                let weight = text.trim().parse::<f64>().ok();
                return match weight {
                    Some(w) if w.is_finite() && w >= 0.0 => {
                        self.bump_n(i - self.pos + 2);
                        Ok(w)
                    }
                    _ => Err(TemplateError::BadWeight { at, text }),
                };
            }
            if matches!(c, '{' | '}' | '|' | '\\' | '_' | '$') {
                break;
            }
            i += 1;
        }
        Ok(1.0)
    }
}

fn flush(text: &mut String, nodes: &mut Vec<Node>) {
    if !text.is_empty() {
        nodes.push(Node::Text(std::mem::take(text)));
    }
}

/// `N`, `N-M`, `-M`, `N-` → (min, max); `None` for anything else or min > max.
fn parse_count(text: &str) -> Option<(usize, Option<usize>)> {
    let text = text.trim();
    let number = |s: &str| -> Option<usize> {
        let s = s.trim();
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (min, max) = match text.split_once('-') {
        None => {
            let n = number(text)?;
            (n, Some(n))
        }
        Some((low, high)) => {
            let min = if low.trim().is_empty() {
                1
            } else {
                number(low)?
            };
            let max = if high.trim().is_empty() {
                None
            } else {
                Some(number(high)?)
            };
            if low.trim().is_empty() && high.trim().is_empty() {
                return None;
            }
            (min, max)
        }
    };
    match max {
        Some(m) if m < min => None,
        _ => Some((min, max)),
    }
}
