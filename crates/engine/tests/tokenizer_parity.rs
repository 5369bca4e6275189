//! The CLIP tokenizer against transformers' `CLIPTokenizer` built from the same vocabulary
//! file: every corpus prompt must give exactly the same ids.
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_engine::tokenizer::{ClipTokenizer, BOS, EOS};

/// Hand-picked prompts covering each normalisation and pre-tokenizer rule.
fn fixed_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "a photo of a cat",
        "",
        " ",
        "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile",
        "A Photo Of A CAT",
        "portrait of an old man, highly detailed, 8k, trending on artstation",
        // Unicode: accents (composed and decomposed), CJK, Cyrillic, Greek, Arabic, Hindi.
        "café crème brûlée naïve",
        "cafe\u{301} cre\u{300}me",
        "日本語のテキスト 東京タワー",
        "한국어 문장",
        "Привет, мир! Кот на крыше",
        "ΣΑΣ σας ΟΔΥΣΣΕΥΣ",
        "İstanbul ǅemal ß ẞ ﬁ ﬀ",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        // Emoji, including ZWJ sequences, flags, skin tones and variation selectors.
        "a cat 🐱 and a dog 🐶!",
        "👨‍👩‍👧‍👦 family, 🇯🇵 flag, 👍🏽 ok, ❤️ heart",
        // Punctuation runs and symbols.
        "wow!!! really??? ...yes... --- *** ~~~ ###",
        "<lora:foo:0.8>, {a|b|c}, __wildcard__, @user #tag $5 %50 ^_^",
        "\"quoted\" 'single' «guillemets» „low“ — – ‐",
        "a,b;c:d.e!f?g",
        // Numbers.
        "1girl 2boys 1024x768 3.14159 1,000,000 ٣٤٥ ½ ² Ⅻ",
        "year 2024, 16:9, f/1.8, 85mm",
        // Contractions and apostrophes.
        "don't it's we're they've I'm you'll he'd",
        "DON'T IT'S",
        "rock'n'roll o'clock ''s 's 't y'all",
        "it’s curly (not a contraction)",
        // Whitespace of every kind.
        "a  b   c",
        "line one\nline two\n\nline three",
        "tab\tseparated\t\tvalues",
        "\r\n windows \r\n newlines \r\n",
        "nbsp\u{a0}here, ideographic\u{3000}space, nel\u{85}here, thin\u{2009}space",
        "zero\u{200b}width joiner\u{200d}x",
        "   leading and trailing   ",
        // Weight syntax characters, as the tokenizer sees them unparsed.
        "(masterpiece:1.2), [blurry], ((detailed)), \\(escaped\\)",
        "(a:1.5) [b] {c} <d> |e|",
        // HTML entities stay literal (transformers does not unescape them).
        "&amp; &lt;tag&gt; &quot;q&quot; &#39; &#x27; &nbsp;",
        // Special tokens in the text.
        "a <|endoftext|> b",
        "<|startoftext|>x<|endoftext|>",
        "<|ENDOFTEXT|> <|endoftext",
        // Control characters and odd code points.
        "bell\u{7}nul\u{0}esc\u{1b}",
        "private \u{e000} replacement \u{fffd} bom \u{feff}",
        "mongolian\u{180e}separator",
        "combining only \u{301}\u{302}",
        "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Long prompts (well over 75 tokens).
    corpus.push("a very long prompt about a castle on a hill at sunset, ".repeat(12));
    corpus.push(
        (0..200)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    corpus.push("word".repeat(300));
    corpus
}

/// Deterministic pseudo-random strings from a pool mixing every character class.
fn random_corpus(count: usize) -> Vec<String> {
    let pool: Vec<char> = "abcxyzABCXYZ0123456789 \t\n'.,!?()[]:;-_/\\&#<>|éüñßçøåÆŒ日本語中文한국Привет☃★🐱🎨\u{301}\u{a0}\u{200b}"
        .chars()
        .collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    (0..count)
        .map(|_| {
            let len = next() % 60;
            (0..len).map(|_| pool[next() % pool.len()]).collect()
        })
        .collect()
}

#[test]
fn matches_transformers_clip_tokenizer() {
    let mut corpus = fixed_corpus();
    corpus.extend(random_corpus(300));

    let dir = tempfile::tempdir().unwrap();
    let corpus_path = dir.path().join("corpus.json");
    std::fs::write(&corpus_path, serde_json::to_string(&corpus).unwrap()).unwrap();
    common::run_reference(
        "tokenizer_ref.py",
        dir.path(),
        &["--corpus", corpus_path.to_str().unwrap()],
    );
    let expected: Vec<Vec<u32>> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ids.json")).unwrap())
            .unwrap();
    assert_eq!(expected.len(), corpus.len());

    let tok = ClipTokenizer::new().unwrap();
    let mut failures = Vec::new();
    for (text, want) in corpus.iter().zip(&expected) {
        let mut got = vec![BOS];
        got.extend(tok.encode(text));
        got.push(EOS);
        if &got != want {
            failures.push(format!(
                "{text:?}\n  rust:         {got:?}\n  transformers: {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} prompts differ:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    assert!(
        expected.iter().any(|ids| ids.len() > 77),
        "the corpus needs prompts over one chunk"
    );
}
