//! The night page's rules: theme samples reproduce per seed, the form's requests and
//! refusals, the next local clock time, and the status in words.

use super::*;

const HOUR: u64 = 3_600_000;
/// 2026-12-02 22:30 UTC.
const NOW: u64 = 1_796_250_600_000;

fn form(end: RunEnd) -> NightForm {
    NightForm {
        themes: vec!["knights".into()],
        models: vec![],
        profile: None,
        safe: false,
        mature: false,
        end,
    }
}

#[test]
fn the_next_clock_time_is_today_or_tomorrow_on_the_local_clock() {
    // 22:30 UTC is 23:30 at UTC+1: 07:00 is tomorrow 06:00 UTC.
    assert_eq!(
        next_local_time_ms(NOW, 3600, 7, 0),
        NOW + 7 * HOUR + HOUR / 2
    );
    // 23:45 local is still today.
    assert_eq!(next_local_time_ms(NOW, 3600, 23, 45), NOW + HOUR / 4);
    // West of UTC: 22:30 UTC is 17:30 at UTC-5; 18:00 local is half an hour away.
    assert_eq!(next_local_time_ms(NOW, -5 * 3600, 18, 0), NOW + HOUR / 2);
    // The very minute now is tomorrow's.
    assert_eq!(next_local_time_ms(NOW, 0, 22, 30), NOW + 24 * HOUR);
}

#[test]
fn the_form_becomes_a_request_or_names_its_field() {
    let until = form(RunEnd::Until("07:00".into()))
        .request(NOW, 0, false)
        .unwrap();
    assert_eq!(until.ends_at_ms, Some(NOW + 8 * HOUR + HOUR / 2));
    assert_eq!(
        (until.duration_secs, until.max_jobs, until.mature),
        (None, None, None)
    );
    let jobs = form(RunEnd::Jobs("40".into()))
        .request(NOW, 0, true)
        .unwrap();
    assert_eq!(
        (jobs.max_jobs, jobs.duration_secs),
        (Some(40), Some(JOBS_WINDOW_SECS))
    );
    assert_eq!(
        jobs.mature,
        Some(false),
        "an allowed mature mode left off is sent as off"
    );
    let bad = |f: NightForm| f.request(NOW, 0, true).unwrap_err().field;
    assert_eq!(bad(form(RunEnd::Until("7 pm".into()))), "until");
    assert_eq!(bad(form(RunEnd::Jobs("0".into()))), "max_jobs");
    assert_eq!(
        bad(NightForm {
            themes: vec![],
            ..form(RunEnd::Jobs("3".into()))
        }),
        "themes"
    );
    assert_eq!(
        bad(NightForm {
            safe: true,
            mature: true,
            ..form(RunEnd::Jobs("3".into()))
        }),
        "mature"
    );
    let styled = NightForm {
        profile: Some("noir".into()),
        safe: true,
        models: vec!["a.safetensors".into()],
        ..form(RunEnd::Jobs("3".into()))
    }
    .request(NOW, 0, false)
    .unwrap();
    assert_eq!(styled.profile.as_deref(), Some("noir"));
    assert!(styled.safe);
    assert_eq!(styled.models, ["a.safetensors"]);
}

#[test]
fn themes_show_their_description_and_samples_drawn_from_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("knights.yaml"),
        "description: Knights in odd places\ntemplates: [\"a {red|blue|green|gold} knight in a {forest|castle|desert|harbour}\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "templates: [\"a __missing__\"]\n",
    )
    .unwrap();
    let wildcards = Wildcards::new();
    let infos = theme_infos(dir.path(), &wildcards, 7);
    assert_eq!(
        infos.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["broken", "knights"]
    );
    assert!(
        infos[0].samples.as_ref().unwrap_err().contains("missing"),
        "{:?}",
        infos[0].samples
    );
    let knights = &infos[1];
    assert_eq!(knights.description, "Knights in odd places");
    let samples = knights.samples.clone().unwrap();
    assert_eq!(samples.len(), SAMPLES as usize);
    assert!(samples
        .iter()
        .all(|s| s.starts_with("a ") && s.contains(" knight in a ")));
    assert_eq!(
        theme_infos(dir.path(), &wildcards, 7)[1].samples,
        knights.samples
    );
    let others: Vec<_> = (8..16)
        .map(|seed| theme_infos(dir.path(), &wildcards, seed)[1].samples.clone())
        .collect();
    assert!(
        others.iter().any(|s| *s != knights.samples),
        "the seed does not change the samples"
    );
}

#[test]
fn the_status_reads_as_pace_and_time_left() {
    let status = NightStatus {
        run_id: "night-1".into(),
        state: NightState::Running,
        reason: None,
        themes: vec!["knights".into(), "castles:2".into()],
        models: vec!["a.safetensors".into()],
        started_at_ms: NOW - 2 * HOUR,
        ends_at_ms: NOW + 6 * HOUR + 10 * 60_000,
        finished_at_ms: None,
        max_jobs: None,
        submitted: 65,
        queued: 2,
        running: 1,
        done: 60,
        failed: 2,
        seed: 9,
    };
    let view = run_view(&status, NOW, None);
    assert!(view.running);
    assert_eq!(
        view.counts,
        "60 done · 2 queued · 1 running · 2 failed of 65 submitted"
    );
    assert_eq!(view.pace, "30.0 images per hour · 6 h 10 min left");
    assert!(view.title.contains("knights, castles:2"), "{}", view.title);
    let done = NightStatus {
        state: NightState::Finished,
        reason: Some("reached 65 jobs".into()),
        finished_at_ms: Some(NOW - HOUR),
        queued: 0,
        running: 0,
        ..status
    };
    let view = run_view(&done, NOW, None);
    assert!(!view.running);
    assert_eq!(
        view.pace,
        "60.0 images per hour · finished: reached 65 jobs"
    );
    // Stopped at its job limit right after submitting: the pace runs to the last image.
    let early = NightStatus {
        finished_at_ms: Some(NOW - 2 * HOUR + 1000),
        ..done.clone()
    };
    assert_eq!(
        run_view(&early, NOW, Some(NOW - HOUR)).pace,
        "60.0 images per hour · finished: reached 65 jobs"
    );
    // Jobs still to make: the pace runs to now.
    let busy = NightStatus { queued: 3, ..early };
    assert!(run_view(&busy, NOW, Some(NOW - HOUR))
        .pace
        .starts_with("30.0 images per hour"));
    assert_eq!(human_duration(59_000), "under a minute");
    assert_eq!(human_duration(12 * 60_000), "12 min");
}
