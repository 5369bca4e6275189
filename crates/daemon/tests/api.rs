//! The daemon started in-process on a temporary folder and driven through its real HTTP
//! API: with the client crate, and with raw requests where a client would not send them
//! (malformed JSON, a missing token, `..` in a path).
#![allow(clippy::unwrap_used)]

use imagelab_client::{Client, ClientError};
use imagelab_core::api::{
    ApiError, JobPriority, ListQuery, SubmitBatch, SubmitRequest, DAEMON_INFO_FILE,
};
use imagelab_core::GenerationParams;
use imagelab_daemon::{Daemon, DaemonConfig, RunningDaemon};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A temporary app folder with a model in it, and its settings folder.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["models/checkpoints", "models/vae", "models/clip", "output"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("models/checkpoints/tiny.safetensors"), b"x").unwrap();
        Lab { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn settings(&self) -> PathBuf {
        self.path().join("settings")
    }

    fn config(&self) -> DaemonConfig {
        DaemonConfig::in_folder(self.path(), &self.settings())
    }

    fn start(&self) -> RunningDaemon {
        Daemon::start(self.config()).unwrap()
    }

    fn client(&self) -> Client {
        Client::from_daemon_json(&self.settings()).unwrap()
    }
}

fn spec(seed: i64) -> GenerationParams {
    GenerationParams {
        model: "tiny.safetensors".into(),
        prompt: "a lighthouse".into(),
        width: 512,
        height: 512,
        seed,
        ..GenerationParams::default()
    }
}

/// One HTTP/1.1 request written by hand; returns the status and the body.
fn raw(
    daemon: &RunningDaemon,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(daemon.address()).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn auth(daemon: &RunningDaemon) -> String {
    format!("Authorization: Bearer {}", daemon.token())
}

/// Posts `body` as JSON with the token; returns the status and the decoded error.
fn post_jobs(daemon: &RunningDaemon, body: &str) -> (u16, ApiError) {
    let (status, text) = raw(
        daemon,
        "POST",
        "/v1/jobs",
        &[&auth(daemon), "Content-Type: application/json"],
        body,
    );
    let error = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body {text:?} is not an ApiError: {e}"));
    (status, error)
}

fn api_error(err: ClientError) -> (u16, Option<String>, String) {
    match err {
        ClientError::Api {
            status,
            field,
            message,
        } => (status, field, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn submit_one_a_count_and_a_batch_then_get_them() {
    let lab = Lab::new();
    let _daemon = lab.start();
    let client = lab.client();

    let one = client.submit(&SubmitRequest::new(spec(42))).unwrap();
    assert_eq!((one.ids.len(), one.seeds.clone()), (1, vec![42]));

    let mut three = SubmitRequest::new(spec(100));
    three.count = 3;
    three.priority = JobPriority::Interactive;
    let three = client.submit(&three).unwrap();
    assert_eq!(three.seeds, vec![100, 101, 102]);
    assert_eq!(
        three.ids,
        vec![one.ids[0] + 1, one.ids[0] + 2, one.ids[0] + 3]
    );

    let mut random = SubmitRequest::new(spec(-1));
    random.count = 2;
    let random = client.submit(&random).unwrap();
    assert!(random.seeds.iter().all(|&s| s >= 0), "{:?}", random.seeds);
    assert_ne!(
        random.seeds[0], random.seeds[1],
        "each job draws its own seed"
    );

    let mut pair = SubmitRequest::new(spec(7));
    pair.count = 2;
    pair.gpu = Some("GPU-abc".into());
    let batch = SubmitBatch {
        jobs: vec![SubmitRequest::new(spec(1)), pair],
    };
    let batch = client.submit_batch(&batch).unwrap();
    assert_eq!(batch.seeds, vec![1, 7, 8]);

    let job = client.get(three.ids[1]).unwrap();
    assert_eq!(job.state, "queued");
    assert_eq!(
        job.spec.seed, 101,
        "the resolved seed is stored in the spec"
    );
    assert_eq!(job.priority, JobPriority::Interactive);
    assert_eq!(job.spec.prompt, "a lighthouse");
    let pinned = client.get(batch.ids[2]).unwrap();
    assert_eq!(pinned.gpu.as_deref(), Some("GPU-abc"));
    assert_eq!(client.status().unwrap().counts["queued"], 9);
}

#[test]
fn list_filters_by_state_and_cancel_moves_jobs() {
    let lab = Lab::new();
    let _daemon = lab.start();
    let client = lab.client();
    let mut req = SubmitRequest::new(spec(5));
    req.count = 4;
    let ids = client.submit(&req).unwrap().ids;

    let cancelled = client.cancel(ids[1]).unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert!(cancelled.timings.finished_at_ms.is_some());

    let only = |state: &str| ListQuery {
        state: Some(state.into()),
        limit: None,
    };
    let listed: Vec<u64> = client
        .list(&only("cancelled"))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, vec![ids[1]]);
    let queued: Vec<u64> = client
        .list(&only("queued"))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(queued, vec![ids[3], ids[2], ids[0]], "newest first");
    let two = client
        .list(&ListQuery {
            state: None,
            limit: Some(2),
        })
        .unwrap();
    assert_eq!(two.len(), 2);

    // Cancelling twice is a conflict; an unknown id is 404 naming the id.
    assert_eq!(api_error(client.cancel(ids[1]).unwrap_err()).0, 409);
    let (status, field, message) = api_error(client.get(999_999).unwrap_err());
    assert_eq!((status, field.as_deref()), (404, Some("id")));
    assert!(message.contains("999999"), "{message}");
    assert_eq!(api_error(client.cancel(999_999).unwrap_err()).0, 404);
    let (status, field, _) = api_error(client.list(&only("finished")).unwrap_err());
    assert_eq!((status, field.as_deref()), (400, Some("state")));
}

#[test]
fn pause_survives_a_restart_on_the_same_folder() {
    let lab = Lab::new();
    let daemon = lab.start();
    let client = lab.client();
    let id = client.submit(&SubmitRequest::new(spec(1))).unwrap().ids[0];
    assert!(client.pause().unwrap().paused);
    daemon.stop().unwrap();
    assert!(
        !lab.settings().join(DAEMON_INFO_FILE).exists(),
        "a stopped daemon removes daemon.json"
    );
    let err = Client::from_daemon_json(&lab.settings()).unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    let err = client.status().unwrap_err().to_string();
    assert!(err.contains("the daemon is not running"), "{err}");

    let daemon = lab.start();
    let client = lab.client();
    let status = client.status().unwrap();
    assert!(status.paused, "pause is persisted");
    assert_eq!(client.get(id).unwrap().state, "queued", "the job survived");
    assert!(!client.resume().unwrap().paused);
    daemon.stop().unwrap();

    let _daemon = lab.start();
    assert!(!lab.client().status().unwrap().paused);
}

#[test]
fn a_wrong_or_missing_token_gets_401_in_json() {
    let lab = Lab::new();
    let daemon = lab.start();
    for headers in [
        vec![],
        vec!["Authorization: Bearer nope"],
        vec!["Authorization: nope"],
    ] {
        let (status, body) = raw(&daemon, "GET", "/v1/queue", &headers, "");
        assert_eq!(status, 401, "{headers:?}: {body}");
        let err: ApiError = serde_json::from_str(&body).unwrap();
        assert!(err.error.contains("token"), "{}", err.error);
    }
    let (status, _) = raw(&daemon, "POST", "/v1/queue/pause", &[], "");
    assert_eq!(status, 401);
    assert!(
        !lab.client().status().unwrap().paused,
        "an unauthorised pause did nothing"
    );

    let wrong = Client::new(&daemon.address().to_string(), "not-the-token");
    assert_eq!(wrong.status().unwrap_err().status(), Some(401));
    // Health answers without a token, so a client can tell "not running" from "bad token".
    assert!(wrong.health().unwrap().ok);
}

#[test]
fn bad_submissions_get_4xx_naming_the_field_and_create_nothing() {
    let lab = Lab::new();
    let daemon = lab.start();
    let good = serde_json::to_value(SubmitRequest::new(spec(1))).unwrap();
    let with = |pointer: &str, value: serde_json::Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body.to_string()
    };

    let (status, err) = post_jobs(&daemon, r#"{"spec": {"model": "tiny""#);
    assert_eq!(status, 400, "{err:?}");
    assert!(err.error.contains("malformed JSON"), "{}", err.error);

    let cases = [
        (
            with("/spec/sampler", "eulerr".into()),
            422,
            "spec.sampler",
            "eulerr",
        ),
        (with("/spec/width", 7.into()), 422, "spec.width", "7"),
        (
            with("/spec/model", "../../etc/passwd".into()),
            400,
            "spec.model",
            "..",
        ),
        (
            with("/spec/model", "missing.safetensors".into()),
            422,
            "spec.model",
            "tiny",
        ),
        (
            with("/spec/vae", "/etc/passwd".into()),
            400,
            "spec.vae",
            "passwd",
        ),
        (
            with("/spec/init_image", "../secret.png".into()),
            400,
            "spec.init_image",
            "..",
        ),
        (with("/count", 100_000.into()), 413, "count", "at most"),
        (with("/count", 0.into()), 422, "count", "count 0"),
        (
            with("/priority", "urgent".into()),
            422,
            "priority",
            "urgent",
        ),
    ];
    for (body, want_status, want_field, want_text) in cases {
        let (status, err) = post_jobs(&daemon, &body);
        assert_eq!(status, want_status, "{body}: {err:?}");
        assert_eq!(err.field.as_deref(), Some(want_field), "{body}: {err:?}");
        assert!(err.error.contains(want_text), "{body}: {err:?}");
    }
    // A seed of i64::MAX is fine alone; only count 2 overflows it.
    let mut overflow = good.clone();
    overflow["spec"]["seed"] = i64::MAX.into();
    overflow["count"] = 2.into();
    let (status, err) = post_jobs(&daemon, &overflow.to_string());
    assert_eq!((status, err.field.as_deref()), (422, Some("spec.seed")));

    // A batch is refused whole when one entry is bad, naming the entry.
    let mut bad = good.clone();
    bad["spec"]["width"] = 7.into();
    let batch = serde_json::json!({ "jobs": [good.clone(), bad] }).to_string();
    let (status, err) = post_jobs(&daemon, &batch);
    assert_eq!(
        (status, err.field.as_deref()),
        (422, Some("jobs[1].spec.width"))
    );
    let huge = serde_json::json!({ "jobs": vec![good.clone(); 1001] }).to_string();
    let (status, err) = post_jobs(&daemon, &huge);
    assert_eq!(
        (status, err.field.as_deref()),
        (413, Some("jobs")),
        "{err:?}"
    );
    let (status, err) = post_jobs(&daemon, r#"{"jobs": []}"#);
    assert_eq!((status, err.field.as_deref()), (422, Some("jobs")));

    // Without a JSON content type the body is refused with our JSON error too.
    let (status, body) = raw(
        &daemon,
        "POST",
        "/v1/jobs",
        &[&auth(&daemon)],
        &good.to_string(),
    );
    assert_eq!(status, 415);
    serde_json::from_str::<ApiError>(&body).unwrap();

    let counts = lab.client().status().unwrap().counts;
    assert!(
        counts.values().all(|&n| n == 0),
        "nothing was queued: {counts:?}"
    );
}

#[test]
fn outputs_are_served_only_from_inside_the_output_folder() {
    let lab = Lab::new();
    let daemon = lab.start();
    let client = lab.client();
    std::fs::write(
        lab.path().join("output/job0000000001_000.png"),
        b"\x89PNG fake",
    )
    .unwrap();
    std::fs::write(lab.path().join("secret.txt"), b"top secret").unwrap();
    std::os::unix::fs::symlink(
        lab.path().join("secret.txt"),
        lab.path().join("output/link.png"),
    )
    .unwrap();

    let names: Vec<String> = client
        .outputs()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        names.contains(&"job0000000001_000.png".to_string()),
        "{names:?}"
    );
    assert_eq!(
        client.output("job0000000001_000.png").unwrap(),
        b"\x89PNG fake"
    );
    assert_eq!(client.output("nope.png").unwrap_err().status(), Some(404));
    assert_eq!(client.output("link.png").unwrap_err().status(), Some(403));

    for path in [
        "/v1/outputs/../secret.txt",
        "/v1/outputs/%2e%2e/secret.txt",
        "/v1/outputs/%2E%2E%2Fsecret.txt",
        "/v1/outputs//etc/passwd",
        "/v1/outputs/sub/../../secret.txt",
    ] {
        let (status, body) = raw(&daemon, "GET", path, &[&auth(&daemon)], "");
        assert_eq!(status, 403, "{path}: {body}");
        let err: ApiError = serde_json::from_str(&body).unwrap();
        assert_eq!(err.field.as_deref(), Some("name"), "{path}: {body}");
        assert!(
            !body.contains("top secret") && !body.contains("root:"),
            "{path}: {body}"
        );
    }
}

#[test]
fn models_are_listed_by_folder() {
    let lab = Lab::new();
    std::fs::write(lab.path().join("models/vae/sdxl_vae.safetensors"), b"x").unwrap();
    std::fs::write(lab.path().join("models/clip/clip_l.safetensors"), b"x").unwrap();
    std::fs::write(lab.path().join("models/checkpoints/old.ckpt"), b"x").unwrap();
    let _daemon = lab.start();
    let models = lab.client().models().unwrap();
    assert_eq!(models.checkpoints, vec!["tiny.safetensors"]);
    assert_eq!(models.vae, vec!["sdxl_vae.safetensors"]);
    assert_eq!(models.clip, vec!["clip_l.safetensors"]);
}

#[test]
fn daemon_json_is_private_and_a_second_daemon_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let daemon = lab.start();
    let path = lab.settings().join(DAEMON_INFO_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let info = imagelab_client::read_daemon_info(&lab.settings()).unwrap();
    assert_eq!(info.address, daemon.address().to_string());
    assert_eq!(info.token, daemon.token());
    assert_eq!(info.pid, std::process::id());
    assert!(lab.client().health().unwrap().ok);

    let err = Daemon::start(lab.config()).unwrap_err().to_string();
    assert!(err.contains("another daemon"), "{err}");
    assert!(err.contains("jobs"), "{err}");
    // The refused daemon did not replace the running one's daemon.json.
    assert_eq!(
        imagelab_client::read_daemon_info(&lab.settings())
            .unwrap()
            .token,
        daemon.token()
    );
}

#[test]
fn unknown_routes_and_ids_answer_in_json() {
    let lab = Lab::new();
    let daemon = lab.start();
    let (status, body) = raw(&daemon, "GET", "/v1/nothing", &[&auth(&daemon)], "");
    assert_eq!(status, 404);
    serde_json::from_str::<ApiError>(&body).unwrap();
    let (status, body) = raw(&daemon, "GET", "/v1/jobs/abc", &[&auth(&daemon)], "");
    let err: ApiError = serde_json::from_str(&body).unwrap();
    assert_eq!((status, err.field.as_deref()), (400, Some("id")));
}
