//! The charts carry the numbers `imagelab analyze --format json` prints (the same
//! `render(.., Format::Json)`), on a fixture log.

use super::*;
use imagelab_analytics::{analyze, render, AnalyzeOptions, Format};
use serde_json::{json, Value};

const DAY0: u64 = 1_763_596_800_000;
const DAY: u64 = 86_400_000;

/// A job line as the queue's jobs.log writes it.
fn job(id: u64, model: &str, style: Option<&str>, cfg: f64, steps: u32, day: u64) -> String {
    let finished = DAY0 + day * DAY;
    json!({
        "id": id, "state": "done",
        "spec": {
            "params": {"prompt": format!("prompt {id}"), "negative": "", "model": model,
                "vae": null, "clip": null, "width": 512, "height": 512, "steps": steps,
                "cfg": cfg, "sampler": "euler", "scheduler": "normal", "seed": -1,
                "batch": 1, "clip_skip": null, "init_image": null, "strength": 0.75},
            "style": style, "model_hash": "0123456789"
        },
        "seeds": [id], "model_hash": "0123456789", "priority": "background",
        "source": "night-run", "placement": "any", "attempts": 1, "worker": "gpu0",
        "gpus": ["GPU-0"],
        "timings": {"queued_at_ms": finished - 2000, "started_at_ms": finished - 1000,
            "finished_at_ms": finished, "step_time_ms": 50.0},
        "outputs": [format!("job{id:010}_000.png")]
    })
    .to_string()
}

/// 30 alpha jobs (noir profile, 12 starred) and 14 beta jobs (none, 2 starred) over 3 days.
fn fixture() -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for id in 1..=30 {
        lines.push(job(id, "alpha", Some("noir"), 7.0, 20, id % 3));
    }
    for id in 31..=44 {
        lines.push(job(id, "beta", None, 4.5, 30, id % 3));
    }
    for id in (1..=12).chain([31, 40]) {
        lines.push(format!(r#"{{"event":"favorite","job":{id},"at":{DAY0}}}"#));
    }
    let log = dir.path().join("jobs.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let mut opts = AnalyzeOptions::new(log);
    opts.min_support = 10;
    let report = analyze(&opts).unwrap();
    (dir, report)
}

fn close(a: f64, b: &Value) -> bool {
    (a - b.as_f64().unwrap()).abs() < 1e-12
}

#[test]
fn bars_and_intervals_equal_the_json_report() {
    let (_dir, report) = fixture();
    let printed: Value = serde_json::from_str(&render(&report, Format::Json).unwrap()).unwrap();
    let charts = charts(&report);
    assert_eq!(
        charts
            .bars
            .iter()
            .map(|c| c.dimension.as_str())
            .collect::<Vec<_>>(),
        CHARTED
    );
    let mut compared = 0;
    for chart in &charts.bars {
        let table = printed["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == chart.dimension.as_str())
            .unwrap();
        let groups = table["groups"].as_array().unwrap();
        assert_eq!(
            chart.bars.len(),
            groups.len().min(MAX_BARS),
            "{}",
            chart.dimension
        );
        for (bar, group) in chart.bars.iter().zip(groups) {
            assert_eq!(bar.label, group["key"].as_str().unwrap());
            assert_eq!(bar.images, group["images"].as_u64().unwrap());
            assert_eq!(bar.favorites, group["favorites"].as_u64().unwrap());
            assert!(close(bar.rate, &group["rate"]), "{}: rate", bar.label);
            assert!(close(bar.low, &group["wilson_low"]), "{}: low", bar.label);
            assert!(
                close(bar.high, &group["wilson_high"]),
                "{}: high",
                bar.label
            );
            assert_eq!(bar.supported, group["supported"].as_bool().unwrap());
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} bars compared");
    // The fixture's own figures: alpha 12 of 30, its interval the Wilson one at z = 1.96.
    let model = &charts.bars[0].bars;
    let alpha = model.iter().find(|b| b.label == "alpha").unwrap();
    assert_eq!((alpha.images, alpha.favorites), (30, 12));
    let expected = imagelab_analytics::wilson_interval(12, 30, 1.959964);
    assert!((alpha.low - expected.low).abs() < 1e-4 && (alpha.high - expected.high).abs() < 1e-4);
    assert_eq!(charts.summary, "44 images, 14 favorites (31.8%)");
}

#[test]
fn heat_map_days_and_best_configurations_follow_the_report() {
    let (_dir, report) = fixture();
    let printed: Value = serde_json::from_str(&render(&report, Format::Json).unwrap()).unwrap();
    let charts = charts(&report);
    let heat = charts.heat.unwrap();
    assert_eq!(heat.rows, ["alpha", "beta"]);
    assert_eq!(heat.columns, ["(none)", "noir"]);
    let pair = &printed["pairs"][0];
    for group in pair["groups"].as_array().unwrap() {
        let parts: Vec<&str> = group["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let i = heat.rows.iter().position(|r| r == parts[0]).unwrap();
        let j = heat.columns.iter().position(|c| c == parts[1]).unwrap();
        let cell = heat.cells[i][j].as_ref().unwrap();
        assert!(
            close(cell.rate, &group["rate"]) && cell.images == group["images"].as_u64().unwrap()
        );
    }
    assert!(
        heat.cells[0][0].is_none(),
        "alpha was never made without a profile"
    );
    let days: Vec<(String, u64, u64)> = printed["over_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_string(),
                d["images"].as_u64().unwrap(),
                d["favorites"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(charts.days, days);
    assert_eq!(charts.days.iter().map(|d| d.1).sum::<u64>(), 44);
    let best = printed["best_configs"]["groups"].as_array().unwrap();
    let first = best.iter().find(|g| g["supported"] == true).unwrap();
    assert_eq!(charts.best[0][0], first["parts"][0].as_str().unwrap());
    let n = charts.best_columns.len();
    assert_eq!(charts.best[0].len(), n);
    assert_eq!(charts.best[0][n - 4], first["images"].to_string());
    assert_eq!(
        charts.best[0][n - 2],
        format!("{:.1}%", first["rate"].as_f64().unwrap() * 100.0)
    );
}
