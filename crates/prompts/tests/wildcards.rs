//! Wildcard lists: files, comments, nesting, globs, unknown and cyclic references.
#![allow(clippy::unwrap_used)]

use imagelab_prompts::{expand_all, expand_random, PromptRng, Template, TemplateError, Wildcards};

fn set(files: &[(&str, &str)]) -> (tempfile::TempDir, Wildcards) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(format!("{name}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let wildcards = Wildcards::load_dir(dir.path()).unwrap();
    (dir, wildcards)
}

fn all(wildcards: &Wildcards, text: &str) -> Result<Vec<String>, TemplateError> {
    expand_all(
        &Template::parse(text, "template", 1).unwrap(),
        wildcards,
        1000,
    )
}

#[test]
fn comments_and_blank_lines_are_skipped_and_lines_trimmed() {
    let (_d, w) = set(&[(
        "colors",
        "# warm ones\nred\n\n   blue  \n  # indented comment\ngreen\n",
    )]);
    assert_eq!(
        all(&w, "__colors__ cat").unwrap(),
        ["red cat", "blue cat", "green cat"]
    );
}

#[test]
fn wildcards_nest_and_hold_variants() {
    let (_d, w) = set(&[
        ("animal", "{big|small} __color__ cat\nowl"),
        ("color", "red\nblue"),
    ]);
    assert_eq!(
        all(&w, "a __animal__").unwrap(),
        [
            "a big red cat",
            "a big blue cat",
            "a small red cat",
            "a small blue cat",
            "a owl"
        ]
    );
    let mut rng = PromptRng::new(7);
    let t = Template::parse("__animal__", "template", 1).unwrap();
    for _ in 0..20 {
        let text = expand_random(&t, &w, &mut rng).unwrap();
        assert!(text == "owl" || text.ends_with(" cat"), "{text}");
    }
}

#[test]
fn globs_match_folders_and_everything() {
    let (_d, w) = set(&[
        ("colors/warm", "red\norange"),
        ("colors/cool", "blue"),
        ("shapes", "circle"),
    ]);
    // Names sort as colors/cool, colors/warm, shapes; globs merge in that order.
    assert_eq!(all(&w, "__colors/*__").unwrap(), ["blue", "red", "orange"]);
    assert_eq!(all(&w, "__colors/warm__").unwrap(), ["red", "orange"]);
    assert_eq!(
        all(&w, "__*__").unwrap(),
        ["blue", "red", "orange", "circle"]
    );
    assert_eq!(all(&w, "__colors/c??l__").unwrap(), ["blue"]);
    let err = all(&w, "x __nothing/*__").unwrap_err().to_string();
    assert!(
        err.starts_with("template:1:3: unknown wildcard __nothing/*__"),
        "{err}"
    );
}

#[test]
fn picking_several_lines_of_a_wildcard() {
    let (_d, w) = set(&[("c", "red\nblue\ngreen")]);
    assert_eq!(all(&w, "{2$$ and $$__c__}").unwrap().len(), 6);
    assert_eq!(all(&w, "{2$$ and $$__c__}").unwrap()[0], "red and blue");
}

#[test]
fn unknown_wildcards_name_place_and_known_lists() {
    let (_d, w) = set(&[("colors", "red")]);
    let err = all(&w, "a\n  __colour__").unwrap_err().to_string();
    assert_eq!(
        err,
        "template:2:3: unknown wildcard __colour__; known: colors"
    );
    // Inside a wildcard file the place is that file's line.
    let (_d, w) = set(&[("a", "# comment\nfine\nuses __missing__")]);
    let err = all(&w, "__a__").unwrap_err().to_string();
    assert!(
        err.starts_with("wildcards/a.txt:3:6: unknown wildcard __missing__"),
        "{err}"
    );
    let err = all(&Wildcards::new(), "__x__").unwrap_err().to_string();
    assert!(err.contains("no wildcard lists"), "{err}");
}

#[test]
fn cycles_are_found_even_where_random_mode_would_not_go() {
    let (_d, w) = set(&[("a", "plain\nthen __b__"), ("b", "__a__ again")]);
    let err = all(&w, "__a__").unwrap_err();
    assert!(matches!(err, TemplateError::CyclicWildcard { .. }));
    assert_eq!(
        err.to_string(),
        "wildcards/b.txt:1:1: cyclic wildcard: __a__ → __b__ → __a__"
    );
    let (_d, w) = set(&[("self", "me __self__")]);
    let t = Template::parse("__self__", "template", 1).unwrap();
    let err = expand_random(&t, &w, &mut PromptRng::new(1)).unwrap_err();
    assert!(err.to_string().contains("__self__ → __self__"), "{err}");
    // A glob that reaches itself is a cycle too.
    let (_d, w) = set(&[("x", "__*__")]);
    assert!(matches!(
        all(&w, "__x__").unwrap_err(),
        TemplateError::CyclicWildcard { .. }
    ));
}

#[test]
fn syntax_errors_in_wildcard_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), "ok\n# c\n{unclosed\n").unwrap();
    let err = Wildcards::load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.starts_with("wildcards/bad.txt:3:1: unbalanced '{'"),
        "{err}"
    );
}

#[test]
fn text_that_only_looks_like_a_wildcard_stays_text() {
    let w = Wildcards::new();
    assert_eq!(
        all(&w, "snake__case and __ alone").unwrap(),
        ["snake__case and __ alone"]
    );
}
