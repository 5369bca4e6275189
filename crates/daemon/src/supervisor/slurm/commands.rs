//! The Slurm commands the backend runs (`sbatch`, `squeue`, `scontrol`, `scancel`,
//! `sinfo`) and the parsing of what they print. Every failure is the command's own words.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A Slurm job's state as `squeue` / `scontrol` name it (`PENDING`, `RUNNING`,
/// `COMPLETED`, `FAILED`, `CANCELLED` …) and, while pending, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmState {
    pub state: String,
    pub reason: String,
}

impl SlurmState {
    /// Whether the job is over in Slurm (its result, if any, is written).
    pub fn is_finished(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "CONFIGURING"
                | "RUNNING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
                | "RESV_DEL_HOLD"
        )
    }

    pub fn is_pending(&self) -> bool {
        self.state == "PENDING"
    }
}

fn run(program: &str, args: &[String]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (is Slurm's client installed?)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr.trim();
    Err(format!(
        "{program} failed ({}): {}",
        output.status,
        if said.is_empty() { stdout.trim() } else { said }
    ))
}

/// What `sbatch` needs for one job.
pub struct Submission<'a> {
    pub name: &'a str,
    pub script: &'a Path,
    pub log: &'a Path,
    pub workdir: &'a Path,
    pub gres: &'a str,
    pub partition: Option<&'a str>,
    pub extra: &'a [String],
}

/// Submits; the Slurm job id.
pub fn sbatch(job: &Submission<'_>) -> Result<u64, String> {
    let mut args: Vec<String> = vec![
        "--parsable".into(),
        // Our queue decides about another attempt, not Slurm.
        "--no-requeue".into(),
        "--job-name".into(),
        job.name.into(),
        format!("--gres={}", job.gres),
        "--output".into(),
        job.log.display().to_string(),
        "--chdir".into(),
        job.workdir.display().to_string(),
    ];
    if let Some(partition) = job.partition {
        args.push(format!("--partition={partition}"));
    }
    args.extend(job.extra.iter().cloned());
    args.push(job.script.display().to_string());
    let out = run("sbatch", &args)?;
    parse_sbatch(&out).ok_or_else(|| format!("sbatch printed {:?}, not a job id", out.trim()))
}

/// `--parsable` prints `id` or `id;cluster`.
pub fn parse_sbatch(out: &str) -> Option<u64> {
    out.trim().split(';').next()?.trim().parse().ok()
}

/// Our jobs Slurm still lists (recently finished ones included), by name.
pub fn our_jobs() -> Result<BTreeMap<String, (u64, SlurmState)>, String> {
    let out = run(
        "squeue",
        &["-h", "-t", "all", "--me", "-o", "%i|%j|%T|%r"].map(String::from),
    )?;
    Ok(parse_squeue(&out))
}

/// `%i|%j|%T|%r` lines → name → (id, state). A name seen twice keeps its newest job.
pub fn parse_squeue(out: &str) -> BTreeMap<String, (u64, SlurmState)> {
    let mut jobs = BTreeMap::new();
    for line in out.lines() {
        let mut fields = line.trim().splitn(4, '|');
        let (Some(id), Some(name), Some(state), reason) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        let state = SlurmState {
            state: state.to_string(),
            reason: reason.unwrap_or("").to_string(),
        };
        let newer = jobs
            .get(name)
            .is_none_or(|(seen, _): &(u64, SlurmState)| id > *seen);
        if newer {
            jobs.insert(name.to_string(), (id, state));
        }
    }
    jobs
}

/// One job's state from `scontrol` (which keeps finished jobs a while after `squeue`
/// drops them); `None` when Slurm no longer knows it.
pub fn job_state(id: u64) -> Result<Option<SlurmState>, String> {
    match run(
        "scontrol",
        &["show".into(), "job".into(), "-o".into(), id.to_string()],
    ) {
        Ok(out) => Ok(parse_scontrol_state(&out)),
        Err(e) if e.contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

/// `JobState=… Reason=…` from a `scontrol show job -o` line.
pub fn parse_scontrol_state(out: &str) -> Option<SlurmState> {
    let field = |key: &str| {
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .map(str::to_string)
    };
    Some(SlurmState {
        state: field("JobState=")?,
        reason: field("Reason=").unwrap_or_default(),
    })
}

/// Asks Slurm to end a job (`scancel` exits 0 even for an unknown id: callers confirm the
/// end by asking for its state).
pub fn scancel(id: u64) -> Result<(), String> {
    run("scancel", &[id.to_string()]).map(|_| ())
}

/// One node as `sinfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmNode {
    pub name: String,
    pub state: String,
    /// Its generic resources, as configured (`gpu:2`, `gpu:a100:8`).
    pub gres: String,
    pub gres_used: String,
}

pub fn nodes() -> Result<Vec<SlurmNode>, String> {
    let out = run(
        "sinfo",
        &[
            "-h",
            "-N",
            "-O",
            "NodeList:|,StateCompact:|,Gres:|,GresUsed:",
        ]
        .map(String::from),
    )?;
    Ok(parse_sinfo(&out))
}

pub fn parse_sinfo(out: &str) -> Vec<SlurmNode> {
    let mut nodes: Vec<SlurmNode> = out
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').map(str::trim).collect();
            (f.len() >= 4 && !f[0].is_empty()).then(|| SlurmNode {
                name: f[0].into(),
                state: f[1].into(),
                gres: f[2].into(),
                gres_used: f[3].into(),
            })
        })
        .collect();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_slurm_prints() {
        assert_eq!(parse_sbatch("42\n"), Some(42));
        assert_eq!(parse_sbatch("42;cluster\n"), Some(42));
        assert_eq!(parse_sbatch("sbatch: error"), None);
        let jobs = parse_squeue(
            "7|imagelab-3-1|PENDING|Resources\n9|imagelab-3-1|RUNNING|None\nbad\n8|x|COMPLETED|None\n",
        );
        assert_eq!(jobs["imagelab-3-1"].0, 9);
        assert!(!jobs["imagelab-3-1"].1.is_finished());
        assert!(jobs["x"].1.is_finished());
        let state = parse_scontrol_state(
            "JobId=5 JobName=a JobState=PENDING Reason=Priority Dependency=(null)",
        )
        .unwrap();
        assert!(state.is_pending() && state.reason == "Priority");
        let nodes = parse_sinfo("vm |idle |gpu:2 |gpu:0(IDX:N/A)\n");
        assert_eq!(nodes[0].name, "vm");
        assert_eq!(nodes[0].gres, "gpu:2");
    }
}
