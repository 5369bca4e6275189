//! `imagelab analyze` through the binary, in a sandbox with its own settings and app
//! folders: the default log location, the three formats, `--out`, `--export-theme`,
//! corrupt lines counted, and bad flags refused with a message naming the value.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// A done job line in the queue's `jobs.log` format.
fn job(id: u64, model: &str, day: u64) -> String {
    let finished = 1_763_596_800_000 + day * 86_400_000;
    serde_json::json!({
        "id": id, "state": "done",
        "spec": {"params": {"prompt": format!("a lighthouse, take {id}"), "negative": "blurry",
                 "model": model, "width": 1024, "height": 1024, "steps": 20, "cfg": 7.0,
                 "sampler": "euler", "scheduler": "normal", "seed": -1, "batch": 1},
                 "style": "cinematic", "model_hash": null},
        "seeds": [id], "model_hash": "abc", "priority": "normal", "source": "cli",
        "placement": "any", "attempts": 1, "worker": null, "gpus": [],
        "timings": {"queued_at_ms": finished - 1000, "finished_at_ms": finished},
        "outputs": [format!("job{id:010}_000.png")]
    })
    .to_string()
}

fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["home", "jobs", "output"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let mut lines: Vec<String> = (1..=12).map(|i| job(i, "alpha", 0)).collect();
    lines.extend((13..=24).map(|i| job(i, "beta", 1)));
    lines.push("{\"id\": 25, \"state\":".into());
    lines.push("garbage".into());
    for id in [1, 2, 3, 4, 13] {
        lines.push(format!("{{\"event\":\"favorite\",\"job\":{id},\"at\":0}}"));
    }
    std::fs::write(dir.path().join("jobs/jobs.log"), lines.join("\n") + "\n").unwrap();
    dir
}

fn analyze(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelab"));
    cmd.arg("analyze")
        .current_dir(dir)
        .env("AIIMAGEGEN_HOME", dir.join("home"))
        .env("IMAGELAB_APP_DIR", dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("IMAGELAB_") && key != "IMAGELAB_APP_DIR" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn json_report_from_the_default_log() {
    let dir = sandbox();
    let out = analyze(dir.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["images"], 24);
    assert_eq!(json["favorites"], 5);
    assert_eq!(json["summary"]["log_lines"]["skipped"], 2);
    let models = &json["dimensions"][0];
    assert_eq!(models["name"], "model");
    assert_eq!(models["groups"][0]["key"], "alpha");
    assert_eq!(models["groups"][0]["rank"], 1);
    // --since drops the first day; --min-support 20 leaves nothing ranked.
    let out = analyze(dir.path())
        .args([
            "--format",
            "json",
            "--since",
            "2025-11-21",
            "--min-support",
            "20",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["images"].as_u64(), json["favorites"].as_u64()),
        (Some(12), Some(1))
    );
    assert!(json["dimensions"][0]["groups"][0]["rank"].is_null());
}

#[test]
fn html_and_markdown_files_and_theme_export() {
    let dir = sandbox();
    let out = analyze(dir.path())
        .args([
            "--out",
            "reports/r.html",
            "--export-theme",
            "themes/best.yaml",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("24 images, 5 favorites; 2 log lines skipped"),
        "{err}"
    );
    let html = std::fs::read_to_string(dir.path().join("reports/r.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("image missing: job0000000001_000.png"));
    let theme: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.path().join("themes/best.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(theme["name"].as_str(), Some("best"));
    assert_eq!(theme["models"][0].as_str(), Some("alpha"));
    assert_eq!(theme["profile"].as_str(), Some("cinematic"));
    assert_eq!(theme["settings"]["sampler"][0].as_str(), Some("euler"));
    // The exported theme is one the prompt generator loads and draws from (with the
    // shipped style profiles, which its `profile:` refers to).
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../themes/profiles");
    std::fs::create_dir_all(dir.path().join("themes/profiles")).unwrap();
    for entry in std::fs::read_dir(shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.path().join("themes/profiles").join(entry.file_name()),
        )
        .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_imagelab"))
        .args([
            "prompts", "--theme", "best", "-n", "3", "--seed", "1", "--json",
        ])
        .current_dir(dir.path())
        .env("AIIMAGEGEN_HOME", dir.path().join("home"))
        .env("IMAGELAB_APP_DIR", dir.path())
        .env_remove("IMAGELAB_THEMES_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let drawn: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = drawn["prompt"].as_str().unwrap();
        // The favorite prompt, inside the exported profile's template.
        assert!(
            prompt.contains("a lighthouse, take ") && prompt.starts_with("cinematic"),
            "{prompt}"
        );
        assert_eq!(drawn["params"]["sampler"], "euler");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");

    let out = analyze(dir.path())
        .args(["--out", "r.md"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = std::fs::read_to_string(dir.path().join("r.md")).unwrap();
    assert!(md.starts_with("# imagelab favorites report"), "{md}");
}

#[test]
fn bad_flags_name_the_value() {
    let dir = sandbox();
    let out = analyze(dir.path())
        .args(["--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"yesterday\"") && err.contains("YYYY-MM-DD"),
        "{err}"
    );
    let out = analyze(dir.path())
        .args(["--format", "pdf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("html, md or json"));
    let out = analyze(dir.path())
        .args(["--images", "no-such-dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir"));
    // No log at all is an empty report, not an error; a theme needs favorites.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("home")).unwrap();
    let out = analyze(empty.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = analyze(empty.path())
        .args(["--export-theme", "t.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("favorite"));
    assert!(!empty.path().join("t.yaml").exists());
}
