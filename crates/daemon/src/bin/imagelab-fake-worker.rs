//! A stand-in for `imagelab worker` that speaks the same protocol without an engine, for
//! the supervisor's tests and the dispatch benchmark: each step sleeps `FAKE_STEP_MS`
//! (default 5), outputs are small placeholder files. Prompts script failures: `crash`
//! exits mid-job, `oom` reports CUDA out of memory, `fail` fails for good.

use imagelab_core::events::ComponentVram;
use imagelab_core::worker::{WorkRequest, WorkerCommand, WorkerEvent};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn emit(event: &WorkerEvent) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, event);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

struct Worker {
    device: String,
    step: Duration,
    loaded: Vec<String>,
    commands: mpsc::Receiver<WorkerCommand>,
    /// Commands that arrived during a job, handled after it.
    backlog: Vec<WorkerCommand>,
}

impl Worker {
    fn models(&self) -> WorkerEvent {
        WorkerEvent::Models {
            loaded: self.loaded.clone(),
            vram: self
                .loaded
                .iter()
                .map(|m| ComponentVram {
                    model: m.clone(),
                    component: "unet".into(),
                    device: self.device.clone(),
                    bytes: 1 << 20,
                })
                .collect(),
        }
    }

    fn touch(&mut self, model: &str) {
        self.loaded.retain(|m| m != model);
        self.loaded.push(model.to_string());
        // A cache of two pipelines, like the real worker's default.
        while self.loaded.len() > 2 {
            self.loaded.remove(0);
        }
    }

    fn generate(&mut self, request: WorkRequest) {
        let job = request.job;
        let started = Instant::now();
        let steps = request.params.steps.max(1) as usize;
        for done in 1..=steps {
            std::thread::sleep(self.step);
            while let Ok(command) = self.commands.try_recv() {
                match command {
                    WorkerCommand::Cancel { job: id } if id == job => {
                        emit(&WorkerEvent::Cancelled { job });
                        return;
                    }
                    WorkerCommand::Cancel { .. } => {}
                    other => self.backlog.push(other),
                }
            }
            match request.params.prompt.as_str() {
                "crash" => std::process::exit(3),
                "oom" => {
                    emit(&WorkerEvent::Failed {
                        job,
                        error: "CUDA out of memory. Tried to allocate 2.00 GiB".into(),
                        retryable: true,
                    });
                    return;
                }
                "fail" => {
                    emit(&WorkerEvent::Failed {
                        job,
                        error: "the model file is not a checkpoint".into(),
                        retryable: false,
                    });
                    return;
                }
                _ => {}
            }
            emit(&WorkerEvent::Progress {
                job,
                done,
                total: steps,
                preview: None,
            });
        }
        let mut outputs = Vec::new();
        for stem in &request.stems {
            let name = format!("{stem}.png");
            let staging = request.output_dir.join(format!(".{name}.part"));
            let written = std::fs::write(&staging, b"fake image")
                .and_then(|_| std::fs::rename(&staging, request.output_dir.join(&name)));
            if let Err(e) = written {
                emit(&WorkerEvent::Failed {
                    job,
                    error: format!("cannot write {name}: {e}"),
                    retryable: true,
                });
                return;
            }
            outputs.push(name);
        }
        self.touch(&request.params.model);
        emit(&WorkerEvent::Done {
            job,
            seeds: vec![request.params.seed; outputs.len()],
            outputs,
            model_hash: Some("fakehash00".into()),
            step_time_ms: Some(started.elapsed().as_secs_f64() * 1000.0 / steps as f64),
        });
        emit(&self.models());
    }

    fn handle(&mut self, command: WorkerCommand) {
        match command {
            WorkerCommand::Generate(request) => self.generate(request),
            // A scripted load failure, as the engine reports a VAE that does not fit.
            WorkerCommand::Load { model, vae, .. }
                if vae.as_deref() == Some("misfit.safetensors") =>
            {
                emit(&WorkerEvent::Failed {
                    job: 0,
                    error: format!("vae misfit.safetensors does not fit {model}"),
                    retryable: false,
                });
            }
            WorkerCommand::Load { model, .. } => {
                self.touch(&model);
                emit(&self.models());
            }
            WorkerCommand::Unload { model: None } => {
                self.loaded.clear();
                emit(&self.models());
            }
            WorkerCommand::Unload { model: Some(model) } => {
                self.loaded.retain(|m| *m != model);
                emit(&self.models());
            }
            WorkerCommand::Cancel { .. } => {}
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let device = args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "cpu".into());
    let step_ms = std::env::var("FAKE_STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<WorkerCommand>(&line) {
                Ok(command) => {
                    if tx.send(command).is_err() {
                        break;
                    }
                }
                Err(e) => emit(&WorkerEvent::Failed {
                    job: 0,
                    error: format!("malformed request: {e}"),
                    retryable: false,
                }),
            }
        }
    });
    let mut worker = Worker {
        device,
        step: Duration::from_millis(step_ms),
        loaded: Vec::new(),
        commands: rx,
        backlog: Vec::new(),
    };
    emit(&WorkerEvent::Ready {
        pid: std::process::id(),
    });
    loop {
        let next = if worker.backlog.is_empty() {
            match worker.commands.recv() {
                Ok(command) => command,
                Err(_) => return,
            }
        } else {
            worker.backlog.remove(0)
        };
        worker.handle(next);
    }
}
