//! Shared helpers of the daemon's API tests: a temporary app folder with a model, a daemon
//! started on it, and hand-written HTTP requests for what a client would never send.
#![allow(clippy::unwrap_used, dead_code)]

use imagelab_client::{Client, ClientError};
use imagelab_core::api::ApiError;
use imagelab_core::GenerationParams;
use imagelab_daemon::{Daemon, DaemonConfig, RunningDaemon};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A temporary app folder with a model in it, and its settings folder.
pub struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["models/checkpoints", "models/vae", "models/clip", "output"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("models/checkpoints/tiny.safetensors"), b"x").unwrap();
        Lab { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn settings(&self) -> PathBuf {
        self.path().join("settings")
    }

    pub fn config(&self) -> DaemonConfig {
        DaemonConfig::in_folder(self.path(), &self.settings())
    }

    pub fn start(&self) -> RunningDaemon {
        Daemon::start(self.config()).unwrap()
    }

    pub fn client(&self) -> Client {
        Client::from_daemon_json(&self.settings()).unwrap()
    }
}

pub fn spec(seed: i64) -> GenerationParams {
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
pub fn raw(
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

pub fn auth(daemon: &RunningDaemon) -> String {
    format!("Authorization: Bearer {}", daemon.token())
}

/// Posts `body` as JSON with the token; returns the status and the decoded error.
pub fn post_jobs(daemon: &RunningDaemon, body: &str) -> (u16, ApiError) {
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

pub fn api_error(err: ClientError) -> (u16, Option<String>, String) {
    match err {
        ClientError::Api {
            status,
            field,
            message,
        } => (status, field, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}
