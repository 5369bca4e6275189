//! Benchmark: writes a synthetic `jobs.log` of N jobs (default 1,000,000) in the queue's
//! line format with realistic line sizes, ~5% favorites (as event lines) and a few corrupt
//! lines, then times one full analysis and prints the peak resident memory (VmHWM).
//!
//! `cargo run --release -p imagelab-analytics --example analyze_bench -- [JOBS] [DIR]`

use imagelab_analytics::report::{render, Format};
use imagelab_analytics::{analyze, AnalyzeOptions};
use std::io::Write;
use std::time::Instant;

const MODELS: &[&str] = &[
    "sd_xl_base_1.0",
    "juggernautXL_v9",
    "realvisxlV40",
    "animagine-xl-4.0",
    "cyberrealisticXL_v2",
    "sd_xl_turbo_1.0",
];
const STYLES: &[&str] = &[
    "cinematic",
    "noir",
    "watercolor",
    "anime",
    "photoreal",
    "dark-fantasy",
    "sci-fi-blueprint",
    "oil-painting",
];
const SAMPLERS: &[&str] = &[
    "euler",
    "euler_ancestral",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "uni_pc",
];
const SCHEDULERS: &[&str] = &["normal", "karras", "exponential"];
const CFGS: &[f64] = &[3.5, 5.0, 6.0, 7.0, 8.5];
const STEPS: &[u32] = &[20, 25, 30, 40];
const SIZES: &[(u32, u32)] = &[(1024, 1024), (832, 1216), (1216, 832)];
const SUBJECTS: &[&str] = &[
    "a lighthouse at dusk on a rocky coast, volumetric light, (dramatic clouds:1.2)",
    "portrait of an old sailor with a weathered face, rim lighting, 85mm, shallow depth of field",
    "a ruined cathedral overgrown with ivy, morning fog, god rays, highly detailed",
    "a cyberpunk street market at night, neon signs, rain reflections, crowded",
    "blueprint of a starship engine, technical drawing, white lines on blue paper",
];

/// A small deterministic generator (no dependency, same log every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

fn write_log(path: &std::path::Path, jobs: u64) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Lcg(42);
    let mut favorites = 0;
    let start_ms: u64 = 1_760_000_000_000;
    for id in 1..=jobs {
        let model = rng.pick(MODELS);
        let style = rng.pick(STYLES);
        let (w, h) = *rng.pick(SIZES);
        let finished = start_ms + id * 2_600;
        let line = format!(
            concat!(
                r#"{{"id":{id},"state":"{state}","spec":{{"params":{{"prompt":"{prompt}, take {id}","negative":"blurry, lowres, watermark, text, jpeg artifacts","model":"{model}","vae":null,"clip":null,"width":{w},"height":{h},"steps":{steps},"cfg":{cfg},"sampler":"{sampler}","scheduler":"{scheduler}","seed":-1,"batch":1,"clip_skip":null,"init_image":null,"strength":0.75}},"style":"{style}","model_hash":null}},"#,
                r#""seeds":[{seed}],"model_hash":"31e35c80fc","priority":"background","source":"night-run","placement":"any","attempts":1,"worker":"gpu-worker-0","gpus":["GPU-4f2b1c9e-8a7d-4e3b-9c1a-0d5e6f7a8b9c"],"#,
                r#""timings":{{"queued_at_ms":{queued},"started_at_ms":{started},"finished_at_ms":{finished},"step_time_ms":61.25}},"outputs":["job{id:010}_000.png"]}}"#
            ),
            id = id,
            state = if rng.next().is_multiple_of(50) {
                "failed"
            } else {
                "done"
            },
            prompt = rng.pick(SUBJECTS),
            model = model,
            w = w,
            h = h,
            steps = rng.pick(STEPS),
            cfg = rng.pick(CFGS),
            sampler = rng.pick(SAMPLERS),
            scheduler = rng.pick(SCHEDULERS),
            style = style,
            seed = rng.next(),
            queued = finished - 60_000,
            started = finished - 2_400,
            finished = finished,
        );
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        // Favorites lean towards one model and style so the ranking has something to find.
        let bias = if *model == "juggernautXL_v9" && *style == "cinematic" {
            4
        } else {
            1
        };
        if rng.next() % 100 < 4 * bias {
            favorites += 1;
            writeln!(
                out,
                r#"{{"event":"favorite","job":{id},"at":{}}}"#,
                finished + 5_000
            )?;
        }
        if id.is_multiple_of(200_000) {
            out.write_all(b"{\"id\": 17, \"state\": \"do\n")?;
            out.write_all(b"\x00\x00garbage\n")?;
        }
    }
    out.flush()?;
    Ok(favorites)
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "VmHWM: unknown".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let jobs: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("imagelab-analyze-bench"),
    };
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("jobs.log");
    let t = Instant::now();
    let favorites = write_log(&log, jobs)?;
    let bytes = std::fs::metadata(&log)?.len();
    println!(
        "wrote {jobs} jobs, {favorites} favorite events, {:.0} MB ({} bytes/job) in {:.1} s; {}",
        bytes as f64 / 1e6,
        bytes / jobs.max(1),
        t.elapsed().as_secs_f64(),
        vm_hwm()
    );
    // The parts, for where the time goes: the favorites pass and parsing every line.
    let t = Instant::now();
    let folded = imagelab_analytics::fold_favorites(&log)?;
    let fold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let counts = imagelab_analytics::joblog::stream_log(&log, |_| {})?;
    println!(
        "parts: favorites pass {fold_s:.2} s ({} events), parse-only pass on one thread {:.2} s ({} jobs)",
        folded.events,
        t.elapsed().as_secs_f64(),
        counts.jobs
    );
    let t = Instant::now();
    let report = analyze(&AnalyzeOptions::new(log.clone()))?;
    let analysis_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let html = render(&report, Format::Html)?;
    println!(
        "analyze: {:.2} s ({} lines, {} skipped, {} images, {} favorites); HTML render {:.3} s, {} KB; {}",
        analysis_s,
        report.summary.log_lines.lines,
        report.summary.log_lines.skipped,
        report.analysis.images,
        report.analysis.favorites,
        t.elapsed().as_secs_f64(),
        html.len() / 1024,
        vm_hwm()
    );
    if let Some(best) = report.analysis.best_configs.groups.first() {
        println!(
            "best config: {} ({}/{})",
            best.key, best.favorites, best.images
        );
    }
    std::fs::remove_file(&log)?;
    Ok(())
}
