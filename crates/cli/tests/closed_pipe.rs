//! Every command ends quietly when its output is closed (`imagelab jobs | head -3`), as
//! `ls` and `git` do: no panic and no backtrace, in text and `--json` modes, with and
//! without a daemon. The pipe's read end is closed before the command starts, so its first
//! write fails every time.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::start_daemon;
use common::Sandbox;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

fn into_closed_pipe(sb: &Sandbox, args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = sb
        .imagelab()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("Broken pipe")
            && !stderr.contains("backtrace"),
        "imagelab {args:?} complained about the closed pipe:\n{stderr}"
    );
    // Killed by SIGPIPE, as `ls | head` is, or done before it wrote anything that failed.
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "imagelab {args:?} ended with {:?}:\n{stderr}",
        out.status
    );
}

#[test]
fn commands_end_quietly_when_their_output_is_closed() {
    let sb = Sandbox::new();
    for args in [
        &[
            "prompts",
            "--template",
            "a {red|blue|green} {fox|owl}",
            "--all",
            "--max",
            "100",
        ][..],
        &[
            "prompts",
            "--template",
            "a {red|blue} fox",
            "--all",
            "--json",
        ],
        &["profiles"],
        &["profiles", "--json"],
    ] {
        into_closed_pipe(&sb, args);
    }
    let _daemon = start_daemon(&sb, &[]);
    for args in [
        &["queue", "status"][..],
        &["daemon", "status"],
        &["jobs"],
        &["jobs", "--json"],
        &["models", "--json"],
        &["favs", "--json"],
    ] {
        into_closed_pipe(&sb, args);
    }
}
