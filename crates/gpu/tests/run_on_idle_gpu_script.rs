//! `scripts/run-on-idle-gpu.sh` driven by a stub `imagelab` whose `gpu-pick` answer is scripted.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/run-on-idle-gpu.sh")
}

/// A stub `imagelab` that logs its arguments and answers `gpu-pick` with `gpus` and `status`.
fn stub(dir: &Path, gpus: &str, status: i32) -> PathBuf {
    let path = dir.join("imagelab");
    let log = dir.join("calls");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho '{gpus}'\nexit {status}\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run(dir: &Path, imagelab: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .env("IMAGELAB", imagelab)
        .current_dir(dir)
        .output()
        .unwrap()
}

const RECORD: &str = "echo \"$IMAGELAB_RUN $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER\" >> runs";

#[test]
fn runs_the_command_on_the_picked_gpus_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    let imagelab = stub(dir.path(), "0,2", 0);
    let args = [
        "--count",
        "2",
        "--times",
        "2",
        "--timeout",
        "60",
        "--min-free-mib",
        "9000",
    ];
    let out = run(
        dir.path(),
        &imagelab,
        &[&args[..], &["--", "sh", "-c", RECORD]].concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let runs = fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs, "1 0,2 PCI_BUS_ID\n2 0,2 PCI_BUS_ID\n");
    let calls = fs::read_to_string(dir.path().join("calls")).unwrap();
    let expected = "gpu-pick --count 2 --wait --timeout 60 --min-free-mib 9000\n";
    assert_eq!(calls, expected.repeat(2));
}

#[test]
fn jobs_file_runs_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let imagelab = stub(dir.path(), "1", 0);
    let jobs = dir.path().join("jobs.txt");
    fs::write(
        &jobs,
        format!("# two jobs\n{RECORD}\n\n{RECORD} && echo second >> runs\n"),
    )
    .unwrap();
    let out = run(dir.path(), &imagelab, &["--jobs", jobs.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let runs = fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs, "1 1 PCI_BUS_ID\n2 1 PCI_BUS_ID\nsecond\n");
}

#[test]
fn nvml_unavailable_and_timeout_statuses_pass_through() {
    for (pick_status, expected) in [(2, 2), (1, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let imagelab = stub(dir.path(), "", pick_status);
        let out = run(
            dir.path(),
            &imagelab,
            &["--timeout", "1", "--", "sh", "-c", RECORD],
        );
        assert_eq!(out.status.code(), Some(expected), "{out:?}");
        assert!(
            !dir.path().join("runs").exists(),
            "the command must not run without a GPU"
        );
    }
}

#[test]
fn a_failed_run_stops_the_loop_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let imagelab = stub(dir.path(), "0", 0);
    let failing = format!("{RECORD}; exit 7");
    let out = run(
        dir.path(),
        &imagelab,
        &["--times", "3", "--", "sh", "-c", &failing],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let runs = fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 1);

    let out = run(
        dir.path(),
        &imagelab,
        &["--times", "2", "--keep-going", "--", "sh", "-c", &failing],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let runs = fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 3);
}

#[test]
fn bad_usage_is_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let imagelab = stub(dir.path(), "0", 0);
    for args in [
        &[][..],
        &["--count", "x", "--", "true"][..],
        &["--bogus"][..],
    ] {
        let out = run(dir.path(), &imagelab, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn background_runs_never_share_a_gpu_that_is_still_starting() {
    // The stub always answers GPU 0, as gpu-pick would before a new run's CUDA context shows up;
    // the script itself must hold the second run until the first one ends.
    let dir = tempfile::tempdir().unwrap();
    let imagelab = stub(dir.path(), "0", 0);
    let job = "echo start $IMAGELAB_RUN >> runs; sleep 0.3; echo end $IMAGELAB_RUN >> runs";
    let args = [
        "--background",
        "--settle",
        "0",
        "--times",
        "2",
        "--",
        "sh",
        "-c",
        job,
    ];
    let out = run(dir.path(), &imagelab, &args);
    assert!(out.status.success(), "{out:?}");
    let runs = fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs, "start 1\nend 1\nstart 2\nend 2\n");
}
