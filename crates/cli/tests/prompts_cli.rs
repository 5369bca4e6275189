#![allow(clippy::unwrap_used)]
//! `imagelab prompts` and `imagelab profiles` through the binary, in a sandbox app folder
//! holding a copy of the shipped themes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Sandbox {
    dir: tempfile::TempDir,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../themes");
        copy_tree(&shipped, &dir.path().join("themes"));
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `imagelab ARGS` seeing only the sandbox (no `IMAGELAB_*` leaking in).
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelab"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("AIIMAGEGEN_HOME", self.path("home"))
            .env("IMAGELAB_APP_DIR", self.dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("IMAGELAB_") && key != "IMAGELAB_APP_DIR" {
                cmd.env_remove(key);
            }
        }
        cmd.output().unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn theme_prompts_are_reproducible_and_json_records_everything() {
    let sb = Sandbox::new();
    let a = sb.run(&[
        "prompts",
        "--theme",
        "dark_fantasy",
        "-n",
        "20",
        "--seed",
        "7",
    ]);
    assert!(a.status.success(), "{}", stderr(&a));
    let lines: Vec<String> = stdout(&a).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 20);
    assert!(
        lines.iter().all(|l| l.contains("grimdark dark fantasy")),
        "{lines:?}"
    );
    let b = sb.run(&[
        "prompts",
        "--theme",
        "dark_fantasy",
        "-n",
        "20",
        "--seed",
        "7",
    ]);
    assert_eq!(stdout(&a), stdout(&b));
    let c = sb.run(&[
        "prompts",
        "--theme",
        "dark_fantasy",
        "-n",
        "20",
        "--seed",
        "8",
    ]);
    assert_ne!(stdout(&a), stdout(&c));

    let json = sb.run(&[
        "prompts",
        "--theme",
        "dark_fantasy",
        "-n",
        "3",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(json.status.success(), "{}", stderr(&json));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&json).lines().next().unwrap()).unwrap();
    assert_eq!(first["prompt"], lines[0].as_str());
    assert_eq!(first["theme"], "dark fantasy");
    assert_eq!(first["theme_hash"].as_str().unwrap().len(), 12);
    assert_eq!(first["profile"], "dark-fantasy");
    assert!(first["prompt_seed"].is_u64());
    assert!(first["template"].as_str().unwrap().contains("__"));
    let params = &first["params"];
    assert_eq!(params["scheduler"], "karras");
    assert!(params["model"].as_str().unwrap().contains("xl"));
    assert_eq!(params["prompt"], first["prompt"]);
    assert!(params["negative"].as_str().unwrap().contains("watermark"));
}

#[test]
fn every_shipped_theme_prints_through_the_binary() {
    let sb = Sandbox::new();
    for theme in [
        "dark_fantasy",
        "scifi_blueprint",
        "analog_horror",
        "archviz",
        "childrens_book",
        "vaporwave_city",
    ] {
        let out = sb.run(&["prompts", "--theme", theme, "-n", "5", "--seed", "1"]);
        assert!(out.status.success(), "{theme}: {}", stderr(&out));
        assert_eq!(stdout(&out).lines().count(), 5, "{theme}");
    }
}

#[test]
fn template_all_prints_every_combination_with_a_cap() {
    let sb = Sandbox::new();
    let out = sb.run(&["prompts", "--template", "{a|b} {x|y|z}", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a x\na y\na z\nb x\nb y\nb z\n");
    let out = sb.run(&[
        "prompts",
        "--template",
        "{a|b} {x|y|z}",
        "--all",
        "--max",
        "2",
    ]);
    assert_eq!(stdout(&out), "a x\na y\n");
    let out = sb.run(&[
        "prompts",
        "--theme",
        "scifi_blueprint",
        "--all",
        "--max",
        "5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4]["index"], 4);
    assert_eq!(lines[0]["theme"], "sci-fi blueprint");
    assert_eq!(lines[0]["theme_hash"].as_str().unwrap().len(), 12);
    let first = lines[0]["prompt"].as_str().unwrap();
    assert!(first.starts_with("sci-fi technical blueprint of detailed blueprint of a orbital tug, front view, side view, callouts for the main drive, white"), "{first}");
    let out = sb.run(&[
        "prompts",
        "--template",
        "__colors/warm__ {1|2}",
        "--all",
        "--max",
        "3",
    ]);
    assert_eq!(stdout(&out), "crimson 1\ncrimson 2\namber 1\n");
    let out = sb.run(&[
        "prompts",
        "--template",
        "{2$$ & $$x|y}",
        "--all",
        "--profile",
        "film-35mm",
    ]);
    assert!(
        stdout(&out).starts_with("35mm film photograph of x & y,"),
        "{}",
        stdout(&out)
    );
    let seeded = sb.run(&[
        "prompts",
        "--template",
        "{a|b|c|d} {e|f|g}",
        "-n",
        "4",
        "--seed",
        "3",
    ]);
    assert_eq!(
        stdout(&seeded),
        stdout(&sb.run(&[
            "prompts",
            "--template",
            "{a|b|c|d} {e|f|g}",
            "-n",
            "4",
            "--seed",
            "3"
        ]))
    );
}

#[test]
fn bad_input_names_the_place_and_exits_non_zero() {
    let sb = Sandbox::new();
    let check = |args: &[&str], wanted: &str| {
        let out = sb.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr(&out).contains(wanted), "{args:?}: {}", stderr(&out));
    };
    check(
        &["prompts", "--template", "a {b||c}"],
        "template:1:6: empty choice",
    );
    check(
        &["prompts", "--template", "x\n {b", "--all"],
        "template:2:2: unbalanced '{'",
    );
    check(
        &["prompts", "--template", "__nope__", "--all"],
        "unknown wildcard __nope__",
    );
    check(
        &["prompts", "--theme", "../etc/passwd"],
        "may not contain '..'",
    );
    check(
        &["prompts", "--theme", "/etc/passwd"],
        "may not contain '..'",
    );
    check(
        &["prompts", "--theme", "missing"],
        "available: analog_horror",
    );
    check(
        &["prompts", "--template", "a", "--profile", "nope"],
        "unknown style profile \"nope\"",
    );
    check(
        &["prompts", "--template", "a", "--profile", "R-Rated"],
        "mature mode",
    );
    check(
        &["prompts", "--template", "a", "--safe", "--mature"],
        "cannot be used with",
    );
    check(&["profiles", "--safe", "--mature"], "cannot be used with");

    std::fs::write(
        sb.path("themes/broken.yaml"),
        "templates:\n  - \"ok\"\n  - \"a {b\"\n",
    )
    .unwrap();
    check(
        &["prompts", "--theme", "broken"],
        "broken.yaml templates[1]:3:",
    );
    std::fs::write(sb.path("themes/typo.yaml"), "templates: [a]\nnegatve: x\n").unwrap();
    check(&["prompts", "--theme", "typo"], "line 2");
    std::fs::write(sb.path("themes/wildcards/loop.txt"), "again __loop__\n").unwrap();
    check(
        &["prompts", "--template", "__loop__"],
        "wildcards/loop.txt:1:7: cyclic wildcard: __loop__ → __loop__",
    );
    std::fs::write(sb.path("themes/profiles/zz.yaml"), "profiles:\n  - id: x\n    name: X\n    group: custom\n    prompt: p\n    settings: { sampler: eulerr }\n").unwrap();
    check(&["profiles"], "zz.yaml");
}

#[test]
fn profiles_list_hides_mature_ones_unless_asked() {
    let sb = Sandbox::new();
    let out = sb.run(&["profiles", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.len(), 28);
    assert!(list.iter().all(|p| p["mature"] == false));
    let out = sb.run(&["profiles", "--json", "--mature"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.len(), 29);
    assert!(list.iter().any(|p| p["name"] == "R-Rated"));
    let table = stdout(&sb.run(&["profiles"]));
    assert!(
        table.contains("35mm Film") && !table.contains("R-Rated"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 29, "header and 28 rows");
    let out = sb.run(&[
        "prompts",
        "--template",
        "a",
        "--profile",
        "r-rated",
        "--mature",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let safe = sb.run(&[
        "prompts",
        "--template",
        "a",
        "--safe",
        "--json",
        "-n",
        "1",
        "--seed",
        "1",
    ]);
    let line: serde_json::Value = serde_json::from_str(stdout(&safe).trim()).unwrap();
    assert!(
        line["negative"].as_str().unwrap().contains("nsfw"),
        "{line}"
    );
}

#[test]
fn import_writes_a_profile_file_that_lists() {
    let sb = Sandbox::new();
    let csv = sb.path("styles.csv");
    std::fs::write(&csv, "name,prompt,negative_prompt\n\"Cinematic\",\"{prompt}, shot on film, \"\"moody\"\"\",\"blurry, cartoon\"\nSharp,\"sharp, {prompt}\",\n").unwrap();
    let out = sb.run(&["profiles", "--import", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("imported 2 profile(s)"),
        "{}",
        stdout(&out)
    );
    let written = std::fs::read_to_string(sb.path("themes/profiles/imported-styles.yaml")).unwrap();
    // "cinematic" is taken by the shipped profile, so the import gets a suffix.
    assert!(written.contains("id: cinematic-2"), "{written}");
    let out = sb.run(&[
        "prompts",
        "--template",
        "a fox",
        "--profile",
        "cinematic-2",
        "-n",
        "1",
        "--seed",
        "1",
    ]);
    assert_eq!(stdout(&out), "a fox, shot on film, \"moody\"\n");
    let again = sb.run(&["profiles", "--import", csv.to_str().unwrap()]);
    assert!(
        !again.status.success() && stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let json = sb.path("fooocus.json");
    std::fs::write(
        &json,
        r#"[{"name":"Origami","prompt":"origami {prompt}","negative_prompt":"photo"}]"#,
    )
    .unwrap();
    let out = sb.run(&[
        "profiles",
        "--import",
        json.to_str().unwrap(),
        "--name",
        "mine",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&sb.run(&["profiles"]));
    assert!(
        table.contains("origami") && table.contains("mine.yaml"),
        "{table}"
    );
}

#[test]
fn themes_folder_follows_the_environment_override() {
    let sb = Sandbox::new();
    let other = sb.path("elsewhere");
    std::fs::create_dir_all(other.join("wildcards")).unwrap();
    std::fs::write(
        other.join("only.yaml"),
        "templates: [\"from elsewhere {1|2}\"]\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelab"));
    let out = cmd
        .args(["prompts", "--theme", "only", "--all"])
        .current_dir(sb.dir.path())
        .env("AIIMAGEGEN_HOME", sb.path("home"))
        .env("IMAGELAB_APP_DIR", sb.dir.path())
        .env("IMAGELAB_THEMES_DIR", &other)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from elsewhere 1\nfrom elsewhere 2\n");
}
