//! The shipped style profiles, the content modes, loading errors and importing styles
//! from A1111 and Fooocus.
#![allow(clippy::unwrap_used)]

use imagelab_prompts::{
    import_a1111_csv, import_fooocus_json, profiles_to_yaml, ContentMode, ProfileError,
    ProfileGroup, ProfileLibrary, SAFETY_NEGATIVE,
};
use std::path::{Path, PathBuf};

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../themes/profiles")
}

fn shipped() -> ProfileLibrary {
    ProfileLibrary::load_dir(&shipped_dir()).unwrap()
}

/// The roadmap's list, verbatim.
const ROADMAP: [(&str, ProfileGroup); 29] = [
    ("None/Raw", ProfileGroup::Core),
    ("Photoreal", ProfileGroup::Core),
    ("Cinematic", ProfileGroup::Core),
    ("Anime/Vibrant", ProfileGroup::Core),
    ("Soft Illustration", ProfileGroup::Core),
    ("Black & White", ProfileGroup::Core),
    ("Pencil Sketch", ProfileGroup::Core),
    ("35mm Film", ProfileGroup::Core),
    ("Rotoscoping", ProfileGroup::Core),
    ("R-Rated", ProfileGroup::Core),
    ("Tim Burton Style", ProfileGroup::ArtistGenre),
    ("Frank Frazetta Fantasy", ProfileGroup::ArtistGenre),
    ("Ralph Bakshi Animation", ProfileGroup::ArtistGenre),
    ("H.R. Giger Biomechanical", ProfileGroup::ArtistGenre),
    ("Dark Fantasy/Grimdark", ProfileGroup::ArtistGenre),
    ("Watercolor", ProfileGroup::Extended),
    ("Hyper-Realistic Portrait", ProfileGroup::Extended),
    ("ISOTOPIA Sci-Fi Blueprint", ProfileGroup::Extended),
    ("Pixar-ish Soft CG", ProfileGroup::Extended),
    ("Pixel Art/Isometric Game", ProfileGroup::Extended),
    ("Low-Poly 3D/PS1", ProfileGroup::Extended),
    ("Product Render/Industrial", ProfileGroup::Extended),
    ("Isometric Tech Diagram", ProfileGroup::Extended),
    ("Retro Comic/Halftone", ProfileGroup::Extended),
    ("Vaporwave/Synthwave", ProfileGroup::Extended),
    ("Children's Book Illustration", ProfileGroup::Extended),
    ("Ink & Screentone Manga", ProfileGroup::Extended),
    ("Analog Horror/VHS", ProfileGroup::Extended),
    ("Architectural Visualization", ProfileGroup::Extended),
];

#[test]
fn all_29_roadmap_profiles_ship_with_their_groups() {
    let library = shipped();
    let all: Vec<_> = library.all().collect();
    assert_eq!(all.len(), 29);
    for (name, group) in ROADMAP {
        let found = all.iter().find(|p| p.name == name);
        let profile = found.unwrap_or_else(|| panic!("profile {name:?} missing"));
        assert_eq!(profile.group, group, "{name}");
        assert!(!profile.prompt.is_empty(), "{name}");
        if name != "None/Raw" {
            assert!(profile.prompt.contains("{prompt}"), "{name}");
            assert!(!profile.negative.is_empty(), "{name}");
            assert!(!profile.settings.is_empty(), "{name}");
        }
    }
    let counts = |g| all.iter().filter(|p| p.group == g).count();
    assert_eq!(
        (
            counts(ProfileGroup::Core),
            counts(ProfileGroup::ArtistGenre),
            counts(ProfileGroup::Extended)
        ),
        (10, 5, 14)
    );
}

#[test]
fn exactly_the_mature_profiles_are_hidden_and_refused() {
    let library = shipped();
    let mature: Vec<&str> = library
        .all()
        .filter(|p| p.mature)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(mature, ["R-Rated"]);
    for mode in [ContentMode::Safe, ContentMode::Standard] {
        let visible = library.visible(mode);
        assert_eq!(visible.len(), 28);
        assert!(visible.iter().all(|p| !p.mature));
        let err = library.get("R-Rated", mode).unwrap_err();
        assert!(matches!(err, ProfileError::MatureRefused { .. }), "{err}");
        assert!(err.to_string().contains("mature mode"), "{err}");
        let r = library.all().find(|p| p.mature).unwrap();
        assert!(mode.apply(r, "x", "").is_err());
    }
    let listed = library.visible(ContentMode::Mature);
    assert_eq!(listed.len(), 29);
    assert_eq!(
        (listed[0].name.as_str(), listed[28].name.as_str()),
        ("None/Raw", "Architectural Visualization")
    );
    assert!(library.get("r-rated", ContentMode::Mature).is_ok());
}

#[test]
fn safe_and_mature_are_mutually_exclusive() {
    assert!(matches!(
        ContentMode::from_flags(true, true),
        Err(ProfileError::SafeAndMature)
    ));
    assert_eq!(
        ContentMode::from_flags(true, false).unwrap(),
        ContentMode::Safe
    );
    assert_eq!(
        ContentMode::from_flags(false, true).unwrap(),
        ContentMode::Mature
    );
    assert_eq!(
        ContentMode::from_flags(false, false).unwrap(),
        ContentMode::Standard
    );
}

#[test]
fn apply_fills_the_placeholder_and_safe_mode_adds_the_safety_negative() {
    let library = shipped();
    let film = library.get("35mm Film", ContentMode::Standard).unwrap();
    let (prompt, negative) = film.apply("a lighthouse", "blurry");
    assert!(
        prompt.starts_with("35mm film photograph of a lighthouse, analog"),
        "{prompt}"
    );
    assert!(negative.starts_with("blurry, digital look"), "{negative}");
    let (_, safe_negative) = ContentMode::Safe
        .apply(film, "a lighthouse", "blurry")
        .unwrap();
    assert!(safe_negative.ends_with(SAFETY_NEGATIVE), "{safe_negative}");
    let (_, standard_negative) = ContentMode::Standard
        .apply(film, "a lighthouse", "")
        .unwrap();
    assert!(!standard_negative.contains("nsfw"));
    // Shared negative terms appear once; weighted groups with commas stay whole.
    let (_, merged) = film.apply("", "cartoon, (bad hands, extra fingers:1.2), CGI");
    assert_eq!(
        merged,
        "cartoon, (bad hands, extra fingers:1.2), CGI, digital look, hdr, oversharpened, 3d render, illustration, plastic skin, watermark, text"
    );
    let raw = library.get("none", ContentMode::Standard).unwrap();
    assert_eq!(
        raw.apply("a,b  (c:1.2)", ""),
        ("a,b  (c:1.2)".to_string(), String::new())
    );
    // An empty user prompt leaves no dangling commas.
    assert!(!film.apply("", "").0.contains(", ,"));
    let err = library
        .get("Polaroid", ContentMode::Standard)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown style profile \"Polaroid\"")
            && err.contains("film-35mm")
            && !err.contains("r-rated"),
        "{err}"
    );
}

#[test]
fn bad_profile_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.yaml");
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    write("profiles:\n  - id: a\n    name: A\n    group: custom\n    prompt: \"{prompt}\"\n    settings: { sampler: eulerr }\n");
    let err = ProfileLibrary::load_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mine.yaml") && err.contains("eulerr") && err.contains("line 6"),
        "{err}"
    );
    write("profiles:\n  - id: a\n    name: A\n    group: custom\n    prompt: x\n    settings: { width: 1001 }\n");
    let err = ProfileLibrary::load_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mine.yaml:2: profile \"a\": settings: invalid width 1001"),
        "{err}"
    );
    write("profiles:\n  - id: Bad Id\n    name: A\n    group: custom\n    prompt: x\n");
    let err = ProfileLibrary::load_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mine.yaml:2") && err.contains("lowercase"),
        "{err}"
    );
    write("profiles:\n  - id: photoreal\n    name: Mine\n    group: custom\n    prompt: x\n");
    let mut library = shipped();
    let err = library
        .add_text(&path, &std::fs::read_to_string(&path).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("already defined in") && err.to_string().contains("core.yaml"),
        "{err}"
    );
    write("profiles:\n  - id: a\n    nam: A\n");
    let err = ProfileLibrary::load_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("mine.yaml") && err.contains("nam"), "{err}");
}

#[test]
fn user_profile_files_add_to_the_shipped_ones() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped_dir()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("zz-mine.json"),
        r#"{"profiles":[{"id":"polaroid","name":"Polaroid","group":"custom","prompt":"polaroid photo of {prompt}","negative":"digital"}]}"#,
    )
    .unwrap();
    let library = ProfileLibrary::load_dir(dir.path()).unwrap();
    assert_eq!(library.all().count(), 30);
    assert_eq!(
        library
            .get("polaroid", ContentMode::Standard)
            .unwrap()
            .apply("a cat", "")
            .0,
        "polaroid photo of a cat"
    );
}

#[test]
fn a1111_csv_import_handles_quoting() {
    let csv = "name,prompt,negative_prompt\n\
        \"Cinematic, teal\",\"cinematic still of {prompt}, \"\"teal\"\" and orange\",\"cartoon, lowres\"\n\
        Plain,masterpiece,\n\
        ,ignored,\n\
        \"Multi\nline\",\"{prompt}\nsecond line\",x\n\
        Plain,duplicate name,\n";
    let profiles = import_a1111_csv(csv, "styles.csv").unwrap();
    let ids: Vec<&str> = profiles.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["cinematic-teal", "plain", "multi-line", "plain-2"]);
    assert_eq!(profiles[0].name, "Cinematic, teal");
    assert_eq!(
        profiles[0].prompt,
        "cinematic still of {prompt}, \"teal\" and orange"
    );
    assert_eq!(profiles[0].negative, "cartoon, lowres");
    assert_eq!(profiles[1].apply("a cat", "").0, "a cat, masterpiece");
    assert_eq!(profiles[2].prompt, "{prompt}\nsecond line");
    // The written file loads back as a profile library.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.yaml");
    std::fs::write(&path, profiles_to_yaml(&profiles).unwrap()).unwrap();
    let library = ProfileLibrary::load_dir(dir.path()).unwrap();
    assert_eq!(library.all().count(), 4);
    assert_eq!(
        library
            .get("Cinematic, teal", ContentMode::Standard)
            .unwrap()
            .negative,
        "cartoon, lowres"
    );

    let err = import_a1111_csv("title,prompt\nx,y\n", "styles.csv")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("styles.csv") && err.contains("`name`"),
        "{err}"
    );
}

#[test]
fn fooocus_json_import() {
    let json = r#"[{"name": "Fooocus Sharp", "prompt": "{prompt}, sharp focus", "negative_prompt": "blurry"},
                   {"name": "sai-origami", "prompt": "origami style {prompt}"}]"#;
    let profiles = import_fooocus_json(json, "sdxl_styles.json").unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0].id, "fooocus-sharp");
    assert_eq!(profiles[0].apply("a fox", "").0, "a fox, sharp focus");
    assert_eq!(profiles[1].negative, "");
    let err = import_fooocus_json("{\"name\": 1}", "x.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.json") && err.contains("Fooocus"), "{err}");
    assert!(import_fooocus_json("[]", "x.json").is_err());
}
