//! The real window, driven as a person uses it: `imagelab-gui` under Xvfb and a D-Bus
//! session, with a tiny random checkpoint made at test time, steered through the
//! accessibility bus by `e2e/driver.py` (pyatspi). The app starts its own daemon (a CPU
//! worker) from the `imagelab` binary beside it; this side checks the files and processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A throwaway app folder and settings folder, seen by the app and its daemon only.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let sb = Sandbox { dir };
        std::fs::create_dir_all(sb.path("models/checkpoints")).unwrap();
        std::fs::copy(
            tiny_checkpoint(&sb.path("fixtures")),
            sb.path("models/checkpoints/tiny.safetensors"),
        )
        .unwrap();
        // A theme for the Night page: small, quick images.
        std::fs::create_dir_all(sb.path("themes")).unwrap();
        std::fs::write(
            sb.path("themes/lights.yaml"),
            "description: Lamps in the dark\ntemplates: [\"a {paper|glass|tin} lantern in the {rain|snow|fog}\"]\nsettings: {size: 64x64, steps: [2]}\n",
        )
        .unwrap();
        // Only the app's own memory of the last form (`gui.yaml`): a small, quick image.
        // Without `config.yaml` the app still opens on its setup screen.
        std::fs::create_dir_all(sb.path("home")).unwrap();
        std::fs::write(
            sb.path("home/gui.yaml"),
            "form:\n  model: tiny.safetensors\n  width: 64\n  height: 64\n  steps: 2\n",
        )
        .unwrap();
        sb
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A command with the sandbox's environment and nothing of the test's `IMAGELAB_*`.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path())
            .env("AIIMAGEGEN_HOME", self.path("home"))
            .env("IMAGELAB_APP_DIR", self.dir.path())
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("CUDA_VISIBLE_DEVICES", "");
        for (key, _) in std::env::vars() {
            if (key.starts_with("IMAGELAB_") && key != "IMAGELAB_APP_DIR") || key == "INSTANCE_ID" {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// One run of the app, driven by `driver.py SCENARIO ARGS…` until the window closes.
    fn drive(&self, scenario: &[&str]) -> String {
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/driver.py");
        let script = format!(
            "{app} & app=$!; /usr/bin/python3 {driver} {args}; status=$?; \
             if [ $status != 0 ]; then kill -9 $app; exit $status; fi; \
             for _ in $(seq 100); do kill -0 $app 2>/dev/null || break; sleep 0.1; done; \
             if kill -0 $app 2>/dev/null; then echo 'FAIL: the app did not exit'; kill -9 $app; exit 1; fi; \
             wait $app; echo \"app exit: $?\"; exit $status",
            app = env!("CARGO_BIN_EXE_imagelab-gui"),
            driver = driver.display(),
            args = scenario.join(" "),
        );
        let out = self
            .command("xvfb-run")
            .args([
                "-a",
                "-s",
                "-screen 0 1400x900x24",
                "dbus-run-session",
                "--",
                "bash",
                "-c",
            ])
            .arg(&script)
            .env("GTK_A11Y", "atspi")
            .env("NO_AT_BRIDGE", "0")
            .output()
            .expect("xvfb-run and dbus-run-session are installed (scripts/setup.sh)");
        let text = report(&out);
        assert!(
            out.status.success(),
            "the driver failed ({scenario:?}):\n{text}\n--- the daemons' logs ---\n{}",
            self.logs()
        );
        assert!(
            text.contains("app exit: 0"),
            "the app did not end cleanly:\n{text}"
        );
        println!("{}", String::from_utf8_lossy(&out.stdout));
        text
    }

    /// The last lines of every log the daemons and workers wrote, for a failure's report.
    fn logs(&self) -> String {
        let mut all = String::new();
        let Ok(entries) = std::fs::read_dir(self.path("home/logs")) else {
            return "(no logs folder)".into();
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            all.push_str(&format!("== {} ==\n{tail}\n", entry.path().display()));
        }
        all
    }

    /// The pid in `daemon.json` (which a daemon removes when it stops).
    fn daemon_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.path("home/daemon.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["pid"].as_i64().map(|p| p as i32)
    }
}

/// The test's own daemon, killed if an assertion fails while it runs (its worker notices
/// its stdin closing and stops).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Whether `pid` runs (a zombie nobody reaped has stopped running).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// The pid the driver printed as `daemon: PID`.
fn printed_daemon(text: &str) -> i32 {
    text.lines()
        .find_map(|l| l.strip_prefix("daemon: "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the driver named no daemon:\n{text}"))
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn report(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `imagelab` binary beside `imagelab-gui`, where the app looks for it first.
fn imagelab_binary() -> PathBuf {
    let beside = Path::new(env!("CARGO_BIN_EXE_imagelab-gui")).with_file_name("imagelab");
    if !beside.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "imagelab", "--bin", "imagelab"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the imagelab binary");
    }
    beside
}

/// The venv's Python, which runs the engine's reference scripts.
fn python() -> PathBuf {
    std::env::var_os("IMAGELAB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/imagelab/venv/bin/python")
        })
}

/// The engine reference's tiny random SD 1.5 checkpoint, built into `dir`.
fn tiny_checkpoint(dir: &Path) -> PathBuf {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/reference/pipeline_ref.py");
    let out = Command::new(python())
        .arg(&script)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    dir.join("sd1.safetensors")
}

/// The engine reference's tiny random PixArt-Σ in ComfyUI's layout, copied into `sb`'s
/// model folders (transformer, T5 with its spiece.model, VAE).
fn add_tiny_pixart(sb: &Sandbox) {
    let dir = sb.path("fixtures/pixart");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/reference/pixart_pipeline_ref.py");
    let out = Command::new(python())
        .arg(&script)
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    for folder in ["models/clip", "models/vae"] {
        std::fs::create_dir_all(sb.path(folder)).unwrap();
    }
    for (from, to) in [
        (
            "comfy/pixart.safetensors",
            "models/checkpoints/tiny-pixart.safetensors",
        ),
        ("comfy/clip/t5.safetensors", "models/clip/t5.safetensors"),
        ("comfy/clip/spiece.model", "models/clip/spiece.model"),
        ("comfy/vae.safetensors", "models/vae/pixart_vae.safetensors"),
    ] {
        std::fs::copy(dir.join(from), sb.path(to)).unwrap();
    }
}

#[test]
fn picking_a_pixart_checkpoint_brings_its_settings_and_makes_an_image() {
    let sb = Sandbox::new();
    add_tiny_pixart(&sb);
    let text = sb.drive(&["pixart"]);
    let image = text
        .lines()
        .find_map(|l| l.strip_prefix("image: "))
        .unwrap_or_else(|| panic!("no image named:\n{text}"))
        .to_string();
    let texts = imagelab_analytics::pngmeta::read_texts(&sb.path("output").join(&image)).unwrap();
    let parameters = &texts["parameters"];
    assert!(
        parameters.contains("CFG scale: 4.5") && parameters.contains("Model: tiny-pixart"),
        "{parameters}"
    );
    // The form the app saved names the SD model it ended on; the next launch is to come
    // back on PixArt-Σ, which is not the first checkpoint of the list.
    let saved = std::fs::read_to_string(sb.path("home/gui.yaml")).unwrap();
    assert!(saved.contains("model: tiny.safetensors"), "{saved}");
    std::fs::write(
        sb.path("home/gui.yaml"),
        saved.replace("model: tiny.safetensors", "model: tiny-pixart.safetensors"),
    )
    .unwrap();
    sb.drive(&["pixart-remembered"]);
}

#[test]
fn the_window_sets_up_generates_and_manages_its_daemon() {
    let imagelab = imagelab_binary();
    let sb = Sandbox::new();

    // 1. A fresh home: the setup screen, then the work screen on a daemon the app starts.
    let first = sb.drive(&["first"]);
    let config =
        std::fs::read_to_string(sb.path("home/config.yaml")).expect("setup wrote config.yaml");
    assert!(
        config.contains("gpus:"),
        "config.yaml has no gpus: key:\n{config}"
    );
    for folder in ["models/checkpoints", "models/vae", "models/clip", "output"] {
        assert!(sb.path(folder).is_dir(), "setup did not create {folder}");
    }
    let image = first
        .lines()
        .find_map(|l| l.strip_prefix("image: "))
        .unwrap_or_else(|| panic!("no image named:\n{first}"))
        .to_string();
    let texts = imagelab_analytics::pngmeta::read_texts(&sb.path("output").join(&image)).unwrap();
    let parameters = texts
        .get("parameters")
        .expect("A1111 parameters in the PNG");
    assert!(
        parameters.starts_with("a red lighthouse at dusk"),
        "{parameters}"
    );
    assert!(
        parameters.contains("Seed: 7"),
        "the typed seed was not used: {parameters}"
    );
    let pid = printed_daemon(&first);
    assert!(wait_gone(pid), "the daemon the app started outlived it");
    assert!(
        sb.daemon_pid().is_none(),
        "the stopped daemon left daemon.json behind"
    );
    let remembered = std::fs::read_to_string(sb.path("home/gui.yaml")).unwrap();
    // The next image is made large and long, so that Escape catches it while it samples.
    std::fs::write(
        sb.path("home/gui.yaml"),
        remembered
            .replace("width: 64", "width: 256")
            .replace("height: 64", "height: 256")
            .replace("steps: 2", "steps: 150"),
    )
    .unwrap();
    assert!(
        remembered.contains("a red lighthouse at dusk"),
        "the form was not remembered:\n{remembered}"
    );

    // 2. A daemon that runs already is used, and keeps running when the app closes.
    let mut daemon = KillOnDrop(
        sb.command(&imagelab)
            .args(["daemon", "--worker", "cpu"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.daemon_pid() != Some(daemon.id() as i32) {
        assert!(
            Instant::now() < deadline,
            "the test's daemon never wrote daemon.json"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The star the window put on the image is the daemon's favorite (the one analytics reads).
    let favs = sb
        .command(&imagelab)
        .args(["favs", "--json"])
        .output()
        .unwrap();
    let favs = String::from_utf8_lossy(&favs.stdout);
    assert!(
        favs.contains(&image),
        "the starred image is not a favorite: {favs}"
    );
    // A job the CLI queued while the queue is paused, for the Queue page to show and cancel.
    let cli = |args: &[&str]| {
        let out = sb.command(&imagelab).args(args).output().unwrap();
        assert!(out.status.success(), "imagelab {args:?}: {}", report(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    cli(&["queue", "pause"]);
    let submit = |prompt: &str| {
        cli(&[
            "submit", "--model", "tiny", "--prompt", prompt, "--width", "64", "--height", "64",
            "--steps", "2",
        ])
    };
    let queued = submit("from the CLI");
    let other = submit("another from the CLI");
    sb.drive(&["second", &queued, &other]);
    let status = cli(&["queue", "status"]);
    assert!(
        !status.contains("paused"),
        "the page's toggle did not resume the queue: {status}"
    );
    let job = cli(&["job", &queued]);
    assert!(
        job.contains("cancelled"),
        "the page's Cancel did not cancel job {queued}: {job}"
    );
    let night: serde_json::Value =
        serde_json::from_str(&cli(&["night", "status", "--json"])).expect("night status --json");
    assert_eq!(
        (
            night["themes"].clone(),
            night["submitted"].clone(),
            night["done"].clone()
        ),
        (
            serde_json::json!(["lights"]),
            serde_json::json!(2),
            serde_json::json!(2)
        ),
        "the Night page's run: {night}"
    );
    assert_eq!(
        night["models"],
        serde_json::json!(["tiny.safetensors"]),
        "{night}"
    );
    let theme = std::fs::read_to_string(sb.path("themes/best-of-favorites.yaml"))
        .expect("the Analytics page exported themes/best-of-favorites.yaml");
    assert!(
        theme.contains("tiny"),
        "the exported theme has no model: {theme}"
    );
    let favs = cli(&["favs", "--json"]);
    let favs: serde_json::Value = serde_json::from_str(&favs).expect("favs --json");
    let rated = favs
        .as_array()
        .and_then(|all| all.iter().find(|f| f["image"] == image.as_str()));
    assert_eq!(
        rated.map(|f| f["rating"].clone()),
        Some(serde_json::json!(4)),
        "the Favorites page's stars did not rate {image}: {favs}"
    );
    let jobs: Vec<imagelab_core::api::JobView> =
        serde_json::from_str(&cli(&["jobs", "--json"])).expect("jobs --json");
    let by_id = |id: &str| jobs.iter().find(|j| j.id.to_string() == id);
    let moved = by_id(&other).expect("the second CLI job is listed");
    assert_eq!(
        (moved.priority, moved.state.as_str()),
        (imagelab_core::api::JobPriority::Interactive, "done"),
        "the page's priority menu did not move job {other}, or it did not run"
    );
    let retried: Vec<_> = jobs
        .iter()
        .filter(|j| {
            j.spec.prompt == "from the CLI" && j.source == imagelab_core::api::JobSource::Gui
        })
        .collect();
    assert_eq!(
        retried.len(),
        1,
        "Retry did not submit job {queued} once: {jobs:?}"
    );
    assert_eq!(retried[0].state, "done", "the retried job did not run");
    assert_eq!(retried[0].spec.steps, 2, "Retry changed the spec");
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "closing the app stopped a daemon it found"
    );

    // 3. That daemon dies under the app: a clear state, and Reconnect starts the app's own.
    let found = daemon.id().to_string();
    let third = sb.drive(&["daemon-lost", &found]);
    let _ = daemon.wait();
    let own = printed_daemon(&third);
    assert_ne!(own.to_string(), found, "{third}");
    assert!(
        wait_gone(own),
        "the daemon started on reconnect outlived the app"
    );
}

#[test]
fn the_app_does_not_link_libtorch() {
    let out = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_imagelab-gui")])
        .output()
        .expect("readelf runs");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.contains("NEEDED"),
        "readelf shows no dynamic section:\n{dynamic}"
    );
    assert!(
        dynamic.contains("libgtk-4"),
        "the app does not link GTK 4:\n{dynamic}"
    );
    for lib in ["libtorch", "libc10", "libtorch_cpu"] {
        assert!(
            !dynamic.contains(lib),
            "imagelab-gui links {lib}:\n{dynamic}"
        );
    }
}
