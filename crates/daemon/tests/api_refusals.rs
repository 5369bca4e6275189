//! What the daemon refuses, through its real HTTP API: a wrong or missing token, every kind
//! of bad submission (each a 4xx JSON error naming the field), and paths leading out of
//! `output/`. Raw requests send what a well-behaved client never would.
#![allow(clippy::unwrap_used)]

mod common;

use common::{auth, post_jobs, raw, spec, Lab};
use imagelab_client::Client;
use imagelab_core::api::{ApiError, SubmitRequest};

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
    // LoRAs: a tag with a bad weight, and a LoRA that is not in models/loras.
    let (status, err) = post_jobs(
        &daemon,
        &with("/spec/prompt", "a cat <lora:ink:strong>".into()),
    );
    assert_eq!(
        (status, err.field.as_deref()),
        (422, Some("spec.prompt")),
        "{err:?}"
    );
    assert!(err.error.contains("strong"), "{err:?}");
    let mut missing_lora = good.clone();
    missing_lora["spec"]["loras"] = serde_json::json!([{ "name": "no_such_lora", "weight": 0.5 }]);
    let (status, err) = post_jobs(&daemon, &missing_lora.to_string());
    assert_eq!(
        (status, err.field.as_deref()),
        (422, Some("spec.loras")),
        "{err:?}"
    );
    assert!(err.error.contains("no_such_lora"), "{err:?}");
    // An embedding the negative prompt names must be in models/embeddings.
    let (status, err) = post_jobs(
        &daemon,
        &with(
            "/spec/negative",
            "blurry, (embedding:no_such_neg:1.2)".into(),
        ),
    );
    assert_eq!(
        (status, err.field.as_deref()),
        (422, Some("spec.negative")),
        "{err:?}"
    );
    assert!(err.error.contains("\"no_such_neg\""), "{err:?}");

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
    let mut big = good.clone();
    big["count"] = 5000.into();
    let batch = serde_json::json!({ "jobs": [good.clone(), big] }).to_string();
    let (status, err) = post_jobs(&daemon, &batch);
    assert_eq!((status, err.field.as_deref()), (413, Some("jobs[1].count")));
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
fn unknown_routes_and_ids_answer_in_json() {
    let lab = Lab::new();
    let daemon = lab.start();
    let (status, body) = raw(&daemon, "GET", "/v1/nothing", &[&auth(&daemon)], "");
    assert_eq!(status, 404);
    serde_json::from_str::<ApiError>(&body).unwrap();
    let (status, body) = raw(&daemon, "GET", "/v1/jobs/abc", &[&auth(&daemon)], "");
    let err: ApiError = serde_json::from_str(&body).unwrap();
    assert_eq!((status, err.field.as_deref()), (400, Some("id")));
    // Starring an unknown job names the request's own field, `job`.
    let (status, body) = raw(
        &daemon,
        "POST",
        "/v1/favorites",
        &[&auth(&daemon), "Content-Type: application/json"],
        r#"{"job": 999}"#,
    );
    let err: ApiError = serde_json::from_str(&body).unwrap();
    assert_eq!((status, err.field.as_deref()), (404, Some("job")), "{body}");
}

#[test]
fn a_known_path_with_another_method_is_405_and_an_unknown_one_404() {
    let lab = Lab::new();
    let daemon = lab.start();
    for (method, path) in [
        ("DELETE", "/v1/jobs"),
        ("PUT", "/v1/queue/pause"),
        ("POST", "/v1/gpus"),
        ("DELETE", "/v1/jobs/1"),
    ] {
        let (status, body) = raw(&daemon, method, path, &[&auth(&daemon)], "");
        let err: ApiError = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert!(err.error.contains(method), "{body}");
    }
    // Public paths: 405 without a token too (nothing there needs one).
    for path in ["/v1/health", "/v1/openapi.yaml"] {
        let (status, body) = raw(&daemon, "POST", path, &[], "");
        assert_eq!(status, 405, "POST {path}: {body}");
    }
    // Still 401 for a protected path without the token, whatever the method.
    let (status, _) = raw(&daemon, "DELETE", "/v1/jobs", &[], "");
    assert_eq!(status, 401);
    let (status, _) = raw(&daemon, "GET", "/v1/nope", &[&auth(&daemon)], "");
    assert_eq!(status, 404);
}
