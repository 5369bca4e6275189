//! What a click on Generate sends: the form's parameters, a fresh prompt per image when
//! the prompt is a template, the style profile and the safe/mature mode applied to each
//! prompt (as the overnight runner does), at interactive priority so it runs next.

use super::form::{Field, FieldError, FormState};
use imagelab_core::api::{JobPriority, JobSource, SubmitBatch, SubmitRequest};
use imagelab_prompts::{expand_count, ContentMode, ProfileLibrary, Wildcards};

/// The profiles and wildcard lists the form's prompt is finished with.
#[derive(Debug, Clone, Default)]
pub struct PromptLibrary {
    pub profiles: ProfileLibrary,
    pub wildcards: Wildcards,
}

/// The submission for the form: one request of `count` jobs, or one request per job when
/// the prompt holds template syntax. `draw_seed` picks the template draws.
pub fn build_submission(
    form: &FormState,
    library: &PromptLibrary,
    draw_seed: u64,
) -> Result<SubmitBatch, FieldError> {
    let params = form.params()?;
    let mode = ContentMode::from_flags(form.safe, form.mature)
        .map_err(|e| FieldError::new(Field::Style, e.to_string()))?;
    let profile = match form.style.as_deref() {
        None => None,
        Some(id) => Some(
            library
                .profiles
                .get(id, mode)
                .map_err(|e| FieldError::new(Field::Style, e.to_string()))?,
        ),
    };
    let request = SubmitRequest {
        spec: params,
        style: profile.map(|p| p.id.clone()),
        priority: JobPriority::Interactive,
        count: form.count,
        gpu: None,
        source: JobSource::Gui,
    };
    let mut jobs = expand_count(&request, &library.wildcards, draw_seed)
        .map_err(|e| FieldError::new(Field::Prompt, e.to_string()))?;
    for job in &mut jobs {
        let spec = &mut job.spec;
        let (prompt, negative) = match profile {
            Some(p) => mode
                .apply(p, &spec.prompt, &spec.negative)
                .map_err(|e| FieldError::new(Field::Style, e.to_string()))?,
            None => (spec.prompt.clone(), mode.finish_negative(&spec.negative)),
        };
        (spec.prompt, spec.negative) = (prompt, negative);
    }
    Ok(SubmitBatch { jobs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn library() -> PromptLibrary {
        let mut profiles = ProfileLibrary::default();
        let text = "profiles:\n  - id: noir\n    name: Noir\n    group: core\n    prompt: \"{prompt}, film noir\"\n    negative: color\n  - id: spicy\n    name: Spicy\n    group: core\n    prompt: \"{prompt}, spicy\"\n    mature: true\n";
        profiles.add_text(Path::new("p.yaml"), text).unwrap();
        let mut wildcards = Wildcards::new();
        wildcards
            .add_text("animal", "animal.txt", "fox\nowl\n")
            .unwrap();
        PromptLibrary {
            profiles,
            wildcards,
        }
    }

    fn form() -> FormState {
        FormState {
            model: Some("m.safetensors".into()),
            prompt: "a cat".into(),
            negative: "blurry".into(),
            ..FormState::default()
        }
    }

    #[test]
    fn a_plain_prompt_is_one_interactive_request_of_count_jobs() {
        let batch = build_submission(&FormState { count: 3, ..form() }, &library(), 1).unwrap();
        assert_eq!(batch.jobs.len(), 1);
        let job = &batch.jobs[0];
        assert_eq!(
            (job.count, job.priority, job.source),
            (3, JobPriority::Interactive, JobSource::Gui)
        );
        assert_eq!(
            (job.spec.prompt.as_str(), job.spec.negative.as_str()),
            ("a cat", "blurry")
        );
        assert_eq!(job.style, None);
    }

    #[test]
    fn the_profile_and_safe_mode_finish_every_drawn_prompt() {
        let form = FormState {
            prompt: "a __animal__".into(),
            seed: "7".into(),
            count: 4,
            style: Some("noir".into()),
            safe: true,
            ..form()
        };
        let batch = build_submission(&form, &library(), 9).unwrap();
        assert_eq!(batch.jobs.len(), 4);
        for (k, job) in batch.jobs.iter().enumerate() {
            assert_eq!(job.count, 1);
            assert_eq!(job.spec.seed, 7 + k as i64);
            assert!(
                job.spec.prompt == "a fox, film noir" || job.spec.prompt == "a owl, film noir",
                "{}",
                job.spec.prompt
            );
            assert!(
                job.spec.negative.starts_with("blurry, color, nsfw"),
                "{}",
                job.spec.negative
            );
            assert_eq!(job.style.as_deref(), Some("noir"));
        }
    }

    #[test]
    fn a_mature_profile_needs_mature_mode() {
        let spicy = FormState {
            style: Some("spicy".into()),
            ..form()
        };
        let err = build_submission(&spicy, &library(), 0).unwrap_err();
        assert_eq!(err.field, Some(Field::Style));
        let mature = FormState {
            mature: true,
            ..spicy
        };
        let batch = build_submission(&mature, &library(), 0).unwrap();
        assert_eq!(batch.jobs[0].spec.prompt, "a cat, spicy");
        let both = FormState {
            safe: true,
            ..mature
        };
        assert_eq!(
            build_submission(&both, &library(), 0).unwrap_err().field,
            Some(Field::Style)
        );
    }

    #[test]
    fn template_errors_point_at_the_prompt() {
        let bad = FormState {
            prompt: "a {cat|dog".into(),
            ..form()
        };
        assert_eq!(
            build_submission(&bad, &library(), 0).unwrap_err().field,
            Some(Field::Prompt)
        );
    }
}
