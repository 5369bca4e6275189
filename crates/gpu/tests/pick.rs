//! `gpu-pick` against scripted GPUs and a fake clock: counts, free memory, waiting, exit statuses.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use imagelab_gpu::{
    cuda_visible_devices, pick, Clock, FakeClock, IdlePolicyConfig, NotIdle, PickError,
    PickOptions, ScriptedProbe, EXIT_NOT_ENOUGH_IDLE, EXIT_NVML_UNAVAILABLE,
};

const UUIDS: [&str; 3] = [
    "GPU-00000000-0000-0000-0000-000000000000",
    "GPU-11111111-1111-1111-1111-111111111111",
    "GPU-22222222-2222-2222-2222-222222222222",
];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Three 80 GB GPUs; GPU 1 has a stranger's job until t=30 s.
fn machine(clock: &FakeClock) -> ScriptedProbe {
    ScriptedProbe::new(clock.clone())
        .gpu(0, UUIDS[0], "Fake H100", 81_559)
        .gpu(1, UUIDS[1], "Fake H100", 81_559)
        .gpu(2, UUIDS[2], "Fake H100", 81_559)
        .at(secs(0), 1, |g| g.process_as(3131, 60_000, "bob").util(99))
        .at(secs(30), 1, |g| g.clear_processes().util(0))
}

fn options(count: usize) -> PickOptions {
    PickOptions {
        count,
        ..PickOptions::default()
    }
}

#[test]
fn picks_lowest_idle_indices_after_k_samples() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let picked = pick(
        &mut probe,
        &IdlePolicyConfig::default(),
        &options(2),
        &mut clock,
    )
    .unwrap();
    assert_eq!(cuda_visible_devices(&picked), "0,2");
    assert_eq!(picked[1].uuid, UUIDS[2]);
    // K = 3 samples, one second apart.
    assert_eq!(probe.snapshots_taken(), 3);
    assert_eq!(clock.now(), secs(2));
}

#[test]
fn not_enough_idle_is_exit_1_with_reasons() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let err = pick(
        &mut probe,
        &IdlePolicyConfig::default(),
        &options(3),
        &mut clock,
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_NOT_ENOUGH_IDLE);
    match &err {
        PickError::NotEnoughIdle {
            wanted,
            idle,
            unpicked,
        } => {
            assert_eq!((*wanted, idle.as_slice()), (3, [0, 2].as_slice()));
            assert_eq!(unpicked[0].index, 1);
            assert!(unpicked[0]
                .reasons
                .contains(&NotIdle::ForeignProcesses { pids: vec![3131] }));
        }
        other => panic!("expected NotEnoughIdle, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("2 of the 3") && message.contains("PID 3131"),
        "{message}"
    );
    // Gave up after K samples rather than waiting.
    assert_eq!(probe.snapshots_taken(), 3);
}

#[test]
fn more_than_selected_fails_at_once_even_when_waiting() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let config = IdlePolicyConfig {
        gpus: vec!["0".into(), UUIDS[2].into()],
        ..IdlePolicyConfig::default()
    };
    let opts = PickOptions {
        wait: true,
        ..options(3)
    };
    let err = pick(&mut probe, &config, &opts, &mut clock).unwrap_err();
    assert!(
        matches!(
            err,
            PickError::TooFewSelected {
                wanted: 3,
                selected: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), EXIT_NOT_ENOUGH_IDLE);
    assert_eq!(probe.snapshots_taken(), 1);
}

#[test]
fn selection_limits_what_is_picked() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let config = IdlePolicyConfig {
        gpus: vec![UUIDS[2].into()],
        ..IdlePolicyConfig::default()
    };
    let picked = pick(&mut probe, &config, &options(1), &mut clock).unwrap();
    assert_eq!(cuda_visible_devices(&picked), "2");
}

#[test]
fn min_free_mib_skips_gpus_without_room() {
    let mut clock = FakeClock::new();
    // GPU 0 has 79 GB of our own worker's memory on it: idle, but only ~2.5 GB free.
    let mut probe = machine(&clock).at(secs(0), 0, |g| g.process(42, 79_000));
    let opts = PickOptions {
        min_free_mib: 10_000,
        own_pids: [42].into(),
        ..options(1)
    };
    let picked = pick(&mut probe, &IdlePolicyConfig::default(), &opts, &mut clock).unwrap();
    assert_eq!(cuda_visible_devices(&picked), "2");

    let opts = PickOptions { count: 2, ..opts };
    let err = pick(&mut probe, &IdlePolicyConfig::default(), &opts, &mut clock).unwrap_err();
    let PickError::NotEnoughIdle { unpicked, .. } = &err else {
        panic!("expected NotEnoughIdle, got {err:?}");
    };
    assert!(unpicked[0].reasons.contains(&NotIdle::LowFreeMemory {
        free_mib: 2_559,
        min_free_mib: 10_000
    }));
}

#[test]
fn wait_until_the_stranger_leaves() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let opts = PickOptions {
        wait: true,
        timeout: Some(secs(60)),
        ..options(3)
    };
    let picked = pick(&mut probe, &IdlePolicyConfig::default(), &opts, &mut clock).unwrap();
    assert_eq!(cuda_visible_devices(&picked), "0,1,2");
    // GPU 1 is quiet from t=30; the third quiet sample is t=32.
    assert_eq!(clock.now(), secs(32));
}

#[test]
fn wait_with_timeout_gives_up_exit_1() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let opts = PickOptions {
        wait: true,
        timeout: Some(Duration::from_millis(10_500)),
        ..options(3)
    };
    let err = pick(&mut probe, &IdlePolicyConfig::default(), &opts, &mut clock).unwrap_err();
    assert!(matches!(err, PickError::TimedOut { .. }), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_NOT_ENOUGH_IDLE);
    // Looked at 0..=10 s and once more exactly at the deadline, never past it.
    assert_eq!(clock.now(), Duration::from_millis(10_500));
    assert_eq!(probe.snapshots_taken(), 12);
}

#[test]
fn nvml_unavailable_is_exit_2() {
    let mut clock = FakeClock::new();
    let mut probe = ScriptedProbe::unavailable("could not load libnvidia-ml.so.1");
    let err = pick(
        &mut probe,
        &IdlePolicyConfig::default(),
        &options(1),
        &mut clock,
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_NVML_UNAVAILABLE);
    assert!(err.to_string().contains("libnvidia-ml.so.1"), "{err}");
}

#[test]
fn zero_count_is_a_usage_error() {
    let mut clock = FakeClock::new();
    let mut probe = machine(&clock);
    let err = pick(
        &mut probe,
        &IdlePolicyConfig::default(),
        &options(0),
        &mut clock,
    )
    .unwrap_err();
    assert!(matches!(err, PickError::InvalidOptions(_)));
    assert_eq!(probe.snapshots_taken(), 0);
}
