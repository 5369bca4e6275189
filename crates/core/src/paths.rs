//! Resolving names users give (models, VAEs, images) to files, only ever inside the folder
//! they belong to: no `..`, no absolute escapes, no symlink leading out.

use std::path::{Component, Path, PathBuf};

/// A name that does not resolve to a file we may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{what} name {name:?} may not contain '..' or start at the root; give a name inside {folder}")]
    Escapes {
        what: &'static str,
        name: String,
        folder: String,
    },
    #[error("{what} {name:?} not found in {folder}{hint}")]
    NotFound {
        what: &'static str,
        name: String,
        folder: String,
        hint: String,
    },
    #[error("{what} name is empty")]
    Empty { what: &'static str },
}

/// Joins `name` onto `folder` and refuses anything that would leave the folder, including
/// through a symbolic link. `what` names the kind of file for the message ("model", "vae").
pub fn resolve_in_folder(
    folder: &Path,
    name: &str,
    what: &'static str,
) -> Result<PathBuf, PathError> {
    let escapes = || PathError::Escapes {
        what,
        name: name.to_string(),
        folder: folder.display().to_string(),
    };
    if name.trim().is_empty() {
        return Err(PathError::Empty { what });
    }
    let rel = Path::new(name);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(escapes());
    }
    let joined = folder.join(rel);
    if let (Ok(real_folder), Ok(real_file)) = (folder.canonicalize(), joined.canonicalize()) {
        if !real_file.starts_with(&real_folder) {
            return Err(escapes());
        }
    }
    Ok(joined)
}

/// Resolves a model-like name: a file in `folder` (the `.safetensors` ending may be left
/// off), or — when `allow_paths` is set, as on the local CLI — a path to a file elsewhere.
/// A name with `..` is always refused. The file must exist.
pub fn resolve_model_file(
    folder: &Path,
    name: &str,
    what: &'static str,
    allow_paths: bool,
) -> Result<PathBuf, PathError> {
    let as_path = Path::new(name);
    if as_path
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(PathError::Escapes {
            what,
            name: name.to_string(),
            folder: folder.display().to_string(),
        });
    }
    if allow_paths && (as_path.is_absolute() || name.contains('/')) && as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    let candidate = resolve_in_folder(folder, name, what)?;
    if candidate.exists() {
        return Ok(candidate);
    }
    let with_ext = resolve_in_folder(folder, &format!("{name}.safetensors"), what)?;
    if with_ext.exists() {
        return Ok(with_ext);
    }
    let available = list_model_names(folder);
    let hint = if available.is_empty() {
        format!(
            " (the folder holds no .safetensors files; put one in {})",
            folder.display()
        )
    } else {
        format!(" (available: {})", available.join(", "))
    };
    Err(PathError::NotFound {
        what,
        name: name.to_string(),
        folder: folder.display().to_string(),
        hint,
    })
}

/// The model files and diffusers folders directly inside `folder`, sorted by name.
pub fn list_model_names(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let p = e.path();
            p.extension().is_some_and(|x| x == "safetensors")
                || p.join("model_index.json").exists()
                || p.join("unet").is_dir()
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.safetensors"), b"x").unwrap();
        assert!(resolve_in_folder(dir.path(), "../etc/passwd", "model").is_err());
        assert!(resolve_in_folder(dir.path(), "/etc/passwd", "model").is_err());
        assert!(resolve_in_folder(dir.path(), "sub/../../x", "model").is_err());
        assert_eq!(
            resolve_in_folder(dir.path(), "a.safetensors", "model").unwrap(),
            dir.path().join("a.safetensors")
        );
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let err = resolve_in_folder(dir.path(), "link", "image").unwrap_err();
        assert!(matches!(err, PathError::Escapes { .. }), "{err}");
    }

    #[test]
    fn model_names_resolve_with_or_without_extension_and_list_choices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sdxl.safetensors"), b"x").unwrap();
        assert!(resolve_model_file(dir.path(), "sdxl", "model", false).is_ok());
        let err = resolve_model_file(dir.path(), "nope", "model", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("sdxl.safetensors"),
            "{err}"
        );
        let err = resolve_model_file(dir.path(), "../sdxl", "model", true).unwrap_err();
        assert!(matches!(err, PathError::Escapes { .. }));
    }
}
