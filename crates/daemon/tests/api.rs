//! The daemon started in-process on a temporary folder and driven through its real HTTP
//! API with the client crate: submitting, listing, cancelling, pausing across a restart,
//! models, and `daemon.json`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{api_error, spec, Lab};
use imagelab_client::{Client, ClientError};
use imagelab_core::api::{JobPriority, ListQuery, SubmitBatch, SubmitRequest, DAEMON_INFO_FILE};
use imagelab_daemon::Daemon;
use imagelab_queue::{NewJob, Queue, QueueOptions};

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
fn concurrent_submissions_each_get_their_own_ids() {
    let lab = Lab::new();
    let _daemon = lab.start();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = lab.client();
            std::thread::spawn(move || {
                (0..10)
                    .flat_map(|i| {
                        client
                            .submit(&SubmitRequest::new(spec(t * 100 + i)))
                            .unwrap()
                            .ids
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    let listed = lab.client().list(&ListQuery::default()).unwrap();
    assert_eq!(listed.len(), 40, "every acknowledged job is listed once");
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

/// A safetensors file of zero-filled F32 tensors with these names and shapes.
fn write_safetensors(path: &std::path::Path, tensors: &[(&str, Vec<u64>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<u64>() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&json);
    file.resize(file.len() + offset as usize, 0);
    std::fs::write(path, file).unwrap();
}

#[test]
fn checkpoints_are_listed_with_the_family_their_header_names() {
    let lab = Lab::new();
    let unet = |name: &str| format!("model.diffusion_model.{name}");
    let conv = unet("input_blocks.0.0.weight");
    let key = unet("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
    let label = unet("label_emb.0.0.weight");
    write_safetensors(
        &lab.path().join("models/checkpoints/a.safetensors"),
        &[(&conv, vec![8, 4, 3, 3]), (&key, vec![8, 768])],
    );
    write_safetensors(
        &lab.path().join("models/checkpoints/b.safetensors"),
        &[
            (&conv, vec![8, 4, 3, 3]),
            (&key, vec![8, 2048]),
            (&label, vec![8, 2816]),
            ("v_pred", vec![0]),
        ],
    );
    write_safetensors(
        &lab.path().join("models/checkpoints/c.safetensors"),
        &[(&conv, vec![8, 9, 3, 3]), (&key, vec![8, 768])],
    );
    let _daemon = lab.start();
    let models = lab.client().models().unwrap();
    let listed: Vec<(&str, Option<&str>)> = models
        .checkpoints
        .iter()
        .map(|m| (m.name.as_str(), m.family.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("a.safetensors", Some("sd1")),
            ("b.safetensors", Some("sdxl-v")),
            ("c.safetensors", None),
            ("tiny.safetensors", None)
        ]
    );
    let inpaint = models.checkpoints[2].error.as_deref().unwrap_or_default();
    assert!(
        inpaint.contains("c.safetensors") && inpaint.contains("9-channel"),
        "{inpaint}"
    );
}

#[test]
fn models_are_listed_by_folder() {
    let lab = Lab::new();
    std::fs::write(lab.path().join("models/vae/sdxl_vae.safetensors"), b"x").unwrap();
    std::fs::write(lab.path().join("models/clip/clip_l.safetensors"), b"x").unwrap();
    std::fs::write(lab.path().join("models/checkpoints/old.ckpt"), b"x").unwrap();
    std::fs::create_dir_all(lab.path().join("models/loras")).unwrap();
    write_sdxl_lora_header(&lab.path().join("models/loras/xl_detail.safetensors"));
    std::fs::write(lab.path().join("models/loras/broken.safetensors"), b"x").unwrap();
    let embeddings = lab.path().join("models/embeddings");
    std::fs::create_dir_all(&embeddings).unwrap();
    write_safetensors(
        &embeddings.join("easyneg.safetensors"),
        &[("emb_params", vec![8, 768])],
    );
    write_safetensors(
        &embeddings.join("xl_hands.safetensors"),
        &[("clip_g", vec![2, 1280]), ("clip_l", vec![2, 768])],
    );
    write_safetensors(&embeddings.join("odd.safetensors"), &[("x", vec![2, 64])]);
    let _daemon = lab.start();
    let models = lab.client().models().unwrap();
    let names: Vec<&str> = models.checkpoints.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["tiny.safetensors"]);
    // Its two bytes are no safetensors header: no family, and an error naming the file.
    let tiny = &models.checkpoints[0];
    assert_eq!(tiny.family, None);
    let error = tiny.error.as_deref().unwrap_or_default();
    assert!(error.contains("tiny.safetensors"), "{error}");
    assert_eq!(models.vae, vec!["sdxl_vae.safetensors"]);
    assert_eq!(models.clip, vec!["clip_l.safetensors"]);
    // LoRAs: the family comes from the cross-attention width in the header (2048: SDXL).
    let loras: Vec<(&str, Option<&str>, bool)> = models
        .loras
        .iter()
        .map(|l| (l.name.as_str(), l.family.as_deref(), l.error.is_some()))
        .collect();
    assert_eq!(
        loras,
        vec![
            ("broken.safetensors", None, true),
            ("xl_detail.safetensors", Some("sdxl"), false)
        ]
    );
    // Embeddings: the family comes from the vectors' widths (or the clip_l/clip_g pair).
    let embeddings: Vec<(&str, Option<&str>)> = models
        .embeddings
        .iter()
        .map(|e| (e.name.as_str(), e.family.as_deref()))
        .collect();
    assert_eq!(
        embeddings,
        vec![
            ("easyneg.safetensors", Some("sd1")),
            ("odd.safetensors", None),
            ("xl_hands.safetensors", Some("sdxl"))
        ]
    );
}

/// A one-tensor safetensors file: an SDXL LoRA's cross-attention `to_k` down matrix.
fn write_sdxl_lora_header(path: &std::path::Path) {
    let name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight";
    let header =
        format!(r#"{{"{name}":{{"dtype":"F32","shape":[1,2048],"data_offsets":[0,8192]}}}}"#);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 8192]);
    std::fs::write(path, bytes).unwrap();
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
fn jobs_left_running_by_a_dead_daemon_are_requeued_at_start() {
    let lab = Lab::new();
    let jobs_dir = lab.path().join("jobs");
    let id = {
        // What a daemon killed mid-job leaves behind: a leased job.
        let queue = Queue::open(&jobs_dir, QueueOptions::default()).unwrap();
        let job = queue.enqueue(NewJob::new(spec(3))).unwrap();
        queue.lease(job.id, "worker-0", &["GPU-0".into()]).unwrap();
        job.id
    };
    let daemon = lab.start();
    assert_eq!(daemon.recovery().requeued, vec![id]);
    let job = lab.client().get(id.0).unwrap();
    // The job did nothing wrong: the interruption is counted, no attempt is used.
    assert_eq!(
        (job.state.as_str(), job.attempts, job.interruptions),
        ("queued", 0, 1)
    );
    assert_eq!(
        job.worker.as_deref(),
        Some("worker-0"),
        "the last attempt is still shown"
    );
}

#[test]
fn jobs_are_reprioritised_and_finished_ones_cleared() {
    let lab = Lab::new();
    let daemon = lab.start();
    let client = lab.client();
    let ids = client.submit(&SubmitRequest::new(spec(1))).unwrap().ids;
    let first = ids[0];
    let job = client
        .set_priority(first, JobPriority::Interactive)
        .unwrap();
    assert_eq!(job.priority, JobPriority::Interactive);
    assert_eq!(
        client.get(first).unwrap().priority,
        JobPriority::Interactive
    );
    let second = client.submit(&SubmitRequest::new(spec(2))).unwrap().ids[0];
    client.cancel(second).unwrap();
    // A finished job has no priority to change.
    let (status, _, message) = api_error(
        client
            .set_priority(second, JobPriority::Normal)
            .unwrap_err(),
    );
    assert_eq!(status, 409, "{message}");
    // An unknown priority does not fit the request type: 400, naming the value.
    let (status, body) = common::raw(
        &daemon,
        "POST",
        &format!("/v1/jobs/{first}/priority"),
        &[&common::auth(&daemon), "Content-Type: application/json"],
        r#"{"priority":"urgent"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("urgent"), "{body}");
    // Clearing drops the cancelled job and keeps the queued one.
    assert_eq!(client.clear_finished().unwrap().removed, 1);
    assert!(client.get(second).is_err());
    assert_eq!(client.get(first).unwrap().state, "queued");
    assert_eq!(client.clear_finished().unwrap().removed, 0);
}
