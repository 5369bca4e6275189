//! `imagelab prompts` and `imagelab profiles`: print prompts from a theme or a template
//! (random or every combination) and list or import style profiles. Thin wrappers over
//! the `imagelab-prompts` crate; all files come from the themes folder.

use anyhow::{bail, Context, Result};
use clap::Args;
use imagelab_core::config::{Config, Folders};
use imagelab_core::{paths, GenerationParams};
use imagelab_prompts::{
    derive_seed, expand_all, expand_random, import_a1111_csv, import_fooocus_json,
    profiles_to_yaml, ContentMode, GeneratedPrompt, ProfileLibrary, PromptRng, StyleProfile,
    Template, Theme, Wildcards,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The content-mode flags both commands share; clap refuses them together.
#[derive(Args, Debug)]
pub struct ModeArgs {
    /// Safe mode: add the safety negative prompt; mature profiles stay hidden.
    #[arg(long, conflicts_with = "mature")]
    pub safe: bool,
    /// Mature mode: list and allow mature profiles (R-Rated).
    #[arg(long)]
    pub mature: bool,
}

impl ModeArgs {
    fn mode(&self) -> Result<ContentMode> {
        Ok(ContentMode::from_flags(self.safe, self.mature)?)
    }
}

#[derive(Args, Debug)]
pub struct PromptsArgs {
    /// A theme in the themes folder (file name without .yaml/.json).
    #[arg(
        long,
        conflicts_with = "template",
        required_unless_present = "template"
    )]
    pub theme: Option<String>,
    /// A template in dynamicprompts syntax, e.g. "a {red|blue} __animals__".
    #[arg(long)]
    pub template: Option<String>,
    /// How many prompts to draw (random mode).
    #[arg(short = 'n', long = "count", default_value_t = 10)]
    pub count: u64,
    /// The run seed; prompt i gets its own seed derived from it. Random when left out.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print every combination instead of random draws, one per line.
    #[arg(long)]
    pub all: bool,
    /// With --all: stop after this many prompts.
    #[arg(long, default_value_t = 1000)]
    pub max: usize,
    /// A style profile (id or name) to apply; overrides the theme's own.
    #[arg(long)]
    pub profile: Option<String>,
    /// One JSON object a line with the full resolved settings, template, theme hash and seeds.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub mode: ModeArgs,
}

#[derive(Args, Debug)]
pub struct ProfilesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Import an A1111 styles.csv or a Fooocus-style .json into themes/profiles/.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// With --import: the new profile file's name (default: imported-<file name>).
    #[arg(long, requires = "import")]
    pub name: Option<String>,
    #[command(flatten)]
    pub mode: ModeArgs,
}

/// One line of `prompts --json`.
#[derive(Serialize)]
struct PromptLine<'a> {
    index: u64,
    prompt: &'a str,
    negative: &'a str,
    params: &'a GenerationParams,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    theme: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    theme_hash: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
}

struct Printer<'a> {
    config: Config,
    mode: ContentMode,
    profile: Option<&'a StyleProfile>,
    profiles: &'a ProfileLibrary,
    json: bool,
    /// The theme's name and hash, for lines that have no `GeneratedPrompt` (`--all`).
    theme: Option<(&'a str, &'a str)>,
}

impl Printer<'_> {
    /// Applies profile and mode, resolves the settings, prints one prompt.
    fn emit(
        &self,
        index: u64,
        raw: &str,
        negative: &str,
        generated: Option<&GeneratedPrompt>,
    ) -> Result<()> {
        let params = match generated {
            // A theme's draw: the library's own layering (defaults, profile, theme, mode).
            Some(g) => g.resolve(
                &self.config.default_params(),
                self.profiles,
                self.mode,
                self.profile.map(|p| p.id.as_str()),
            )?,
            None => {
                let mut params = self.config.default_params();
                let (prompt, negative) = match self.profile {
                    Some(p) => {
                        p.settings.fill(&mut params);
                        self.mode.apply(p, raw, negative)?
                    }
                    None => (raw.to_string(), self.mode.finish_negative(negative)),
                };
                params.prompt = prompt;
                params.negative = negative;
                params
            }
        };
        if !self.json {
            println!("{}", params.prompt);
            return Ok(());
        }
        let line = PromptLine {
            index,
            prompt: &params.prompt,
            negative: &params.negative,
            params: &params,
            template: generated.map(|g| g.template.as_str()),
            theme: generated
                .map(|g| g.theme.as_str())
                .or(self.theme.map(|t| t.0)),
            theme_hash: generated
                .map(|g| g.theme_hash.as_str())
                .or(self.theme.map(|t| t.1)),
            prompt_seed: generated.map(|g| g.prompt_seed),
            profile: self.profile.map(|p| p.id.as_str()),
        };
        println!("{}", serde_json::to_string(&line)?);
        Ok(())
    }
}

fn random_seed() -> u64 {
    use rand::Rng;
    // 53 bits keeps the seed exact in JSON readers that parse numbers as doubles.
    rand::rng().random_range(0..(1u64 << 53))
}

fn folders() -> Result<(Config, Folders)> {
    let config = Config::load()?;
    let folders = config.folders();
    Ok((config, folders))
}

pub fn run_prompts(args: PromptsArgs) -> Result<ExitCode> {
    let mode = args.mode.mode()?;
    let (config, folders) = folders()?;
    let profiles = ProfileLibrary::load_dir(&folders.profiles())?;
    let wildcards = Wildcards::load_dir(&folders.wildcards())?;
    let seed = args.seed.unwrap_or_else(random_seed);
    if args.seed.is_none() && !args.all {
        eprintln!("seed: {seed}");
    }
    if let Some(text) = &args.template {
        let profile = args
            .profile
            .as_deref()
            .map(|p| profiles.get(p, mode))
            .transpose()?;
        let ctx = Printer {
            config,
            mode,
            profile,
            profiles: &profiles,
            json: args.json,
            theme: None,
        };
        let template = Template::parse(text, "template", 1)?;
        if args.all {
            for (i, prompt) in expand_all(&template, &wildcards, args.max)?
                .iter()
                .enumerate()
            {
                ctx.emit(i as u64, prompt, "", None)?;
            }
        } else {
            for i in 0..args.count {
                let mut rng = PromptRng::new(derive_seed(seed, i));
                ctx.emit(
                    i,
                    &expand_random(&template, &wildcards, &mut rng)?,
                    "",
                    None,
                )?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args
        .theme
        .as_deref()
        .context("give --theme NAME or --template TEXT")?;
    let theme = Theme::load(
        &imagelab_prompts::find_theme(&folders.themes, name).map_err(anyhow::Error::msg)?,
        &wildcards,
    )?;
    let profile_name = args.profile.as_deref().or(theme.spec.profile.as_deref());
    let profile = profile_name
        .map(|p| profiles.get(p, mode))
        .transpose()
        .with_context(|| format!("theme {}", theme.path.display()))?;
    let ctx = Printer {
        config,
        mode,
        profile,
        profiles: &profiles,
        json: args.json,
        theme: Some((&theme.name, &theme.hash)),
    };
    if args.all {
        for (i, prompt) in theme.enumerate(args.max)?.iter().enumerate() {
            ctx.emit(i as u64, prompt, &theme.spec.negative, None)?;
        }
    } else {
        for i in 0..args.count {
            let generated = theme.generate(seed, i)?;
            ctx.emit(i, &generated.prompt, &generated.negative, Some(&generated))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_profiles(args: ProfilesArgs) -> Result<ExitCode> {
    let mode = args.mode.mode()?;
    let (_, folders) = folders()?;
    let dir = folders.profiles();
    let library = ProfileLibrary::load_dir(&dir)?;
    if let Some(file) = &args.import {
        return import(&library, &dir, file, args.name.as_deref());
    }
    let visible = library.visible(mode);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&visible)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<22} {:<30} {:<13} file", "id", "name", "group");
    for p in visible {
        let group = serde_json::to_value(p.group)?;
        let file = library
            .source_of(&p.id)
            .and_then(Path::file_name)
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = if p.mature {
            format!("{} (mature)", p.name)
        } else {
            p.name.clone()
        };
        println!(
            "{:<22} {:<30} {:<13} {file}",
            p.id,
            name,
            group.as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Converts a style file and writes it as a new profile file; ids that clash with loaded
/// profiles get a suffix, and an existing file is never overwritten.
fn import(
    library: &ProfileLibrary,
    dir: &Path,
    file: &Path,
    name: Option<&str>,
) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let source = file.display().to_string();
    let is_json = file
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("json"));
    let mut imported = if is_json {
        import_fooocus_json(&text, &source)?
    } else {
        import_a1111_csv(&text, &source)?
    };
    for profile in &mut imported {
        let base = profile.id.clone();
        let mut n = 2;
        while library.all().any(|p| p.id == profile.id) {
            profile.id = format!("{base}-{n}");
            n += 1;
        }
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_name = match name {
        Some(n) => n.trim_end_matches(".yaml").to_string(),
        None => format!("imported-{}", imagelab_prompts::import::slug(&stem)),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = paths::resolve_in_folder(dir, &format!("{out_name}.yaml"), "profile file")?;
    if out.exists() {
        bail!(
            "{} already exists; pick another name with --name",
            out.display()
        );
    }
    let yaml = profiles_to_yaml(&imported)?;
    // Check the file loads alongside the others before it is written.
    let mut check = library.clone();
    check.add_text(&out, &yaml)?;
    let tmp = out.with_extension("yaml.tmp");
    std::fs::write(&tmp, yaml).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "imported {} profile(s) into {}",
        imported.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
