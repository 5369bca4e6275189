//! Shipped themes load and generate; generation is reproducible from the recorded seed;
//! bad theme files are refused with their file and place.
#![allow(clippy::unwrap_used)]

use imagelab_prompts::{list_themes, ContentMode, ProfileLibrary, Theme, Wildcards};
use std::path::{Path, PathBuf};

fn themes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../themes")
}

fn load(name: &str) -> Theme {
    let shared = Wildcards::load_dir(&themes_dir().join("wildcards")).unwrap();
    let dir = themes_dir();
    let path = ["yaml", "json"]
        .iter()
        .map(|x| dir.join(format!("{name}.{x}")))
        .find(|p| p.exists())
        .unwrap();
    Theme::load(&path, &shared).unwrap()
}

#[test]
fn every_shipped_theme_loads_generates_and_names_a_real_profile() {
    let names = list_themes(&themes_dir());
    assert!(names.len() >= 6, "{names:?}");
    for expected in [
        "dark_fantasy",
        "scifi_blueprint",
        "analog_horror",
        "archviz",
        "childrens_book",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let profiles = ProfileLibrary::load_dir(&themes_dir().join("profiles")).unwrap();
    for name in &names {
        let theme = load(name);
        let profile = theme.spec.profile.as_deref().unwrap();
        profiles.get(profile, ContentMode::Standard).unwrap();
        for index in 0..50 {
            let generated = theme.generate(99, index).unwrap();
            assert!(!generated.prompt.is_empty());
            assert!(
                !generated.prompt.contains("__"),
                "{name}: {}",
                generated.prompt
            );
            assert!(
                !generated.prompt.contains(['{', '}']),
                "{name}: {}",
                generated.prompt
            );
            assert_eq!(generated.theme_hash.len(), 12);
        }
        assert!(!theme.enumerate(100).unwrap().is_empty());
    }
}

#[test]
fn generation_is_reproducible_and_recorded() {
    let theme = load("dark_fantasy");
    let a = theme.generate(2026, 3).unwrap();
    assert_eq!(a, theme.generate(2026, 3).unwrap());
    assert_eq!(a, theme.generate_from_prompt_seed(a.prompt_seed).unwrap());
    assert_ne!(a.prompt_seed, theme.generate(2026, 4).unwrap().prompt_seed);
    assert_eq!(a.theme, "dark fantasy");
    assert!(theme.spec.templates.iter().any(|t| match t {
        imagelab_prompts::Weighted::Plain(s) => *s == a.template,
        imagelab_prompts::Weighted::Weighted { value, .. } => *value == a.template,
    }));
    assert_eq!(a.profile.as_deref(), Some("dark-fantasy"));
    let p = &a.params;
    assert!(
        p.model.is_some()
            && p.settings.sampler.is_some()
            && p.settings.steps.is_some()
            && p.settings.cfg.is_some()
    );
    assert!([28, 32, 36].contains(&p.settings.steps.unwrap()));
    let cfg = p.settings.cfg.unwrap();
    assert!(
        (5.0..=8.0).contains(&cfg) && (cfg * 2.0).fract() == 0.0,
        "{cfg}"
    );
    assert!(matches!(
        (p.settings.width, p.settings.height),
        (Some(1024), Some(1024)) | (Some(832), Some(1216))
    ));
}

#[test]
fn pinned_theme_output_for_a_fixed_seed() {
    // Written theme text (not a shipped file) so editing the shipped themes cannot move it.
    let text = "templates:\n  - \"a {red|green|blue} __thing__ {1-2$$ and $$at dawn|in rain|on ice}\"\nwords:\n  thing: [kite, boat, lamp]\nsettings:\n  steps: [20, 30]\n  cfg: { min: 4, max: 9 }\n  sampler: [euler, dpmpp_2m]\n";
    let theme =
        Theme::from_text(Path::new("pinned.yaml"), "pinned", text, &Wildcards::new()).unwrap();
    let g = theme.generate_from_prompt_seed(1234).unwrap();
    assert_eq!(g.prompt, "a blue boat at dawn");
    assert_eq!(
        (
            g.params.settings.sampler.map(|s| s.as_str()),
            g.params.settings.steps,
            g.params.settings.cfg
        ),
        (Some("euler"), Some(30), Some(4.5))
    );
    assert_eq!(g.theme_hash, "3e35b94eede9");
}

fn theme_err(text: &str) -> String {
    let shared = Wildcards::load_dir(&themes_dir().join("wildcards")).unwrap();
    Theme::from_text(Path::new("themes/bad.yaml"), "bad", text, &shared)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_theme_files_name_file_and_place() {
    let err = theme_err("templates: [\"a\"]\nsettings:\n  sampler: eulerr\n");
    assert!(
        err.contains("themes/bad.yaml")
            && err.contains("settings.sampler")
            && err.contains("eulerr"),
        "{err}"
    );
    let err = theme_err("templates: [\"a\"]\nnegativ: x\n");
    assert!(
        err.contains("themes/bad.yaml") && err.contains("negativ") && err.contains("line 2"),
        "{err}"
    );
    let err = theme_err("templates:\n  - \"fine\"\n  - \"a {b||c}\"\n");
    assert!(err.starts_with("themes/bad.yaml templates[1]:3:"), "{err}");
    assert!(err.contains("empty choice"), "{err}");
    let err = theme_err("templates: [\"__nope__\"]\n");
    assert!(err.contains("unknown wildcard __nope__"), "{err}");
    let err = theme_err("templates: [\"__a__\"]\nwords:\n  a: [\"x __b__\"]\n  b: [\"__a__\"]\n");
    assert!(
        err.contains("cyclic wildcard: __a__ → __b__ → __a__"),
        "{err}"
    );
    let err = theme_err("templates: []\n");
    assert!(err.contains("templates"), "{err}");
    let err = theme_err("templates: [a]\nwildcards: [nosuchfile]\n");
    assert!(err.contains("nosuchfile"), "{err}");
    let err = theme_err("templates: [a]\nsettings:\n  size: 1000x1001\n");
    assert!(err.contains("height") || err.contains("width"), "{err}");
    let err = theme_err("templates: [a]\nsettings:\n  cfg: { min: 9, max: 2 }\n");
    assert!(err.contains("settings.cfg"), "{err}");
    let err = theme_err("templates: [a]\nsettings:\n  steps: [20, 0, 30]\n");
    assert!(err.contains("settings.steps"), "{err}");
    let err = theme_err("templates: [a]\nsettings:\n  steps: 20.5\n");
    assert!(err.contains("settings.steps: 20.5"), "{err}");
    let err = theme_err("templates: [a]\nsettings:\n  cfg: [7, 500]\n");
    assert!(err.contains("settings.cfg") && err.contains("500"), "{err}");
    let err = theme_err("templates: [a]\nsettings:\n  size: [1024x1024, 10x10]\n");
    assert!(
        err.contains("settings.size") && err.contains("width"),
        "{err}"
    );
    let err = theme_err("templates: [a\n");
    assert!(
        err.contains("themes/bad.yaml") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn local_words_hide_a_wildcard_file_of_the_same_name() {
    let text = "templates: [\"__animals__\"]\nwords:\n  animals: [dragon]\n";
    let shared = Wildcards::load_dir(&themes_dir().join("wildcards")).unwrap();
    let theme = Theme::from_text(Path::new("t.yaml"), "t", text, &shared).unwrap();
    assert_eq!(theme.enumerate(10).unwrap(), ["dragon"]);
}

#[test]
fn resolve_layers_defaults_profile_and_theme_and_honours_the_mode() {
    let theme = load("dark_fantasy");
    let profiles = ProfileLibrary::load_dir(&themes_dir().join("profiles")).unwrap();
    let generated = theme.generate(5, 0).unwrap();
    let base = imagelab_core::GenerationParams {
        steps: 99,
        batch: 3,
        ..Default::default()
    };
    let params = generated
        .resolve(&base, &profiles, ContentMode::Safe, None)
        .unwrap();
    assert!(params.prompt.starts_with(&generated.prompt));
    assert!(params.prompt.contains("grimdark"));
    assert!(params.negative.contains("nsfw") && params.negative.contains("cartoon"));
    // The theme's draws beat the profile's recommendations, which beat the defaults.
    assert_eq!(params.steps, generated.params.settings.steps.unwrap());
    assert_eq!(params.batch, 3);
    assert_eq!(params.model, generated.params.model.clone().unwrap());
    params.validate().unwrap();
    let err = generated
        .resolve(&base, &profiles, ContentMode::Standard, Some("R-Rated"))
        .unwrap_err();
    assert!(err.to_string().contains("mature"), "{err}");
    assert!(generated
        .resolve(&base, &profiles, ContentMode::Mature, Some("R-Rated"))
        .is_ok());
}
