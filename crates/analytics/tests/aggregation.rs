//! Aggregation against a hand-computed fixture log: favorites folded from job and image
//! events (with an unfavorite and a rating-only event), a failed job, corrupt and partial
//! lines, a group under the minimum support.
#![allow(clippy::unwrap_used)]

mod common;

use common::{favorite_job, write_lines, Job, DAY, DAY0};
use imagelab_analytics::aggregate::{GroupStats, Table};
use imagelab_analytics::favorites::EventKind;
use imagelab_analytics::{analyze, append_event, fold_favorites, AnalyzeOptions, FavoriteEvent};

/// 12 alpha jobs (1–6 styled "noir"), 10 beta (dpmpp_2m/karras, a day later), 3 gamma
/// (cfg 4.5, two days later), a failed job, 3 bad lines and a blank one.
fn fixture_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for id in 1..=12 {
        let mut job = Job::new(id, "alpha");
        if id <= 6 {
            job.style = Some("noir");
        }
        lines.push(job.line());
    }
    lines.push("not json at all".into());
    for id in 13..=22 {
        let mut job = Job::new(id, "beta");
        job.sampler = "dpmpp_2m";
        job.scheduler = "karras";
        job.finished_ms = DAY0 + DAY;
        lines.push(job.line());
    }
    lines.push(String::new());
    for id in 23..=25 {
        let mut job = Job::new(id, "gamma");
        job.cfg = 4.5;
        job.finished_ms = DAY0 + 2 * DAY;
        lines.push(job.line());
    }
    let mut failed = Job::new(26, "alpha");
    failed.state = "failed";
    lines.push(failed.line());
    lines.push(r#"{"foo": 1}"#.into());
    for id in [1, 3, 5, 13, 23, 24, 25, 26] {
        lines.push(favorite_job(id));
    }
    lines.push(r#"{"event":"favorite","job":2,"rating":5,"at":1}"#.into());
    lines.push(
        r#"{"event":"favorite","image":"/somewhere/output/job0000000004_000.png","at":2}"#.into(),
    );
    lines.push(r#"{"event":"unfavorite","job":5,"at":3}"#.into());
    lines.push(r#"{"event":"rating","job":7,"rating":3,"at":4}"#.into());
    // A torn last line, as a crash mid-append leaves it.
    lines.push(r#"{"id": 99, "state": "do"#.into());
    lines
}

fn group<'a>(t: &'a Table, key: &str) -> &'a GroupStats {
    t.groups
        .iter()
        .find(|g| g.key == key)
        .unwrap_or_else(|| panic!("no group {key} in {}", t.name))
}

fn dim<'a>(r: &'a imagelab_analytics::Report, name: &str) -> &'a Table {
    r.analysis
        .dimensions
        .iter()
        .chain(&r.analysis.pairs)
        .find(|t| t.name == name)
        .unwrap()
}

fn close(x: f64, want: f64) {
    assert!((x - want).abs() < 1e-4, "{x} vs {want}");
}

#[test]
fn hand_computed_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    write_lines(&log, &fixture_lines());
    let report = analyze(&AnalyzeOptions::new(log)).unwrap();
    let s = &report.summary;
    assert_eq!(s.log_lines.skipped, 3, "{:?}", s.log_lines);
    assert_eq!(s.log_lines.jobs, 26);
    assert_eq!(s.log_lines.events, 12);
    assert_eq!(s.jobs_without_images, 1);
    let a = &report.analysis;
    assert_eq!((a.images, a.favorites), (25, 8));

    let models = dim(&report, "model");
    let alpha = group(models, "alpha");
    assert_eq!(
        (alpha.images, alpha.favorites, alpha.rank),
        (12, 4, Some(1))
    );
    close(alpha.wilson_low, 0.1381);
    close(alpha.wilson_high, 0.6094);
    assert_eq!(alpha.mean_rating, Some(4.0));
    let beta = group(models, "beta");
    assert_eq!((beta.images, beta.favorites, beta.rank), (10, 1, Some(2)));
    close(beta.wilson_low, 0.0179);
    let gamma = group(models, "gamma");
    assert_eq!((gamma.images, gamma.favorites), (3, 3));
    assert!(!gamma.supported);
    assert_eq!(
        gamma.rank, None,
        "below the minimum support: marked, not ranked"
    );
    close(gamma.wilson_low, 0.4385);
    // Ranked groups come first even though gamma's rate is higher.
    assert_eq!(models.groups.last().unwrap().key, "gamma");

    let profiles = dim(&report, "profile");
    let noir = group(profiles, "noir");
    assert_eq!((noir.images, noir.favorites, noir.supported), (6, 4, false));
    let none = group(profiles, "(none)");
    assert_eq!((none.images, none.favorites, none.rank), (19, 4, Some(1)));
    close(none.wilson_low, 0.0851);

    let samplers = dim(&report, "sampler");
    assert_eq!(
        (
            group(samplers, "euler").images,
            group(samplers, "euler").favorites
        ),
        (15, 7)
    );
    close(group(samplers, "euler").wilson_low, 0.2481);
    assert_eq!(group(samplers, "dpmpp_2m").favorites, 1);
    let cfg = dim(&report, "cfg");
    assert_eq!(
        (group(cfg, "6-8").images, group(cfg, "6-8").favorites),
        (22, 5)
    );
    close(group(cfg, "6-8").wilson_high, 0.4344);
    assert_eq!(group(cfg, "4-6").images, 3);
    assert_eq!(group(dim(&report, "size"), "1024x1024").images, 25);
    assert_eq!(group(dim(&report, "steps"), "20").favorites, 8);

    let pair = dim(&report, "model × profile");
    assert_eq!(group(pair, "alpha × noir").favorites, 4);
    assert_eq!(group(pair, "alpha × (none)").favorites, 0);
    assert_eq!(group(pair, "alpha × (none)").images, 6);
    assert_eq!(pair.groups.len(), 4);

    let days: Vec<(&str, u64, u64)> = a
        .over_time
        .iter()
        .map(|d| (d.day.as_str(), d.images, d.favorites))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2025-11-20", 12, 4),
            ("2025-11-21", 10, 1),
            ("2025-11-22", 3, 3)
        ]
    );

    // Only beta's configuration has the support to be ranked (alpha's splits by profile).
    let best = &a.best_configs.groups[0];
    assert_eq!(
        best.parts,
        [
            "beta",
            "(none)",
            "dpmpp_2m",
            "karras",
            "7",
            "20",
            "1024x1024"
        ]
    );
    assert_eq!(best.rank, Some(1));
    let ranked = a
        .best_configs
        .groups
        .iter()
        .filter(|g| g.rank.is_some())
        .count();
    assert_eq!(ranked, 1);
}

#[test]
fn since_and_theme_filters() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    write_lines(&log, &fixture_lines());
    let mut opts = AnalyzeOptions::new(log);
    opts.since_ms = Some(DAY0 + DAY);
    let r = analyze(&opts).unwrap();
    assert_eq!((r.analysis.images, r.analysis.favorites), (13, 4));
    opts.since_ms = None;
    opts.themes = vec!["dark-fantasy".into()];
    assert_eq!(analyze(&opts).unwrap().analysis.images, 0);
}

#[test]
fn events_append_and_fold_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs").join("jobs.log");
    // A torn last line is healed so the event starts on its own line.
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, Job::new(1, "m").line() + "\n{\"id\": 2, \"sta").unwrap();
    let fav = FavoriteEvent::new(EventKind::Favorite, Some(1), None, Some(4)).unwrap();
    append_event(&log, &fav).unwrap();
    append_event(
        &log,
        &FavoriteEvent::new(EventKind::Favorite, None, Some("a/b.png".into()), None).unwrap(),
    )
    .unwrap();
    append_event(
        &log,
        &FavoriteEvent::new(EventKind::Unfavorite, None, Some("b.png".into()), None).unwrap(),
    )
    .unwrap();
    append_event(
        &log,
        &FavoriteEvent::new(EventKind::Rating, Some(1), None, Some(2)).unwrap(),
    )
    .unwrap();
    let set = fold_favorites(&log).unwrap();
    assert_eq!(set.events, 4);
    let job1 = set.lookup(Some(1), "job0000000001_000.png");
    assert!(job1.favorite);
    assert_eq!(job1.rating, Some(2));
    assert!(!set.lookup(None, "/x/a/b.png").favorite);
    assert_eq!(set.starred().len(), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text
        .lines()
        .nth(2)
        .unwrap()
        .starts_with("{\"event\":\"favorite\""));
    // Bad ratings and empty targets are refused before anything is written.
    assert!(FavoriteEvent::new(EventKind::Favorite, Some(1), None, Some(6)).is_err());
    assert!(FavoriteEvent::new(EventKind::Favorite, None, None, None).is_err());
    assert!(fold_favorites(&dir.path().join("absent.log"))
        .unwrap()
        .starred()
        .is_empty());
}

#[test]
fn threads_give_the_same_report_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    write_lines(&log, &fixture_lines());
    let mut opts = AnalyzeOptions::new(log);
    opts.threads = 1;
    let one = analyze(&opts).unwrap();
    for threads in [2, 3, 5, 64] {
        opts.threads = threads;
        assert_eq!(analyze(&opts).unwrap(), one, "{threads} threads");
    }
}

#[test]
fn loras_are_a_dimension_from_prompt_tags_and_the_spec_list() {
    let mut lines = Vec::new();
    for id in 1..=10 {
        let mut job = Job::new(id, "alpha");
        if id <= 6 {
            job.prompt = format!("a fox {id} <lora:ink:0.7>");
        }
        let mut line: serde_json::Value = serde_json::from_str(&job.line()).unwrap();
        if (5..=6).contains(&id) {
            line["spec"]["params"]["loras"] =
                serde_json::json!([{ "name": "detail", "weight": 0.5 }]);
        }
        lines.push(line.to_string());
    }
    for id in [1, 2, 5] {
        lines.push(favorite_job(id));
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    write_lines(&log, &lines);
    let report = analyze(&AnalyzeOptions::new(log)).unwrap();
    let loras = dim(&report, "lora");
    let counts = |key| {
        let g = group(loras, key);
        (g.images, g.favorites)
    };
    assert_eq!(counts("ink"), (4, 2));
    assert_eq!(counts("detail+ink"), (2, 1));
    assert_eq!(counts("(none)"), (4, 0));
}
