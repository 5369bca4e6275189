//! Reports: HTML and Markdown render with the JSON's numbers, missing images and PNGs
//! without metadata are reported, thumbnails are embedded, and `--export-theme` YAML has
//! the shape the prompt generator loads.
#![allow(clippy::unwrap_used)]

mod common;

use common::{favorite_job, write_lines, write_png, Job};
use imagelab_analytics::theme_export::{export_theme, to_yaml};
use imagelab_analytics::{analyze, render, AnalyzeOptions, Format, Report};
use serde_json::Value;

const COMFY: &str = r#"{"3":{"class_type":"KSampler","inputs":{"seed":9,"steps":30,"cfg":5.0,"sampler_name":"euler_ancestral","scheduler":"karras","model":["4",0],"positive":["6",0],"negative":["7",0],"latent_image":["5",0]}},"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"animagine.safetensors"}},"5":{"class_type":"EmptyLatentImage","inputs":{"width":832,"height":1216,"batch_size":1}},"6":{"class_type":"CLIPTextEncode","inputs":{"text":"1girl, night city","clip":["4",1]}},"7":{"class_type":"CLIPTextEncode","inputs":{"text":"lowres","clip":["4",1]}}}"#;

/// A log of 12 alpha jobs (1, 2 and 3 starred; job 2's image is gone) and 11 beta jobs
/// (13 starred, its image gone too), plus a folder with our job 1 image, a ComfyUI image (starred), an A1111
/// image, a PNG without metadata and a file that is not a PNG.
fn fixture() -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("output");
    std::fs::create_dir_all(&images).unwrap();
    let mut lines: Vec<String> = (1..=12)
        .map(|id| {
            let mut j = Job::new(id, "alpha");
            j.style = Some("noir");
            j.line()
        })
        .collect();
    lines.extend((13..=23).map(|id| Job::new(id, "beta").line()));
    for id in [1, 2, 3, 13] {
        lines.push(favorite_job(id));
    }
    lines.push(r#"{"event":"favorite","job":1,"rating":5}"#.into());
    lines.push(r#"{"event":"favorite","image":"comfy.png","rating":4}"#.into());
    let log = dir.path().join("jobs.log");
    write_lines(&log, &lines);
    let ours = r#"{"params":{"prompt":"prompt of job 1","model":"alpha"},"seed":7}"#;
    write_png(&images.join("job0000000001_000.png"), &[("imagelab", ours)]);
    write_png(&images.join("job0000000003_000.png"), &[("imagelab", ours)]);
    write_png(
        &images.join("comfy.png"),
        &[("prompt", COMFY), ("workflow", "{}")],
    );
    write_png(
        &images.join("a1111.png"),
        &[(
            "parameters",
            "a fox\nSteps: 20, Sampler: Euler a, CFG scale: 7, Size: 512x512, Model: sd15",
        )],
    );
    write_png(&images.join("blank.png"), &[]);
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let mut opts = AnalyzeOptions::new(log);
    opts.image_dirs = vec![images.clone()];
    opts.output_dir = Some(images);
    let report = analyze(&opts).unwrap();
    (dir, report)
}

#[test]
fn bad_and_foreign_images_are_counted() {
    let (_dir, r) = fixture();
    let s = &r.summary;
    assert_eq!(s.pngs_read, 4, "ours ×2, ComfyUI, A1111");
    assert_eq!(s.pngs_in_log, 2);
    assert_eq!(s.pngs_without_metadata.len(), 1);
    assert!(s.pngs_without_metadata[0].ends_with("blank.png"));
    assert_eq!(s.pngs_unreadable.len(), 1);
    assert_eq!(
        s.missing_images,
        ["job0000000002_000.png", "job0000000013_000.png"]
    );
    // 23 jobs + the ComfyUI and A1111 images; favorites: jobs 1, 2, 3, 13 and comfy.png.
    assert_eq!((r.analysis.images, r.analysis.favorites), (25, 5));
    let top: Vec<&str> = r
        .top_favorites
        .iter()
        .map(|f| f.record.path.as_str())
        .collect();
    assert_eq!(top[0], "job0000000001_000.png", "rated 5 comes first");
    assert!(top[1].ends_with("comfy.png"), "rated 4 second: {top:?}");
    assert!(r.top_favorites[1].file.is_some());
    assert_eq!(
        r.top_favorites[1].record.model.as_deref(),
        Some("animagine")
    );
}

fn pct(x: &Value) -> String {
    format!("{:.1}%", x.as_f64().unwrap() * 100.0)
}

/// Every table of the JSON: (table name, group).
fn json_groups(json: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let tables = json["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(json["pairs"].as_array().unwrap())
        .chain(std::iter::once(&json["best_configs"]));
    for t in tables {
        for g in t["groups"].as_array().unwrap() {
            out.push((t["name"].as_str().unwrap().to_string(), g.clone()));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn html_and_markdown_numbers_equal_the_json() {
    let (_dir, r) = fixture();
    let json: Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    let html = render(&r, Format::Html).unwrap();
    let md = render(&r, Format::Markdown).unwrap();
    let groups = json_groups(&json);
    assert!(groups.len() > 20);
    for (table, g) in &groups {
        let figures = format!(
            "{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}–{}</td>",
            g["images"],
            g["favorites"],
            pct(&g["rate"]),
            pct(&g["wilson_low"]),
            pct(&g["wilson_high"])
        );
        let marker = format!(
            "data-table=\"{}\" data-key=\"{}\"",
            html_escape(table),
            html_escape(g["key"].as_str().unwrap())
        );
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no HTML row {marker}"));
        let row = &html[start..start + html[start..].find("</tr>").unwrap()];
        assert!(row.contains(&figures), "{row}\nwants {figures}");
        let rank = g["rank"]
            .as_u64()
            .map(|r| r.to_string())
            .unwrap_or("low support".into());
        assert!(row.contains(&format!("<td>{rank}</td>")), "{row}");
        // Markdown: the configuration table is cut to 20 rows; the rest must all appear.
        let parts: Vec<&str> = g["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let md_row = format!(
            "| {rank} | {} | {} | {} | {} | {}–{} |",
            parts.join(" | "),
            g["images"],
            g["favorites"],
            pct(&g["rate"]),
            pct(&g["wilson_low"]),
            pct(&g["wilson_high"])
        );
        assert!(md.contains(&md_row), "no Markdown row {md_row}");
    }
    let totals = format!(
        "<b>{}</b> images, <b>{}</b> favorites (<b>{}</b>)",
        json["images"],
        json["favorites"],
        pct(&json["rate"])
    );
    assert!(html.contains(&totals), "{totals}");
    assert!(md.contains(&format!(
        "{} images, {} favorites ({})",
        json["images"],
        json["favorites"],
        pct(&json["rate"])
    )));
    assert_eq!(json["summary"]["log_lines"]["skipped"], 0);
}

#[test]
fn html_is_self_contained_with_charts_and_thumbnails() {
    let (_dir, r) = fixture();
    let html = render(&r, Format::Html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(
        html.matches("data:image/png;base64,").count() >= 2,
        "thumbnails of job 1 and comfy.png"
    );
    assert!(html.contains("aria-label=\"heat map model × profile\""));
    assert!(html.contains("aria-label=\"favorite rate by model\""));
    assert!(html.contains("aria-label=\"favorites over time\""));
    assert!(html.contains("image missing: job0000000002_000.png"));
    assert!(html.contains("blank.png"));
    assert!(
        html.contains("sampler euler_ancestral, scheduler karras, cfg 5, steps 30, size 832x1216")
    );
}

#[test]
fn exported_theme_has_the_agreed_shape() {
    let (_dir, r) = fixture();
    let theme = export_theme(&r, "best").unwrap();
    let yaml = to_yaml(&theme).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let map = v.as_mapping().unwrap();
    let keys: Vec<&str> = map.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "name",
            "templates",
            "negative",
            "profile",
            "models",
            "settings"
        ],
        "{yaml}"
    );
    assert_eq!(v["name"].as_str(), Some("best"));
    let templates = v["templates"].as_sequence().unwrap();
    assert_eq!(templates[0].as_str(), Some("prompt of job 1"));
    assert!(templates
        .iter()
        .any(|t| t.as_str() == Some("1girl, night city")));
    assert_eq!(v["negative"].as_str(), Some("blurry, lowres"));
    // alpha's configuration (3/12, noir) ranks above beta's (1/11).
    assert_eq!(v["profile"].as_str(), Some("noir"));
    assert_eq!(v["models"].as_sequence().unwrap().len(), 2);
    for key in ["sampler", "scheduler", "cfg", "steps", "size"] {
        let choices = v["settings"][key].as_sequence();
        assert!(
            choices.is_some_and(|c| !c.is_empty()),
            "settings.{key} list in {yaml}"
        );
    }
    assert_eq!(v["settings"]["size"][0].as_str(), Some("1024x1024"));
    assert_eq!(v["settings"]["cfg"][0].as_f64(), Some(7.0));
    assert_eq!(v["settings"]["steps"][0].as_u64(), Some(20));
}
