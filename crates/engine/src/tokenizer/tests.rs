//! Hand-computed checks of emphasis parsing, chunk packing and the tokenizer's basics.
#![allow(clippy::unwrap_used)]

use super::*;

fn segs(prompt: &str) -> Vec<(String, f32)> {
    parse_weights(prompt)
        .into_iter()
        .map(|s| (s.text, s.weight))
        .collect()
}

fn seg(text: &str, weight: f64) -> (String, f32) {
    (text.to_string(), weight as f32)
}

#[test]
fn plain_text_is_one_segment_at_weight_one() {
    assert_eq!(segs("a cat, sitting"), vec![seg("a cat, sitting", 1.0)]);
    assert_eq!(segs(""), vec![]);
    assert_eq!(segs("()"), vec![]);
}

#[test]
fn parentheses_and_brackets_nest_multiplicatively() {
    assert_eq!(segs("(cat)"), vec![seg("cat", 1.1)]);
    assert_eq!(segs("((cat))"), vec![seg("cat", 1.1 * 1.1)]);
    assert_eq!(segs("[cat]"), vec![seg("cat", 1.0 / 1.1)]);
    assert_eq!(segs("[[cat]]"), vec![seg("cat", 1.0 / 1.1 / 1.1)]);
    assert_eq!(segs("([cat])"), vec![seg("cat", 1.0)]);
    assert_eq!(
        segs("a (b [c] d) e"),
        vec![
            seg("a ", 1.0),
            seg("b ", 1.1),
            seg("c", 1.0),
            seg(" d", 1.1),
            seg(" e", 1.0)
        ]
    );
}

#[test]
fn explicit_weights_set_the_weight() {
    assert_eq!(segs("(cat:1.5)"), vec![seg("cat", 1.5)]);
    assert_eq!(
        segs("a (b:1.2) c"),
        vec![seg("a ", 1.0), seg("b", 1.2), seg(" c", 1.0)]
    );
    assert_eq!(segs("( cat : 1.5 )"), vec![seg(" cat ", 1.5)]);
    assert_eq!(segs("(cat:-0.5)"), vec![seg("cat", -0.5)]);
    // Absolute, as ComfyUI: the enclosing (( )) does not multiply an explicit weight ...
    assert_eq!(segs("((a:1.5))"), vec![seg("a", 1.5)]);
    // ... but plain groups inside an explicit one multiply it.
    assert_eq!(
        segs("(a (b) c:0.5)"),
        vec![seg("a ", 0.5), seg("b", 0.55), seg(" c", 0.5)]
    );
    assert_eq!(segs("((a:1.5) b)"), vec![seg("a", 1.5), seg(" b", 1.1)]);
    // Only the last colon counts.
    assert_eq!(segs("(a:1.5:2)"), vec![seg("a:1.5", 2.0)]);
}

#[test]
fn colons_that_are_not_weights_stay_text() {
    assert_eq!(segs("(a:b)"), vec![seg("a:b", 1.1)]);
    assert_eq!(segs("(:1.5)"), vec![seg(":1.5", 1.1)]);
    assert_eq!(segs("(a:inf)"), vec![seg("a:inf", 1.1)]);
    assert_eq!(segs("(a:NaN)"), vec![seg("a:NaN", 1.1)]);
    assert_eq!(segs("(a:)"), vec![seg("a:", 1.1)]);
    assert_eq!(
        segs("(a:1.5 (b))"),
        vec![seg("a:1.5 ", 1.1), seg("b", 1.1 * 1.1)]
    );
    assert_eq!(segs("[a:1.5]"), vec![seg("a:1.5", 1.0 / 1.1)]);
    assert_eq!(segs("style: anime"), vec![seg("style: anime", 1.0)]);
}

#[test]
fn escapes_give_literal_characters() {
    assert_eq!(segs(r"\(cat\)"), vec![seg("(cat)", 1.0)]);
    assert_eq!(segs(r"\[x\]"), vec![seg("[x]", 1.0)]);
    assert_eq!(segs(r"a\\b"), vec![seg(r"a\b", 1.0)]);
    assert_eq!(segs(r"\\(cat)"), vec![seg(r"\", 1.0), seg("cat", 1.1)]);
    assert_eq!(segs(r"a\nb\"), vec![seg(r"a\nb\", 1.0)]);
    assert_eq!(
        segs(r"(smile \(happy\):1.2)"),
        vec![seg("smile (happy)", 1.2)]
    );
    // The escaped ')' cannot close the group, so the '(' has no partner either.
    assert_eq!(segs(r"(cat:1.2\)"), vec![seg("(cat:1.2)", 1.0)]);
}

#[test]
fn unbalanced_brackets_are_literal() {
    assert_eq!(segs("a (b"), vec![seg("a (b", 1.0)]);
    assert_eq!(segs("a) b"), vec![seg("a) b", 1.0)]);
    assert_eq!(segs("a) (b)"), vec![seg("a) ", 1.0), seg("b", 1.1)]);
    assert_eq!(segs("(a]"), vec![seg("(a]", 1.0)]);
    assert_eq!(segs("([a)]"), vec![seg("(", 1.0), seg("a)", 1.0 / 1.1)]);
    assert_eq!(segs("(((a)"), vec![seg("((", 1.0), seg("a", 1.1)]);
    assert_eq!(segs(")))((("), vec![seg(")))(((", 1.0)]);
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let deep = format!("{}a{}", "(".repeat(200_000), ")".repeat(200_000));
    let out = parse_weights(&deep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].text, "a");
}

fn singles(n: usize) -> Vec<Vec<(u32, f32)>> {
    (0..n).map(|i| vec![(1000 + i as u32, 1.0)]).collect()
}

fn content(chunk: &TokenChunk) -> Vec<i64> {
    let end = chunk
        .tokens
        .iter()
        .position(|&t| t == i64::from(EOS))
        .unwrap();
    chunk.tokens[1..end].to_vec()
}

#[test]
fn empty_prompt_is_one_padded_chunk() {
    let chunks = chunk_token_groups::<u32>(&[], PAD_CLIP_L);
    assert_eq!(chunks.len(), 1);
    let mut expected = vec![i64::from(BOS)];
    expected.extend(std::iter::repeat_n(i64::from(EOS), 76));
    assert_eq!(chunks[0].tokens, expected);
    assert_eq!(chunks[0].weights, vec![1.0; 77]);

    let chunks = chunk_token_groups::<u32>(&[vec![]], PAD_OPEN_CLIP);
    assert_eq!(chunks.len(), 1);
    assert_eq!(&chunks[0].tokens[..3], &[49406, 49407, 0]);
    assert!(chunks[0].tokens[2..].iter().all(|&t| t == 0));
}

#[test]
fn seventy_five_tokens_fill_one_chunk_exactly() {
    let chunks = chunk_token_groups(&singles(75), 0);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].tokens.len(), CHUNK_LEN);
    assert_eq!(chunks[0].tokens[0], 49406);
    assert_eq!(chunks[0].tokens[75], 1074);
    assert_eq!(chunks[0].tokens[76], 49407);
}

#[test]
fn the_seventy_sixth_token_opens_a_second_chunk() {
    let chunks = chunk_token_groups(&singles(76), 0);
    assert_eq!(chunks.len(), 2);
    assert_eq!(content(&chunks[0]), (1000..1075).collect::<Vec<i64>>());
    assert_eq!(chunks[0].tokens[76], 49407);
    assert_eq!(&chunks[1].tokens[..4], &[49406, 1075, 49407, 0]);
    assert!(chunks
        .iter()
        .all(|c| c.tokens.len() == 77 && c.weights.len() == 77));
}

#[test]
fn a_short_group_straddling_the_boundary_moves_whole() {
    let mut groups = singles(70);
    groups.push((0..7).map(|i| (2000 + i, 1.3)).collect());
    let chunks = chunk_token_groups(&groups, PAD_CLIP_L);
    assert_eq!(chunks.len(), 2);
    assert_eq!(content(&chunks[0]).len(), 70);
    assert_eq!(&chunks[0].tokens[71..], &[49407; 6]);
    assert_eq!(content(&chunks[1]), (2000..2007).collect::<Vec<i64>>());
    assert_eq!(
        &chunks[1].weights[..9],
        &[1.0, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.0]
    );
}

#[test]
fn a_long_group_straddling_the_boundary_is_cut() {
    let mut groups = singles(70);
    groups.push((0..8).map(|i| (2000 + i, 0.8)).collect());
    let chunks = chunk_token_groups(&groups, PAD_CLIP_L);
    assert_eq!(chunks.len(), 2);
    assert_eq!(&content(&chunks[0])[70..], &[2000, 2001, 2002, 2003, 2004]);
    assert_eq!(chunks[0].weights[75], 0.8);
    assert_eq!(chunks[0].weights[76], 1.0);
    assert_eq!(content(&chunks[1]), vec![2005, 2006, 2007]);
}

#[test]
fn a_group_of_exactly_two_chunks_leaves_no_empty_third() {
    let group: Vec<(u32, f32)> = (0..150).map(|i| (3000 + i, 1.0)).collect();
    assert_eq!(chunk_token_groups(std::slice::from_ref(&group), 0).len(), 2);
    let group: Vec<(u32, f32)> = (0..151).map(|i| (3000 + i, 1.0)).collect();
    let chunks = chunk_token_groups(&[group], 0);
    assert_eq!(chunks.len(), 3);
    assert_eq!(&chunks[2].tokens[..4], &[49406, 3150, 49407, 0]);
}

#[test]
fn encodes_known_clip_ids() {
    let tok = ClipTokenizer::shared().unwrap();
    assert_eq!(
        tok.encode("a photo of a cat"),
        vec![320, 1125, 539, 320, 2368]
    );
    assert_eq!(tok.encode(""), Vec::<u32>::new());
    assert_eq!(
        tok.encode("A  Photo\nOF a\tcat "),
        vec![320, 1125, 539, 320, 2368]
    );
    assert_eq!(tok.encode("x<|endoftext|>y"), vec![343, EOS, 344]);
    assert_eq!(tok.token_text(320), Some("a</w>"));
    assert_eq!(tok.token_text(BOS), Some("<|startoftext|>"));
    assert_eq!(tok.token_text(VOCAB_SIZE as u32), None);
}

#[test]
fn decodes_back_to_normalised_text() {
    // The emoji and "!" are one punctuation word for CLIP, so no space between them.
    let tok = ClipTokenizer::shared().unwrap();
    let text = "a photo of a cat, café 日本 🐱!";
    assert_eq!(
        tok.decode(&tok.encode(text)),
        "a photo of a cat , café 日本 🐱!"
    );
    assert_eq!(tok.decode(&[BOS, 320, EOS, 99_999]), "a");
}

#[test]
fn weighted_prompt_end_to_end() {
    let tok = ClipTokenizer::shared().unwrap();
    let chunks = tok.tokenize_weighted("a (cat:1.3)", PAD_CLIP_L);
    assert_eq!(chunks.len(), 1);
    assert_eq!(&chunks[0].tokens[..5], &[49406, 320, 2368, 49407, 49407]);
    assert_eq!(&chunks[0].weights[..4], &[1.0, 1.0, 1.3, 1.0]);
    assert!(chunks[0].is_weighted());
    assert!(!tok.tokenize_weighted("a cat", PAD_CLIP_L)[0].is_weighted());
    for prompt in ["((((", "))))", "[(])", r"\", "(:)", "(a:1e400)"] {
        let chunks = tok.tokenize_weighted(prompt, PAD_OPEN_CLIP);
        assert_eq!(chunks.len(), 1, "{prompt}");
    }
}

#[test]
fn words_are_the_groups_so_a_word_never_straddles_two_chunks() {
    // 74 one-token words, then "lighthouse," (two tokens): ComfyUI moves the whole word
    // to the next chunk rather than cutting it, even inside one weighted segment.
    let tok = ClipTokenizer::shared().unwrap();
    let prompt = format!("{}lighthouse, cat", "a ".repeat(74));
    let chunks = tok.tokenize_weighted(&prompt, PAD_CLIP_L);
    assert_eq!(chunks.len(), 2);
    assert_eq!(content(&chunks[0]), vec![320; 74]);
    let second = content(&chunks[1]);
    assert_eq!(second.len(), 3);
    assert_eq!(second[0], i64::from(tok.encode("lighthouse")[0]));
}

/// Knows one embedding, "star", of three vectors; "missing" is an error.
struct OneEmbedding;

impl EmbeddingLookup for OneEmbedding {
    fn lookup(&mut self, word: &str) -> crate::error::Result<Option<NamedVectors>> {
        match word.strip_prefix("embedding:").unwrap_or(word) {
            "missing" => Err(crate::error::EngineError::Invalid {
                field: "embedding",
                value: "missing".into(),
                expected: "a file".into(),
            }),
            name if name.starts_with("star") => Ok(Some(NamedVectors {
                embedding: 0,
                count: 3,
                rest: name["star".len()..].to_string(),
            })),
            _ => Ok(None),
        }
    }
}

#[test]
fn an_embedding_fills_token_positions_with_its_weight() {
    let tok = ClipTokenizer::shared().unwrap();
    let chunks = tok
        .tokenize_with("a (embedding:star,:1.2) cat", PAD_CLIP_L, &mut OneEmbedding)
        .unwrap();
    assert_eq!(chunks.len(), 1);
    let chunk = &chunks[0];
    let positions: Vec<(usize, usize)> =
        chunk.vectors.iter().map(|v| (v.position, v.row)).collect();
    assert_eq!(positions, vec![(2, 0), (3, 1), (4, 2)]);
    assert!(chunk.vectors.iter().all(|v| v.embedding == 0));
    let comma = i64::from(tok.encode(",")[0]);
    assert_eq!(
        &chunk.tokens[..8],
        &[49406, 320, 0, 0, 0, comma, 2368, 49407]
    );
    assert_eq!(&chunk.weights[..7], &[1.0, 1.0, 1.2, 1.2, 1.2, 1.2, 1.0]);
    let err = tok
        .tokenize_with("embedding:missing", PAD_CLIP_L, &mut OneEmbedding)
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
