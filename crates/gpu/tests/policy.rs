//! The idle policy against scripted fake GPUs: strangers, utilization spikes, grace, selection.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use imagelab_gpu::{
    FakeClock, GpuError, GpuVerdict, IdlePolicy, IdlePolicyConfig, NotIdle, ScriptedProbe,
};

const A: &str = "GPU-aaaaaaaa-0000-0000-0000-000000000000";
const B: &str = "GPU-bbbbbbbb-0000-0000-0000-000000000000";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn two_gpus() -> ScriptedProbe {
    ScriptedProbe::new(FakeClock::new())
        .gpu(0, A, "Fake H200", 143_771)
        .gpu(1, B, "Fake H200", 143_771)
}

/// Feeds one snapshot per second from `from` to `to` inclusive; returns GPU `index`'s verdicts.
fn run(
    policy: &mut IdlePolicy,
    probe: &mut ScriptedProbe,
    own: &BTreeSet<u32>,
    from: u64,
    to: u64,
    index: u32,
) -> Vec<GpuVerdict> {
    (from..=to)
        .map(|t| {
            let samples = probe.snapshot_at(secs(t)).unwrap();
            let verdicts = policy.observe(secs(t), &samples, own);
            verdicts.into_iter().find(|v| v.index == index).unwrap()
        })
        .collect()
}

fn idle_flags(verdicts: &[GpuVerdict]) -> Vec<bool> {
    verdicts.iter().map(|v| v.idle).collect()
}

#[test]
fn idle_after_k_quiet_samples() {
    let mut probe = two_gpus();
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    let v = run(&mut policy, &mut probe, &BTreeSet::new(), 0, 3, 0);
    // K = 3: the third consecutive quiet sample makes it idle.
    assert_eq!(idle_flags(&v), [false, false, true, true]);
    assert_eq!(
        v[0].reasons,
        [NotIdle::Settling {
            quiet_samples: 1,
            needed: 3
        }]
    );
}

#[test]
fn foreign_process_appears_and_leaves() {
    // A stranger holds GPU 0 from t=5 to t=8 at low utilization (loading data, say).
    let mut probe = two_gpus()
        .at(secs(5), 0, |g| g.process_as(4242, 874, "alice"))
        .at(secs(9), 0, |g| g.remove_process(4242));
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    let v = run(&mut policy, &mut probe, &BTreeSet::new(), 0, 12, 0);
    // Idle from t=2; not idle the very sample the stranger shows up (t=5), not before;
    // idle again only after K quiet samples once it left (t=9,10,11 → idle at 11).
    let expected: Vec<bool> = (0..=12).map(|t| (2..5).contains(&t) || t >= 11).collect();
    assert_eq!(idle_flags(&v), expected);
    assert_eq!(v[5].foreign_pids, [4242]);
    assert!(v[5]
        .reasons
        .contains(&NotIdle::ForeignProcesses { pids: vec![4242] }));
    // The other GPU never noticed.
    let other = run(
        &mut IdlePolicy::new(IdlePolicyConfig::default()).unwrap(),
        &mut probe,
        &BTreeSet::new(),
        0,
        12,
        1,
    );
    assert!(other[2..].iter().all(|v| v.idle));
}

#[test]
fn our_own_workers_are_not_strangers() {
    let mut probe = two_gpus().at(secs(0), 0, |g| g.process(777, 20_000));
    let own: BTreeSet<u32> = [777].into();
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    let v = run(&mut policy, &mut probe, &own, 0, 3, 0);
    assert_eq!(idle_flags(&v), [false, false, true, true]);
    // Its 20 GB are ours, so not foreign memory.
    assert_eq!(v[3].foreign_memory_mib, 0);
    // The same process without the PID in our set is a stranger.
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    let v = run(&mut policy, &mut probe, &BTreeSet::new(), 0, 3, 0);
    assert!(v.iter().all(|v| !v.idle && v.foreign_pids == [777]));
}

#[test]
fn utilization_spike_needs_k_consecutive_quiet_samples() {
    // Busy at t=4 only (a stranger's kernel with no listed context, e.g. another container).
    let mut probe = two_gpus()
        .at(secs(4), 0, |g| g.util(95))
        .at(secs(5), 0, |g| g.util(3));
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    let v = run(&mut policy, &mut probe, &BTreeSet::new(), 0, 8, 0);
    assert_eq!(
        idle_flags(&v),
        [false, false, true, true, false, false, false, true, true]
    );
    assert!(v[4].reasons.contains(&NotIdle::Busy {
        utilization_pct: 95,
        threshold_pct: 10
    }));
    assert_eq!(v[5].quiet_samples, 1);
}

#[test]
fn foreign_memory_over_the_floor_is_not_idle() {
    let config = IdlePolicyConfig {
        consecutive_samples: 1,
        ..IdlePolicyConfig::default()
    };
    // 300 MiB of graphics memory is under the 512 MiB floor; 600 MiB is not.
    let mut probe = two_gpus()
        .at(secs(0), 0, |g| g.base_memory(300))
        .at(secs(2), 0, |g| g.base_memory(600));
    let mut policy = IdlePolicy::new(config).unwrap();
    let v = run(&mut policy, &mut probe, &BTreeSet::new(), 0, 2, 0);
    assert_eq!(idle_flags(&v), [true, true, false]);
    assert_eq!(
        v[2].reasons,
        [NotIdle::ForeignMemory {
            used_mib: 600,
            floor_mib: 512
        }]
    );
}

#[test]
fn grace_window_after_lease_then_stranger_detection() {
    let config = IdlePolicyConfig {
        lease_grace_ms: 10_000,
        yield_immediately: true,
        ..IdlePolicyConfig::default()
    };
    // We lease GPU 0 at t=3; our worker's context (PID 900, not yet registered) appears at
    // t=4 at full load. At t=20 a stranger (PID 5000) joins.
    let mut probe = two_gpus()
        .at(secs(4), 0, |g| g.process(900, 8_000).util(100))
        .at(secs(20), 0, |g| g.process(5000, 2_000));
    let mut policy = IdlePolicy::new(config).unwrap();
    let none = BTreeSet::new();
    let before = run(&mut policy, &mut probe, &none, 0, 2, 0);
    assert!(before[2].idle);
    policy.lease(A, secs(3));
    let during = run(&mut policy, &mut probe, &none, 3, 12, 0);
    for v in &during {
        assert!(!v.idle && v.leased && v.in_grace, "{v:?}");
        assert!(v.foreign_pids.is_empty() && !v.should_yield, "{v:?}");
        assert_eq!(v.reasons[0], NotIdle::Leased);
    }
    // Grace over (t ≥ 13) and the worker registered: still no stranger, no yield.
    let own: BTreeSet<u32> = [900].into();
    let after = run(&mut policy, &mut probe, &own, 13, 19, 0);
    assert!(after
        .iter()
        .all(|v| !v.in_grace && !v.should_yield && v.foreign_pids.is_empty()));
    // The stranger: reported at once, and the job should yield because the user asked.
    let stranger = run(&mut policy, &mut probe, &own, 20, 20, 0);
    assert_eq!(stranger[0].foreign_pids, [5000]);
    assert!(stranger[0].should_yield);
}

#[test]
fn unregistered_process_after_grace_is_a_stranger_but_job_finishes_by_default() {
    let config = IdlePolicyConfig {
        lease_grace_ms: 5_000,
        ..IdlePolicyConfig::default()
    };
    let mut probe = two_gpus().at(secs(1), 0, |g| g.process(900, 8_000).util(100));
    let mut policy = IdlePolicy::new(config).unwrap();
    policy.lease(A, secs(0));
    let v = run(&mut policy, &mut probe, &BTreeSet::new(), 0, 6, 0);
    assert!(v[4].in_grace && v[4].foreign_pids.is_empty());
    assert!(!v[5].in_grace && v[5].foreign_pids == [900]);
    // yield_immediately is off by default: the running job finishes.
    assert!(!v[5].should_yield);
}

#[test]
fn released_gpu_is_free_again_without_waiting_k_samples() {
    let mut probe = two_gpus()
        .at(secs(0), 0, |g| g.process(900, 8_000).util(100))
        .at(secs(5), 0, |g| g.util(0));
    let own: BTreeSet<u32> = [900].into();
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    policy.lease(A, secs(0));
    let leased = run(&mut policy, &mut probe, &own, 0, 4, 0);
    assert!(leased.iter().all(|v| !v.idle));
    policy.release(A);
    // Our own load never broke the quiet streak, so the first sample after release is idle.
    let released = run(&mut policy, &mut probe, &own, 5, 5, 0);
    assert!(released[0].idle, "{:?}", released[0]);
}

#[test]
fn our_jobs_utilization_tail_after_release_is_not_a_stranger() {
    // NVML's utilization covers the last period, so our job's load lingers a sample or two.
    let mut probe = two_gpus().at(secs(0), 0, |g| g.process(900, 8_000).util(100));
    let own: BTreeSet<u32> = [900].into();
    let mut policy = IdlePolicy::new(IdlePolicyConfig::default()).unwrap();
    policy.lease(A, secs(0));
    run(&mut policy, &mut probe, &own, 0, 4, 0);
    policy.release(A);
    let after = run(&mut policy, &mut probe, &own, 5, 7, 0);
    assert_eq!(idle_flags(&after), [true, true, false], "{after:?}");
    assert!(
        matches!(after[2].reasons[0], imagelab_gpu::NotIdle::Busy { .. }),
        "load that lasts is somebody's: {:?}",
        after[2].reasons
    );
}

#[test]
fn selection_by_uuid_and_index() {
    let by_index = IdlePolicyConfig {
        gpus: vec!["1".into()],
        consecutive_samples: 1,
        ..IdlePolicyConfig::default()
    };
    let mut probe = two_gpus();
    let samples = probe.snapshot_at(secs(0)).unwrap();
    let v = IdlePolicy::new(by_index)
        .unwrap()
        .observe(secs(0), &samples, &BTreeSet::new());
    assert_eq!((v[0].selected, v[0].idle), (false, false));
    assert_eq!(v[0].reasons, [NotIdle::NotSelected]);
    assert_eq!((v[1].selected, v[1].idle), (true, true));

    // UUIDs match regardless of case and of nvidia-smi's "GPU-" prefix.
    for uuid in [
        A,
        "gpu-AAAAAAAA-0000-0000-0000-000000000000",
        "aaaaaaaa-0000-0000-0000-000000000000",
    ] {
        let config = IdlePolicyConfig {
            gpus: vec![uuid.into()],
            ..IdlePolicyConfig::default()
        };
        let policy = IdlePolicy::new(config).unwrap();
        let selected: Vec<bool> = samples.iter().map(|g| policy.is_selected(g)).collect();
        assert_eq!(selected, [true, false], "{uuid}");
    }

    let typo = IdlePolicyConfig {
        gpus: vec![B.into(), "GPU-nope".into(), "7".into()],
        ..IdlePolicyConfig::default()
    };
    let policy = IdlePolicy::new(typo).unwrap();
    assert_eq!(policy.unmatched_selectors(&samples), ["GPU-nope", "7"]);
}

#[test]
fn bad_settings_are_errors() {
    for config in [
        IdlePolicyConfig {
            consecutive_samples: 0,
            ..IdlePolicyConfig::default()
        },
        IdlePolicyConfig {
            utilization_threshold_pct: 0,
            ..IdlePolicyConfig::default()
        },
        IdlePolicyConfig {
            utilization_threshold_pct: 101,
            ..IdlePolicyConfig::default()
        },
        IdlePolicyConfig {
            sample_interval_ms: 0,
            ..IdlePolicyConfig::default()
        },
        IdlePolicyConfig {
            gpus: vec![" ".into()],
            ..IdlePolicyConfig::default()
        },
    ] {
        assert!(matches!(
            IdlePolicy::new(config),
            Err(GpuError::InvalidConfig { .. })
        ));
    }
}

#[test]
fn config_has_serde_defaults_and_rejects_unknown_fields() {
    let config: IdlePolicyConfig =
        serde_json::from_str(r#"{"gpus": ["0"], "yield_immediately": true}"#).unwrap();
    assert_eq!(config.consecutive_samples, 3);
    assert_eq!(config.foreign_memory_floor_mib, 512);
    assert!(config.yield_immediately);
    assert!(serde_json::from_str::<IdlePolicyConfig>(r#"{"gpu": ["0"]}"#).is_err());
}
