//! Finding embeddings by name: the files of `models/embeddings/`, named in prompts as
//! ComfyUI writes them (`embedding:name`) or as A1111 does (the bare file name), each file
//! read once per version of it.

use super::Embedding;
use crate::clip::ClipRole;
use crate::error::{EngineError, Result};
use crate::tokenizer::{EmbeddingLookup, NamedVectors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// ComfyUI's marker for an embedding in a prompt.
pub const EXPLICIT_PREFIX: &str = "embedding:";

/// Endings of files that may be embeddings: safetensors, and pickles, listed only so a
/// prompt naming one gets the pickle refusal rather than "not found".
const ENDINGS: [&str; 5] = ["safetensors", "pt", "pth", "bin", "ckpt"];

/// A file's name as prompts use it: the file name without its ending.
pub fn name_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

type Stamp = (u64, Option<SystemTime>);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// The embeddings folder and the files read from it so far.
#[derive(Debug, Default)]
pub struct EmbeddingLibrary {
    folder: Option<PathBuf>,
    loaded: HashMap<PathBuf, (Option<Stamp>, Rc<Embedding>)>,
}

impl EmbeddingLibrary {
    pub fn new(folder: Option<PathBuf>) -> Self {
        EmbeddingLibrary {
            folder,
            loaded: HashMap::new(),
        }
    }

    pub fn set_folder(&mut self, folder: Option<PathBuf>) {
        self.folder = folder;
    }

    pub fn folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }

    /// A lookup for one prompt, over the folder's files as they are now.
    pub fn for_prompt(&mut self) -> PromptEmbeddings<'_> {
        let files = self.folder.as_deref().map(list).unwrap_or_default();
        PromptEmbeddings {
            library: self,
            files,
            used: Vec::new(),
        }
    }

    fn load(&mut self, path: &Path) -> Result<Rc<Embedding>> {
        let now = stamp(path);
        if let Some((seen, embedding)) = self.loaded.get(path) {
            if *seen == now {
                return Ok(embedding.clone());
            }
        }
        let embedding = Rc::new(Embedding::open(path)?);
        self.loaded
            .insert(path.to_path_buf(), (now, embedding.clone()));
        Ok(embedding)
    }
}

/// Lower-cased name → file, for the candidate files directly in `folder`.
fn list(folder: &Path) -> BTreeMap<String, PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && !name_of(path).starts_with('.'))
        .filter(|path| {
            let ending = path.extension().map(|e| e.to_string_lossy().to_lowercase());
            ending.is_some_and(|e| ENDINGS.contains(&e.as_str()))
        })
        .map(|path| (name_of(&path).to_lowercase(), path))
        .collect()
}

/// The embeddings one prompt uses, numbered in the order it names them.
pub struct PromptEmbeddings<'a> {
    library: &'a mut EmbeddingLibrary,
    files: BTreeMap<String, PathBuf>,
    used: Vec<Rc<Embedding>>,
}

impl PromptEmbeddings<'_> {
    /// The embeddings found so far, in their numbering.
    pub fn used(&self) -> &[Rc<Embedding>] {
        &self.used
    }

    /// Row `row` of embedding `embedding`, for the encoder in `role` of width `width`.
    pub fn vector(
        &self,
        embedding: usize,
        row: usize,
        role: ClipRole,
        width: i64,
    ) -> Result<tch::Tensor> {
        let found = self
            .used
            .get(embedding)
            .ok_or_else(|| EngineError::Invalid {
                field: "embedding",
                value: embedding.to_string(),
                expected: format!("one of the prompt's {} embeddings", self.used.len()),
            })?;
        Ok(found.vectors_for(role, width)?.get(row as i64))
    }

    fn find(&self, name: &str) -> Option<PathBuf> {
        let name = name.to_lowercase();
        let name = name.strip_suffix(".safetensors").unwrap_or(&name);
        self.files.get(name).cloned()
    }

    /// The number of the embedding in `path` and its vector count, reading it if needed.
    fn take(&mut self, path: &Path) -> Result<(usize, usize)> {
        if let Some(i) = self.used.iter().position(|e| e.path == path) {
            return Ok((i, self.used[i].count()));
        }
        if let Some(folder) = self.library.folder() {
            // Refuses a link that leads out of the folder.
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
            imagelab_core::paths::resolve_in_folder(folder, &file.unwrap_or_default(), "embedding")
                .map_err(|e| EngineError::Invalid {
                    field: "embedding",
                    value: path.display().to_string(),
                    expected: e.to_string(),
                })?;
        }
        let embedding = self.library.load(path)?;
        let count = embedding.count();
        self.used.push(embedding);
        Ok((self.used.len() - 1, count))
    }

    fn not_found(&self, name: &str) -> EngineError {
        let expected = match self.library.folder() {
            None => "an embeddings folder (none is set for this run)".to_string(),
            Some(folder) if self.files.is_empty() => format!(
                "a .safetensors file in {} (the folder holds none)",
                folder.display()
            ),
            Some(folder) => format!(
                "a .safetensors file in {} (available: {})",
                folder.display(),
                self.files
                    .values()
                    .map(|p| name_of(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        EngineError::Invalid {
            field: "embedding",
            value: name.to_string(),
            expected,
        }
    }
}

impl EmbeddingLookup for PromptEmbeddings<'_> {
    /// `embedding:name` must name a file; a bare word is an embedding when a file has its
    /// name (as A1111 matches them). Either way, punctuation right after the name (`name,`)
    /// stays text.
    fn lookup(&mut self, word: &str) -> Result<Option<NamedVectors>> {
        let (explicit, name) = match word.strip_prefix(EXPLICIT_PREFIX) {
            Some(name) => (true, name),
            None => (false, word),
        };
        if !explicit && self.files.is_empty() {
            return Ok(None);
        }
        let bare = name.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
        for candidate in [name, bare] {
            if let Some(path) = self.find(candidate) {
                let (embedding, count) = self.take(&path)?;
                return Ok(Some(NamedVectors {
                    embedding,
                    count,
                    rest: name[candidate.len()..].to_string(),
                }));
            }
        }
        if explicit {
            return Err(self.not_found(bare));
        }
        Ok(None)
    }
}
