//! `imagelab watch [--json]`: the daemon's event stream, live. One progress bar per worker
//! (job, model, steps) with job state changes printed above the bars; or, with `--json`,
//! every event as one JSON line for scripts. When the daemon goes away, watch says so and
//! exits non-zero.

use anyhow::{bail, Result};
use clap::Args;
use imagelab_client::{Client, ClientError};
use imagelab_core::api::JobView;
use imagelab_core::events::{DaemonEvent, WorkerState};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Print each event as one JSON line instead of progress bars.
    #[arg(long)]
    pub json: bool,
}

const GONE: &str = "the daemon went away (its event stream ended)";

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let client = crate::client_cmds::client()?;
    let events = client.events()?;
    let mut view = (!args.json).then(|| Bars::new(client));
    for event in events {
        match (event, &mut view) {
            (Ok(event), None) => print_json(&serde_json::to_value(&event)?)?,
            (Ok(event), Some(bars)) => bars.show(&event),
            (Err(ClientError::Lagged { skipped }), None) => {
                print_json(&serde_json::json!({"event": "lagged", "skipped": skipped}))?
            }
            (Err(ClientError::Lagged { skipped }), Some(bars)) => {
                bars.line(&format!("(fell behind: {skipped} events skipped)"))
            }
            // One event this client cannot read (a newer daemon): say so and go on.
            (Err(ClientError::Decode(why)), _) => eprintln!("warning: {why}"),
            (Err(e), _) => bail!("{GONE}: {e}"),
        }
    }
    bail!("{GONE}")
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

/// What a finished job's line says: `job 12 done (3.1 s) → output/….png`.
pub fn finished_line(id: u64, state: &str, job: Option<&JobView>, error: Option<&str>) -> String {
    let mut line = format!("job {id} {state}");
    if let Some(job) = job {
        if let (Some(start), Some(end)) = (job.timings.started_at_ms, job.timings.finished_at_ms) {
            line.push_str(&format!(
                " ({:.1} s)",
                end.saturating_sub(start) as f64 / 1000.0
            ));
        }
        if !job.outputs.is_empty() {
            let outputs: Vec<String> = job.outputs.iter().map(|o| format!("output/{o}")).collect();
            line.push_str(&format!(" → {}", outputs.join(", ")));
        }
    }
    if let Some(error) = error.or(job.and_then(|j| j.error.as_deref())) {
        line.push_str(&format!(": {error}"));
    }
    line
}

/// The bars, one per worker, created the first time a worker is heard of.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// Each job's model, asked of the daemon once per job.
    models: HashMap<u64, String>,
    client: Client,
}

impl Bars {
    fn new(client: Client) -> Bars {
        Bars {
            multi: MultiProgress::new(),
            bars: HashMap::new(),
            models: HashMap::new(),
            client,
        }
    }

    /// A line above the bars (a plain line when the bars are hidden, as in a pipe).
    fn line(&self, text: &str) {
        if self.multi.is_hidden() || self.multi.println(text).is_err() {
            println!("{text}");
        }
    }

    fn bar(&mut self, worker: &str) -> &ProgressBar {
        let multi = &self.multi;
        self.bars.entry(worker.to_string()).or_insert_with(|| {
            let style =
                ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos:>3}/{len:3} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = multi.add(ProgressBar::new(0).with_style(style));
            bar.set_prefix(worker.to_string());
            bar.set_message("idle");
            bar
        })
    }

    fn model(&mut self, job: u64) -> String {
        let client = &self.client;
        self.models
            .entry(job)
            .or_insert_with(|| {
                client
                    .get(job)
                    .map(|j| j.spec.model)
                    .unwrap_or_else(|_| "?".into())
            })
            .clone()
    }

    fn show(&mut self, event: &DaemonEvent) {
        match event {
            DaemonEvent::Job {
                id,
                state,
                worker,
                error,
            } => {
                let finished = matches!(state.as_str(), "done" | "failed" | "dead" | "cancelled");
                let line = if finished {
                    let job = self.client.get(*id).ok();
                    self.models.remove(id);
                    finished_line(*id, state, job.as_ref(), error.as_deref())
                } else {
                    match worker {
                        Some(w) if state == "leased" => format!("job {id} started on {w}"),
                        _ => format!("job {id} {state}"),
                    }
                };
                self.line(&line);
                if let (true, Some(worker)) = (finished, worker) {
                    let bar = self.bar(worker);
                    bar.set_position(0);
                    bar.set_message("idle");
                }
            }
            DaemonEvent::Progress {
                job,
                worker,
                done,
                total,
                ..
            } => {
                let model = self.model(*job);
                let bar = self.bar(worker);
                bar.set_length(*total as u64);
                bar.set_position(*done as u64);
                bar.set_message(format!("job {job} · {model}"));
            }
            DaemonEvent::Worker(status) => {
                let bar = self.bar(&status.name);
                match &status.state {
                    WorkerState::Busy { .. } => {}
                    WorkerState::Loading { model } => bar.set_message(format!("loading {model}")),
                    WorkerState::Blocked { reason } => {
                        bar.set_message(format!("blocked: {reason}"))
                    }
                    WorkerState::Down { error } => bar.set_message(format!("down: {error}")),
                    other => bar.set_message(other.name()),
                }
            }
            DaemonEvent::LoadFailed {
                worker,
                model,
                error,
            } => self.line(&format!("loading {model} on {worker} failed: {error}")),
            DaemonEvent::Queue { paused } => self.line(if *paused {
                "queue paused"
            } else {
                "queue running"
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_line_has_its_time_and_outputs() {
        let mut job: JobView = serde_json::from_value(serde_json::json!({
            "id": 12, "state": "done", "priority": "normal", "source": "cli", "gpu": null,
            "spec": {"model": "m"}, "style": null, "attempts": 1, "max_attempts": 3,
            "timings": {"queued_at_ms": 0, "started_at_ms": 1000, "finished_at_ms": 4100,
                        "step_time_ms": null},
            "worker": "cpu", "gpus": [], "outputs": ["job12_000.png"], "seeds": [1],
            "error": null, "cancel_requested": false
        }))
        .expect("a job view");
        assert_eq!(
            finished_line(12, "done", Some(&job), None),
            "job 12 done (3.1 s) → output/job12_000.png"
        );
        job.outputs.clear();
        assert_eq!(
            finished_line(12, "failed", Some(&job), Some("out of memory")),
            "job 12 failed (3.1 s): out of memory"
        );
        assert_eq!(finished_line(3, "cancelled", None, None), "job 3 cancelled");
    }
}
