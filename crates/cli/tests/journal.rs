//! The daemon under systemd sends its lines to the journal with their fields: the test is
//! the journal. It binds a datagram socket, and runs `imagelab daemon` in a private mount
//! namespace (`unshare -m`, as root) where that socket is `/run/systemd/journal/socket`,
//! with `JOURNAL_STREAM` naming the daemon's stderr as systemd would. A job's lines arrive
//! with `SPAN_NAME=job` and `IMAGELAB_ID`; the log file is written as well. With a
//! `JOURNAL_STREAM` that is not its stderr (a variable inherited from elsewhere), nothing
//! goes to the journal.
#![allow(clippy::unwrap_used)]

mod common;

use common::daemon::{imagelab, stdout, submit_tiny, Running};
use common::{tiny_sandbox, Sandbox};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the rest of the command line with `$JOURNAL_DIR` mounted on /run/systemd/journal.
const IN_NAMESPACE: &str = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal \
    && mount --bind \"$JOURNAL_DIR\" /run/systemd/journal && exec \"$@\"";

fn namespaces_work() -> bool {
    Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs tmpfs /run"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One journal entry: its fields (native protocol, plain or length-prefixed values).
fn parse_entry(datagram: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.insert(key, String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            rest = &rest[(end + 1).min(rest.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let after = &rest[end + 1..];
            let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&after[8..8 + len]).into_owned();
            // SPAN_NAME repeats, once per span: keep them all.
            fields
                .entry(key)
                .and_modify(|v: &mut String| {
                    v.push(',');
                    v.push_str(&value)
                })
                .or_insert(value);
            rest = &after[(8 + len + 1).min(after.len())..];
        }
    }
    fields
}

type Entry = BTreeMap<String, String>;

/// The entries that arrive until `until` holds of them, or `limit` has passed.
fn receive_all(
    socket: &UnixDatagram,
    limit: Duration,
    until: impl Fn(&[Entry]) -> bool,
) -> Vec<Entry> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < deadline && !until(&entries) {
        if let Ok(n) = socket.recv(&mut buf) {
            if n > 0 {
                entries.push(parse_entry(&buf[..n]));
            }
        }
    }
    entries
}

fn start_in_namespace(
    sb: &Sandbox,
    journal_dir: &std::path::Path,
    stream: Option<String>,
) -> (Running, std::path::PathBuf) {
    let _ = std::fs::remove_file(sb.path("home/daemon.json"));
    let err_path = sb.path("daemon.err");
    let err = std::fs::File::create(&err_path).unwrap();
    let meta = std::fs::metadata(&err_path).unwrap();
    let stream = stream.unwrap_or_else(|| format!("{}:{}", meta.dev(), meta.ino()));
    let real = sb.imagelab();
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", IN_NAMESPACE, "sh"])
        .arg(real.get_program())
        .args(["daemon", "--worker", "cpu"])
        .current_dir(sb.dir.path())
        .env("JOURNAL_DIR", journal_dir)
        .env("JOURNAL_STREAM", stream);
    for (key, value) in real.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let daemon = Running(command.stdout(Stdio::null()).stderr(err).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sb.path("home/daemon.json").exists() {
        assert!(
            Instant::now() < deadline,
            "daemon.json never appeared: {}",
            std::fs::read_to_string(&err_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (daemon, err_path)
}

#[test]
fn the_daemons_lines_reach_the_journal_with_their_fields() {
    if !namespaces_work() {
        eprintln!("skipped: `unshare -m` is not allowed here (needs root and CAP_SYS_ADMIN)");
        return;
    }
    let sb = tiny_sandbox();
    let journal_dir = tempfile::tempdir().unwrap();
    let socket = UnixDatagram::bind(journal_dir.path().join("socket")).unwrap();

    let (daemon, err_path) = start_in_namespace(&sb, journal_dir.path(), None);
    let id = submit_tiny(&sb, "2");
    let id_text = id.to_string();
    let entries = receive_all(&socket, Duration::from_secs(120), |entries| {
        entries.iter().any(|e| {
            e.get("MESSAGE").is_some_and(|m| m == "done") && e.get("IMAGELAB_ID") == Some(&id_text)
        })
    });
    drop(daemon);
    let said = std::fs::read_to_string(&err_path).unwrap();
    assert!(said.contains("and to the journal"), "{said}");
    let submitted = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m == "submitted"))
        .unwrap_or_else(|| panic!("no submitted entry in {entries:#?}"));
    assert_eq!(submitted.get("SPAN_NAME").map(String::as_str), Some("job"));
    assert_eq!(submitted.get("IMAGELAB_ID"), Some(&id_text));
    assert_eq!(
        submitted.get("IMAGELAB_MODEL").map(String::as_str),
        Some("tiny")
    );
    assert_eq!(submitted.get("PRIORITY").map(String::as_str), Some("5"));
    assert_eq!(
        submitted.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("imagelab")
    );
    let done = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m == "done"))
        .unwrap_or_else(|| panic!("no done entry in {entries:#?}"));
    assert_eq!(done.get("IMAGELAB_ATTEMPT").map(String::as_str), Some("1"));
    // The file is written as well, for `imagelab job N --log`.
    let logs: Vec<String> = std::fs::read_dir(sb.path("home/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(logs.iter().any(|n| n.starts_with("daemon-")), "{logs:?}");

    // A JOURNAL_STREAM that is not this stderr is someone else's: the journal stays quiet.
    let (daemon, err_path) = start_in_namespace(&sb, journal_dir.path(), Some("1:1".into()));
    let id = submit_tiny(&sb, "2");
    let finished = || {
        let job = stdout(&imagelab(&sb, &["job", &id.to_string(), "--json"]));
        job.contains("\"done\"")
    };
    let entries = receive_all(&socket, Duration::from_secs(120), |_| finished());
    drop(daemon);
    assert!(entries.is_empty(), "{entries:#?}");
    let said = std::fs::read_to_string(&err_path).unwrap();
    assert!(!said.contains("and to the journal"), "{said}");
}
