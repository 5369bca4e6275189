//! The pure feed logic: depth, limits, rotation and reproducible seeds.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::night::testlab::{record, request, TestLab, T0};
use imagelab_core::night::NightRequest;
use std::collections::HashSet;

fn submitted(step: Step) -> Vec<NewJob> {
    match step {
        Step::Submit(jobs) => jobs,
        Step::Finish(cause, reason) => panic!("finished early: {cause:?} {reason}"),
    }
}

#[test]
fn the_queue_is_topped_up_to_two_jobs_per_worker_and_no_further() {
    let lab = TestLab::new();
    let req = request(&["knights"]);
    let catalog = lab.catalog(&req);
    let run = record(req);
    assert_eq!(
        target_depth(0),
        2,
        "no worker reported still keeps one worker's share"
    );
    assert_eq!(target_depth(3), 6);
    assert_eq!(submitted(step(&run, &catalog, T0, 0, 1)).len(), 2);
    assert_eq!(submitted(step(&run, &catalog, T0, 1, 1)).len(), 1);
    assert!(submitted(step(&run, &catalog, T0, 2, 1)).is_empty());
    assert!(submitted(step(&run, &catalog, T0, 9, 3)).is_empty());
    assert_eq!(submitted(step(&run, &catalog, T0, 2, 3)).len(), 4);
}

#[test]
fn the_run_ends_at_its_time_and_at_its_job_limit() {
    let lab = TestLab::new();
    let req = NightRequest {
        max_jobs: Some(5),
        ..request(&["knights"])
    };
    let catalog = lab.catalog(&req);
    let mut run = record(req);
    assert!(matches!(
        step(&run, &catalog, run.ends_at_ms, 0, 1),
        Step::Finish(EndCause::Time, _)
    ));
    run.submitted = 4;
    // One left: never more than the limit, however many workers wait.
    assert_eq!(submitted(step(&run, &catalog, T0, 0, 8)).len(), 1);
    run.submitted = 5;
    match step(&run, &catalog, T0, 0, 8) {
        Step::Finish(EndCause::MaxJobs, reason) => assert!(reason.contains('5'), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jobs_are_background_night_jobs_that_record_their_origin() {
    let lab = TestLab::new();
    let req = request(&["knights"]);
    let catalog = lab.catalog(&req);
    let run = record(req);
    let job = job_at(&run, &catalog, 3).unwrap();
    let (prompt_seed, image_seed) = seeds_at(42, 3);
    assert_eq!(job.priority, Priority::Background);
    assert_eq!(job.source, Source::NightRun);
    let spec = &job.spec;
    assert_eq!(spec.theme.as_deref(), Some("knights"));
    assert_eq!(spec.theme_hash.as_deref().map(str::len), Some(12));
    assert!(spec
        .template
        .as_deref()
        .unwrap()
        .contains("{red|blue|green}"));
    assert_eq!(spec.prompt_seed, Some(prompt_seed));
    assert_eq!(spec.night_run.as_deref(), Some("night-test"));
    assert_eq!(spec.style.as_deref(), Some("noir"));
    assert_eq!(spec.params.seed, image_seed);
    assert!(
        spec.params.prompt.ends_with(", film noir"),
        "{}",
        spec.params.prompt
    );
    assert_eq!(
        spec.params.model, "c.safetensors",
        "the settings file's fallback"
    );
    assert_eq!((spec.params.width, spec.params.batch), (512, 1));
    // The recorded prompt seed alone remakes the prompt.
    let again = catalog.themes[0]
        .theme
        .generate_from_prompt_seed(prompt_seed)
        .unwrap();
    assert!(spec.params.prompt.starts_with(&again.prompt));
}

#[test]
fn the_same_run_seed_gives_the_same_jobs_and_another_seed_other_ones() {
    let lab = TestLab::new();
    let req = request(&["knights", "castles"]);
    let catalog = lab.catalog(&req);
    let sequence = |seed: u64| -> Vec<(String, i64, u64)> {
        let mut run = record(req.clone());
        run.seed = seed;
        (0..40)
            .map(|i| {
                let spec = job_at(&run, &catalog, i).unwrap().spec;
                (
                    spec.params.prompt,
                    spec.params.seed,
                    spec.prompt_seed.unwrap(),
                )
            })
            .collect()
    };
    let first = sequence(42);
    assert_eq!(first, sequence(42));
    assert_ne!(first, sequence(43));
    let image_seeds: HashSet<i64> = first.iter().map(|j| j.1).collect();
    let prompt_seeds: HashSet<u64> = first.iter().map(|j| j.2).collect();
    assert_eq!((image_seeds.len(), prompt_seeds.len()), (40, 40));
    assert!(first.iter().all(|j| j.1 >= 0 && j.1 < (1 << 53)));
}

#[test]
fn a_model_and_a_theme_hold_for_a_whole_stretch() {
    let lab = TestLab::new();
    // knights takes the settings file's model c; castles its own a, b, b.
    let catalog = lab.catalog(&request(&["knights", "castles"]));
    let slots: Vec<(usize, String)> = (0..12 * STRETCH)
        .map(|i| {
            let (t, m) = slot(&catalog, STRETCH, i);
            (t, m.to_string())
        })
        .collect();
    for (i, pair) in slots.windows(2).enumerate() {
        if i as u64 / STRETCH == (i as u64 + 1) / STRETCH {
            assert_eq!(
                pair[0],
                pair[1],
                "changed inside a stretch at job {}",
                i + 1
            );
        }
    }
    let blocks: Vec<(usize, &str)> = slots
        .iter()
        .step_by(STRETCH as usize)
        .map(|(t, m)| (*t, m.as_str()))
        .collect();
    let castles_models: Vec<&str> = blocks.iter().filter(|b| b.0 == 1).map(|b| b.1).collect();
    assert_eq!(
        castles_models,
        ["b.safetensors", "a.safetensors", "b.safetensors"]
            .iter()
            .cycle()
            .take(6)
            .copied()
            .collect::<Vec<_>>(),
        "castles' own list, b weighted 2, one model per visit"
    );
    assert!(blocks
        .iter()
        .filter(|b| b.0 == 0)
        .all(|b| b.1 == "c.safetensors"));
    assert_eq!(
        blocks.iter().map(|b| b.0).collect::<Vec<_>>()[..4],
        [0, 1, 0, 1]
    );

    // A run-wide list advances once per round of themes, so every theme of a round
    // shares the model the workers hold.
    let req = NightRequest {
        models: vec!["a".into(), "b.safetensors".into()],
        themes: vec!["knights:2".into(), "castles".into()],
        ..request(&[])
    };
    let catalog = lab.catalog(&req);
    let blocks: Vec<(usize, &str)> = (0..6)
        .map(|b| slot(&catalog, STRETCH, b * STRETCH))
        .collect();
    let a = "a.safetensors";
    let b = "b.safetensors";
    assert_eq!(blocks, [(0, a), (1, a), (0, a), (0, b), (1, b), (0, b)]);
}

#[test]
fn weighted_cycles_spread_the_turns() {
    assert_eq!(weighted_cycle(&[1, 1]), vec![0, 1]);
    assert_eq!(weighted_cycle(&[2, 1]), vec![0, 1, 0]);
    assert_eq!(weighted_cycle(&[1, 3]), vec![1, 0, 1, 1]);
    assert!(weighted_cycle(&[]).is_empty());
}

#[test]
fn safe_mode_adds_the_safety_negative_and_both_modes_are_refused() {
    let mut lab = TestLab::new();
    let req = request(&["knights"]);
    let plain = job_at(&record(req.clone()), &lab.catalog(&req), 0).unwrap();
    assert!(!plain.spec.params.negative.contains("nsfw"));
    lab.options.settings.safe = true;
    let safe = job_at(&record(req.clone()), &lab.catalog(&req), 0).unwrap();
    assert!(safe.spec.params.negative.starts_with("blurry, "));
    assert!(
        safe.spec.params.negative.contains("nsfw"),
        "{}",
        safe.spec.params.negative
    );
    assert_eq!(safe.spec.params.prompt, plain.spec.params.prompt);
    lab.options.settings.mature = true;
    let err = Catalog::load(&req, &lab.options, &lab.folders()).unwrap_err();
    assert!(
        matches!(&err, crate::night::NightError::Invalid { field, .. } if field == "night.mature"),
        "{err:?}"
    );
}

#[test]
fn a_request_can_name_the_profile_and_narrow_the_content_but_not_widen_it() {
    let mut lab = TestLab::new();
    // The profile replaces the theme's own (castles has none, knights has noir).
    let req = NightRequest {
        profile: Some("noir".into()),
        ..request(&["castles"])
    };
    let job = job_at(&record(req.clone()), &lab.catalog(&req), 0).unwrap();
    assert_eq!(job.spec.style.as_deref(), Some("noir"));
    assert!(
        job.spec.params.prompt.ends_with(", film noir"),
        "{}",
        job.spec.params.prompt
    );
    // Safe from the request: the safety negative, though the settings say nothing.
    let safe = NightRequest {
        safe: true,
        ..request(&["knights"])
    };
    let job = job_at(&record(safe.clone()), &lab.catalog(&safe), 0).unwrap();
    assert!(
        job.spec.params.negative.contains("nsfw"),
        "{}",
        job.spec.params.negative
    );
    // Mature from a request alone is refused, naming the field and the setting.
    let mature = NightRequest {
        mature: Some(true),
        ..request(&["spicy"])
    };
    let err = Catalog::load(&mature, &lab.options, &lab.folders()).unwrap_err();
    assert!(
        matches!(&err, crate::night::NightError::Invalid { field, message } if field == "mature" && message.contains("night: {mature: true}")),
        "{err:?}"
    );
    // Where the settings allow it, mature works; the request may still turn it off.
    lab.options.settings.mature = true;
    assert!(Catalog::load(&mature, &lab.options, &lab.folders()).is_ok());
    let off = NightRequest {
        mature: Some(false),
        ..request(&["spicy"])
    };
    assert!(
        Catalog::load(&off, &lab.options, &lab.folders()).is_err(),
        "mature: false still allowed the mature profile"
    );
    let both = NightRequest {
        safe: true,
        mature: Some(true),
        ..request(&["knights"])
    };
    assert!(Catalog::load(&both, &lab.options, &lab.folders()).is_err());
}

/// A file the family rules read as a PixArt-Σ transformer (one marker tensor).
fn write_pixart_marker(path: &std::path::Path) {
    let header =
        br#"{"adaln_single.linear.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 4]);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_pixart_model_gets_its_recommended_steps_and_cfg_where_nothing_else_set_them() {
    let lab = TestLab::new();
    write_pixart_marker(&lab.dir.path().join("models/checkpoints/pix.safetensors"));
    let on = |model: &str| {
        let req = NightRequest {
            models: vec![model.to_string()],
            ..request(&["castles"])
        };
        let catalog = lab.catalog(&req);
        let job = job_at(&record(req), &catalog, 0).unwrap();
        (job.spec.params.steps, job.spec.params.cfg)
    };
    // castles sets only the size: PixArt-Σ's 20 steps and CFG 4.5 apply.
    assert_eq!(on("pix"), (20, 4.5));
    // An SD model (here a file no rule reads) keeps the settings file's defaults.
    let stock = imagelab_core::config::GenerationDefaults::default();
    assert_eq!(on("a"), (stock.steps, stock.cfg));
    // A theme's own steps win: knights draws 20 or 30; CFG still takes the recommendation.
    let req = NightRequest {
        models: vec!["pix".into()],
        ..request(&["knights"])
    };
    let catalog = lab.catalog(&req);
    let run = record(req);
    for index in 0..6 {
        let params = job_at(&run, &catalog, index).unwrap().spec.params;
        assert!([20, 30].contains(&params.steps), "{}", params.steps);
        assert_eq!(params.cfg, 4.5);
    }
}
