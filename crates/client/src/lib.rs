//! The blocking HTTP client of the imagelab daemon, shared by the CLI and the GUI. It finds
//! the daemon through `daemon.json` in the settings folder, sends the bearer token, and
//! turns every answer into the protocol types of `imagelab_core::api`. No async runtime.

mod events;
mod workers;

pub use events::EventStream;

use imagelab_core::api::{
    ApiError, DaemonInfo, FavoriteRequest, FavoriteView, Health, JobView, ListQuery, ModelList,
    OutputFile, QueueStatus, SubmitBatch, SubmitRequest, SubmitResponse, DAEMON_INFO_FILE,
};
use imagelab_core::night::{NightRequest, NightStatus};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hint every "cannot reach it" error carries.
const NOT_RUNNING: &str = "the daemon is not running (start it with `imagelab daemon`)";

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No `daemon.json`, or nothing listens at its address.
    #[error("{NOT_RUNNING}: {reason}")]
    NotRunning { reason: String },
    /// `daemon.json` exists but cannot be read or decoded.
    #[error("{path}: {message}")]
    BadInfo { path: PathBuf, message: String },
    /// The daemon answered with an error status; `message` and `field` are its own words.
    #[error("the daemon refused the request ({status}): {message}{}", field.as_ref().map(|f| format!(" [field {f}]")).unwrap_or_default())]
    Api {
        status: u16,
        message: String,
        field: Option<String>,
    },
    /// The connection failed in another way (timeout, reset, protocol error).
    #[error("talking to the daemon at {address}: {message}")]
    Transport { address: String, message: String },
    /// The answer did not decode as the expected type.
    #[error("unexpected answer from the daemon: {0}")]
    Decode(String),
    /// An event stream fell behind the daemon and missed this many events; the stream
    /// goes on after it.
    #[error("the event stream skipped {skipped} events (this watcher fell behind)")]
    Lagged { skipped: u64 },
}

impl ClientError {
    /// The HTTP status of an error answer, if the daemon gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Reads `<settings_dir>/daemon.json`.
pub fn read_daemon_info(settings_dir: &Path) -> Result<DaemonInfo> {
    let path = settings_dir.join(DAEMON_INFO_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ClientError::NotRunning {
                reason: format!("{} does not exist", path.display()),
            })
        }
        Err(e) => {
            return Err(ClientError::BadInfo {
                path,
                message: e.to_string(),
            })
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| ClientError::BadInfo {
        path,
        message: e.to_string(),
    })
}

/// A connection to one daemon.
pub struct Client {
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a name for a URL path, keeping `/` so sub-folder names still work.
fn encode_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for the daemon at `address` (`host:port` or `http://host:port`).
    pub fn new(address: &str, token: &str) -> Client {
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", address.trim_end_matches('/'))
        };
        let config = ureq::Agent::config_builder()
            // Error statuses are answers to decode, not transport failures.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Client {
            base,
            token: token.to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub fn from_info(info: &DaemonInfo) -> Client {
        Client::new(&info.address, &info.token)
    }

    /// The client for the daemon described by `<settings_dir>/daemon.json`.
    pub fn from_daemon_json(settings_dir: &Path) -> Result<Client> {
        Ok(Client::from_info(&read_daemon_info(settings_dir)?))
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn transport_error(&self, err: ureq::Error) -> ClientError {
        let refused = match &err {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
            ureq::Error::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            ),
            _ => false,
        };
        if refused {
            ClientError::NotRunning {
                reason: format!("nothing answers at {} ({err})", self.base),
            }
        } else {
            ClientError::Transport {
                address: self.base.clone(),
                message: err.to_string(),
            }
        }
    }

    /// Sends a request (`body` as JSON when given) and returns the status and body bytes.
    fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            (_, Some(bytes)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(&bytes[..]),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
        };
        let mut response = response.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(512 << 20)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        Ok((status, bytes))
    }

    /// Decodes a success as `T` and an error status as [`ClientError::Api`].
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let (status, bytes) = self.send(method, path, body)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn post_json<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.call("POST", path, Some(bytes))
    }

    /// Whether the daemon answers, and its protocol version (needs no token).
    pub fn health(&self) -> Result<Health> {
        self.call("GET", "/v1/health", None)
    }

    /// Submits `count` jobs of one spec; returns their ids and seeds.
    pub fn submit(&self, request: &SubmitRequest) -> Result<SubmitResponse> {
        self.post_json("/v1/jobs", request)
    }

    /// Submits several requests, all accepted or none.
    pub fn submit_batch(&self, batch: &SubmitBatch) -> Result<SubmitResponse> {
        self.post_json("/v1/jobs", batch)
    }

    /// Jobs, newest first, optionally only those in one state.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<JobView>> {
        let mut params = Vec::new();
        if let Some(state) = &query.state {
            params.push(format!("state={}", encode_path(state)));
        }
        if let Some(limit) = query.limit {
            params.push(format!("limit={limit}"));
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        self.call("GET", &format!("/v1/jobs{query}"), None)
    }

    pub fn get(&self, id: u64) -> Result<JobView> {
        self.call("GET", &format!("/v1/jobs/{id}"), None)
    }

    /// The job's log lines from the daemon's and its workers' files, oldest first.
    pub fn job_log(&self, id: u64) -> Result<imagelab_core::api::JobLog> {
        self.call("GET", &format!("/v1/jobs/{id}/log"), None)
    }

    /// Cancels a queued job at once, or asks a running one to stop.
    pub fn cancel(&self, id: u64) -> Result<JobView> {
        self.call("POST", &format!("/v1/jobs/{id}/cancel"), None)
    }

    /// Moves a queued or running job to another priority.
    pub fn set_priority(
        &self,
        id: u64,
        priority: imagelab_core::api::JobPriority,
    ) -> Result<JobView> {
        let body = imagelab_core::api::PriorityRequest { priority };
        self.post_json(&format!("/v1/jobs/{id}/priority"), &body)
    }

    /// Removes finished, failed, dead and cancelled jobs from the queue (jobs.log keeps them).
    pub fn clear_finished(&self) -> Result<imagelab_core::api::ClearResponse> {
        self.call("POST", "/v1/queue/clear", None)
    }

    pub fn pause(&self) -> Result<QueueStatus> {
        self.call("POST", "/v1/queue/pause", None)
    }

    pub fn resume(&self) -> Result<QueueStatus> {
        self.call("POST", "/v1/queue/resume", None)
    }

    /// Stars a job or an image in `output/` (rating 1–5 optional).
    pub fn favorite(&self, request: &FavoriteRequest) -> Result<FavoriteView> {
        self.post_json("/v1/favorites", request)
    }

    /// Removes a star; the answer says whether there was one.
    pub fn unfavorite(&self, request: &FavoriteRequest) -> Result<serde_json::Value> {
        self.post_json("/v1/favorites/remove", request)
    }

    /// Every starred job and image.
    pub fn favorites(&self) -> Result<Vec<FavoriteView>> {
        self.call("GET", "/v1/favorites", None)
    }

    /// Whether dispatch is paused, and the jobs in each state.
    pub fn status(&self) -> Result<QueueStatus> {
        self.call("GET", "/v1/queue", None)
    }

    pub fn models(&self) -> Result<ModelList> {
        self.call("GET", "/v1/models", None)
    }

    pub fn outputs(&self) -> Result<Vec<OutputFile>> {
        self.call("GET", "/v1/outputs", None)
    }

    /// Starts an overnight run (409 while one is running, 400 naming the field).
    pub fn night_start(&self, request: &NightRequest) -> Result<NightStatus> {
        self.post_json("/v1/night", request)
    }

    /// The current or last overnight run (404 when none was ever started).
    pub fn night_status(&self) -> Result<NightStatus> {
        self.call("GET", "/v1/night", None)
    }

    /// Stops the running overnight run; answers the run as it ended.
    pub fn night_stop(&self) -> Result<NightStatus> {
        self.call("POST", "/v1/night/stop", None)
    }

    /// One output file's bytes.
    pub fn output(&self, name: &str) -> Result<Vec<u8>> {
        let (status, bytes) =
            self.send("GET", &format!("/v1/outputs/{}", encode_path(name)), None)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        Ok(bytes)
    }
}

/// The daemon's JSON error, or the raw text when the body is not one.
fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(bytes) {
        Ok(err) => ClientError::Api {
            status,
            message: err.error,
            field: err.field,
        },
        Err(_) => ClientError::Api {
            status,
            message: String::from_utf8_lossy(bytes).trim().to_string(),
            field: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_daemon_json_says_the_daemon_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = Client::from_daemon_json(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("the daemon is not running"), "{err}");
        assert!(err.contains("imagelab daemon"), "{err}");
    }

    #[test]
    fn a_refused_connection_says_the_daemon_is_not_running() {
        // Bind then drop a listener: the port is free and nothing answers there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(&format!("127.0.0.1:{port}"), "t");
        let err = client.status().unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    }

    #[test]
    fn a_corrupt_daemon_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DAEMON_INFO_FILE), "{not json").unwrap();
        let err = Client::from_daemon_json(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("daemon.json"), "{err}");
    }

    #[test]
    fn names_are_encoded_for_the_path() {
        assert_eq!(encode_path("a b/c%.png"), "a%20b/c%25.png");
    }
}
