//! Fixture builders shared by the analytics tests: job lines in the queue's `jobs.log`
//! format, favorite events, and PNGs with chosen text chunks.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

/// A day in ms (2025-11-20T00:00:00Z) the fixtures date their jobs from.
pub const DAY0: u64 = 1_763_596_800_000;
pub const DAY: u64 = 86_400_000;

/// Settings of one fixture job.
#[derive(Clone)]
pub struct Job {
    pub id: u64,
    pub model: &'static str,
    pub style: Option<&'static str>,
    pub sampler: &'static str,
    pub scheduler: &'static str,
    pub cfg: f64,
    pub steps: u32,
    pub size: (u32, u32),
    pub state: &'static str,
    pub finished_ms: u64,
    pub prompt: String,
}

impl Job {
    pub fn new(id: u64, model: &'static str) -> Job {
        Job {
            id,
            model,
            style: None,
            sampler: "euler",
            scheduler: "normal",
            cfg: 7.0,
            steps: 20,
            size: (1024, 1024),
            state: "done",
            finished_ms: DAY0,
            prompt: format!("prompt of job {id}"),
        }
    }

    /// The line exactly as `imagelab_queue::LogRecord` serializes it.
    pub fn line(&self) -> String {
        let outputs: Vec<String> = if self.state == "done" {
            vec![format!("job{:010}_000.png", self.id)]
        } else {
            vec![]
        };
        serde_json::json!({
            "id": self.id,
            "state": self.state,
            "spec": {
                "params": {
                    "prompt": self.prompt, "negative": "blurry, lowres", "model": self.model,
                    "vae": null, "clip": null, "width": self.size.0, "height": self.size.1,
                    "steps": self.steps, "cfg": self.cfg, "sampler": self.sampler,
                    "scheduler": self.scheduler, "seed": -1, "batch": 1, "clip_skip": null,
                    "init_image": null, "strength": 0.75
                },
                "style": self.style,
                "model_hash": "0123456789"
            },
            "seeds": [self.id * 7],
            "model_hash": "0123456789",
            "priority": "background",
            "source": "night-run",
            "placement": "any",
            "attempts": 1,
            "worker": "gpu0",
            "gpus": ["GPU-00000000-1111-2222-3333-444444444444"],
            "timings": {"queued_at_ms": self.finished_ms - 60_000, "started_at_ms": self.finished_ms - 30_000,
                        "finished_at_ms": self.finished_ms, "step_time_ms": 60.5},
            "outputs": outputs
        })
        .to_string()
    }
}

pub fn favorite_job(id: u64) -> String {
    format!(r#"{{"event":"favorite","job":{id},"at":{DAY0}}}"#)
}

pub fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A small PNG with the given text chunks (Latin-1 as tEXt, anything else as iTXt).
pub fn write_png(path: &Path, texts: &[(&str, &str)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 4, 4);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    for (k, v) in texts {
        if v.chars().all(|c| (c as u32) < 256) {
            encoder
                .add_text_chunk(k.to_string(), v.to_string())
                .unwrap();
        } else {
            encoder
                .add_itxt_chunk(k.to_string(), v.to_string())
                .unwrap();
        }
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[120u8; 4 * 4 * 3]).unwrap();
    writer.finish().unwrap();
}
