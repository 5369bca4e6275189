//! Prompt emphasis syntax as ComfyUI and A1111 users write it, split into weighted segments.
//!
//! - `(text)` multiplies the weight by 1.1, `[text]` divides it by 1.1; nesting multiplies.
//! - `(text:1.3)` sets the weight to 1.3 — absolutely, as ComfyUI does (A1111 would multiply
//!   by the enclosing weight instead). The number is what follows the group's last colon; when
//!   it is not a finite number (`(a:b)`, `(a:inf)`) or the colon starts the group, the colon
//!   stays text and the group counts as plain `(…)`. `[…]` never takes a number.
//! - `\(` `\)` `\[` `\]` `\\` are the literal characters; any other backslash is itself.
//! - Brackets that do not pair up (`a (b`, `a) b`, `(a]`) are literal characters and the rest
//!   of the prompt parses normally. (ComfyUI turns everything after a stray `)` into plain text,
//!   and does not know `[…]` at all.)
//!
//! Segments break at every group boundary, as in ComfyUI: this matters for chunking, which
//! keeps short segments whole.

/// ×/÷ per level of `(…)` / `[…]`.
pub const EMPHASIS: f64 = 1.1;

/// One run of prompt text and the weight of its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedText {
    pub text: String,
    pub weight: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Paren,
    Bracket,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Text(char),
    Open(Kind),
    Close(Kind),
}

/// Splits `prompt` into weighted segments. Never fails: any string is a valid prompt.
pub fn parse_weights(prompt: &str) -> Vec<WeightedText> {
    let mut items = lex(prompt);
    let close_of = pair_brackets(&mut items);
    // The ":number" suffixes of weighted groups are syntax, not text.
    let mut hidden = vec![false; items.len()];
    let mut set_weight = vec![None; items.len()];
    for (open, close) in close_of
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (i, c)))
    {
        if items[open] == Item::Open(Kind::Paren) {
            if let Some((weight, colon)) = explicit_weight(&items, open, close) {
                set_weight[open] = Some(weight);
                hidden[colon..close].iter_mut().for_each(|h| *h = true);
            }
        }
    }

    let mut out = Vec::new();
    let mut segment = String::new();
    // Weights of the open groups, innermost last.
    let mut stack: Vec<f64> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if hidden[i] {
            continue;
        }
        let weight = stack.last().copied().unwrap_or(1.0);
        match *item {
            Item::Text(c) => segment.push(c),
            Item::Open(kind) => {
                flush(&mut out, &mut segment, weight);
                stack.push(match (kind, set_weight[i]) {
                    (_, Some(set)) => set,
                    (Kind::Paren, None) => weight * EMPHASIS,
                    (Kind::Bracket, None) => weight / EMPHASIS,
                });
            }
            Item::Close(_) => {
                flush(&mut out, &mut segment, weight);
                stack.pop();
            }
        }
    }
    flush(&mut out, &mut segment, stack.last().copied().unwrap_or(1.0));
    out
}

fn flush(out: &mut Vec<WeightedText>, segment: &mut String, weight: f64) {
    if !segment.is_empty() {
        out.push(WeightedText {
            text: std::mem::take(segment),
            weight: weight as f32,
        });
    }
}

fn lex(prompt: &str) -> Vec<Item> {
    let mut items = Vec::with_capacity(prompt.len());
    let mut chars = prompt.chars().peekable();
    while let Some(c) = chars.next() {
        let item = match c {
            '\\' => match chars.peek() {
                Some(&e @ ('(' | ')' | '[' | ']' | '\\')) => {
                    chars.next();
                    Item::Text(e)
                }
                _ => Item::Text('\\'),
            },
            '(' => Item::Open(Kind::Paren),
            ')' => Item::Close(Kind::Paren),
            '[' => Item::Open(Kind::Bracket),
            ']' => Item::Close(Kind::Bracket),
            other => Item::Text(other),
        };
        items.push(item);
    }
    items
}

/// Pairs each opener with its closer; brackets that do not pair become text in place.
/// Returns, for each opener index, the index of its closer.
fn pair_brackets(items: &mut [Item]) -> Vec<Option<usize>> {
    let mut close_of = vec![None; items.len()];
    let mut open: Vec<(usize, Kind)> = Vec::new();
    for (i, item) in items.iter_mut().enumerate() {
        match *item {
            Item::Open(kind) => open.push((i, kind)),
            Item::Close(kind) => match open.last() {
                Some(&(start, k)) if k == kind => {
                    close_of[start] = Some(i);
                    open.pop();
                }
                _ => *item = Item::Text(closing_char(kind)),
            },
            Item::Text(_) => {}
        }
    }
    for (i, kind) in open {
        items[i] = Item::Text(opening_char(kind));
    }
    close_of
}

fn opening_char(kind: Kind) -> char {
    match kind {
        Kind::Paren => '(',
        Kind::Bracket => '[',
    }
}

fn closing_char(kind: Kind) -> char {
    match kind {
        Kind::Paren => ')',
        Kind::Bracket => ']',
    }
}

/// `(…:w)`: the weight and the index of its colon, when the group's last colon is followed
/// only by text that reads as a finite number and something precedes the colon.
fn explicit_weight(items: &[Item], open: usize, close: usize) -> Option<(f64, usize)> {
    let mut colon = None;
    for i in (open + 1..close).rev() {
        match items[i] {
            Item::Text(':') => {
                colon = Some(i);
                break;
            }
            Item::Text(_) => {}
            // A nested group after the last top-level colon: no weight (ComfyUI's float() of
            // the suffix would fail on its bracket).
            Item::Open(_) | Item::Close(_) => return None,
        }
    }
    let colon = colon.filter(|&c| c > open + 1)?;
    let suffix: String = items[colon + 1..close]
        .iter()
        .filter_map(|item| match item {
            Item::Text(c) => Some(*c),
            _ => None,
        })
        .collect();
    let weight: f64 = suffix.trim().parse().ok()?;
    weight.is_finite().then_some((weight, colon))
}
